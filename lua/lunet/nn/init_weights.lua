--- Weight initialisation (nn.init), with PyTorch's formulas and defaults.
-- Each function fills the tensor in place, without recording autograd, draws from lunet's
-- default generator (so lunet.manual_seed makes it reproducible) and returns the tensor.
local lunet_core = require("lunet.core")
local grad_mode = require("lunet.grad_mode")

local init = {}

local function fill_with(t, values)
  grad_mode.run(false, function() t:copy(values) end)
  return t
end

--- fan_in and fan_out of a weight: (out, in) for linear layers, (out, in, kh, kw) for
-- convolutions (the receptive field multiplies both).
function init.fans(t)
  local shape = t:shape()
  if #shape < 2 then error("init: fan in and fan out need a tensor with at least 2 dims", 2) end
  local field = 1
  for i = 3, #shape do field = field * shape[i] end
  return shape[2] * field, shape[1] * field
end

--- The gain PyTorch recommends for a nonlinearity ("relu", "leaky_relu" with param slope,
-- "tanh", "sigmoid", "linear", "conv2d", "selu").
function init.calculate_gain(nonlinearity, param)
  nonlinearity = nonlinearity or "leaky_relu"
  if nonlinearity == "linear" or nonlinearity == "sigmoid" or nonlinearity:match("^conv") then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "leaky_relu" then
    local slope = param or 0.01
    return math.sqrt(2 / (1 + slope * slope))
  end
  if nonlinearity == "selu" then return 3 / 4 end
  error("init: unknown nonlinearity " .. tostring(nonlinearity), 2)
end

--- Uniform in [a, b) (defaults 0, 1).
function init.uniform(t, a, b)
  a, b = a or 0, b or 1
  return fill_with(t, lunet_core.rand(t:shape(), t.dtype) * (b - a) + a)
end

--- Normal with mean and std (defaults 0, 1).
function init.normal(t, mean, std)
  mean, std = mean or 0, std or 1
  return fill_with(t, lunet_core.randn(t:shape(), t.dtype) * std + mean)
end

function init.constant(t, value) return fill_with(t, value) end
function init.zeros(t) return fill_with(t, 0) end
function init.ones(t) return fill_with(t, 1) end

local function kaiming_std(t, opts)
  opts = opts or {}
  local fan_in, fan_out = init.fans(t)
  local fan = (opts.mode or "fan_in") == "fan_in" and fan_in or fan_out
  return init.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0) / math.sqrt(fan)
end

--- He initialisation: uniform with bound gain * sqrt(3 / fan). opts: a (the leaky slope, 0),
-- mode ("fan_in" or "fan_out"), nonlinearity ("leaky_relu").
function init.kaiming_uniform(t, opts)
  local bound = math.sqrt(3) * kaiming_std(t, opts)
  return init.uniform(t, -bound, bound)
end

--- He initialisation: normal with std gain / sqrt(fan).
function init.kaiming_normal(t, opts) return init.normal(t, 0, kaiming_std(t, opts)) end

--- Glorot initialisation: uniform with bound gain * sqrt(6 / (fan_in + fan_out)).
function init.xavier_uniform(t, gain)
  local fan_in, fan_out = init.fans(t)
  local bound = (gain or 1) * math.sqrt(6 / (fan_in + fan_out))
  return init.uniform(t, -bound, bound)
end

--- Glorot initialisation: normal with std gain * sqrt(2 / (fan_in + fan_out)).
function init.xavier_normal(t, gain)
  local fan_in, fan_out = init.fans(t)
  return init.normal(t, 0, (gain or 1) * math.sqrt(2 / (fan_in + fan_out)))
end

--- What PyTorch's Linear and Conv2d do by default: weights kaiming_uniform with a = sqrt(5)
-- (a bound of 1 / sqrt(fan_in)) and the bias uniform in +-1 / sqrt(fan_in).
function init.default_layer(weight, bias)
  init.kaiming_uniform(weight, { a = math.sqrt(5) })
  if bias then
    local fan_in = init.fans(weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform(bias, -bound, bound)
  end
end

return init
