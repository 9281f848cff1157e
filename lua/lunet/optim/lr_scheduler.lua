--- The base of the epoch-based learning-rate schedulers (StepLR, CosineAnnealingLR,
-- LinearWarmup), with torch.optim.lr_scheduler._LRScheduler's behaviour (1.13):
--
-- - making a scheduler records each group's lr as its base lr and takes the first step at
--   once (last_epoch becomes 0), which may already change the lr (LinearWarmup does);
-- - each step() computes every group's new lr from its current one (the "chainable" form
--   PyTorch uses), so the values match PyTorch's to the last bit;
-- - get_last_lr() returns the lrs the last step set, one per group.
--
-- A scheduler class defines Class.check(options) -> nil or message, and
-- Class.next_lr(self, lr, base_lr) -> the group's lr at epoch self.last_epoch.
local settings = require("lunet.optim.settings")

local LRScheduler = {}

--- Makes a scheduler class; Class(optimizer, options) makes a scheduler.
-- @param name the name used in messages and in state()
-- @param default_options option name -> default (settings.required for none)
function LRScheduler.class(name, default_options)
  local class = { name = name, default_options = default_options }
  class.__index = class
  class.__name = "lunet.optim." .. name
  return setmetatable(class, {
    __index = LRScheduler,
    __call = function(cls, optimizer, options) return LRScheduler.new(cls, optimizer, options) end,
  })
end

--- Checks that optimizer looks like a lunet optimizer; shared with ReduceLROnPlateau.
function LRScheduler.check_optimizer(name, optimizer)
  if type(optimizer) ~= "table" or type(optimizer.param_groups) ~= "table" then
    settings.fail(name, "expected an optimizer (with param_groups), got %s", type(optimizer))
  end
end

function LRScheduler.new(class, optimizer, options)
  LRScheduler.check_optimizer(class.name, optimizer)
  local merged = settings.merge(class.name, options, class.default_options)
  local message = class.check(merged)
  if message then settings.fail(class.name, "%s", message) end
  local self = setmetatable({ optimizer = optimizer, options = merged, last_epoch = -1, base_lrs = {} }, class)
  for i, group in ipairs(optimizer.param_groups) do self.base_lrs[i] = group.lr end
  self:step()
  return self
end

--- Advances one epoch (or one iteration, for warmup) and sets the groups' lrs.
function LRScheduler:step()
  local groups = self.optimizer.param_groups
  if #groups ~= #self.base_lrs then
    settings.fail(self.name, "the optimizer has %d parameter groups but had %d when the scheduler was made",
      #groups, #self.base_lrs)
  end
  self.last_epoch = self.last_epoch + 1
  local lrs = {}
  for i, group in ipairs(groups) do lrs[i] = self:next_lr(group.lr, self.base_lrs[i]) end
  for i, group in ipairs(groups) do group.lr = lrs[i] end
  self.last_lr = lrs
end

--- The lrs set by the last step, one per parameter group (a new list).
function LRScheduler:get_last_lr()
  return settings.copy(self.last_lr)
end

--- The scheduler's state as a plain table (copies): {scheduler =, last_epoch =, base_lrs =,
-- last_lr =, options =}.
function LRScheduler:state()
  return {
    scheduler = self.name,
    last_epoch = self.last_epoch,
    base_lrs = settings.copy(self.base_lrs),
    last_lr = settings.copy(self.last_lr),
    options = settings.copy(self.options),
  }
end

--- Restores a table made by state().  Like PyTorch's, it restores the schedule only: the
-- optimizer's lrs come back with the optimizer's own load_state().
function LRScheduler:load_state(saved)
  if type(saved) ~= "table" or math.type(saved.last_epoch) ~= "integer" or type(saved.base_lrs) ~= "table"
    or type(saved.last_lr) ~= "table" then
    settings.fail(self.name, "load_state: expected a table made by state(), got %s", type(saved))
  end
  if saved.scheduler ~= nil and saved.scheduler ~= self.name then
    settings.fail(self.name, "load_state: the state was saved by %s", tostring(saved.scheduler))
  end
  if #saved.base_lrs ~= #self.base_lrs then
    settings.fail(self.name, "load_state: the state has %d base lrs but the optimizer has %d parameter groups",
      #saved.base_lrs, #self.base_lrs)
  end
  local options = settings.merge(self.name, saved.options, self.default_options, "load_state")
  local message = self.check(options)
  if message then settings.fail(self.name, "load_state: %s", message) end
  self.options = options
  self.last_epoch = saved.last_epoch
  self.base_lrs = settings.copy(saved.base_lrs)
  self.last_lr = settings.copy(saved.last_lr)
end

return LRScheduler
