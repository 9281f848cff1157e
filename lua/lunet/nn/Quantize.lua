--- Quantize([scale, zero_point]): f32 -> u8 with per-tensor parameters, q = clamp(round(x /
-- scale) + zero_point, 0, 255), ties to even (ONNX QuantizeLinear).  Where a quantized model
-- (lunet.quantize) enters its int8 layers.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local qparams = require("lunet.nn.qparams")

local Quantize = Module:extend("Quantize")

function Quantize:init(scale, zero_point) qparams.register(self, "", scale, zero_point) end

function Quantize:forward(x) return core.quantize(x, qparams.get(self, "")) end

function Quantize:extra_repr() return string.format("scale=%.6g, zero_point=%d", qparams.get(self, "")) end

return Quantize
