--- The record model:fit returns: one value per epoch for each metric.
--
--     local history = model:fit(train, {epochs = 5, validation_split = 0.1})
--     print(history.loss[5], history.val_accuracy[5])
--     history:plot("curves.svg")
local plot = require("lunet.plot")

local History = {}

local methods = {}

--- An empty history.
function History.new()
  return setmetatable({ epochs = 0, metrics = {}, order = {} }, History)
end

History.__index = function(self, key)
  return methods[key] or rawget(self, "metrics")[key]
end

--- Adds one epoch's values (a table name -> number); order (a list of names) fixes the
-- column order of new metrics, others follow alphabetically.
function methods:append(logs, order)
  self.epochs = self.epochs + 1
  local names, seen = {}, {}
  for _, name in ipairs(order or {}) do
    if logs[name] ~= nil then names[#names + 1], seen[name] = name, true end
  end
  local rest = {}
  for name in pairs(logs) do
    if not seen[name] then rest[#rest + 1] = name end
  end
  table.sort(rest)
  for _, name in ipairs(rest) do names[#names + 1] = name end
  for _, name in ipairs(names) do
    if not self.metrics[name] then
      self.metrics[name] = {}
      self.order[#self.order + 1] = name
    end
    self.metrics[name][self.epochs] = logs[name]
  end
end

--- The value of name at the last epoch.
function methods:last(name)
  local series = self.metrics[name]
  return series and series[self.epochs]
end

--- The best value of name and its epoch: mode "min" (default for losses) or "max".
function methods:best(name, mode)
  local series = self.metrics[name] or {}
  mode = mode or (name:find("loss") and "min" or "max")
  local best, at
  for epoch = 1, self.epochs do
    local v = series[epoch]
    if v and (not best or (mode == "min" and v < best) or (mode == "max" and v > best)) then best, at = v, epoch end
  end
  return best, at
end

--- Writes an SVG with loss and accuracy per epoch, training against validation.
function methods:plot(path, opts)
  local series = {}
  for name, values in pairs(self.metrics) do
    if name ~= "time" then series[name] = values end
  end
  return plot.curves(series, path, opts)
end

function History.__tostring(self)
  local lines = { "epoch  " .. table.concat(self.order, "  ") }
  for epoch = 1, self.epochs do
    local row = { string.format("%5d", epoch) }
    for _, name in ipairs(self.order) do
      local v = self.metrics[name][epoch]
      row[#row + 1] = string.format("%" .. math.max(#name, 8) .. "s", v and string.format("%.4g", v) or "-")
    end
    lines[#lines + 1] = table.concat(row, "  ")
  end
  return table.concat(lines, "\n")
end

return History
