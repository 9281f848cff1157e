--- Sequential(m1, m2, ...): applies the modules in order.  Children are named 1, 2, ... and
-- reachable as model[i]; #model is their count; model:add(m) appends one.
--
-- One rewrite keeps results and gradients exactly the same and saves time: a ReLU followed by
-- a MaxPool2d runs as the pooling then the ReLU.  ReLU is monotonic, so the maximum of the
-- ReLUs is the ReLU of the maximum and both pick the same element; the gradient reaches the
-- same element, or is zero either way when the maximum is not positive.  The ReLU then
-- touches a quarter of the elements (for 2x2 pooling).
--
-- Activations passed between two built-in layers are released as soon as the second one has
-- run: nothing outside can reach them, and autograd holds its own references to what the
-- backward needs.  Their memory then returns to lunet's cache when the backward is done
-- rather than when Lua's collector gets to them, so a training step reuses the same blocks
-- every time and runs no collections for them.
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

-- y = m(x), releasing x when it is an activation between two built-in layers.
local function run(m, x, producer)
  local y = m(x)
  if producer and producer.holds_no_activations and m.holds_no_activations and not rawequal(x, y) then
    x:release()
  end
  return y, m
end

function Sequential:forward(x)
  local i, n, producer = 1, #self, nil
  while i <= n do
    local m = self[i]
    if i < n and getmetatable(m) == ReLU and getmetatable(self[i + 1]) == MaxPool2d then
      x, producer = run(self[i + 1], x, producer)
      x, producer = run(m, x, producer)
      i = i + 2
    else
      x, producer = run(m, x, producer)
      i = i + 1
    end
  end
  return x
end

return Sequential
