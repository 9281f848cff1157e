--- Identity(): returns its input (a placeholder, e.g. for a removed layer).
local Module = require("lunet.nn.Module")

local Identity = Module:extend("Identity")

function Identity:forward(x) return x end

return Identity
