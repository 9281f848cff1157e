-- Serves the models of a repository over HTTP until SIGTERM or SIGINT (the container's
-- entrypoint).  The API is DESIGN.md's: OIP v2 (KServe/Triton) with binary tensor data, TF
-- Serving's predict and status, /metrics.
--
--   lua5.4 examples/serve.lua [--models DIR] [--host H] [--port P] [--threads N]
--                             [--max-batch-size N] [--max-queue-delay-us N] [--max-queue-size N] [--quiet]
--                             [--drain-delay-ms N] [--shutdown-timeout-ms N]
--                             [--token-file FILE] [--protect-health] [--poll-ms N]
--
-- Flags win over the environment: LUNET_MODELS (default ./models, laid out as
-- <name>/<version>/model.safetensors), LUNET_HOST (default 0.0.0.0), LUNET_PORT (default 8000;
-- 0 picks a free port), LUNET_THREADS (event loops; default: the CPUs).
-- --max-batch-size 1 turns batching off.  Prints "lunet: listening on http://HOST:PORT", then
-- one JSON line per request.  SIGTERM drains: readiness turns 503 at once, the server serves on
-- for --drain-delay-ms (5000; 0: none) while balancers stop routing to it, closes the listener,
-- and exits 0 once its connections close (at most --shutdown-timeout-ms later, 25000); a second
-- SIGTERM or SIGINT exits at once.
--
-- The repository is watched: a version added (say, a directory renamed into models/<name>/)
-- is loaded, warmed and swapped in without a failed request; a file that fails to load leaves
-- what serves in place (see lunet/repository.lua for config.lua: version policy, labels,
-- batching).  --token-file FILE (or LUNET_TOKEN_FILE) requires bearer tokens, one per line
-- "<token> <scope>[,<scope>...]" with scopes infer, metrics, admin; it is read again on SIGHUP
-- and when it changes, and so is the repository.  --poll-ms (2000) is how often both are looked
-- at besides when the system reports a change.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local lunet = require("lunet")

local function fail(message)
  io.stderr:write("serve.lua: ", message, "\n")
  os.exit(2)
end

local function count(value, flag, lowest)
  local n = math.tointeger(tonumber(value or ""))
  if not n or n < lowest then
    fail(string.format("%s takes a whole number >= %d, got %s", flag, lowest, tostring(value)))
  end
  return n
end

local options = {
  models = os.getenv("LUNET_MODELS") or "models",
  host = os.getenv("LUNET_HOST") or "0.0.0.0",
  port = count(os.getenv("LUNET_PORT") or "8000", "LUNET_PORT", 0),
  threads = os.getenv("LUNET_THREADS") and count(os.getenv("LUNET_THREADS"), "LUNET_THREADS", 1),
  token_file = os.getenv("LUNET_TOKEN_FILE"),
}
local numeric = {
  ["--port"] = { "port", 0 }, ["--threads"] = { "threads", 1 }, ["--max-batch-size"] = { "max_batch_size", 1 },
  ["--max-queue-delay-us"] = { "max_queue_delay_us", 0 }, ["--max-queue-size"] = { "max_queue_size", 1 },
  ["--drain-delay-ms"] = { "drain_delay_ms", 0 }, ["--shutdown-timeout-ms"] = { "shutdown_timeout_ms", 0 },
  ["--poll-ms"] = { "poll_ms", 1 },
}
local i = 1
while i <= #arg do
  local a = arg[i]
  if numeric[a] then
    options[numeric[a][1]] = count(arg[i + 1], a, numeric[a][2])
    i = i + 2
  elseif a == "--models" or a == "--host" or a == "--token-file" then
    if not arg[i + 1] then fail(a .. " takes a value") end
    options[a:sub(3):gsub("-", "_")] = arg[i + 1]
    i = i + 2
  elseif a == "--quiet" then
    options.quiet, i = true, i + 1
  elseif a == "--protect-health" then
    options.protect_health, i = true, i + 1
  else
    fail("unknown flag " .. a)
  end
end
if options.port > 65535 then fail("the port must be in 0..65535") end
lunet.serve(options)
