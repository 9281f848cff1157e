-- Serves over HTTP until SIGTERM or SIGINT (the container's entrypoint).
--
--   lua5.4 examples/serve.lua [--host H] [--port P] [--quiet]
--
-- Flags win over the environment: LUNET_HOST (default 0.0.0.0), LUNET_PORT (default 8000; 0
-- picks a free port).  Prints "lunet: listening on http://HOST:PORT", then one JSON line per
-- request.  The routes so far are GET /v2, /v2/health/live and /v2/health/ready.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local lunet = require("lunet")

local options = { host = os.getenv("LUNET_HOST") or "0.0.0.0", port = tonumber(os.getenv("LUNET_PORT") or "8000") }
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--host" then
    options.host, i = arg[i + 1], i + 2
  elseif a == "--port" then
    options.port, i = tonumber(arg[i + 1]), i + 2
  elseif a == "--quiet" then
    options.quiet, i = true, i + 1
  else
    io.stderr:write("serve.lua: unknown flag " .. a .. "\n")
    os.exit(2)
  end
end
if not options.port or options.port < 0 or options.port > 65535 or options.port % 1 ~= 0 then
  io.stderr:write("serve.lua: the port must be an integer in 0..65535\n")
  os.exit(2)
end
lunet.serve(options)
