--- Compiling a module tree into the C model graph (lunet.h, "Model graphs") for inference.
--
--     local graph = lunet.compile(model, {1, 28, 28})   -- nil, reason for a model it cannot take
--     local logits = graph:forward(images)             -- no Lua runs per layer
--
-- A model compiles when it is built from the built-in layers only, in Sequentials: Linear,
-- Conv2d, BatchNorm1d/2d (with running statistics), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
-- GlobalAvgPool2d, Flatten, ReLU, LeakyReLU, GELU, Sigmoid, Tanh, Softmax, LogSoftmax, the
-- int8 layers of lunet.quantize (Quantize, QuantizedConv2d, QuantizedLinear, Dequantize,
-- DynamicQuantizedLinear), and Dropout and Identity (which inference skips).  A subclass of
-- one of them does not compile: it may compute something else.  The graph holds copies of the
-- weights, so it is the model as it was when compiled; model:predict keeps one per model and
-- recompiles when a weight changes (see current_graph).
local core = require("lunet.core")
local nn = require("lunet.nn")

local compile = {}

-- How each layer class adds itself to a graph; `false` for the layers inference skips.
local adders = {
  [nn.Linear] = function(g, m) g:add_linear(m.weight, m.bias) end,
  [nn.Conv2d] = function(g, m)
    g:add_conv2d(m.weight, m.bias, { stride = m.stride, padding = m.padding, dilation = m.dilation, groups = m.groups })
  end,
  [nn.MaxPool2d] = function(g, m) g:add_pool2d("max_pool2d", m.options) end,
  [nn.AvgPool2d] = function(g, m) g:add_pool2d("avg_pool2d", m.options) end,
  [nn.AdaptiveAvgPool2d] = function(g, m)
    local size = m.output_size
    if type(size) == "table" then
      g:add_adaptive_avg_pool2d(size[1], size[2])
    else
      g:add_adaptive_avg_pool2d(size, size)
    end
  end,
  [nn.GlobalAvgPool2d] = function(g) g:add_adaptive_avg_pool2d(1, 1):add_flatten(2, -1) end,
  [nn.Flatten] = function(g, m) g:add_flatten(m.start_dim, m.end_dim) end,
  [nn.ReLU] = function(g) g:add_activation("relu") end,
  [nn.LeakyReLU] = function(g, m) g:add_activation("leaky_relu", m.negative_slope) end,
  [nn.GELU] = function(g, m) g:add_activation("gelu", m.approximate == "tanh" and 1 or 0) end,
  [nn.Sigmoid] = function(g) g:add_activation("sigmoid") end,
  [nn.Tanh] = function(g) g:add_activation("tanh") end,
  [nn.Softmax] = function(g, m) g:add_softmax("softmax", m.dim) end,
  [nn.LogSoftmax] = function(g, m) g:add_softmax("log_softmax", m.dim) end,
  [nn.Dropout] = false,
  [nn.Identity] = false,
}

-- The int8 layers.  Each quantized layer holds the parameters of the activation it expects;
-- the graph passes on the parameters of the activation it produces, and building checks that
-- the two agree (a model file could say otherwise).
local qparams = require("lunet.nn.qparams")

local function expect_input(state, m, prefix)
  local scale, zero_point = qparams.get(m, prefix)
  local have = state.qparams
  if not have or have[1] ~= scale or have[2] ~= zero_point then
    error(string.format("compile: %s expects a u8 input with scale %.9g and zero point %d, but %s", m.__name, scale,
      zero_point, have and string.format("gets scale %.9g and zero point %d", have[1], have[2]) or "gets f32"), 0)
  end
end

adders[nn.Quantize] = function(g, m, state)
  local scale, zero_point = qparams.get(m, "")
  g:add_quantize(scale, zero_point)
  state.qparams = { scale, zero_point }
end
adders[nn.Dequantize] = function(g, m, state)
  expect_input(state, m, "")
  g:add_dequantize()
  state.qparams = nil
end
adders[nn.QuantizedLinear] = function(g, m, state)
  expect_input(state, m, "input_")
  g:add_qlinear(m:layer())
  state.qparams = { qparams.get(m, "output_") }
end
adders[nn.QuantizedConv2d] = function(g, m, state)
  expect_input(state, m, "input_")
  g:add_qconv2d(m:layer(), m:conv_options())
  state.qparams = { qparams.get(m, "output_") }
end
adders[nn.DynamicQuantizedLinear] = function(g, m)
  g:add_linear_dynamic(m.weight, m.weight_scale, m.bias)
  if m.relu then g:add_activation("relu") end
