--- Flatten([{start_dim = 2, end_dim = -1}]): merges dims start_dim..end_dim, keeping the batch
-- dim by default ((N, C, H, W) -> (N, C*H*W)), as PyTorch's Flatten.
local Module = require("lunet.nn.Module")

local Flatten = Module:extend("Flatten")

function Flatten:init(opts)
  opts = opts or {}
  self.start_dim, self.end_dim = opts.start_dim or 2, opts.end_dim or -1
end

function Flatten:forward(x) return x:flatten(self.start_dim, self.end_dim) end
function Flatten:extra_repr() return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end

return Flatten
