--- CSVLogger(path, [{separator = ",", append = false}]): writes one row per epoch with every
-- logged value (epoch, loss, accuracy, val_loss, ..., lr, time).
local CSVLogger = {}
CSVLogger.__index = CSVLogger

setmetatable(CSVLogger, {
  __call = function(_, path, opts)
    assert(type(path) == "string", "CSVLogger: a path is required")
    opts = opts or {}
    return setmetatable({ path = path, separator = opts.separator or ",", append = opts.append or false }, CSVLogger)
  end,
})

function CSVLogger:on_train_begin()
  self.columns = nil
  local file, err = io.open(self.path, self.append and "a" or "w")
  if not file then error("CSVLogger: " .. err, 0) end
  self.file = file
end

function CSVLogger:on_epoch_end(trainer, epoch, logs)
  if not self.columns then
    self.columns = {}
    for _, name in ipairs(trainer.log_order) do
      if logs[name] ~= nil then self.columns[#self.columns + 1] = name end
    end
    self.file:write("epoch", self.separator, table.concat(self.columns, self.separator), "\n")
  end
  local row = { tostring(epoch) }
  for _, name in ipairs(self.columns) do
    local v = logs[name]
    row[#row + 1] = v == nil and "" or string.format("%.10g", v)
  end
  self.file:write(table.concat(row, self.separator), "\n")
  self.file:flush()
end

function CSVLogger:on_train_end()
  if self.file then
    self.file:close()
    self.file = nil
  end
end

return CSVLogger
