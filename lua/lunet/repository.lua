-- lunet.repository: a model repository on disk, and a server kept in step with it.
--
--   <dir>/<name>/<version>/model.safetensors    versions are positive integers
--   <dir>/<name>/config.lua                     optional; returns a table of:
--     max_batch_size, max_queue_delay_us, max_queue_size   batching (whole numbers >= 0)
--     version_policy = {all = true}             every version (the default)
--                    | {latest = N}             the newest N that load
--                    | {specific = {1, 3}}      these
--     labels = {stable = 1, canary = 2}         names for versions (URLs take them for a version)
--
-- repository.new(dir, server, settings):sync(strict) loads what the repository holds and the
-- server does not serve yet, swaps in versions whose file or config changed, and removes what
-- is gone or outside the policy: new versions first, so that a name is never without one.  A
-- version that fails to load is logged and counted (lunet_model_loads_total{result="error"}),
-- and the copy already served, if any, serves on; the same file is not tried again until it
-- changes.  With strict (at start-up) a failure raises instead.
local lfs = require("lfs")
local compile = require("lunet.compile")
local model_file = require("lunet.model_file")

local M = {}

M.BATCHING = { "max_batch_size", "max_queue_delay_us", "max_queue_size" }

local Repository = {}
Repository.__index = Repository

local function is_dir(path) return lfs.attributes(path, "mode") == "directory" end

-- What changes when a file is replaced or rewritten: device, inode, size, times (nil when path
-- is not a file).
function M.file_id(path)
  local a = lfs.attributes(path)
  if not a or a.mode ~= "file" then return nil end
  return string.format("%s:%s:%s:%s:%s", a.dev, a.ino, a.size, a.modification, a.change)
end

local function check_policy(path, policy)
  if type(policy) ~= "table" then error(path .. ": version_policy must be a table", 0) end
  local kinds = 0
  for k in pairs(policy) do
    if k ~= "all" and k ~= "latest" and k ~= "specific" then
      error(string.format("%s: version_policy.%s is not a policy (all, latest or specific)", path, tostring(k)), 0)
    end
    kinds = kinds + 1
  end
  if kinds ~= 1 then error(path .. ": version_policy holds one of all, latest, specific", 0) end
  if policy.all ~= nil and policy.all ~= true then error(path .. ": version_policy.all must be true", 0) end
  if policy.latest ~= nil and (math.type(policy.latest) ~= "integer" or policy.latest < 1) then
    error(path .. ": version_policy.latest must be a whole number >= 1", 0)
  end
  if policy.specific ~= nil then
    if type(policy.specific) ~= "table" or #policy.specific == 0 then
      error(path .. ": version_policy.specific must list versions", 0)
    end
    for _, v in ipairs(policy.specific) do
      if math.type(v) ~= "integer" or v < 1 then
        error(path .. ": version_policy.specific holds " .. tostring(v) .. ", not a version >= 1", 0)
      end
    end
  end
end

local function check_labels(path, labels)
  if type(labels) ~= "table" then error(path .. ": labels must map names to versions", 0) end
  for label, v in pairs(labels) do
    if type(label) ~= "string" or not label:match("^[%w_%.%-]+$") or label:match("^%d+$") or #label > 63 then
      error(string.format("%s: label %s is not a name (letters, digits, '_', '-', '.'; not all digits)", path,
        tostring(label)), 0)
    end
    if math.type(v) ~= "integer" or v < 1 then
      error(string.format("%s: label %s must name a version >= 1", path, label), 0)
    end
  end
end

