--- MSELoss([{reduction = "mean"}]): (input - target)^2, averaged ("mean"), summed ("sum") or
-- per element ("none").
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local losses = require("lunet.nn.losses")

local MSELoss = Module:extend("MSELoss")

function MSELoss:init(opts) self.options = losses.check_options("MSELoss", opts or {}, { "reduction" }) end
function MSELoss:forward(input, target) return core.mse_loss(input, target, self.options) end

return MSELoss
