--- Sequential(m1, m2, ...): applies the modules in order.  Children are named 1, 2, ... and
-- reachable as model[i]; #model is their count; model:add(m) appends one.
local Module = require("lunet.nn.Module")

local Sequential = Module:extend("Sequential")

function Sequential:init(...)
  for i, m in ipairs({ ... }) do self:add(m, i) end
end

--- Appends m; returns self.
function Sequential:add(m, index)
  index = index or #self + 1
  if not Module.is_module(m) then error("Sequential: argument " .. index .. " is not a module", 3) end
  self:add_module(index, m)
  return self
end

function Sequential:forward(x)
  for i = 1, #self do x = self[i](x) end
  return x
end

return Sequential
