--- Sigmoid(): 1 / (1 + exp(-x)).
local Module = require("lunet.nn.Module")

local Sigmoid = Module:extend("Sigmoid")

function Sigmoid:forward(x) return x:sigmoid() end

return Sigmoid
