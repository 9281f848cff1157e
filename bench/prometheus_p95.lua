-- bench/serve_prometheus.sh's verdict: Prometheus' p95 of lunet_request_duration_seconds against
-- wrk's own p95.
--   lua5.4 bench/prometheus_p95.lua QUANTILE.json BUCKETS.json WRK_P95_MS
-- QUANTILE.json is Prometheus' /api/v1/query answer for
--   histogram_quantile(0.95, sum(rate(lunet_request_duration_seconds_bucket[1m])) by (le))
-- and BUCKETS.json its answer for the sum(rate(...)) by (le) inside it, at the same time.
-- Prints both p95s in milliseconds, their ratio, the bucket bounds that bracket each (the
-- histogram only knows which bucket a request fell in; histogram_quantile interpolates linearly
-- inside it), and exits 1 unless the ratio is within 10x either way.
local cjson = require("cjson")

local function read_json(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  local answer = cjson.decode(text)
  if answer.status ~= "success" then error(path .. ": Prometheus answered " .. text) end
  return answer.data.result
end

local function number(text) return text == "+Inf" and math.huge or tonumber(text) end

local quantile_result = read_json(arg[1])
local buckets = {}
for _, series in ipairs(read_json(arg[2])) do
  buckets[#buckets + 1] = { le = number(series.metric.le), rate = number(series.value[2]) }
end
table.sort(buckets, function(a, b) return a.le < b.le end)
local wrk_ms = assert(tonumber(arg[3]), "wrk's p95 (ms) is not a number: " .. tostring(arg[3]))

if #quantile_result ~= 1 then
  io.write("FAIL: Prometheus gave ", #quantile_result, " series for the quantile, not one\n")
  os.exit(1)
end
local prom_ms = number(quantile_result[1].value[2]) * 1000
if prom_ms ~= prom_ms or #buckets == 0 or buckets[#buckets].le ~= math.huge or buckets[#buckets].rate <= 0 then
  io.write("FAIL: no requests in the window (quantile ", quantile_result[1].value[2], ")\n")
  os.exit(1)
end
local total = buckets[#buckets].rate

local function ms(seconds) return seconds == math.huge and "+Inf" or string.format("%g", seconds * 1000) end

-- The bucket (lower, upper] that holds a latency in seconds, and the share of requests at or
-- under each bound.
local function bracket(seconds)
  local lower = { le = 0, rate = 0 }
  for _, b in ipairs(buckets) do
    if seconds <= b.le then return lower, b end
    lower = b
  end
  return lower, buckets[#buckets]
end

local function describe(name, value_ms)
  local lower, upper = bracket(value_ms / 1000)
  io.write(string.format("  %-10s p95 %9.3f ms   in bucket (%s, %s] ms: %.2f%% of requests took at most %s ms, "
    .. "%.2f%% at most %s ms\n", name, value_ms, ms(lower.le), ms(upper.le), 100 * lower.rate / total, ms(lower.le),
    100 * upper.rate / total, ms(upper.le)))
end

io.write(string.format("requests in the window: %.1f/s (the sum over every model label)\n", total))
describe("Prometheus", prom_ms)
describe("wrk", wrk_ms)
local ratio = prom_ms / wrk_ms
io.write(string.format("Prometheus p95 / wrk p95 = %.3f ms / %.3f ms = %.2f\n", prom_ms, wrk_ms, ratio))
if ratio >= 0.1 and ratio <= 10 then
  io.write("PASS: the same order of magnitude (within 10x either way)\n")
else
  io.write("FAIL: not the same order of magnitude (more than 10x apart)\n")
  os.exit(1)
end
