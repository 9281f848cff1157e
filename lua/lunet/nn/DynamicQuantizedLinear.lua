--- DynamicQuantizedLinear(in_features, out_features, [{bias = true, relu = false}]): a Linear
-- layer with int8 weights whose f32 input is quantized row by row as it arrives (lunet.h,
-- lunet_linear_dynamic), made by lunet.quantize(model, {mode = "dynamic"}); f32 in, f32 out.
-- Buffers: weight (i8), weight_scale (f32, one per output), bias (f32).
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local qparams = require("lunet.nn.qparams")

local DynamicQuantizedLinear = Module:extend("DynamicQuantizedLinear")

function DynamicQuantizedLinear:init(in_features, out_features, opts)
  opts = opts or {}
  self.in_features, self.out_features, self.relu = in_features, out_features, opts.relu == true
  qparams.register_weights(self, { out_features, in_features }, opts.bias, "f32")
end

function DynamicQuantizedLinear:forward(x)
  return core.linear_dynamic(x, self.weight, self.weight_scale, self.bias, self.relu)
end

DynamicQuantizedLinear.extra_repr = require("lunet.nn.QuantizedLinear").extra_repr

return DynamicQuantizedLinear
