--- StepLR: multiplies the lr by gamma every step_size epochs
-- (torch.optim.lr_scheduler.StepLR, 1.13).
--
--     local scheduler = optim.StepLR(opt, {step_size = 30, gamma = 0.1})
--     for epoch = 1, 100 do train_one_epoch(); scheduler:step() end
--
-- Options: step_size (required, an integer >= 1), gamma = 0.1.
local LRScheduler = require("lunet.optim.lr_scheduler")
local settings = require("lunet.optim.settings")

local StepLR = LRScheduler.class("StepLR", { step_size = settings.required, gamma = 0.1 })

function StepLR.check(options)
  return settings.integer(options, "step_size", 1) or settings.number(options, "gamma", 0)
end

function StepLR:next_lr(lr)
  if self.last_epoch == 0 or self.last_epoch % self.options.step_size ~= 0 then return lr end
  return lr * self.options.gamma
end

return StepLR
