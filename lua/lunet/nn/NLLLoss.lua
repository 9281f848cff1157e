--- NLLLoss([{weight, reduction = "mean", ignore_index}]): negative log likelihood of
-- log-probabilities (N, C) (a LogSoftmax output) at 1-based targets (N).
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local losses = require("lunet.nn.losses")

local NLLLoss = Module:extend("NLLLoss")

function NLLLoss:init(opts)
  self.options = losses.check_options("NLLLoss", opts or {}, { "weight", "reduction", "ignore_index" })
end

function NLLLoss:forward(log_probs, targets) return core.nll_loss(log_probs, targets, self.options) end

return NLLLoss
