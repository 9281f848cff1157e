--- LogSoftmax([dim = -1]): log(softmax(x)) along dim, computed stably.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local LogSoftmax = Module:extend("LogSoftmax")

function LogSoftmax:init(dim) self.dim = dim or -1 end
function LogSoftmax:forward(x) return core.log_softmax(x, self.dim) end
function LogSoftmax:extra_repr() return "dim=" .. self.dim end

return LogSoftmax
