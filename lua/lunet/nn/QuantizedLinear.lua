--- QuantizedLinear(in_features, out_features, [{bias = true, relu = false}]): a Linear layer in
-- int8 (lunet.h, "int8"), made by lunet.quantize.  u8 (..., in) with the input's parameters
-- -> u8 (..., out) with the output's.  Buffers: weight (i8, out x in), weight_scale (f32, one
-- per output), bias (i32, scale input_scale * weight_scale), input_scale/zero_point and
-- output_scale/zero_point; relu fuses a ReLU into the output's clamp.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local qparams = require("lunet.nn.qparams")

local QuantizedLinear = Module:extend("QuantizedLinear")

function QuantizedLinear:init(in_features, out_features, opts)
  opts = opts or {}
  self.in_features, self.out_features, self.relu = in_features, out_features, opts.relu == true
  qparams.register_weights(self, { out_features, in_features }, opts.bias, "i32")
  qparams.register(self, "input_")
  qparams.register(self, "output_")
end

--- The layer as the C ops and the model graph take it.
function QuantizedLinear:layer()
  local scale, zero_point = qparams.get(self, "output_")
  return { weight = self.weight, scale = self.weight_scale, bias = self.bias, output_scale = scale,
    output_zero_point = zero_point, relu = self.relu }
end

function QuantizedLinear:forward(x)
  local scale, zero_point = qparams.get(self, "input_")
  return core.qlinear(x, scale, zero_point, self:layer())
end

function QuantizedLinear:extra_repr()
  return string.format("%d, %d%s%s", self.in_features, self.out_features, self.bias and "" or ", bias=false",
    self.relu and ", relu" or "")
end

return QuantizedLinear
