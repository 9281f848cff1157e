--- LinearWarmup: raises the lr linearly from start_factor * base_lr to end_factor * base_lr
-- over warmup_steps steps, then leaves it there.  It is torch.optim.lr_scheduler.LinearLR
-- (1.13) with total_iters = warmup_steps, computed the same chainable way:
--
--     lr(t) = base_lr * (start_factor + (end_factor - start_factor) * min(t, warmup_steps) / warmup_steps)
--
-- Making the scheduler already sets lr(0) = start_factor * base_lr.  Call step() once per
-- training step (or per epoch, if warmup_steps counts epochs).
--
--     local warmup = optim.LinearWarmup(opt, {warmup_steps = 500})
--
-- Options: warmup_steps (required, an integer >= 1), start_factor = 0.1 (in (0, 1]),
-- end_factor = 1 (in [0, 1]).
local LRScheduler = require("lunet.optim.lr_scheduler")
local settings = require("lunet.optim.settings")

local LinearWarmup = LRScheduler.class("LinearWarmup", {
  warmup_steps = settings.required,
  start_factor = 0.1,
  end_factor = 1.0,
})

--- model:fit steps it after every batch unless told otherwise (scheduler_interval).
LinearWarmup.interval = "step"

function LinearWarmup.check(options)
  local message = settings.integer(options, "warmup_steps", 1) or settings.number(options, "start_factor", 0, 1)
    or settings.number(options, "end_factor", 0, 1)
  if message then return message end
  if options.start_factor == 0 then return "option start_factor must be > 0 (the lr would start at 0)" end
end

function LinearWarmup:next_lr(lr)
  local epoch, total = self.last_epoch, self.options.warmup_steps
  local start, finish = self.options.start_factor, self.options.end_factor
  if epoch == 0 then return lr * start end
  if epoch > total then return lr end
  return lr * (1 + (finish - start) / (total * start + (epoch - 1) * (finish - start)))
end

return LinearWarmup
