--- Linear(in_features, out_features, [{bias = true}]): y = x W^T + b.
-- weight is (out_features, in_features) and bias (out_features), as in PyTorch.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")
local init = require("lunet.nn.init_weights")

local Linear = Module:extend("Linear")

function Linear:init(in_features, out_features, opts)
  opts = opts or {}
  assert(math.type(in_features) == "integer" and in_features > 0, "Linear: in_features must be a positive integer")
  assert(math.type(out_features) == "integer" and out_features > 0, "Linear: out_features must be a positive integer")
  self.in_features, self.out_features = in_features, out_features
  local dtype = opts.dtype or "f32"
  self:register_parameter("weight", core.empty({ out_features, in_features }, dtype))
  if opts.bias ~= false then self:register_parameter("bias", core.empty({ out_features }, dtype)) end
  init.default_layer(self.weight, self.bias)
end

function Linear:forward(x) return core.linear(x, self.weight, self.bias) end

function Linear:extra_repr()
  return string.format("%d, %d%s", self.in_features, self.out_features, self.bias and "" or ", bias=false")
end

return Linear
