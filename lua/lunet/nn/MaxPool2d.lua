--- MaxPool2d(kernel_size, [{stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false}]).
-- The gradient goes to the first maximum of each window.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local pool_options = require("lunet.nn.pool_options")

local MaxPool2d = Module:extend("MaxPool2d")

function MaxPool2d:init(kernel_size, opts)
  self.options = pool_options.make(kernel_size, opts, { dilation = 1 })
end

function MaxPool2d:forward(x) return core.max_pool2d(x, self.options) end

function MaxPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s", pool_options.show(self.options.kernel_size),
    pool_options.show(self.options.stride))
end

return MaxPool2d
