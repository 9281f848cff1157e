-- lunet.serve: the HTTP model server (core/src/serve) from Lua.  Lua loads and compiles the
-- models; from then on every request is C.  Blocks until the server has drained after SIGTERM
-- or SIGINT (see lunet.h), keeping it in step with its repository and token file meanwhile.
--
--   lunet.serve({models = "models", port = 8000})
--   lunet.serve({models = {mlp = {[1] = model}}, port = 0, on_listen = function(port) print(port) end})
--
-- models: a repository directory (lunet.repository says its layout and config.lua), watched
-- while the server runs: new versions are loaded, warmed and swapped in, changed ones
-- reloaded, removed ones unloaded, with no request failing; or a table
-- {name = {[version] = model or path}}, served as it is.  Names are letters, digits, '_', '-'
-- and '.'.
--
-- Options (0 or absent means the default; see lunet_server_options in lunet.h): host, port,
-- threads (event loops, each running its own graphs: the CPUs), max_connections, max_header_bytes, max_body_bytes,
-- max_write_queue_bytes (answers unsent beyond which a connection's next request waits: 4 MiB),
-- header_timeout_ms, body_timeout_ms, idle_timeout_ms, quiet (no access-log line per request),
-- drain_delay_ms (after SIGTERM: readiness 503, serving on, then the listener closes; 5000, 0 for
-- none), shutdown_timeout_ms (then at most this long for the open connections; 25000, 0: none),
-- the batching defaults max_batch_size (64; 1 turns batching off), max_queue_delay_us (0: no
-- wait), max_queue_size (1024), poll_ms (how often the repository and token file are looked at
-- besides when the system says they changed: 2000), token_file (bearer tokens, lunet.token_file;
-- read again on SIGHUP and when it changes), watch (false: only look every poll_ms, as when the
-- system cannot report changes), protect_health (the health paths need a token too), and
-- on_listen(port) (else a line "lunet: listening on http://HOST:PORT" on stdout).
local core = require("lunet.core")
local repository = require("lunet.repository")
local token_file = require("lunet.token_file")

local M = {}

local known = {
  host = "string", port = "number", max_connections = "number", max_header_bytes = "number",
  max_body_bytes = "number", header_timeout_ms = "number", body_timeout_ms = "number",
  idle_timeout_ms = "number", quiet = "boolean", on_listen = "function", threads = "number",
  max_write_queue_bytes = "number",
  models = { string = true, table = true }, max_batch_size = "number", max_queue_delay_us = "number",
  max_queue_size = "number", drain_delay_ms = "number", shutdown_timeout_ms = "number", poll_ms = "number",
  token_file = "string", protect_health = "boolean", watch = "boolean",
}

local function check_options(options)
  for k, v in pairs(options) do
    local want = known[k]
    if not want then error(string.format("lunet.serve: unknown option %q", tostring(k)), 3) end
    local fits = type(want) == "table" and want[type(v)] or type(v) == want
    if not fits then error(string.format("lunet.serve: option %s cannot be a %s", k, type(v)), 3) end
  end
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == "number" and type(b) == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- Serves a table {name = {[version] = model or path}} (not watched).
local function add_table(server, models, options)
  for _, name in ipairs(sorted_keys(models)) do
    local versions = models[name]
    if type(name) ~= "string" or type(versions) ~= "table" then
      error("lunet.serve: models must map names to {[version] = model or path}", 0)
    end
    for _, version in ipairs(sorted_keys(versions)) do
      if math.type(version) ~= "integer" or version < 1 then
        error(string.format("lunet.serve: model %s: version %s is not a positive integer", name, tostring(version)), 0)
      end
      local where = type(versions[version]) == "string" and versions[version]
        or string.format("model %s version %d", name, version)
      local ok, graphs = pcall(repository.graphs, versions[version], server:threads(), where)
      if not ok then error("lunet.serve: " .. graphs, 0) end
      local spec = { name = name, version = version, graphs = graphs }
      for _, k in ipairs(repository.BATCHING) do spec[k] = options[k] end
      server:add_model(spec)
      if not options.quiet then
        io.stdout:write(string.format("lunet: serving %s version %d from %s\n", name, version, where))
      end
    end
  end
end

-- The token file kept applied: read again when it changed or on SIGHUP.
local function token_keeper(server, path)
  local applied
  return function(hangup, strict)
    local id = repository.file_id(path)
    if id == applied and not hangup then return end
    local ok, tokens = pcall(token_file.read, path)
    if not ok then
      if strict then error("lunet.serve: " .. tokens, 0) end
      io.stderr:write("lunet: ", tokens, " (the tokens in use stay)\n")
    else
      server:set_tokens(tokens)
      io.stderr:write(string.format("lunet: %d bearer tokens from %s\n", #tokens, path))
    end
    applied = id
  end
end

-- The directory a file is in (watched rather than the file, which an update may replace).
local function dir_of(path) return path:match("^(.*)/[^/]*$") or "." end

function M.serve(options)
  options = options or {}
  if type(options) ~= "table" then error("lunet.serve: options must be a table", 2) end
  check_options(options)
  local host = options.host or "0.0.0.0"
  local server = core.server(options)
  local ok, problem = pcall(function()
    local repo = type(options.models) == "string" and repository.new(options.models, server, options)
    if repo then
      local synced, why = pcall(repo.sync, repo, true)
      if not synced then error("lunet.serve: " .. why, 0) end
    elseif options.models then
      add_table(server, options.models, options)
    end
    local tokens = options.token_file and token_keeper(server, options.token_file)
    if tokens then tokens(false, true) end
    server:start()
    local on_listen = options.on_listen or function(port)
      io.stdout:write(string.format("lunet: listening on http://%s:%d (%d event loops)\n", host, port,
        server:threads()))
      io.stdout:flush()
    end
    on_listen(server:port())
    local watched
    local function watch()
      if options.watch == false then return end
      local paths = repo and repo:paths() or {}
      if options.token_file then paths[#paths + 1] = dir_of(options.token_file) end
      local key = table.concat(paths, "\0")
      if key == watched then return end
      local watching, why = server:watch(paths)
      if not watching and watched == nil then io.stderr:write("lunet: ", why, "; polling instead\n") end
      watched = key
    end
    watch()
    local poll_ms = options.poll_ms and options.poll_ms > 0 and options.poll_ms or 2000
    while true do
      local event = server:wait(poll_ms)
      if event == "stopped" then break end
      local synced, why = pcall(function()
        if repo then repo:sync(false) end
        if tokens then tokens(event == "hangup", false) end
        watch()
      end)
      if not synced then io.stderr:write("lunet: keeping in step failed: ", tostring(why), "\n") end
    end
  end)
  server:free() -- stops a server still running (an error above)
  if not ok then error(problem, 0) end
end

return M
