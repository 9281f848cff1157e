--- Conv2d(in_channels, out_channels, kernel_size, [{stride = 1, padding = 0, dilation = 1,
-- groups = 1, bias = true}]).  Sizes are a number or a {height, width} pair; padding may also
-- be "valid" (0) or "same" (stride 1 only: the output keeps the input's size).
-- weight is (out_channels, in_channels / groups, kh, kw), as in PyTorch.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local init = require("lunet.nn.init_weights")

local Conv2d = Module:extend("Conv2d")

local function pair(v, name)
  if type(v) == "number" then return { v, v } end
  if type(v) == "table" and #v == 2 then return { v[1], v[2] } end
  error("Conv2d: " .. name .. " must be a number or a {height, width} pair", 3)
end

function Conv2d:init(in_channels, out_channels, kernel_size, opts)
  opts = opts or {}
  self.in_channels, self.out_channels = in_channels, out_channels
  self.kernel_size = pair(kernel_size, "kernel_size")
  self.stride = pair(opts.stride or 1, "stride")
  self.dilation = pair(opts.dilation or 1, "dilation")
  self.groups = opts.groups or 1
  local padding = opts.padding or 0
  if padding == "valid" then
    padding = 0
  elseif padding == "same" then
    assert(self.stride[1] == 1 and self.stride[2] == 1, "Conv2d: padding \"same\" needs stride 1")
    local ph = self.dilation[1] * (self.kernel_size[1] - 1)
    local pw = self.dilation[2] * (self.kernel_size[2] - 1)
    assert(ph % 2 == 0 and pw % 2 == 0, "Conv2d: padding \"same\" needs an odd (dilated) kernel size")
    padding = { ph // 2, pw // 2 }
  end
  self.padding = pair(padding, "padding")
  if in_channels % self.groups ~= 0 or out_channels % self.groups ~= 0 then
    error(string.format("Conv2d: groups %d must divide in_channels %d and out_channels %d", self.groups,
      in_channels, out_channels), 2)
  end
  local dtype = opts.dtype or "f32"
  self:register_parameter("weight", core.empty({ out_channels, in_channels // self.groups, self.kernel_size[1],
    self.kernel_size[2] }, dtype))
  if opts.bias ~= false then self:register_parameter("bias", core.empty({ out_channels }, dtype)) end
  init.default_layer(self.weight, self.bias)
end

function Conv2d:forward(x)
  return core.conv2d(x, self.weight, self.bias, {
    stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups,
  })
end

local function show(p) return p[1] == p[2] and tostring(p[1]) or string.format("(%d, %d)", p[1], p[2]) end

function Conv2d:extra_repr()
  local parts = { string.format("%d, %d, kernel_size=%s", self.in_channels, self.out_channels, show(self.kernel_size)) }
  if self.stride[1] ~= 1 or self.stride[2] ~= 1 then parts[#parts + 1] = "stride=" .. show(self.stride) end
  if self.padding[1] ~= 0 or self.padding[2] ~= 0 then parts[#parts + 1] = "padding=" .. show(self.padding) end
  if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then parts[#parts + 1] = "dilation=" .. show(self.dilation) end
  if self.groups ~= 1 then parts[#parts + 1] = "groups=" .. self.groups end
  if not self.bias then parts[#parts + 1] = "bias=false" end
  return table.concat(parts, ", ")
end

return Conv2d
