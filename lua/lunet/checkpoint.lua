--- Checkpoints: everything a training run needs to carry on where it stopped, in one file.
--
--   lunet.checkpoint.save("run.ckpt", {model = model, optimizer = opt, epoch = 3, note = "lr sweep"})
--   local saved = lunet.checkpoint.load("run.ckpt", {model = model, optimizer = opt})
--   print(saved.epoch)                    -- 3; the model, the optimizer and the RNG are restored
--
-- save takes a table of entries.  A module is stored as its state_dict, an optimizer or a
-- scheduler as its state(); other values may be tensors, numbers, strings, booleans and tables
-- of them, nested.  The default random generator's state is stored too (entry "rng"), so
-- dropout masks and shuffles continue as they would have.  The file is a safetensors file (the
-- tensors, under their place in the table: "model/1.weight", "optimizer/state/3/exp_avg") whose
-- metadata "lunet.checkpoint" holds the rest as JSON, every number tagged integer or float so
-- that step counts and generator states come back exactly.  It is written atomically: a crash
-- mid-write leaves the previous checkpoint or the new one, never a broken file.
--
-- load checks the file as it reads it (a damaged or foreign file gets an error naming the file
-- and the problem), loads the entries named in `into` into those objects, restores the random
-- generator (unless opts.restore_rng is false), and returns all entries: modules as state
-- dicts, optimizers and schedulers as state tables, the rest as saved.
local core = require("lunet.core")
local safetensors = require("lunet.safetensors")
local json = require("lunet.json")

local checkpoint = {}

checkpoint.FORMAT = "1"
local MAX_DEPTH = 32

local is_module = require("lunet.nn.Module").is_module

local function has_state(v)
  return type(v) == "table" and getmetatable(v) ~= nil and type(v.state) == "function"
    and type(v.load_state) == "function"
end

---------------------------------------------------------------------------------------------
-- Encoding: a Lua value becomes a JSON-ready value, its tensors set aside by name.
--   float -> {"f": number}, integer -> {"i": "decimal"}, string -> {"s": text},
--   boolean -> {"b": bool}, tensor -> {"t": name}, table -> {"table": [[key, value], ...]}

