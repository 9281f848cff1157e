-- lunet.serve: the HTTP model server (core/src/serve) from Lua.  Lua loads and compiles the
-- models; from then on every request is C.  Blocks until SIGTERM or SIGINT.
--
--   lunet.serve({models = "models", port = 8000})
--   lunet.serve({models = {mlp = {[1] = model}}, port = 0, on_listen = function(port) print(port) end})
--
-- models: a repository directory, <dir>/<name>/<version>/model.safetensors with versions that
-- are positive integers (a request that names no version gets the newest), and optionally
-- <dir>/<name>/config.lua, which returns that model's batching settings; or a table
-- {name = {[version] = model or path}}.  Names are letters, digits, '_', '-' and '.'.
--
-- Options (0 or absent means the default; see lunet_server_options in lunet.h): host, port,
-- threads (event loops, each running its own graphs: the CPUs), max_connections, max_header_bytes, max_body_bytes,
-- header_timeout_ms, body_timeout_ms, idle_timeout_ms, quiet (no access-log line per request),
-- drain_delay_ms (after SIGTERM: readiness 503, serving on, then the listener closes; 5000, 0 for
-- none), shutdown_timeout_ms (then at most this long for the open connections; 25000, 0: none),
-- the batching defaults max_batch_size (64; 1 turns batching off), max_queue_delay_us (0: no
-- wait), max_queue_size (1024), and on_listen(port) (else a line "lunet: listening on
-- http://HOST:PORT" on stdout).
local core = require("lunet.core")
local lfs = require("lfs")
local compile = require("lunet.compile")
local model_file = require("lunet.model_file")

local M = {}

local known = {
  host = "string", port = "number", max_connections = "number", max_header_bytes = "number",
  max_body_bytes = "number", header_timeout_ms = "number", body_timeout_ms = "number",
  idle_timeout_ms = "number", quiet = "boolean", on_listen = "function", threads = "number",
  models = { string = true, table = true }, max_batch_size = "number", max_queue_delay_us = "number",
  max_queue_size = "number", drain_delay_ms = "number", shutdown_timeout_ms = "number",
}

local BATCHING = { "max_batch_size", "max_queue_delay_us", "max_queue_size" }

local function check_options(options)
  for k, v in pairs(options) do
    local want = known[k]
    if not want then error(string.format("lunet.serve: unknown option %q", tostring(k)), 3) end
    local fits = type(want) == "table" and want[type(v)] or type(v) == want
    if not fits then error(string.format("lunet.serve: option %s cannot be a %s", k, type(v)), 3) end
  end
end

local function is_dir(path) return lfs.attributes(path, "mode") == "directory" end

-- A model's config.lua: a chunk that returns a table of batching settings, run with no globals.
local function read_config(path)
  local f = io.open(path, "r")
  if not f then return {} end
  local text = f:read("a")
  f:close()
  local chunk, problem = load(text, "@" .. path, "t", {})
  if not chunk then error("lunet.serve: " .. problem, 0) end
  local ok, config = pcall(chunk)
  if not ok then error("lunet.serve: " .. tostring(config), 0) end
  if type(config) ~= "table" then error("lunet.serve: " .. path .. " must return a table", 0) end
  for k, v in pairs(config) do
    local allowed = false
    for _, name in ipairs(BATCHING) do allowed = allowed or k == name end
    if not allowed or math.type(v) ~= "integer" or v < 0 then
      error(string.format("lunet.serve: %s: %s is not a setting (%s, each a whole number >= 0)", path, tostring(k),
        table.concat(BATCHING, ", ")), 0)
    end
  end
  return config
end

-- {name = {versions = {[version] = path}, config = {...}}} from a repository directory.
local function scan_repository(dir)
  if not is_dir(dir) then error("lunet.serve: the model repository " .. dir .. " is not a directory", 0) end
  local found = {}
  for name in lfs.dir(dir) do
    local model_dir = dir .. "/" .. name
    if name:sub(1, 1) ~= "." and is_dir(model_dir) then
      local entry = { versions = {}, config = read_config(model_dir .. "/config.lua") }
      for version in lfs.dir(model_dir) do
        local path = model_dir .. "/" .. version .. "/model.safetensors"
        if version:match("^[1-9]%d*$") and lfs.attributes(path, "mode") == "file" then
          entry.versions[tonumber(version)] = path
        end
      end
      if next(entry.versions) then found[name] = entry end
    end
  end
  if not next(found) then
    error("lunet.serve: no models in " .. dir .. " (it must hold <name>/<version>/model.safetensors)", 0)
  end
  return found
end

local function from_table(models)
  local found = {}
  for name, versions in pairs(models) do
    if type(name) ~= "string" or type(versions) ~= "table" then
      error("lunet.serve: models must map names to {[version] = model or path}", 0)
    end
    found[name] = { versions = versions, config = {} }
  end
  return found
end

-- `threads` graphs of the model (a module or a model file's path).
local function graphs_of(name, version, model, threads)
  local where = string.format("model %s version %s", name, tostring(version))
  if type(model) == "string" then
    where = model
    model = model_file.load(model)
  end
  local shape = model.input_shape
  if not shape then error("lunet.serve: " .. where .. " records no input shape; save it with one", 0) end
  local graphs = {}
  for i = 1, threads do
    local graph, reason = compile.compile(model, shape)
    if not graph then error("lunet.serve: " .. where .. " cannot be served: " .. reason, 0) end
    graphs[i] = graph
  end
  return graphs, where
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

function M.serve(options)
  options = options or {}
  if type(options) ~= "table" then error("lunet.serve: options must be a table", 2) end
  check_options(options)
  local host = options.host or "0.0.0.0"
  local models = options.models
  if type(models) == "string" then
    models = scan_repository(models)
  elseif models then
    models = from_table(models)
  end
  local server = core.server(options)
  local threads = server:threads()
  for _, name in ipairs(sorted_keys(models or {})) do
    local entry = models[name]
    for _, version in ipairs(sorted_keys(entry.versions)) do
      if math.type(version) ~= "integer" or version < 1 then
        error(string.format("lunet.serve: model %s: version %s is not a positive integer", name, tostring(version)), 0)
      end
      local graphs, where = graphs_of(name, version, entry.versions[version], threads)
      local spec = { name = name, version = version, graphs = graphs }
      for _, k in ipairs(BATCHING) do spec[k] = entry.config[k] or options[k] end
      server:add_model(spec)
      if not options.quiet then
        io.stdout:write(string.format("lunet: serving %s version %d from %s\n", name, version, where))
      end
    end
  end
  local on_listen = options.on_listen or function(port)
    io.stdout:write(string.format("lunet: listening on http://%s:%d (%d event loops)\n", host, port, threads))
    io.stdout:flush()
  end
  on_listen(server:port())
  server:run()
  server:free()
end

return M
