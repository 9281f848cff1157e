--- A model's architecture as plain data: what model files carry in "lunet.graph", what the
-- ONNX exporter walks and the ONNX importer produces, and what lunet.load rebuilds from.
--
--   local architecture = require("lunet.architecture")
--   local desc = architecture.describe(model)  -- {type = "Sequential", layers = {{type = "Conv2d", ...}, ...}}
--   local again = architecture.build(desc)      -- a fresh model of the same shape (new weights)
--
-- A description is a table with a "type" (a built-in layer's name) and that layer's settings
-- under PyTorch's names; a Sequential has its children in "layers".  Every size is normalised:
-- pairs are always {height, width}, options always present.  The layer kinds and their settings:
--
--   Sequential         layers (a list of descriptions)
--   Linear             in_features, out_features, bias
--   Conv2d             in_channels, out_channels, kernel_size, stride, padding, dilation (pairs), groups, bias
--   MaxPool2d          kernel_size, stride, padding, dilation (pairs), ceil_mode
--   AvgPool2d          kernel_size, stride, padding (pairs), ceil_mode, count_include_pad
--   AdaptiveAvgPool2d  output_size (a pair)
--   BatchNorm1d/2d     num_features, eps, momentum, affine, track_running_stats
--   Flatten            start_dim, end_dim
--   LeakyReLU          negative_slope
--   GELU               approximate ("none" or "tanh")
--   Softmax/LogSoftmax dim
--   Dropout            p
--   ReLU, Sigmoid, Tanh, Identity, GlobalAvgPool2d: no settings
--   Quantize, Dequantize: no settings (their scale and zero point are tensors)
--   QuantizedLinear, DynamicQuantizedLinear   in_features, out_features, bias, relu
--   QuantizedConv2d    in_channels, out_channels, kernel_size, stride, padding, dilation (pairs), bias, relu
--
-- Parameters and buffers are not part of the description; they keep state_dict's names
-- ("1.weight", "3.2.running_mean": the Sequential positions, then the tensor's name), and
-- architecture.tensor_shapes(desc) lists the shape each one must have.
--
-- check(desc) takes descriptions nobody vouches for (a file's metadata): it rejects unknown
-- types, missing, extra or ill-typed settings and sizes past MAX_SIZE, with a message that
-- names the place ("layers[3] (Conv2d): kernel_size must be ..."), before anything is built.
local nn = require("lunet.nn")

local architecture = {}

--- No setting that is a size may exceed this (a layer of 2^24 features is far past anything the
-- format is for, and products of such sizes still fit a double exactly).
architecture.MAX_SIZE = 1 << 24
--- Sequential nesting deeper than this is refused (a hostile file could nest without end), and
-- so is a model of more layers than MAX_LAYERS.
architecture.MAX_DEPTH = 32
architecture.MAX_LAYERS = 100000

local function pair(v)
  if type(v) == "table" then return { v[1], v[2] } end
  return { v, v }
end

---------------------------------------------------------------------------------------------
-- What each kind of layer holds: its settings (describe), how to make it (build) and the
-- shapes of its parameters and buffers (tensors).  `fields` lists every setting with its kind,
-- for check.

local kinds = {}

kinds.Linear = {
  fields = { in_features = "size", out_features = "size", bias = "boolean" },
  describe = function(m)
    return { in_features = m.in_features, out_features = m.out_features, bias = m.bias ~= nil }
  end,
  build = function(d) return nn.Linear(d.in_features, d.out_features, { bias = d.bias }) end,
  tensors = function(d)
    local t = { weight = { d.out_features, d.in_features } }
    if d.bias then t.bias = { d.out_features } end
    return t
  end,
}

-- The settings Conv2d and QuantizedConv2d share, plus the one of their own (Conv2d's groups,
-- QuantizedConv2d's relu): its kind here, its value from the module's field of that name.
local function conv_fields(extra_setting, kind)
  return { in_channels = "size", out_channels = "size", kernel_size = "size_pair", stride = "size_pair",
    padding = "count_pair", dilation = "size_pair", bias = "boolean", [extra_setting] = kind }
end

local function describe_conv(m, extra_setting)
  return { in_channels = m.in_channels, out_channels = m.out_channels, kernel_size = pair(m.kernel_size),
    stride = pair(m.stride), padding = pair(m.padding), dilation = pair(m.dilation), bias = m.bias ~= nil,
    [extra_setting] = m[extra_setting] }
end

kinds.Conv2d = {
  fields = conv_fields("groups", "size"),
  describe = function(m) return describe_conv(m, "groups") end,
  build = function(d)
    return nn.Conv2d(d.in_channels, d.out_channels, d.kernel_size, { stride = d.stride, padding = d.padding,
      dilation = d.dilation, groups = d.groups, bias = d.bias })
  end,
  tensors = function(d)
    local t = { weight = { d.out_channels, d.in_channels // d.groups, d.kernel_size[1], d.kernel_size[2] } }
    if d.bias then t.bias = { d.out_channels } end
    return t
  end,
  validate = function(d)
    if d.in_channels % d.groups ~= 0 or d.out_channels % d.groups ~= 0 then
      return string.format("groups %d must divide in_channels %d and out_channels %d", d.groups, d.in_channels,
        d.out_channels)
    end
  end,
}

-- MaxPool2d and AvgPool2d share their settings but one: max pooling's dilation (a size pair),
-- average pooling's count_include_pad (a boolean).
local function pool(class, own, own_kind)
  return {
    fields = { kernel_size = "size_pair", stride = "size_pair", padding = "count_pair", ceil_mode = "boolean",
      [own] = own_kind },
    describe = function(m)
      local o = m.options
      return { kernel_size = pair(o.kernel_size), stride = pair(o.stride), padding = pair(o.padding),
        ceil_mode = o.ceil_mode, [own] = own_kind == "size_pair" and pair(o[own]) or o[own] }
    end,
    build = function(d)
      return class(d.kernel_size, { stride = d.stride, padding = d.padding, ceil_mode = d.ceil_mode, [own] = d[own] })
    end,
  }
end

kinds.MaxPool2d = pool(nn.MaxPool2d, "dilation", "size_pair")
kinds.AvgPool2d = pool(nn.AvgPool2d, "count_include_pad", "boolean")

kinds.AdaptiveAvgPool2d = {
  fields = { output_size = "size_pair" },
  describe = function(m) return { output_size = pair(m.output_size) } end,
  build = function(d) return nn.AdaptiveAvgPool2d(d.output_size) end,
}

local function batch_norm(class)
  return {
    fields = { num_features = "size", eps = "positive", momentum = "fraction", affine = "boolean",
      track_running_stats = "boolean" },
    describe = function(m)
      return { num_features = m.num_features, eps = m.eps, momentum = m.momentum, affine = m.affine,
        track_running_stats = m.track_running_stats }
    end,
    build = function(d)
      return class(d.num_features, { eps = d.eps, momentum = d.momentum, affine = d.affine,
        track_running_stats = d.track_running_stats })
    end,
    tensors = function(d)
      local t = {}
      if d.affine then t.weight, t.bias = { d.num_features }, { d.num_features } end
      if d.track_running_stats then
        t.running_mean, t.running_var, t.num_batches_tracked = { d.num_features }, { d.num_features }, {}
      end
      return t
    end,
  }
end
kinds.BatchNorm1d = batch_norm(nn.BatchNorm1d)
kinds.BatchNorm2d = batch_norm(nn.BatchNorm2d)

kinds.Flatten = {
  fields = { start_dim = "dim", end_dim = "dim" },
  describe = function(m) return { start_dim = m.start_dim, end_dim = m.end_dim } end,
  build = function(d) return nn.Flatten({ start_dim = d.start_dim, end_dim = d.end_dim }) end,
}

kinds.LeakyReLU = {
  fields = { negative_slope = "number" },
  describe = function(m) return { negative_slope = m.negative_slope } end,
  build = function(d) return nn.LeakyReLU(d.negative_slope) end,
}

kinds.GELU = {
  fields = { approximate = "gelu_approximation" },
  describe = function(m) return { approximate = m.approximate } end,
  build = function(d) return nn.GELU({ approximate = d.approximate }) end,
}

for _, name in ipairs({ "Softmax", "LogSoftmax" }) do
  kinds[name] = {
    fields = { dim = "dim" },
    describe = function(m) return { dim = m.dim } end,
    build = function(d) return nn[name](d.dim) end,
  }
end

kinds.Dropout = {
  fields = { p = "fraction" },
  describe = function(m) return { p = m.p } end,
  build = function(d) return nn.Dropout(d.p) end,
}

for _, name in ipairs({ "ReLU", "Sigmoid", "Tanh", "Identity", "GlobalAvgPool2d" }) do
  kinds[name] = { fields = {}, describe = function() return {} end, build = function() return nn[name]() end }
end

-- The int8 layers (lunet.quantize).  Their tensors have fixed dtypes, listed with the shapes.
local qparams = require("lunet.nn.qparams")

for _, name in ipairs({ "Quantize", "Dequantize" }) do
  kinds[name] = { fields = {}, describe = function() return {} end, build = function() return nn[name]() end,
    tensors = function() return qparams.tensors({}, "") end }
end

-- QuantizedLinear and DynamicQuantizedLinear: the settings of Linear plus relu.
local function quantized_linear(class, static)
  return {
    fields = { in_features = "size", out_features = "size", bias = "boolean", relu = "boolean" },
    describe = function(m)
      return { in_features = m.in_features, out_features = m.out_features, bias = m.bias ~= nil, relu = m.relu }
    end,
    build = function(d) return class(d.in_features, d.out_features, { bias = d.bias, relu = d.relu }) end,
    tensors = function(d)
      local t = { weight = { d.out_features, d.in_features, dtype = "i8" },
        weight_scale = { d.out_features, dtype = "f32" } }
      if d.bias then t.bias = { d.out_features, dtype = static and "i32" or "f32" } end
      if static then
        qparams.tensors(t, "input_")
        qparams.tensors(t, "output_")
      end
      return t
    end,
  }
end
kinds.QuantizedLinear = quantized_linear(nn.QuantizedLinear, true)
kinds.DynamicQuantizedLinear = quantized_linear(nn.DynamicQuantizedLinear, false)

kinds.QuantizedConv2d = {
  fields = conv_fields("relu", "boolean"),
  describe = function(m) return describe_conv(m, "relu") end,
  build = function(d)
    return nn.QuantizedConv2d(d.in_channels, d.out_channels, d.kernel_size, { stride = d.stride, padding = d.padding,
      dilation = d.dilation, bias = d.bias, relu = d.relu })
  end,
  tensors = function(d)
    local k = d.kernel_size
    local t = { weight = { d.out_channels, d.in_channels, k[1], k[2], dtype = "i8" },
      weight_scale = { d.out_channels, dtype = "f32" } }
    if d.bias then t.bias = { d.out_channels, dtype = "i32" } end
    qparams.tensors(t, "input_")
    return qparams.tensors(t, "output_")
  end,
}

-- Sequential is handled by the walkers below; it is listed so that "type" lookups know it.
local SEQUENTIAL = "Sequential"

--- The layer kinds a description may name, sorted.
function architecture.layer_types()
  local names = { SEQUENTIAL }
  for name in pairs(kinds) do names[#names + 1] = name end
  table.sort(names)
  return names
end

---------------------------------------------------------------------------------------------
-- describe

local function class_name(m)
  local mt = getmetatable(m)
  return mt and mt.__name
end

-- The description of m, or nil and why it has none (a module of a user-defined class).
local function describe(m, where)
  local name = class_name(m)
  if name == SEQUENTIAL and getmetatable(m) == nn.Sequential then
    local layers = {}
    for i = 1, #m do
      local d, problem = describe(m[i], string.format("%s[%d]", where, i))
      if not d then return nil, problem end
      layers[i] = d
    end
    return { type = SEQUENTIAL, layers = layers }
  end
  local kind = kinds[name]
  if not kind or getmetatable(m) ~= nn[name] then
    return nil, string.format("architecture: %s is a %s, which is not a built-in layer; only Sequential models of "
      .. "built-in layers can be described (and saved with their architecture)", where, tostring(name))
  end
  local d = kind.describe(m)
  d.type = name
  return d
end

--- The description of a model built from Sequential and built-in layers, or nil and the reason
-- (naming the place) for a model with a module of a user-defined class.
function architecture.try_describe(model)
  return describe(model, "model")
end

--- The same, raising instead of returning nil.
function architecture.describe(model)
  local d, problem = describe(model, "model")
  if not d then error(problem, 0) end
  return d
end

---------------------------------------------------------------------------------------------
-- check

local function is_integer(v) return math.type(v) == "integer" or (type(v) == "number" and math.tointeger(v) ~= nil) end

-- Each setting kind: a test and what the message says it must be.  A number read from JSON may
-- be a float with an integral value: such settings are converted to integers (normalise).
local setting_kinds = {
  size = { "a positive integer", function(v) return is_integer(v) and v >= 1 and v <= architecture.MAX_SIZE end },
  count = { "a non-negative integer", function(v) return is_integer(v) and v >= 0 and v <= architecture.MAX_SIZE end },
  dim = { "a non-zero integer between -8 and 8", function(v)
    return is_integer(v) and v ~= 0 and v >= -8 and v <= 8
  end },
  boolean = { "true or false", function(v) return type(v) == "boolean" end },
  number = { "a finite number", function(v)
    return type(v) == "number" and v == v and v > -math.huge and v < math.huge
  end },
  positive = { "a finite number > 0", function(v) return type(v) == "number" and v > 0 and v < math.huge end },
  fraction = { "a number in [0, 1]", function(v) return type(v) == "number" and v >= 0 and v <= 1 end },
  gelu_approximation = { "\"none\" or \"tanh\"", function(v) return v == "none" or v == "tanh" end },
}
setting_kinds.size_pair = { "a pair of positive integers", function(v)
  return type(v) == "table" and #v == 2 and setting_kinds.size[2](v[1]) and setting_kinds.size[2](v[2])
end }
setting_kinds.count_pair = { "a pair of non-negative integers", function(v)
  return type(v) == "table" and #v == 2 and setting_kinds.count[2](v[1]) and setting_kinds.count[2](v[2])
end }

local function integral(v)
  if type(v) == "table" then return { math.tointeger(v[1]), math.tointeger(v[2]) } end
  return math.tointeger(v) or v
end

local INTEGRAL = { size = true, count = true, dim = true, size_pair = true, count_pair = true }

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function check(d, where, depth, count)
  if type(d) ~= "table" then error(string.format("%s must be an object, got %s", where, type(d)), 0) end
  count.layers = count.layers + 1
  if count.layers > architecture.MAX_LAYERS then
    error(string.format("%s: more than %d layers", where, architecture.MAX_LAYERS), 0)
  end
  local name = d.type
  if type(name) ~= "string" then error(where .. ": \"type\" must be a string naming the layer", 0) end
  if name == SEQUENTIAL then
    if depth >= architecture.MAX_DEPTH then
      error(string.format("%s: Sequential nested more than %d deep", where, architecture.MAX_DEPTH), 0)
    end
    local layers = d.layers
    if type(layers) ~= "table" then error(where .. " (Sequential): \"layers\" must be a list", 0) end
    for _, k in ipairs(sorted_keys(d)) do
      if k ~= "type" and k ~= "layers" then
        error(string.format("%s (Sequential): unknown setting %q", where, tostring(k)), 0)
      end
    end
    local n = #layers
    for k in pairs(layers) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then
        error(where .. " (Sequential): \"layers\" must be a list", 0)
      end
    end
    local out = { type = SEQUENTIAL, layers = {} }
    for i = 1, n do out.layers[i] = check(layers[i], string.format("%s.layers[%d]", where, i), depth + 1, count) end
    return out
  end
  local kind = kinds[name]
  if not kind then
    error(string.format("%s: unknown layer type %q (lunet knows %s)", where, name,
      table.concat(architecture.layer_types(), ", ")), 0)
  end
  local label = string.format("%s (%s)", where, name)
  local out = { type = name }
  for _, k in ipairs(sorted_keys(d)) do
    if k ~= "type" and not kind.fields[k] then error(string.format("%s: unknown setting %q", label, tostring(k)), 0) end
  end
  for _, field in ipairs(sorted_keys(kind.fields)) do
    local sk = setting_kinds[kind.fields[field]]
    local v = d[field]
    if v == nil then error(string.format("%s: setting %q is missing", label, field), 0) end
    if not sk[2](v) then error(string.format("%s: %s must be %s", label, field, sk[1]), 0) end
    out[field] = INTEGRAL[kind.fields[field]] and integral(v) or v
  end
  local problem = kind.validate and kind.validate(out)
  if problem then error(label .. ": " .. problem, 0) end
  return out
end

-- The descriptions check returned: build and tensor_shapes take them without checking again
-- (they are fresh copies nobody else has changed).
local checked = setmetatable({}, { __mode = "k" })

local function checked_copy(desc)
  if checked[desc] then return desc end
  return architecture.check(desc)
end

--- Checks a description from an untrusted source and returns a normalised copy (integral
-- numbers as integers).  Raises with a message naming the place of the first problem.
function architecture.check(desc)
  local out = check(desc, "model", 0, { layers = 0 })
  checked[out] = true
  return out
end

---------------------------------------------------------------------------------------------
-- build and tensor shapes (both take checked descriptions)

local function build(d)
  if d.type == SEQUENTIAL then
    local children = {}
    for i, layer in ipairs(d.layers) do children[i] = build(layer) end
    return nn.Sequential(table.unpack(children))
  end
  return kinds[d.type].build(d)
end

--- A new model (fresh weights) of the shape desc describes; desc is checked first unless it
-- came from architecture.check.
function architecture.build(desc)
  return build(checked_copy(desc))
end

local function tensor_shapes(d, prefix, out)
  if d.type == SEQUENTIAL then
    for i, layer in ipairs(d.layers) do tensor_shapes(layer, prefix .. i .. ".", out) end
  elseif kinds[d.type].tensors then
    for name, shape in pairs(kinds[d.type].tensors(d)) do out[prefix .. name] = shape end
  end
  return out
end

--- The parameters and buffers a model of this description has: a table state-dict name ->
-- shape (a list of sizes; with a "dtype" field for tensors that must have that dtype, as the
-- int8 layers' do).  desc is checked first unless it came from architecture.check.
function architecture.tensor_shapes(desc)
  return tensor_shapes(checked_copy(desc), "", {})
end

return architecture
