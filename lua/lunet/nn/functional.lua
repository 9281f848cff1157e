--- The layer functions behind the modules (lunet.nn.functional, often imported as F):
-- linear, conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d, batch_norm, relu, leaky_relu,
-- sigmoid, tanh, gelu, softmax, log_softmax, dropout, cross_entropy, nll_loss, mse_loss,
-- l1_loss, bce_with_logits.  All are C ops with fused gradients; see lunet.h for each.
local core = require("lunet.core")

local F = {}

for _, name in ipairs({
  "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "leaky_relu", "gelu",
  "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "bce_with_logits",
}) do
  F[name] = core[name]
end

function F.relu(x) return x:relu() end
function F.sigmoid(x) return x:sigmoid() end
function F.tanh(x) return x:tanh() end

--- Dropout in training mode, identity otherwise; mask (optional) fixes which elements stay.
function F.dropout(x, p, training, mask)
  if training == false or p == 0 then return x end
  return core.dropout(x, p, mask)
end

return F
