--- GELU([{approximate = "none"}]): x * Phi(x), or PyTorch's tanh approximation with
-- approximate = "tanh".
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local GELU = Module:extend("GELU")

function GELU:init(opts) self.approximate = (opts or {}).approximate or "none" end
function GELU:forward(x) return core.gelu(x, self.approximate) end
function GELU:extra_repr() return self.approximate == "none" and "" or "approximate=" .. self.approximate end

return GELU
