-- wrk script: POST an Open Inference Protocol request in Triton's binary tensor extension: the JSON
-- header named by HEADER, then the raw tensor bytes named by TENSOR, with
-- Inference-Header-Content-Length set to the JSON header's length.  Prints the same RESULT line
-- as ../shared/bench/post.lua.
-- usage: HEADER=binary_header.json TENSOR=binary_tensor.bin wrk -t2 -c32 -d10s -s post_binary.lua \
--          http://127.0.0.1:PORT/v2/models/mlp/infer
-- wrk runs this under LuaJIT (Lua 5.1), and wrk and done are the globals it defines and calls.
-- luacheck: globals wrk done
local function read(variable, default)
  local f = assert(io.open(os.getenv(variable) or default, "rb"))
  local bytes = f:read("*a")
  f:close()
  return bytes
end

local header = read("HEADER", "binary_header.json")
wrk.method = "POST"
wrk.body = header .. read("TENSOR", "binary_tensor.bin")
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = tostring(#header)

function done(summary, latency, _)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status))
end
