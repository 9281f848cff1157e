-- wrk script: POST the JSON body named by BODY, each connection waiting DELAY_MS (default 0:
-- none, as fast as answers come) between its requests, and print wrk's own latency percentiles
-- with the 95th among them, for bench/serve_prometheus.sh to hold against Prometheus' estimate.
-- The RESULT line has post_paced.lua's fields plus p95_ms and p90_ms; wrk's latency is from
-- a request's first byte sent to its response's last byte read, in microseconds.
-- usage: BODY=body.json DELAY_MS=2 wrk -t2 -c16 -d70s -s wrk_p95.lua http://127.0.0.1:PORT/v2/models/mlp/infer
-- wrk runs this under LuaJIT (Lua 5.1), and wrk, delay and done are the globals it reads.
-- luacheck: globals wrk delay done
local f = assert(io.open(os.getenv("BODY") or "body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local pause = tonumber(os.getenv("DELAY_MS") or "0")

if pause > 0 then
  function delay() return pause end
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p95_ms=%.3f p99_ms=%.3f requests=%d connect=%d "
    .. "write=%d read=%d timeout=%d non2xx=%d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.connect, e.write, e.read, e.timeout, e.status))
end
