--- ModelCheckpoint(path, [{monitor = "val_loss", mode = "auto", save_best_only = false}]):
-- saves the model after each epoch (or only when the monitored value improves).  "{epoch}"
-- in path is replaced by the epoch number.  The file is written atomically.
local ModelCheckpoint = {}
ModelCheckpoint.__index = ModelCheckpoint

setmetatable(ModelCheckpoint, {
  __call = function(_, path, opts)
    assert(type(path) == "string", "ModelCheckpoint: a path is required")
    opts = opts or {}
    local monitor = opts.monitor or "val_loss"
    local mode = opts.mode or "auto"
    if mode == "auto" then mode = monitor:find("loss") and "min" or "max" end
    return setmetatable({ path = path, monitor = monitor, mode = mode, save_best_only = opts.save_best_only or false,
      saved = {} }, ModelCheckpoint)
  end,
})

function ModelCheckpoint:on_train_begin() self.best = nil end

function ModelCheckpoint:on_epoch_end(trainer, epoch, logs)
  if self.save_best_only then
    local value = logs[self.monitor]
    if value == nil then error("ModelCheckpoint: the logs have no " .. self.monitor, 0) end
    local better = self.best == nil or (self.mode == "min" and value < self.best)
      or (self.mode == "max" and value > self.best)
    if not better then return end
    self.best = value
  end
  local path = self.path:gsub("{epoch}", tostring(epoch))
  trainer.model:save(path)
  self.saved[#self.saved + 1] = path
end

return ModelCheckpoint
