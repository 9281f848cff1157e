--- ONNX export (opset 13, IR version 7): walks a model's architecture description layer by
-- layer and writes each built-in layer as its ONNX operators.
--
--   Linear -> Gemm (2-D input) or MatMul + Add      Conv2d -> Conv
--   ReLU, LeakyReLU, Sigmoid, Tanh -> Relu, LeakyRelu, Sigmoid, Tanh
--   GELU -> its erf formula (approximate = "tanh": its tanh formula) in Div/Erf/Tanh/Add/Mul/Pow
--   MaxPool2d -> MaxPool      AvgPool2d -> AveragePool
--   AdaptiveAvgPool2d -> GlobalAveragePool (output 1x1) or AveragePool (sizes that divide evenly)
--   GlobalAvgPool2d -> GlobalAveragePool + Flatten
--   Flatten -> Flatten (start_dim 2, end_dim -1) or Reshape    Softmax, LogSoftmax -> same, axis = dim - 1
--   BatchNorm1d/2d -> folded into the Conv2d/Linear before it, else BatchNormalization
--   Identity -> Identity      Dropout -> nothing (inference)
--   the int8 layers of lunet.quantize -> QuantizeLinear, QLinearConv, QLinearMatMul, DequantizeLinear
--   (export_int8.lua)
--
-- Shapes come from running each layer once on zeros of input_shape (the exporter needs them
-- for Reshape, MatMul and the output's declared shape), which also proves the model accepts it.
local architecture = require("lunet.architecture")
local lunet_core = require("lunet.core")
local GraphWriter = require("lunet.onnx.graph_writer")
local evaluating = require("lunet.train").evaluating

local export = {}

local function fail(path, fmt, ...)
  error(string.format("onnx.export: %s: " .. fmt, path, ...), 0)
end

-- The model's layers in order, nested Sequentials opened, each with its module and state-dict prefix.
local function flat_layers(desc, module, prefix, out)
  if desc.type == "Sequential" then
    for i, child in ipairs(desc.layers) do flat_layers(child, module[i], prefix .. i .. ".", out) end
  else
    out[#out + 1] = { desc = desc, module = module, prefix = prefix }
  end
  return out
end

-- ONNX axis (0-based, or negative from the end) for a lunet dim (1-based, or negative).
local function onnx_axis(dim) return dim > 0 and dim - 1 or dim end

local function ints_pair_twice(p) return { p[1], p[2], p[1], p[2] } end

-- Returns W and b as float64 with a following BatchNorm folded in: the BatchNorm in evaluation
-- computes (y - mean) * gamma / sqrt(var + eps) + beta per output channel, a scale and a shift.
local function fold_batch_norm(weight, bias, bn)
  local d = bn.desc
  local m = bn.module
  local out_channels = weight:size(1)
  local scale = (m.running_var:to("f64") + d.eps):sqrt():pow(-1)
  local shift = m.running_mean:to("f64"):neg()
  if d.affine then scale = scale * m.weight:detach():to("f64") end
  local folded_bias = ((bias and bias:detach():to("f64") or lunet_core.zeros({ out_channels }, "f64")) + shift) * scale
  if d.affine then folded_bias = folded_bias + m.bias:detach():to("f64") end
  local scale_shape = { out_channels }
  for _ = 2, weight:dim() do scale_shape[#scale_shape + 1] = 1 end
  return weight:detach():to("f64") * scale:reshape(scale_shape), folded_bias
end

-- Each emitter writes one layer: (g, layer, x, shapes, ctx) -> output name.  shapes.input and
-- shapes.output are the layer's input and output shapes (batch included).
local emit = {}

function emit.Linear(g, layer, x, shapes, ctx)
  local weight, bias = layer.module.weight:detach(), layer.module.bias and layer.module.bias:detach()
  if ctx.batch_norm then weight, bias = fold_batch_norm(weight, bias, ctx.batch_norm) end
  local name = layer.prefix .. "Linear"
  if #shapes.input == 2 then
    local inputs = { x, g:add_tensor(layer.prefix .. "weight", weight) }
    if bias then inputs[3] = g:add_tensor(layer.prefix .. "bias", bias) end
    return g:add_node("Gemm", inputs, name, { { "transB", "int", 1 } })
  end
  -- Gemm takes 2-D inputs only; MatMul broadcasts over leading dims, as Linear does.
  local transposed = weight:transpose(1, 2):contiguous()
  local y = g:add_node("MatMul", { x, g:add_tensor(layer.prefix .. "weight_transposed", transposed) }, name)
  if bias then y = g:add_node("Add", { y, g:add_tensor(layer.prefix .. "bias", bias) }, name .. "_bias") end
  return y
end

function emit.Conv2d(g, layer, x, _, ctx)
  local d = layer.desc
  local weight, bias = layer.module.weight:detach(), layer.module.bias and layer.module.bias:detach()
  if ctx.batch_norm then weight, bias = fold_batch_norm(weight, bias, ctx.batch_norm) end
  local inputs = { x, g:add_tensor(layer.prefix .. "weight", weight) }
  if bias then inputs[3] = g:add_tensor(layer.prefix .. "bias", bias) end
  return g:add_node("Conv", inputs, layer.prefix .. "Conv2d", {
    { "dilations", "ints", d.dilation }, { "group", "int", d.groups }, { "kernel_shape", "ints", d.kernel_size },
    { "pads", "ints", ints_pair_twice(d.padding) }, { "strides", "ints", d.stride } })
end

local function batch_norm(g, layer, x, _, ctx)
  local d, m = layer.desc, layer.module
  if not d.track_running_stats then
    fail(ctx.path, "%s (%s) keeps no running statistics, so it has no fixed inference form to export",
      layer.prefix:sub(1, -2), d.type)
  end
  local n = d.num_features
  local scale = d.affine and m.weight:detach() or lunet_core.ones({ n })
  local shift = d.affine and m.bias:detach() or lunet_core.zeros({ n })
  local inputs = { x, g:add_tensor(layer.prefix .. "weight", scale), g:add_tensor(layer.prefix .. "bias", shift),
    g:add_tensor(layer.prefix .. "running_mean", m.running_mean),
    g:add_tensor(layer.prefix .. "running_var", m.running_var) }
  return g:add_node("BatchNormalization", inputs, layer.prefix .. d.type, { { "epsilon", "float", d.eps } })
end
emit.BatchNorm1d, emit.BatchNorm2d = batch_norm, batch_norm

local function simple(op_type)
  return function(g, layer, x) return g:add_node(op_type, { x }, layer.prefix .. layer.desc.type) end
end
emit.ReLU, emit.Sigmoid, emit.Tanh, emit.Identity = simple("Relu"), simple("Sigmoid"), simple("Tanh"),
  simple("Identity")

function emit.LeakyReLU(g, layer, x)
  local slope = layer.desc.negative_slope
  return g:add_node("LeakyRelu", { x }, layer.prefix .. "LeakyReLU", { { "alpha", "float", slope } })
end

-- GELU: 0.5 x (1 + erf(x / sqrt 2)), or with approximate = "tanh",
-- 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
function emit.GELU(g, layer, x)
  local base = layer.prefix .. "GELU"
  local function const(name, v) return g:add_scalar(base .. "." .. name, v) end
  local inner
  if layer.desc.approximate == "tanh" then
    local cube = g:add_node("Pow", { x, const("three", 3) }, base .. "_cube")
    local scaled_cube = g:add_node("Mul", { cube, const("coefficient", 0.044715) }, base .. "_scaled_cube")
    local sum = g:add_node("Add", { x, scaled_cube }, base .. "_sum")
    local argument = g:add_node("Mul", { sum, const("sqrt_2_over_pi", math.sqrt(2 / math.pi)) }, base .. "_argument")
    inner = g:add_node("Tanh", { argument }, base .. "_tanh")
  else
    local argument = g:add_node("Div", { x, const("sqrt_2", math.sqrt(2)) }, base .. "_argument")
    inner = g:add_node("Erf", { argument }, base .. "_erf")
  end
  local one_plus = g:add_node("Add", { inner, const("one", 1) }, base .. "_one_plus")
  local product = g:add_node("Mul", { x, one_plus }, base .. "_product")
  return g:add_node("Mul", { product, const("half", 0.5) }, base)
end

function emit.MaxPool2d(g, layer, x)
  local d = layer.desc
  return g:add_node("MaxPool", { x }, layer.prefix .. "MaxPool2d", {
    { "ceil_mode", "int", d.ceil_mode and 1 or 0 }, { "dilations", "ints", d.dilation },
    { "kernel_shape", "ints", d.kernel_size }, { "pads", "ints", ints_pair_twice(d.padding) },
    { "strides", "ints", d.stride } })
end

function emit.AvgPool2d(g, layer, x)
  local d = layer.desc
  return g:add_node("AveragePool", { x }, layer.prefix .. "AvgPool2d", {
    { "ceil_mode", "int", d.ceil_mode and 1 or 0 }, { "count_include_pad", "int", d.count_include_pad and 1 or 0 },
    { "kernel_shape", "ints", d.kernel_size }, { "pads", "ints", ints_pair_twice(d.padding) },
    { "strides", "ints", d.stride } })
end

function emit.AdaptiveAvgPool2d(g, layer, x, shapes, ctx)
  local out = layer.desc.output_size
  local name = layer.prefix .. "AdaptiveAvgPool2d"
  if out[1] == 1 and out[2] == 1 then return g:add_node("GlobalAveragePool", { x }, name) end
  local h, w = shapes.input[3], shapes.input[4]
  if h % out[1] ~= 0 or w % out[2] ~= 0 then
    fail(ctx.path, "%s (AdaptiveAvgPool2d): output %dx%d from input %dx%d has uneven windows, which ONNX's "
      .. "AveragePool cannot express; only 1x1 outputs or sizes that divide the input are exported",
      layer.prefix, out[1], out[2], h, w)
  end
  local kernel = { h // out[1], w // out[2] }
  return g:add_node("AveragePool", { x }, name, { { "kernel_shape", "ints", kernel }, { "strides", "ints", kernel } })
end

function emit.GlobalAvgPool2d(g, layer, x)
  local pooled = g:add_node("GlobalAveragePool", { x }, layer.prefix .. "GlobalAvgPool2d_pool")
  return g:add_node("Flatten", { pooled }, layer.prefix .. "GlobalAvgPool2d", { { "axis", "int", 1 } })
end

function emit.Flatten(g, layer, x, shapes)
  local rank = #shapes.input
  local first = layer.desc.start_dim > 0 and layer.desc.start_dim or rank + 1 + layer.desc.start_dim
  local last = layer.desc.end_dim > 0 and layer.desc.end_dim or rank + 1 + layer.desc.end_dim
  local name = layer.prefix .. "Flatten"
  if first == 2 and last == rank then return g:add_node("Flatten", { x }, name, { { "axis", "int", 1 } }) end
  -- Otherwise a Reshape: 0 copies a leading dim (so the batch stays dynamic), -1 is the merged
  -- run, and the trailing dims are fixed sizes.
  local target = {}
  for _ = 1, first - 1 do target[#target + 1] = 0 end
  if last >= first then target[#target + 1] = -1 end
  for i = last + 1, rank do target[#target + 1] = shapes.input[i] end
  return g:add_node("Reshape", { x, g:add_int64_list(name .. ".shape", target) }, name)
end

local function softmax(op_type)
  return function(g, layer, x)
    return g:add_node(op_type, { x }, layer.prefix .. layer.desc.type, { { "axis", "int", onnx_axis(layer.desc.dim) } })
  end
end
emit.Softmax, emit.LogSoftmax = softmax("Softmax"), softmax("LogSoftmax")

for kind, emitter in pairs(require("lunet.onnx.export_int8")) do emit[kind] = emitter end

-- Runs each layer on zeros of input_shape (in evaluation mode, without autograd, so that
-- nothing in the model changes); returns the layers' input and output shapes.
local function layer_shapes(layers, input_shape, path)
  local x = lunet_core.zeros(input_shape)
  local shapes = {}
  for i, layer in ipairs(layers) do
    local m = layer.module
    local ok, y = pcall(evaluating, m, function() return m(x) end)
    if not ok then
      fail(path, "layer %s (%s) does not accept input of shape [%s]: %s", layer.prefix:sub(1, -2), layer.desc.type,
        table.concat(x:shape(), ","), tostring(y))
    end
    shapes[i] = { input = x:shape(), output = y:shape() }
    x = y
  end
  return shapes, x:shape()
end

local function symbolic_batch(shape, dynamic)
  local dims = { table.unpack(shape) }
  if dynamic then dims[1] = "batch" end
  return dims
end

-- A BatchNorm folds into the layer before it when its channels are that layer's outputs: a
-- Conv2d's, or a Linear's with 2-d output (on (N, L, features) BatchNorm1d normalises L).
local FOLDS_BATCH_NORM = { Conv2d = "BatchNorm2d", Linear = "BatchNorm1d" }

local function folds_into(layer, next_layer, output_shape)
  return next_layer ~= nil and FOLDS_BATCH_NORM[layer.desc.type] == next_layer.desc.type
    and next_layer.desc.track_running_stats and (layer.desc.type ~= "Linear" or #output_shape == 2)
end

--- The ModelProto bytes of model for inputs of input_shape (batch first).
function export.encode(model, path, opts)
  local input_shape = opts.input_shape
  if type(input_shape) ~= "table" or #input_shape < 1 then
    fail(path, "opts.input_shape must be the input's shape with the batch first, e.g. {1, 1, 28, 28}")
  end
  for i, d in ipairs(input_shape) do
    if math.type(d) ~= "integer" or d < 1 then fail(path, "input_shape[%d] must be a positive integer", i) end
  end
  local dynamic = opts.dynamic_batch ~= false
  local all = flat_layers(architecture.describe(model), model, "", {})
  local layers = {}
  for _, layer in ipairs(all) do
    if layer.desc.type ~= "Dropout" then layers[#layers + 1] = layer end
  end
  local shapes, output_shape = layer_shapes(layers, input_shape, path)

  local g = GraphWriter.new()
  g:fresh_name("input")
  g:fresh_name("output")
  local x = "input"
  local i = 1
  while i <= #layers do
    local layer = layers[i]
    local ctx = { path = path }
    if folds_into(layer, layers[i + 1], shapes[i].output) then ctx.batch_norm = layers[i + 1] end
    x = emit[layer.desc.type](g, layer, x, shapes[i], ctx)
    i = i + (ctx.batch_norm and 2 or 1)
  end
  if x == "input" then
    g:add_node("Identity", { x }, "output")
  else
    g:rename_last_output("output")
  end
  return g:encode({ name = "input", dims = symbolic_batch(input_shape, dynamic) },
    { name = "output", dims = symbolic_batch(output_shape, dynamic) }, lunet_core.version)
end

return export