-- A model's config.lua: a chunk run with no globals that returns its settings; and its text,
-- which identifies it (a changed config reloads the model's versions).
function M.read_config(path)
  local f = io.open(path, "r")
  if not f then return {}, "" end
  local text = f:read("a")
  f:close()
  local chunk, problem = load(text, "@" .. path, "t", {})
  if not chunk then error(problem, 0) end
  local ok, config = pcall(chunk)
  if not ok then error(tostring(config), 0) end
  if type(config) ~= "table" then error(path .. " must return a table", 0) end
  for k, v in pairs(config) do
    if k == "version_policy" then
      check_policy(path, v)
    elseif k == "labels" then
      check_labels(path, v)
    else
      local batching = false
      for _, name in ipairs(M.BATCHING) do batching = batching or k == name end
      if not batching or math.type(v) ~= "integer" or v < 0 then
        error(string.format("%s: %s is not a setting (version_policy, labels, or %s, each a whole number >= 0)",
          path, tostring(k), table.concat(M.BATCHING, ", ")), 0)
      end
    end
  end
  return config, text
end

-- What dir holds: {name = {config =, config_text =, versions = {[v] = path}, dir =} or
-- {problem = why, dir =}} for each model with a version, and the directories to watch for
-- changes (dir, every directory in it, and their version directories, files or not yet).
function M.scan(dir)
  if not is_dir(dir) then error("the model repository " .. dir .. " is not a directory", 0) end
  local found, dirs = {}, { dir }
  for name in lfs.dir(dir) do
    local model_dir = dir .. "/" .. name
    if name:sub(1, 1) ~= "." and is_dir(model_dir) then
      dirs[#dirs + 1] = model_dir
      local versions = {}
      for version in lfs.dir(model_dir) do
        local version_dir = model_dir .. "/" .. version
        if version:match("^[1-9]%d*$") and is_dir(version_dir) then
          dirs[#dirs + 1] = version_dir
          local path = version_dir .. "/model.safetensors"
          if lfs.attributes(path, "mode") == "file" then versions[tonumber(version)] = path end
        end
      end
      if next(versions) then
        local ok, config, text = pcall(M.read_config, model_dir .. "/config.lua")
        found[name] = ok and { config = config, config_text = text, versions = versions, dir = model_dir }
          or { problem = config, dir = model_dir }
      end
    end
  end
  table.sort(dirs)
  return found, dirs
end

local function sorted(t, descending)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if descending then return a > b end
    return a < b
  end)
  return keys
end

-- `threads` compiled graphs of a model (a module, or a model file's path), one per event loop;
-- raises why not, naming `where` (by default the path).
function M.graphs(model, threads, where)
  if type(model) == "string" then where, model = where or model, model_file.load(model) end
  local shape = model.input_shape
  if not shape then error(where .. " records no input shape; save it with one", 0) end
  local graphs = {}
  for i = 1, threads do
    local graph, reason = compile.compile(model, shape)
    if not graph then error(where .. " cannot be served: " .. reason, 0) end
    graphs[i] = graph
  end
  return graphs
end

-- settings: the server's batching defaults (M.BATCHING), quiet.
function M.new(dir, server, settings)
  return setmetatable({ dir = dir, server = server, settings = settings or {}, served = {}, failed = {} },
    Repository)
end

function Repository:say(message)
  if not self.settings.quiet then
    io.stdout:write("lunet: ", message, "\n")
    io.stdout:flush()
  end
end

function Repository:complain(message)
  io.stderr:write("lunet: ", message, "\n")
  io.stderr:flush()
end

-- Loads version v of entry (name's) and serves it, replacing a copy already served.  True when
-- it serves; false, counted and logged, when it failed (strict: raises).
function Repository:load(name, entry, v, id, strict)
  local path = entry.versions[v]
  local labels = {}
  for label, lv in pairs(entry.config.labels or {}) do
    if lv == v then labels[#labels + 1] = label end
  end
  table.sort(labels)
  self.tried = true
  local ok, problem = pcall(function()
    local spec = { name = name, version = v, graphs = M.graphs(path, self.server:threads()), labels = labels }
    for _, k in ipairs(M.BATCHING) do spec[k] = entry.config[k] or self.settings[k] end
    self.server:add_model(spec)
  end)
  self.server:count_load(name, ok)
  local key = name .. "/" .. v
  if ok then
    local again = self.served[name] and self.served[name][v]
    self.served[name] = self.served[name] or {}
    self.served[name][v] = id
    self.failed[key] = nil
    self:say(string.format("%s %s version %d from %s", again and "reloaded" or "serving", name, v, path))
    return true
  end
  if strict then error(tostring(problem), 0) end
  self.failed[key] = id
  local serving = self.served[name] and self.served[name][v] and "its loaded copy serves on"
    or "it is not served"
  self:complain(string.format("model %s version %d failed to load (%s): %s", name, v, serving, tostring(problem)))
  return false
end

-- The versions of entry to serve under its policy, loading what needs it.  Returns the set.
function Repository:sync_model(name, entry, strict)
  local config_text = entry.config_text
  local policy = entry.config.version_policy or { all = true }
  local candidates = {}
  if policy.specific then
    for _, v in ipairs(policy.specific) do
      if entry.versions[v] then candidates[#candidates + 1] = v end
    end
    table.sort(candidates, function(a, b) return a > b end)
  else
    candidates = sorted(entry.versions, true)
  end
  local keep, kept = {}, 0
  local served = self.served[name] or {}
  for _, v in ipairs(candidates) do
    if policy.latest and kept >= policy.latest then break end
    local file = M.file_id(entry.versions[v])
    local id = file and (file .. "|" .. config_text)
    if id and served[v] == id then
      keep[v] = true
    elseif id and self.failed[name .. "/" .. v] == id then
      keep[v] = served[v] ~= nil -- tried already: the copy served, if any, stays
    elseif id then
      keep[v] = self:load(name, entry, v, id, strict) or served[v] ~= nil
    end
    if keep[v] then kept = kept + 1 end
  end
  return keep
end

function Repository:remove(name, v, why)
  self.server:remove_model(name, v)
  self.served[name][v] = nil
  if not next(self.served[name]) then self.served[name] = nil end
  self:say(string.format("unloaded %s version %d (%s)", name, v, why))
end

-- Brings the server in step with the repository.
function Repository:sync(strict)
  local found
  found, self.dirs = M.scan(self.dir)
  if strict and not next(found) then
    error("no models in " .. self.dir .. " (it must hold <name>/<version>/model.safetensors)", 0)
  end
  for _, name in ipairs(sorted(found)) do
    local entry = found[name]
    if entry.problem then
      if strict then error(entry.problem, 0) end
      if self.failed[name] ~= entry.problem then
        self.failed[name] = entry.problem
        self.server:count_load(name, false)
        self:complain(string.format("model %s: %s (what is served of it serves on)", name, entry.problem))
      end
    else
      self.failed[name] = nil
      local keep = self:sync_model(name, entry, strict)
      for v in pairs(self.served[name] or {}) do
        if not keep[v] then self:remove(name, v, entry.versions[v] and "outside its version policy" or "gone") end
      end
    end
  end
  for name, versions in pairs(self.served) do
    if not found[name] then
      for v in pairs(versions) do self:remove(name, v, "its directory is gone") end
    end
  end
  if self.tried then -- a load, even one that failed, leaves big tensors behind
    self.tried = false
    collectgarbage("collect")
  end
end

-- The directories to watch, as the last sync found them.
function Repository:paths() return self.dirs or { self.dir } end

return M
