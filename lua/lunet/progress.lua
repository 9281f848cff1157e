--- Progress output for model:fit: a live bar with ETA on a terminal, plain lines elsewhere.
--
--     Epoch 2/10
--     412/844 [==============>...............] - ETA: 3s - loss: 0.4211 - accuracy: 0.8490
--
-- The bar redraws at most ten times a second, so it costs nothing next to a training step.
local core = require("lunet.core")

local progress = {}
progress.__index = progress

local BAR_WIDTH = 30
local REDRAW_SECONDS = 0.1

local function format_duration(seconds)
  if seconds < 1 then return string.format("%dms", math.floor(seconds * 1000 + 0.5)) end
  local s = math.floor(seconds + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  if s >= 60 then return string.format("%d:%02d", s // 60, s % 60) end
  return string.format("%ds", s)
end
progress.format_duration = format_duration

--- "loss: 0.4211 - accuracy: 0.8490" for the names in order that logs holds.
function progress.format_logs(logs, order, separator)
  local parts = {}
  for _, name in ipairs(order) do
    local v = logs[name]
    if v ~= nil then
      parts[#parts + 1] = string.format(math.abs(v) < 1e-3 and v ~= 0 and "%s: %.3e" or "%s: %.4f", name, v)
    end
  end
  return table.concat(parts, separator or " - ")
end

--- A progress display for one fit: verbose 0 (silent), 1 (a bar on a terminal, else one line
-- per epoch) or 2 (one line per epoch); out is the stream (io.stdout).
function progress.new(verbose, epochs, out)
  out = out or io.stdout
  return setmetatable({
    verbose = verbose, epochs = epochs, out = out,
    live = verbose == 1 and core.isatty(out),
  }, progress)
end

function progress:epoch_begin(epoch, steps)
  self.epoch, self.steps, self.started, self.last_draw = epoch, steps, core.clock(), -math.huge
  if self.live then self.out:write(string.format("Epoch %d/%d\n", epoch, self.epochs)) end
end

--- Called after each batch with the running averages.
function progress:step(step, logs, order)
  if not self.live then return end
  local now = core.clock()
  if now - self.last_draw < REDRAW_SECONDS and step < self.steps then return end
  self.last_draw = now
  local filled = math.floor(BAR_WIDTH * step / self.steps)
  local bar = string.rep("=", math.max(filled - 1, 0)) .. (filled > 0 and (step < self.steps and ">" or "=") or "")
  bar = bar .. string.rep(".", BAR_WIDTH - #bar)
  local elapsed = now - self.started
  local eta = step > 0 and elapsed / step * (self.steps - step) or 0
  local width = #tostring(self.steps)
  self.out:write(string.format("\r%" .. width .. "d/%d [%s] - ETA: %s - %s\027[K", step, self.steps, bar,
    format_duration(eta), progress.format_logs(logs, order)))
  self.out:flush()
end

--- Called at the end of an epoch with its logs (validation included).
function progress:epoch_end(logs, order)
  if self.verbose == 0 then return end
  local elapsed = core.clock() - self.started
  local summary = progress.format_logs(logs, order)
  if self.live then
    local width = #tostring(self.steps)
    self.out:write(string.format("\r%" .. width .. "d/%d [%s] - %s %s/step - %s\027[K\n", self.steps, self.steps,
      string.rep("=", BAR_WIDTH), format_duration(elapsed), format_duration(elapsed / math.max(self.steps, 1)),
      summary))
  else
    self.out:write(string.format("epoch %d/%d - %s - %s\n", self.epoch, self.epochs, format_duration(elapsed), summary))
  end
  self.out:flush()
end

return progress