local function encode(v, where, tensors, depth)
  if depth > MAX_DEPTH then error("checkpoint.save: " .. where .. " is nested too deep", 0) end
  if core.is_tensor(v) then
    tensors[where] = v
    return { t = where }
  end
  local kind = type(v)
  if math.type(v) == "integer" then return { i = tostring(v) } end
  if kind == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return { f = tostring(v) } end
    return { f = v }
  end
  if kind == "string" then return { s = v } end
  if kind == "boolean" then return { b = v } end
  if kind ~= "table" then
    error(string.format("checkpoint.save: %s is a %s, which a checkpoint cannot hold", where, kind), 0)
  end
  local keys = {}
  for k in pairs(v) do
    if type(k) ~= "string" and math.type(k) ~= "integer" then
      error(string.format("checkpoint.save: %s has a key of type %s", where, type(k)), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    if type(a) ~= type(b) then return type(a) == "number" end
    return a < b
  end)
  local pairs_out = {}
  for _, k in ipairs(keys) do
    local inner = where == "" and tostring(k) or where .. "/" .. tostring(k)
    pairs_out[#pairs_out + 1] = { encode(k, where, {}, depth + 1), encode(v[k], inner, tensors, depth + 1) }
  end
  return { table = pairs_out }
end

local SPECIAL_FLOATS = { nan = 0 / 0, inf = math.huge, ["-inf"] = -math.huge, ["-nan"] = 0 / 0 }

local function decode(j, where, tensors, depth)
  local function bad(what) error(string.format("%s: %s", where, what), 0) end
  if depth > MAX_DEPTH then bad("nested too deep") end
  if type(j) ~= "table" then bad("expected a tagged value") end
  local tag, value = next(j)
  if tag == nil or next(j, tag) ~= nil then bad("expected one tag") end
  if tag == "f" then
    if type(value) == "number" then return value end
    if type(value) == "string" and SPECIAL_FLOATS[value] then return SPECIAL_FLOATS[value] end
    bad("a float is not a number")
  elseif tag == "i" then
    local n = type(value) == "string" and value:match("^%-?%d+$") and math.tointeger(tonumber(value))
    if not n or tostring(n) ~= value then bad("an integer is not a 64-bit decimal integer") end
    return n
  elseif tag == "s" then
    if type(value) ~= "string" then bad("a string is not a string") end
    return value
  elseif tag == "b" then
    if type(value) ~= "boolean" then bad("a boolean is not a boolean") end
    return value
  elseif tag == "t" then
    local t = type(value) == "string" and tensors[value]
    if not t then bad("names a tensor the file does not have: " .. tostring(value)) end
    return t
  elseif tag == "table" then
    if type(value) ~= "table" then bad("a table is not a list of pairs") end
    local out = {}
    for i = 1, #value do
      local pair = value[i]
      if type(pair) ~= "table" or #pair ~= 2 then bad("a table is not a list of pairs") end
      local k = decode(pair[1], where, tensors, depth + 1)
      if type(k) ~= "string" and math.type(k) ~= "integer" then bad("a table key is not a string or an integer") end
      out[k] = decode(pair[2], where .. "/" .. tostring(k), tensors, depth + 1)
    end
    return out
  end
  bad("unknown tag " .. tostring(tag))
end

---------------------------------------------------------------------------------------------

--- Writes entries to path atomically.  entries.rng defaults to the default generator's state.
-- @return path
function checkpoint.save(path, entries)
  if type(path) ~= "string" then error("checkpoint.save: path must be a string, got " .. type(path), 2) end
  if type(entries) ~= "table" then error("checkpoint.save: entries must be a table, got " .. type(entries), 2) end
  local plain = {}
  for k, v in pairs(entries) do
    if is_module(v) then
      plain[k] = v:state_dict()
    elseif has_state(v) then
      plain[k] = v:state()
    else
      plain[k] = v
    end
  end
  if plain.rng == nil then plain.rng = core.get_rng_state() end
  local tensors = {}
  local skeleton = encode(plain, "", tensors, 0)
  safetensors.write(path, tensors,
    { ["lunet.checkpoint"] = json.encode(skeleton), ["lunet.format"] = checkpoint.FORMAT })
  return path
end

--- Reads a checkpoint; restores into.model, into.optimizer, into.scheduler (or any entry name
-- whose object has load_state_dict or load_state) and the default generator.
-- @param[opt] into a table entry name -> object to restore
-- @param[opt] opts restore_rng (true)
-- @return the entries
function checkpoint.load(path, into, opts)
  if type(path) ~= "string" then error("checkpoint.load: path must be a string, got " .. type(path), 2) end
  local tensors, metadata = safetensors.try_read(path)
  if not tensors then error(metadata, 0) end
  local text = metadata["lunet.checkpoint"]
  if text == nil then error(path .. ": not a lunet checkpoint (no lunet.checkpoint in the metadata)", 0) end
  if metadata["lunet.format"] ~= checkpoint.FORMAT then
    error(string.format("%s: lunet.format %q is not one this lunet reads (%s)", path,
      tostring(metadata["lunet.format"]), checkpoint.FORMAT), 0)
  end
  local skeleton, problem = json.decode(text)
  if skeleton == nil then error(path .. ": lunet.checkpoint is not valid JSON: " .. problem, 0) end
  local ok, entries = pcall(decode, skeleton, "entries", tensors, 0)
  if not ok then error(path .. ": lunet.checkpoint: " .. entries, 0) end
  if type(entries) ~= "table" then error(path .. ": lunet.checkpoint: the entries are not a table", 0) end
  for name, object in pairs(into or {}) do
    local saved = entries[name]
    if saved == nil then error(string.format("%s: the checkpoint has no entry %q", path, tostring(name)), 0) end
    local restored, message
    if is_module(object) then
      restored, message = pcall(object.load_state_dict, object, saved)
    elseif has_state(object) then
      restored, message = pcall(object.load_state, object, saved)
    else
      error(string.format("checkpoint.load: into.%s has neither load_state_dict nor load_state", tostring(name)), 2)
    end
    if not restored then error(string.format("%s: entry %q: %s", path, tostring(name), tostring(message)), 0) end
  end
  if not (opts and opts.restore_rng == false) and entries.rng ~= nil then
    local restored, message = pcall(core.set_rng_state, entries.rng)
    if not restored then error(path .. ": entry \"rng\": " .. tostring(message), 0) end
  end
  return entries
end

return checkpoint
