--- Dropout([p = 0.5]): in training mode zeroes each element with probability p and scales
-- the rest by 1 / (1 - p); in evaluation mode returns its input.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local Dropout = Module:extend("Dropout")

function Dropout:init(p)
  self.p = p or 0.5
  if not (self.p >= 0 and self.p <= 1) then error("Dropout: p must be in [0, 1], got " .. tostring(p), 3) end
end

function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return core.dropout(x, self.p)
end

function Dropout:extra_repr() return "p=" .. self.p end

return Dropout
