-- wrk script for the serving benchmarks: POST the JSON body named by BODY; each connection
-- waits DELAY_MS between its requests (default 0: as fast as answers come), so a run can be a
-- steady rate rather than all wrk can send.  Prints one RESULT line: requests/s, wrk's latency
-- percentiles (p50, p90, p95, p99 in ms, from a request's first byte sent to its answer's last
-- byte read) and each kind of socket error apart (connect and write errors are what a closed
-- listener gives; read errors and timeouts are answers lost on an open connection).  With
-- COUNT_VERSIONS=1 it also counts the answers by their "model_version" and prints
-- "VERSIONS 1=1234 2=5678" ("none" for answers without one); that reads every body, so it is
-- off unless asked.
-- usage: BODY=body.json [DELAY_MS=10] [COUNT_VERSIONS=1] wrk -t2 -c32 -d10s -s wrk_post.lua \
--          http://127.0.0.1:PORT/v2/models/mlp/infer
-- wrk runs this under LuaJIT (Lua 5.1); wrk, setup, delay, response and done are the globals it
-- reads, versions the one each thread's counts live in.
-- luacheck: globals wrk setup delay response done versions
local f = assert(io.open(os.getenv("BODY") or "body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local pause = tonumber(os.getenv("DELAY_MS") or "0")
if pause > 0 then
  function delay() return pause end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

local count_versions = os.getenv("COUNT_VERSIONS") == "1"
if count_versions then
  versions = {}
  function response(_, _, body)
    local v = body:match('"model_version":"(%d+)"') or "none"
    versions[v] = (versions[v] or 0) + 1
  end
end

-- "VERSIONS 1=... 2=...": the counts of every thread, summed.
local function versions_line()
  local total, keys = {}, {}
  for _, thread in ipairs(threads) do
    for v, n in pairs(thread:get("versions")) do
      if not total[v] then keys[#keys + 1] = v end
      total[v] = (total[v] or 0) + n
    end
  end
  table.sort(keys)
  local parts = {}
  for _, v in ipairs(keys) do parts[#parts + 1] = v .. "=" .. total[v] end
  return "VERSIONS " .. table.concat(parts, " ") .. "\n"
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p95_ms=%.3f p99_ms=%.3f requests=%d connect=%d "
    .. "write=%d read=%d timeout=%d non2xx=%d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.connect, e.write, e.read, e.timeout, e.status))
  if count_versions then io.write(versions_line()) end
end
