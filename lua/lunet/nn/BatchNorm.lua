--- The shared part of BatchNorm1d and BatchNorm2d, with options
-- {eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true}.
-- Training normalises with the batch's statistics and updates running_mean and running_var;
-- evaluation uses the running ones.
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local BatchNorm = Module:extend("BatchNorm")

function BatchNorm:init(num_features, opts)
  opts = opts or {}
  self.num_features = num_features
  self.eps = opts.eps or 1e-5
  self.momentum = opts.momentum or 0.1
  self.affine = opts.affine ~= false
  self.track_running_stats = opts.track_running_stats ~= false
  local dtype = opts.dtype or "f32"
  if self.affine then
    self:register_parameter("weight", core.ones({ num_features }, dtype))
    self:register_parameter("bias", core.zeros({ num_features }, dtype))
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", core.zeros({ num_features }, dtype))
    self:register_buffer("running_var", core.ones({ num_features }, dtype))
    self:register_buffer("num_batches_tracked", core.zeros({}, "i64"))
  end
end

function BatchNorm:forward(x)
  if not self.accepted_dims[x:dim()] then
    error(string.format("%s: expected a %s input, got a %d-d tensor", self.__name, self.accepted_text, x:dim()), 2)
  end
  if self.training and self.track_running_stats then
    self.num_batches_tracked:fill(self.num_batches_tracked:item() + 1)
  end
  return core.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
    self.training or not self.track_running_stats, self.momentum, self.eps)
end

function BatchNorm:extra_repr()
  return string.format("%d, eps=%g, momentum=%g%s", self.num_features, self.eps, self.momentum,
    self.affine and "" or ", affine=false")
end

return BatchNorm
