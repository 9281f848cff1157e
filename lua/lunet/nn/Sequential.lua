--- Sequential(m1, m2, ...): applies the modules in order.  Children are named 1, 2, ... and
-- reachable as model[i]; #model is their count; model:add(m) appends one.
--
-- One rewrite keeps results and gradients exactly the same and saves time: a ReLU followed by
-- a MaxPool2d runs as the pooling then the ReLU.  ReLU is monotonic, so the maximum of the
-- ReLUs is the ReLU of the maximum and both pick the same element; the gradient reaches the
-- same element, or is zero either way when the maximum is not positive.  The ReLU then
-- touches a quarter of the elements (for 2x2 pooling).
local Module = require("lunet.nn.Module")
local ReLU = require("lunet.nn.ReLU")
local MaxPool2d = require("lunet.nn.MaxPool2d")

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
  local i, n = 1, #self
  while i <= n do
    local m = self[i]
    if i < n and getmetatable(m) == ReLU and getmetatable(self[i + 1]) == MaxPool2d then
      x = m(self[i + 1](x))
      i = i + 2
    else
      x = m(x)
      i = i + 1
    end
  end
  return x
end

return Sequential
