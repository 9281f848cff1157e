--- CrossEntropyLoss([{weight, label_smoothing = 0, reduction = "mean", ignore_index}]):
-- log-softmax and negative log likelihood in one op.  Called with logits (N, C) and targets
-- (N) of 1-based class indices.  weight (C) weighs classes; "mean" divides by the summed
-- weights of the targets, as PyTorch does.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local losses = require("lunet.nn.losses")

local CrossEntropyLoss = Module:extend("CrossEntropyLoss")

function CrossEntropyLoss:init(opts)
  self.options = losses.check_options("CrossEntropyLoss", opts or {},
    { "weight", "label_smoothing", "reduction", "ignore_index" })
end

function CrossEntropyLoss:forward(logits, targets) return core.cross_entropy(logits, targets, self.options) end

function CrossEntropyLoss:extra_repr()
  local o = self.options
  return (o.label_smoothing and o.label_smoothing > 0) and ("label_smoothing=" .. o.label_smoothing) or ""
end

return CrossEntropyLoss
