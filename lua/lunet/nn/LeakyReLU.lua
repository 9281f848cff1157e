--- LeakyReLU([negative_slope = 0.01]): x for x > 0, negative_slope * x otherwise.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local LeakyReLU = Module:extend("LeakyReLU")

function LeakyReLU:init(negative_slope) self.negative_slope = negative_slope or 0.01 end
function LeakyReLU:forward(x) return core.leaky_relu(x, self.negative_slope) end
function LeakyReLU:extra_repr() return "negative_slope=" .. self.negative_slope end

return LeakyReLU
