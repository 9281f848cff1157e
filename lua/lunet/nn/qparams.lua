--- The quantization parameters of a u8 activation as a module's buffers: "<prefix>scale" (f32,
-- one entry) and "<prefix>zero_point" (i32, one entry), so that a model file holds them as
-- tensors any safetensors reader sees.  Shared by the quantized layers.
local core = require("lunet.core")

local qparams = {}

function qparams.register(module, prefix, scale, zero_point)
  module:register_buffer(prefix .. "scale", core.full({ 1 }, scale or 1, "f32"))
  module:register_buffer(prefix .. "zero_point", core.full({ 1 }, zero_point or 0, "i32"))
end

--- The weight buffers every int8 layer has: weight (i8, weight_shape, output channels first),
-- weight_scale (f32, one per output channel) and, unless bias is false, bias of bias_dtype
-- (i32 for static layers, whose bias is in the sums' scale; f32 for dynamic ones).
function qparams.register_weights(module, weight_shape, bias, bias_dtype)
  local channels = weight_shape[1]
  module:register_buffer("weight", core.zeros(weight_shape, "i8"))
  module:register_buffer("weight_scale", core.ones({ channels }, "f32"))
  if bias ~= false then module:register_buffer("bias", core.zeros({ channels }, bias_dtype)) end
end

--- scale, zero_point as numbers.
function qparams.get(module, prefix)
  return module[prefix .. "scale"]:item(), math.tointeger(module[prefix .. "zero_point"]:item())
end

--- Sets them (a scale is stored as f32, so read it back with get for the exact value).
function qparams.set(module, prefix, scale, zero_point)
  module[prefix .. "scale"]:fill(scale)
  module[prefix .. "zero_point"]:fill(zero_point)
end

--- The buffers' shapes and dtypes, for architecture's tensor lists.
function qparams.tensors(out, prefix)
  out[prefix .. "scale"] = { 1, dtype = "f32" }
  out[prefix .. "zero_point"] = { 1, dtype = "i32" }
  return out
end

return qparams
