--- Running a function with autograd recording switched on or off.
local core = require("lunet.core")

local grad_mode = {}

--- Calls fn(...) with grad mode set to enabled and returns its results; the previous mode is
-- restored even when fn raises (the error is re-raised unchanged).
function grad_mode.run(enabled, fn, ...)
  local was = core.is_grad_enabled()
  core.set_grad_enabled(enabled)
  local results = table.pack(pcall(fn, ...))
  core.set_grad_enabled(was)
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

return grad_mode
