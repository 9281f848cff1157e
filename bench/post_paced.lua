-- wrk script: POST the JSON body named by BODY at a steady pace, each connection waiting
-- DELAY_MS (default 10) between its requests, so that the load is a rate rather than all wrk
-- can send.  Prints the RESULT line of ../shared/bench/post.lua with each kind of socket error
-- apart (connect and write errors are what a closed listener gives; read errors and timeouts
-- are answers lost on an open connection).
-- usage: BODY=body.json DELAY_MS=10 wrk -t2 -c32 -d10s -s post_paced.lua http://127.0.0.1:PORT/v2/models/mlp/infer
-- luacheck: globals wrk delay done
local f = assert(io.open(os.getenv("BODY") or "body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local pause = tonumber(os.getenv("DELAY_MS") or "10")

function delay() return pause end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d connect=%d write=%d read=%d "
    .. "timeout=%d non2xx=%d\n", summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.connect, e.write, e.read, e.timeout, e.status))
end