end

local function add_batch_norm(g, m)
  g:add_batch_norm(m.running_mean, m.running_var, m.weight, m.bias, m.eps)
end
adders[nn.BatchNorm1d] = add_batch_norm
adders[nn.BatchNorm2d] = add_batch_norm

local WEIGHT_FIELDS = { "weight", "bias", "running_mean", "running_var", "weight_scale", "scale", "zero_point",
  "input_scale", "input_zero_point", "output_scale", "output_zero_point" }

-- Appends to `found` the layers of model in the order they run (found.layers), and what a
-- graph of them depends on: found.deps, a flat list of triples (table, key, value) that must
-- all still hold (each Sequential's length and children, each layer's weight tensors), and
-- found.tensors, those weights, whose versions the graph watches in C (graph:watch: an
-- optimizer step or a copy into a weight bumps a version).  predict on one sample checks deps
-- on every call, so they are one flat loop.  Returns found, or nil and the reason the model
-- cannot compile.
local function collect(model, found)
  local class, deps = getmetatable(model), found.deps
  if class == nn.Sequential then
    deps[#deps + 1], deps[#deps + 2], deps[#deps + 3] = model, "#", #model
    for i = 1, #model do
      deps[#deps + 1], deps[#deps + 2], deps[#deps + 3] = model, i, model[i]
      local ok, reason = collect(model[i], found)
      if not ok then return nil, reason end
    end
    return found
  end
  if adders[class] == nil then
    return nil, string.format("%s is not a built-in layer", model.__name or tostring(class))
  end
  if (class == nn.BatchNorm1d or class == nn.BatchNorm2d) and not model.track_running_stats then
    return nil, model.__name .. " without running statistics normalises with each batch's own"
  end
  found.layers[#found.layers + 1] = model
  for _, name in ipairs(WEIGHT_FIELDS) do
    local t = rawget(model, name)
    if t ~= nil then
      deps[#deps + 1], deps[#deps + 2], deps[#deps + 3] = model, name, t
      found.tensors[#found.tensors + 1] = t
    end
  end
  return found
end

-- The graph of collected layers.
local function build(layers, sample_shape, dtype)
  local graph = core.model_graph(dtype or "f32", sample_shape)
  local state = {} -- qparams: the parameters of the u8 activation between int8 layers
  for _, m in ipairs(layers) do
    local add = adders[getmetatable(m)]
    if add then
      local ok, problem = pcall(add, graph, m, state)
      if not ok then
        graph:free()
        error(problem, 0)
      end
    end
  end
  return graph
end

--- The C model graph of model for samples of sample_shape (the input's shape without the batch
-- dim), or nil and the reason when the model has a layer the graph does not take.  Errors in
-- the model itself (a Linear whose size does not match what reaches it) are raised.
-- @param[opt] dtype the graph's dtype ("f32"; a model converted to f64 needs "f64")
function compile.compile(model, sample_shape, dtype)
  local found, reason = collect(model, { layers = {}, deps = {}, tensors = {} })
  if not found then return nil, reason end
  return build(found.layers, sample_shape, dtype)
end

local function still_current(cache, x)
  local shape = cache.shape
  if x.dtype ~= cache.dtype or x:dim() ~= #shape + 1 then return false end
  for i = 1, #shape do
    if x:size(i + 1) ~= shape[i] then return false end
  end
  local deps = cache.deps
  for i = 1, #deps, 3 do
    local owner, key = deps[i], deps[i + 1]
    local now
    if key == "#" then now = #owner else now = rawget(owner, key) end
    if not rawequal(now, deps[i + 2]) then return false end
  end
  return cache.graph:watched_unchanged()
end

--- The graph that model:predict and model:evaluate run for input x: compiled on first use and
-- kept on the model until a weight, the layers, or the input's sample shape or dtype change.
-- Returns nil when the model does not compile (they then run the modules).
function compile.current_graph(model, x)
  local cache = rawget(model, "_compiled")
  if cache and still_current(cache, x) then return cache.graph end
  if cache then cache.graph:free() end
  rawset(model, "_compiled", nil)
  local shape = x:shape()
  table.remove(shape, 1)
  local found = collect(model, { layers = {}, deps = {}, tensors = {} })
  if not found then return nil end
  local graph = build(found.layers, shape, x.dtype)
  graph:watch(found.tensors)
  rawset(model, "_compiled", { graph = graph, deps = found.deps, shape = shape, dtype = x.dtype })
  return graph
end

return compile
