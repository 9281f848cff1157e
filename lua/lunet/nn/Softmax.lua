--- Softmax([dim = -1]): exp(x) / sum(exp(x)) along dim.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local Softmax = Module:extend("Softmax")

function Softmax:init(dim) self.dim = dim or -1 end
function Softmax:forward(x) return core.softmax(x, self.dim) end
function Softmax:extra_repr() return "dim=" .. self.dim end

return Softmax
