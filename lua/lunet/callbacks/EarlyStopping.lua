--- EarlyStopping{monitor = "val_loss", patience = 0, min_delta = 0, mode = "auto",
-- restore_best_weights = false}: stops fit once the monitored value has gone patience epochs
-- (at least one) without improving by more than min_delta, as Keras's EarlyStopping does.
-- mode "auto" minimises losses and maximises the rest.
local grad_mode = require("lunet.grad_mode")

local EarlyStopping = {}
EarlyStopping.__index = EarlyStopping

setmetatable(EarlyStopping, {
  __call = function(_, opts)
    opts = opts or {}
    local monitor = opts.monitor or "val_loss"
    local mode = opts.mode or "auto"
    if mode == "auto" then mode = monitor:find("loss") and "min" or "max" end
    assert(mode == "min" or mode == "max", "EarlyStopping: mode must be \"min\", \"max\" or \"auto\"")
    return setmetatable({ monitor = monitor, patience = opts.patience or 0, min_delta = math.abs(opts.min_delta or 0),
      mode = mode, restore_best_weights = opts.restore_best_weights or false }, EarlyStopping)
  end,
})

function EarlyStopping:on_train_begin()
  self.best, self.wait, self.best_weights, self.stopped_epoch = nil, 0, nil, nil
end

local function improved(self, value)
  if self.best == nil then return true end
  if self.mode == "min" then return value < self.best - self.min_delta end
  return value > self.best + self.min_delta
end

function EarlyStopping:on_epoch_end(trainer, epoch, logs)
  local value = logs[self.monitor]
  if value == nil then
    error("EarlyStopping: the logs have no " .. self.monitor .. " (give fit validation data to monitor val_*)", 0)
  end
  if improved(self, value) then
    self.best, self.wait = value, 0
    if self.restore_best_weights then
      self.best_weights = {}
      for name, t in pairs(trainer.model:state_dict()) do self.best_weights[name] = t:clone() end
    end
    return
  end
  self.wait = self.wait + 1
  if self.wait >= math.max(self.patience, 1) then
    self.stopped_epoch = epoch
    trainer.stop_training = true
    if self.restore_best_weights and self.best_weights then
      grad_mode.run(false, function() trainer.model:load_state_dict(self.best_weights) end)
    end
  end
end

return EarlyStopping
