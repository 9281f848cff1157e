--- AvgPool2d(kernel_size, [{stride = kernel_size, padding = 0, ceil_mode = false,
-- count_include_pad = true}]).
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local pool_options = require("lunet.nn.pool_options")

local AvgPool2d = Module:extend("AvgPool2d")

function AvgPool2d:init(kernel_size, opts)
  self.options = pool_options.make(kernel_size, opts, { count_include_pad = true })
end

function AvgPool2d:forward(x) return core.avg_pool2d(x, self.options) end

function AvgPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s", pool_options.show(self.options.kernel_size),
    pool_options.show(self.options.stride))
end

return AvgPool2d
