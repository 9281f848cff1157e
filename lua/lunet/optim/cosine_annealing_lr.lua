--- CosineAnnealingLR: anneals the lr from its base value to eta_min along half a cosine over
-- T_max epochs, then back up over the next T_max, and so on
-- (torch.optim.lr_scheduler.CosineAnnealingLR, 1.13, without restarts):
--
--     lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2
--
-- computed step by step from the current lr as PyTorch does, so that other changes to the lr
-- carry through.
--
--     local scheduler = optim.CosineAnnealingLR(opt, {T_max = 50})
--
-- Options: T_max (required, an integer >= 1), eta_min = 0.
local LRScheduler = require("lunet.optim.lr_scheduler")
local settings = require("lunet.optim.settings")

local CosineAnnealingLR = LRScheduler.class("CosineAnnealingLR", { T_max = settings.required, eta_min = 0 })

function CosineAnnealingLR.check(options)
  return settings.integer(options, "T_max", 1) or settings.number(options, "eta_min", 0)
end

function CosineAnnealingLR:next_lr(lr, base_lr)
  local epoch, period, eta_min = self.last_epoch, self.options.T_max, self.options.eta_min
  if epoch == 0 then return lr end
  -- At the bottom of the cosine the ratio below divides by zero: PyTorch takes this branch.
  if (epoch - 1 - period) % (2 * period) == 0 then
    return lr + (base_lr - eta_min) * (1 - math.cos(math.pi / period)) / 2
  end
  return (1 + math.cos(math.pi * epoch / period)) / (1 + math.cos(math.pi * (epoch - 1) / period)) * (lr - eta_min)
    + eta_min
end

return CosineAnnealingLR
