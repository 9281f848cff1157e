--- L1Loss([{reduction = "mean"}]): |input - target|.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local losses = require("lunet.nn.losses")

local L1Loss = Module:extend("L1Loss")

function L1Loss:init(opts) self.options = losses.check_options("L1Loss", opts or {}, { "reduction" }) end
function L1Loss:forward(input, target) return core.l1_loss(input, target, self.options) end

return L1Loss
