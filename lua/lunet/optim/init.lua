--- lunet.optim: optimizers and learning-rate schedulers with torch.optim's names, options,
-- defaults and update rules (PyTorch 1.13), so a run can be compared with PyTorch step for
-- step.  The updates run in C (one call per parameter group); this package keeps the
-- parameter groups, the per-parameter state, and the schedules.
--
--     local optim = require("lunet.optim")
--     local opt = optim.Adam(model:parameters(), {lr = 1e-3})
--     local scheduler = optim.StepLR(opt, {step_size = 10, gamma = 0.5})
--     for epoch = 1, epochs do
--       for xb, yb in loader:batches() do
--         opt:zero_grad()
--         local loss = criterion(model(xb), yb)
--         loss:backward()
--         optim.clip_grad_norm(model:parameters(), 1.0)
--         opt:step()
--       end
--       scheduler:step()
--     end
--
-- Optimizers: SGD, Adam, AdamW, RMSprop.  Schedulers: StepLR, CosineAnnealingLR,
-- LinearWarmup, ReduceLROnPlateau.  Optimizer and LRScheduler are the bases for new ones.
local core = require("lunet.core")

local optim = {
  Optimizer = require("lunet.optim.optimizer"),
  SGD = require("lunet.optim.sgd"),
  Adam = require("lunet.optim.adam"),
  AdamW = require("lunet.optim.adamw"),
  RMSprop = require("lunet.optim.rmsprop"),
  LRScheduler = require("lunet.optim.lr_scheduler"),
  StepLR = require("lunet.optim.step_lr"),
  CosineAnnealingLR = require("lunet.optim.cosine_annealing_lr"),
  LinearWarmup = require("lunet.optim.linear_warmup"),
  ReduceLROnPlateau = require("lunet.optim.reduce_lr_on_plateau"),
}

--- Scales the gradients of params so that their joint norm is at most max_norm, as
-- torch.nn.utils.clip_grad_norm_ does; parameters without a gradient are ignored.
-- @param params a tensor or a list of tensors
-- @param max_norm the largest norm allowed (>= 0)
-- @param norm_type 2 (default), 1, math.huge (or "inf"), or any p > 0
-- @return the norm of all the gradients before clipping (a number)
function optim.clip_grad_norm(params, max_norm, norm_type)
  if core.is_tensor(params) then params = { params } end
  return core.clip_grad_norm(params, max_norm, norm_type)
end

return optim
