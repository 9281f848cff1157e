--- Model files: one safetensors file holding a model's weights and, in its metadata, what is
-- needed to rebuild it with no user code.
--
--   model:save("fashion.safetensors")            -- or model:save(path, {input_shape = {1, 28, 28}})
--   local model = lunet.load("fashion.safetensors")
--
-- The metadata has "lunet.format" ("1") and "lunet.graph": JSON with the architecture
-- ({"model": <lunet.architecture description>}), and, when known, "input_shape" (one sample's
-- shape, without the batch) and "class_names".  The tensors carry state_dict's names, so any
-- safetensors reader gets the weights under the names PyTorch would use for the same
-- Sequential (minus its 0-based numbering).  An int8 model (lunet.quantize) also has
-- "lunet.quant": JSON describing how it was quantized (mode, weight_bits, calibration
-- method and sample count) and fp32_tensor_bytes, the f32 model's tensor_bytes, so that
-- `lunet info` can tell how much smaller it is; its scales and zero points are tensors like
-- its weights.  A model that is not made of Sequential and built-in layers is saved with its
-- weights only; load it with model:load_weights(path).
--
-- load trusts nothing in the file: the safetensors reader checks every size and offset, and
-- the architecture and the tensors are checked against each other before a layer is built, so
-- a hostile file gets an error naming the file and the problem and never a huge allocation.
local safetensors = require("lunet.safetensors")
local architecture = require("lunet.architecture")
local json = require("lunet.json")

local model_file = {}

--- The format version written to "lunet.format"; load refuses other values.
model_file.FORMAT = "1"

local function fail(path, fmt, ...)
  error(string.format("%s: " .. fmt, path, ...), 0)
end

-- A list: integer keys 1..#t and nothing else.
local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > #t then return false end
    n = n + 1
  end
  return n == #t
end

-- nil, or what is wrong with the graph's fields besides "model".  save and load both ask, so a
-- file that save writes is one that load reads.  input_shape entries become integers.
local function extras_problem(graph)
  for key in pairs(graph) do
    if key ~= "model" and key ~= "input_shape" and key ~= "class_names" then
      return string.format("unknown field %q", tostring(key))
    end
  end
  local shape = graph.input_shape
  if shape ~= nil then
    local bad = "input_shape must be a list of 1 to 7 positive integers"
    if not is_list(shape) or #shape < 1 or #shape > 7 then return bad end
    for i = 1, #shape do
      local n = math.tointeger(shape[i])
      if not n or n < 1 or n > architecture.MAX_SIZE then return bad end
      shape[i] = n
    end
  end
  local names = graph.class_names
  if names ~= nil then
    if not is_list(names) then return "class_names must be a list of strings" end
    for _, v in ipairs(names) do
      if type(v) ~= "string" then return "class_names must be a list of strings" end
    end
  end
end

-- A shallow copy of a table (anything else as it is), so that checking never changes the caller's.
local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- Bytes per element of each dtype, as safetensors stores it.
local DTYPE_BYTES = { f32 = 4, f64 = 8, i64 = 8, i32 = 4, i8 = 1, u8 = 1 }

--- The bytes of the model's tensors (parameters and buffers) as save stores them: the file's
-- size without its header.
function model_file.tensor_bytes(model)
  local total = 0
  for _, t in pairs(model:state_dict()) do total = total + t:numel() * DTYPE_BYTES[t.dtype] end
  return total
end

--- Writes model to path (atomically: the old file or the new one survives a crash).
-- @param opts input_shape (one sample's shape; default model.input_shape, which fit records),
--   class_names (default model.class_names, which fit takes from the dataset's classes)
-- @return path
function model_file.save(model, path, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("save: path must be a string, got " .. type(path), 2) end
  local metadata = { ["lunet.format"] = model_file.FORMAT }
  local desc = architecture.try_describe(model)
  if desc then
    local graph = { model = desc, input_shape = copy(opts.input_shape or model.input_shape),
      class_names = copy(opts.class_names or model.class_names) }
    local problem = extras_problem(graph)
    if problem then error("save: " .. problem, 2) end
    metadata["lunet.graph"] = json.encode(graph)
  end
  if type(model.quantization) == "table" then metadata["lunet.quant"] = json.encode(model.quantization) end
  safetensors.write(path, model:state_dict(), metadata)
  return path
end

-- Every tensor the architecture needs is in the file with its shape and a usable dtype, and
-- the file has no others.
local function check_tensors(path, shapes, tensors, names)
  for _, name in ipairs(names) do
    if shapes[name] == nil then
      fail(path, "tensor %q is not a parameter or buffer of the model in lunet.graph", name)
    end
  end
  local expected = {}
  for name in pairs(shapes) do expected[#expected + 1] = name end
  table.sort(expected)
  for _, name in ipairs(expected) do
    local t = tensors[name]
    if t == nil then fail(path, "tensor %q is missing (the model in lunet.graph has it)", name) end
    local want, got = shapes[name], t:shape()
    if table.concat(want, ",") ~= table.concat(got, ",") then
      fail(path, "tensor %q has shape [%s] but the model in lunet.graph needs [%s]", name, table.concat(got, ","),
        table.concat(want, ","))
    end
    local expected_dtype = want.dtype or (name:match("num_batches_tracked$") and "i64")
    local ok = t.dtype == expected_dtype or (not expected_dtype and (t.dtype == "f32" or t.dtype == "f64"))
    if not ok then
      fail(path, "tensor %q has dtype %s; expected %s", name, t.dtype, expected_dtype or "f32 or f64")
    end
  end
end

--- Rebuilds the model saved in path, its weights loaded, in eval mode.
-- @return the model (with input_shape and class_names when the file has them)
function model_file.load(path)
  if type(path) ~= "string" then error("load: path must be a string, got " .. type(path), 2) end
  local tensors, metadata, names = safetensors.try_read(path)
  if not tensors then error(metadata, 0) end -- the reader's message names the file
  local format = metadata["lunet.format"]
  if format == nil or metadata["lunet.graph"] == nil then
    fail(path, "no lunet.graph in the metadata: the file holds weights only; build the model in Lua and call "
      .. "model:load_weights(path), which is model:load_state_dict(lunet.safetensors.read(path))")
  end
  if format ~= model_file.FORMAT then
    fail(path, "lunet.format %q is not one this lunet reads (%s)", format, model_file.FORMAT)
  end
  local graph, invalid = json.decode(metadata["lunet.graph"])
  if graph == nil then fail(path, "lunet.graph is not valid JSON: %s", invalid) end
  if type(graph) ~= "table" or type(graph.model) ~= "table" then
    fail(path, "lunet.graph must be an object with a \"model\"")
  end
  local problem = extras_problem(graph)
  if problem then fail(path, "lunet.graph: %s", problem) end
  local ok, desc = pcall(architecture.check, graph.model)
  if not ok then fail(path, "lunet.graph: %s", desc) end
  check_tensors(path, architecture.tensor_shapes(desc), tensors, names)
  local model = architecture.build(desc)
  model:load_state_dict(tensors)
  model.input_shape = graph.input_shape
  model.class_names = graph.class_names
  if metadata["lunet.quant"] ~= nil then
    local quant = json.decode(metadata["lunet.quant"])
    if type(quant) ~= "table" then fail(path, "lunet.quant must be a JSON object") end
    model.quantization = quant
  end
  return model:eval()
end

return model_file
