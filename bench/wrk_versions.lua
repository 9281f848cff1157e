-- wrk script: POST the JSON body named by BODY and count the answers by the model version that
-- gave them (the response's "model_version"), so a run shows a new version taking over.
-- Prints the RESULT line of post_paced.lua (each socket error apart) and a VERSIONS line:
-- "VERSIONS 1=1234 2=5678" (answers without a model_version count as "none").
-- usage: BODY=body.json wrk -t2 -c16 -d10s -s wrk_versions.lua http://127.0.0.1:PORT/v2/models/mlp/infer
-- luacheck: globals wrk setup response done versions
local f = assert(io.open(os.getenv("BODY") or "body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

versions = {}
function response(_, _, body)
  local v = body:match('"model_version":"(%d+)"') or "none"
  versions[v] = (versions[v] or 0) + 1
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d connect=%d write=%d read=%d "
    .. "timeout=%d non2xx=%d\n", summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.connect, e.write, e.read, e.timeout, e.status))
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
  io.write("VERSIONS ", table.concat(parts, " "), "\n")
end
