--- BCEWithLogitsLoss([{pos_weight, reduction = "mean"}]): binary cross-entropy of
-- sigmoid(input) against targets in [0, 1], computed stably from the logits.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local losses = require("lunet.nn.losses")

local BCEWithLogitsLoss = Module:extend("BCEWithLogitsLoss")

function BCEWithLogitsLoss:init(opts)
  self.options = losses.check_options("BCEWithLogitsLoss", opts or {}, { "pos_weight", "reduction" })
end

function BCEWithLogitsLoss:forward(input, target) return core.bce_with_logits(input, target, self.options) end

return BCEWithLogitsLoss
