--- QuantizedConv2d(in_channels, out_channels, kernel_size, [{stride, padding, dilation, bias,
-- relu}]): a Conv2d layer in int8, made by lunet.quantize; u8 (N, C, H, W) -> u8 (N, O, OH,
-- OW), padding with the input's zero point (a real 0).  Buffers as QuantizedLinear's, with
-- weight (i8, O x C x KH x KW).  One group only.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local qparams = require("lunet.nn.qparams")

local QuantizedConv2d = Module:extend("QuantizedConv2d")

local function pair(v) return type(v) == "table" and { v[1], v[2] } or { v, v } end

function QuantizedConv2d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  self.in_channels, self.out_channels, self.relu = in_channels, out_channels, opts.relu == true
  self.kernel_size, self.stride = pair(kernel_size), pair(opts.stride or 1)
  self.padding, self.dilation, self.groups = pair(opts.padding or 0), pair(opts.dilation or 1), 1
  local k = self.kernel_size
  qparams.register_weights(self, { out_channels, in_channels, k[1], k[2] }, opts.bias, "i32")
  qparams.register(self, "input_")
  qparams.register(self, "output_")
end

QuantizedConv2d.layer = require("lunet.nn.QuantizedLinear").layer

function QuantizedConv2d:conv_options()
  return { stride = self.stride, padding = self.padding, dilation = self.dilation, groups = 1 }
end

function QuantizedConv2d:forward(x)
  local scale, zero_point = qparams.get(self, "input_")
  return core.qconv2d(x, scale, zero_point, self:layer(), self:conv_options())
end

function QuantizedConv2d:extra_repr()
  return string.format("%d, %d, kernel_size=%dx%d, stride=%d%s", self.in_channels, self.out_channels,
    self.kernel_size[1], self.kernel_size[2], self.stride[1], self.relu and ", relu" or "")
end

return QuantizedConv2d
