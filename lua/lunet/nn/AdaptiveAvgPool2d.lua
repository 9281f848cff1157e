--- AdaptiveAvgPool2d(output_size): averages over windows that split each image into
-- output_size (a number or a {height, width} pair) cells, whatever the input size.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local pool_options = require("lunet.nn.pool_options")

local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")

function AdaptiveAvgPool2d:init(output_size) self.output_size = output_size end
function AdaptiveAvgPool2d:forward(x) return core.adaptive_avg_pool2d(x, self.output_size) end
function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. pool_options.show(self.output_size) end

return AdaptiveAvgPool2d
