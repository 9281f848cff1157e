--- ReduceLROnPlateau: multiplies the lr by factor when a metric has stopped improving for
-- more than patience epochs (torch.optim.lr_scheduler.ReduceLROnPlateau, 1.13).
--
--     local plateau = optim.ReduceLROnPlateau(opt, {patience = 5})
--     for epoch = 1, 100 do
--       train_one_epoch()
--       plateau:step(validation_loss())
--     end
--
-- Options (PyTorch's names and defaults):
--   mode = "min" ("max": the metric should grow), factor = 0.1 (in [0, 1)), patience = 10,
--   threshold = 1e-4, threshold_mode = "rel" (better means below best * (1 - threshold) in
--   "min" mode) or "abs" (below best - threshold), cooldown = 0 (epochs to wait after a
--   reduction before counting bad epochs again), min_lr = 0 (a number, or one per parameter
--   group), eps = 1e-8 (changes smaller than this are skipped).
local LRScheduler = require("lunet.optim.lr_scheduler")
local settings = require("lunet.optim.settings")

local ReduceLROnPlateau = {
  name = "ReduceLROnPlateau",
  __name = "lunet.optim.ReduceLROnPlateau",
  default_options = {
    mode = "min",
    factor = 0.1,
    patience = 10,
    threshold = 1e-4,
    threshold_mode = "rel",
    cooldown = 0,
    min_lr = 0,
    eps = 1e-8,
  },
}
ReduceLROnPlateau.__index = ReduceLROnPlateau

local function check_min_lr(options, groups)
  local min_lr = options.min_lr
  if type(min_lr) == "table" then
    if #min_lr ~= groups then
      return string.format("option min_lr has %d entries but the optimizer has %d parameter groups", #min_lr, groups)
    end
    for i = 1, #min_lr do
      local message = settings.number(min_lr, i, 0)
      if message then return (message:gsub("^option " .. i, "option min_lr[" .. i .. "]")) end
    end
    return nil
  end
  return settings.number(options, "min_lr", 0)
end

local function check(options, groups)
  return settings.one_of(options, "mode", { "min", "max" }) or settings.rate(options, "factor")
    or settings.integer(options, "patience", 0) or settings.number(options, "threshold", 0)
    or settings.one_of(options, "threshold_mode", { "rel", "abs" }) or settings.integer(options, "cooldown", 0)
    or check_min_lr(options, groups) or settings.number(options, "eps", 0)
end

--- model:fit passes the monitored value (val_loss, or loss) to step().
ReduceLROnPlateau.needs_metric = true

--- Makes the scheduler; it changes nothing until the first step(metric).
function ReduceLROnPlateau.new(optimizer, options)
  LRScheduler.check_optimizer(ReduceLROnPlateau.name, optimizer)
  local merged = settings.merge(ReduceLROnPlateau.name, options, ReduceLROnPlateau.default_options)
  local message = check(merged, #optimizer.param_groups)
  if message then settings.fail(ReduceLROnPlateau.name, "%s", message) end
  local self = setmetatable({ optimizer = optimizer, options = merged, last_lr = {} }, ReduceLROnPlateau)
  self:reset()
  for i, group in ipairs(optimizer.param_groups) do self.last_lr[i] = group.lr end
  return self
end

--- Forgets the best value and the counters (not the lrs).
function ReduceLROnPlateau:reset()
  self.best = self.options.mode == "min" and math.huge or -math.huge
  self.num_bad_epochs = 0
  self.cooldown_counter = 0
  self.last_epoch = 0
end

--- True when a is better than best under the mode and threshold.
function ReduceLROnPlateau:is_better(a, best)
  local o = self.options
  if o.mode == "min" and o.threshold_mode == "rel" then return a < best * (1 - o.threshold) end
  if o.mode == "min" then return a < best - o.threshold end
  if o.threshold_mode == "rel" then return a > best * (o.threshold + 1) end
  return a > best + o.threshold
end

local function min_lr_of(self, i)
  local min_lr = self.options.min_lr
  if type(min_lr) == "table" then return min_lr[i] end
  return min_lr
end

--- Records the epoch's metric and reduces the lrs after more than patience bad epochs.
-- @param metric a number (or a one-element tensor), e.g. the validation loss
function ReduceLROnPlateau:step(metric)
  if type(metric) ~= "number" and not (type(metric) == "userdata" and metric.item) then
    settings.fail(self.name, "step: expected the metric as a number, got %s", type(metric))
  end
  local current = type(metric) == "number" and metric or metric:item()
  self.last_epoch = self.last_epoch + 1
  if self:is_better(current, self.best) then
    self.best = current
    self.num_bad_epochs = 0
  else
    self.num_bad_epochs = self.num_bad_epochs + 1
  end
  if self.cooldown_counter > 0 then
    self.cooldown_counter = self.cooldown_counter - 1
    self.num_bad_epochs = 0 -- bad epochs during the cooldown do not count
  end
  if self.num_bad_epochs > self.options.patience then
    for i, group in ipairs(self.optimizer.param_groups) do
      local old_lr = group.lr
      local new_lr = math.max(old_lr * self.options.factor, min_lr_of(self, i))
      if old_lr - new_lr > self.options.eps then group.lr = new_lr end
    end
    self.cooldown_counter = self.options.cooldown
    self.num_bad_epochs = 0
  end
  self.last_lr = {}
  for i, group in ipairs(self.optimizer.param_groups) do self.last_lr[i] = group.lr end
end

--- The lrs after the last step (the optimizer's lrs before the first), one per group.
ReduceLROnPlateau.get_last_lr = LRScheduler.get_last_lr

--- The scheduler's state as a plain table (copies).  best is +-math.huge before the first step.
function ReduceLROnPlateau:state()
  return {
    scheduler = self.name,
    best = self.best,
    num_bad_epochs = self.num_bad_epochs,
    cooldown_counter = self.cooldown_counter,
    last_epoch = self.last_epoch,
    last_lr = settings.copy(self.last_lr),
    options = settings.copy(self.options),
  }
end

--- Restores a table made by state().
function ReduceLROnPlateau:load_state(saved)
  if type(saved) ~= "table" or type(saved.best) ~= "number" or math.type(saved.num_bad_epochs) ~= "integer"
    or math.type(saved.cooldown_counter) ~= "integer" or math.type(saved.last_epoch) ~= "integer"
    or type(saved.last_lr) ~= "table" then
    settings.fail(self.name, "load_state: expected a table made by state(), got %s", type(saved))
  end
  if saved.scheduler ~= nil and saved.scheduler ~= self.name then
    settings.fail(self.name, "load_state: the state was saved by %s", tostring(saved.scheduler))
  end
  local options = settings.merge(self.name, saved.options, self.default_options, "load_state")
  local message = check(options, #self.optimizer.param_groups)
  if message then settings.fail(self.name, "load_state: %s", message) end
  self.options = options
  self.best = saved.best
  self.num_bad_epochs = saved.num_bad_epochs
  self.cooldown_counter = saved.cooldown_counter
  self.last_epoch = saved.last_epoch
  self.last_lr = settings.copy(saved.last_lr)
end

return setmetatable(ReduceLROnPlateau, {
  __call = function(_, optimizer, options) return ReduceLROnPlateau.new(optimizer, options) end,
})
