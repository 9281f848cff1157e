--- ONNX export of the int8 layers of lunet.quantize (opset 13), one emitter per layer kind,
-- with the emitters' signature in export.lua.  Each writes the operators that compute what the
-- lunet layer computes, bit for bit where ONNX Runtime follows the spec's arithmetic:
--
--   Quantize -> QuantizeLinear          Dequantize -> DequantizeLinear
--   QuantizedConv2d -> QLinearConv (int32 bias; + Clip when a fused ReLU's floor is above 0)
--   QuantizedLinear -> QLinearMatMul without bias; with bias (which QLinearMatMul lacks),
--                      Reshape to (rows, in, 1, 1) -> QLinearConv 1x1 -> Reshape back
--
-- Activations are uint8 with per-tensor scale and zero point; weights int8 with one scale per
-- output channel and zero point 0.  A fused ReLU clamps at the output's zero point (a real 0):
-- when that is 0 the uint8 floor already does it, otherwise a Clip does.  DynamicQuantizedLinear
-- has no ONNX form: it quantizes each row of its input on its own, and ONNX's
-- DynamicQuantizeLinear quantizes the whole tensor, so it is refused rather than approximated.
local schema = require("lunet.onnx.schema")
local qparams = require("lunet.nn.qparams")

local emit = {}

-- A per-tensor scale (float scalar) and zero point (uint8 scalar) as initializers.
local function scale_and_zero_point(g, base, module, prefix)
  local scale, zero_point = qparams.get(module, prefix)
  return g:add_initializer(base .. "scale", {}, schema.DataType.FLOAT, string.pack("<f", scale)),
    g:add_initializer(base .. "zero_point", {}, schema.DataType.UINT8, string.pack("<B", zero_point))
end

-- The weight's per-channel scale and its zero points (int8 zeros, one per output channel).
local function weight_scale_and_zero_point(g, layer)
  local m = layer.module
  local channels = m.weight_scale:numel()
  return g:add_typed(layer.prefix .. "weight_scale", m.weight_scale, "f32"),
    g:add_initializer(layer.prefix .. "weight_zero_point", { channels }, schema.DataType.INT8,
      string.rep("\0", channels))
end

-- The clamp of a fused ReLU where the uint8 range's own floor does not already give it.
local function fused_relu(g, layer, y)
  local _, zero_point = qparams.get(layer.module, "output_")
  if not layer.module.relu or zero_point == 0 then return y end
  local floor = g:add_initializer(layer.prefix .. "relu_floor", {}, schema.DataType.UINT8,
    string.pack("<B", zero_point))
  return g:add_node("Clip", { y, floor }, layer.prefix .. "relu")
end

-- The inputs of QLinearConv and QLinearMatMul, which share their first eight in this order:
-- x, its scale and zero point, the int8 weight w (stored under weight_name), its per-channel
-- scales and zero points, the output's scale and zero point; then QLinearConv's int32 bias.
local function quantized_inputs(g, layer, x, weight_name, w, with_bias)
  local m = layer.module
  local x_scale, x_zero_point = scale_and_zero_point(g, layer.prefix .. "input_", m, "input_")
  local w_scale, w_zero_point = weight_scale_and_zero_point(g, layer)
  local y_scale, y_zero_point = scale_and_zero_point(g, layer.prefix .. "output_", m, "output_")
  local inputs = { x, x_scale, x_zero_point, g:add_typed(layer.prefix .. weight_name, w, "i8"), w_scale, w_zero_point,
    y_scale, y_zero_point }
  if with_bias and m.bias then inputs[9] = g:add_typed(layer.prefix .. "bias", m.bias, "i32") end
  return inputs
end

local function pads(p) return { p[1], p[2], p[1], p[2] } end

function emit.Quantize(g, layer, x)
  local scale, zero_point = scale_and_zero_point(g, layer.prefix, layer.module, "")
  return g:add_node("QuantizeLinear", { x, scale, zero_point }, layer.prefix .. "Quantize")
end

function emit.Dequantize(g, layer, x)
  local scale, zero_point = scale_and_zero_point(g, layer.prefix, layer.module, "")
  return g:add_node("DequantizeLinear", { x, scale, zero_point }, layer.prefix .. "Dequantize")
end

function emit.QuantizedConv2d(g, layer, x)
  local m = layer.module
  local y = g:add_node("QLinearConv", quantized_inputs(g, layer, x, "weight", m.weight, true),
    layer.prefix .. "QuantizedConv2d", {
    { "dilations", "ints", m.dilation }, { "group", "int", 1 }, { "kernel_shape", "ints", m.kernel_size },
    { "pads", "ints", pads(m.padding) }, { "strides", "ints", m.stride } })
  return fused_relu(g, layer, y)
end

function emit.QuantizedLinear(g, layer, x, shapes)
  local m = layer.module
  local name = layer.prefix .. "QuantizedLinear"
  local y
  if not m.bias then
    -- QLinearMatMul: a (..., in) x b (in, out), per-column b scale.
    local transposed = m.weight:transpose(1, 2):contiguous()
    y = g:add_node("QLinearMatMul", quantized_inputs(g, layer, x, "weight_transposed", transposed, false), name)
  else
    -- Every row of x is a 1x1 image with in channels; the 1x1 convolution is the Linear.
    local rows = g:add_node("Reshape", { x, g:add_int64_list(name .. ".rows_shape", { -1, m.in_features, 1, 1 }) },
      name .. "_rows")
    local w = m.weight:reshape({ m.out_features, m.in_features, 1, 1 })
    local conv = g:add_node("QLinearConv", quantized_inputs(g, layer, rows, "weight", w, true), name .. "_conv",
      { { "kernel_shape", "ints", { 1, 1 } } })
    local target = { -1 }
    for i = 2, #shapes.output do target[i] = shapes.output[i] end
    y = g:add_node("Reshape", { conv, g:add_int64_list(name .. ".shape", target) }, name)
  end
  return fused_relu(g, layer, y)
end

function emit.DynamicQuantizedLinear(_, layer, _, _, ctx)
  error(string.format("onnx.export: %s: layer %s (DynamicQuantizedLinear) quantizes each input row with its own "
    .. "scale, which ONNX's DynamicQuantizeLinear (one scale per tensor) cannot express; export the fp32 model, or "
    .. "a static int8 one (lunet.quantize with calibration data)", ctx.path, layer.prefix:sub(1, -2)), 0)
end

return emit
