-- lunet.serve: the HTTP server (core/src/serve) from Lua.  Blocks until SIGTERM or SIGINT.
--
--   lunet.serve({host = "127.0.0.1", port = 8000})
--   lunet.serve({port = 0, on_listen = function(port) print(port) end})   -- any free port
--
-- Options (0 or absent means the default; see lunet_server_options in lunet.h): host, port,
-- max_connections, max_header_bytes, max_body_bytes, header_timeout_ms, body_timeout_ms,
-- idle_timeout_ms, quiet (no access-log line per request), on_listen(port) (else a line
-- "lunet: listening on http://HOST:PORT" on stdout).
local core = require("lunet.core")

local M = {}

local known = {
  host = "string", port = "number", max_connections = "number", max_header_bytes = "number",
  max_body_bytes = "number", header_timeout_ms = "number", body_timeout_ms = "number",
  idle_timeout_ms = "number", quiet = "boolean", on_listen = "function",
}

function M.serve(options)
  options = options or {}
  assert(type(options) == "table", "lunet.serve: options must be a table")
  for k, v in pairs(options) do
    local want = known[k]
    if not want then error(string.format("lunet.serve: unknown option %q", tostring(k)), 2) end
    if type(v) ~= want then
      error(string.format("lunet.serve: option %s must be a %s, got %s", k, want, type(v)), 2)
    end
  end
  local host = options.host or "0.0.0.0"
  local on_listen = options.on_listen or function(port)
    io.stdout:write(string.format("lunet: listening on http://%s:%d\n", host, port))
    io.stdout:flush()
  end
  core.serve(options, on_listen)
end

return M
