--- Tanh(): the hyperbolic tangent.
local Module = require("lunet.nn.Module")

local Tanh = Module:extend("Tanh")

function Tanh:forward(x) return x:tanh() end

return Tanh
