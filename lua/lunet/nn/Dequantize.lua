--- Dequantize([scale, zero_point]): u8 -> f32, x = (q - zero_point) scale (ONNX
-- DequantizeLinear).  Where a quantized model leaves its int8 layers.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local qparams = require("lunet.nn.qparams")

local Dequantize = Module:extend("Dequantize")

function Dequantize:init(scale, zero_point) qparams.register(self, "", scale, zero_point) end

function Dequantize:forward(x) return core.dequantize(x, qparams.get(self, "")) end

function Dequantize:extra_repr() return string.format("scale=%.6g, zero_point=%d", qparams.get(self, "")) end

return Dequantize
