--- lunet.quantize: post-training int8 quantization of a trained model (lunet.h, "int8").
--
--   local q = lunet.quantize(model, {calibration = train:subset(1, 512)})  -- static int8
--   local d = lunet.quantize(model, {mode = "dynamic"})                    -- int8 weights only
--
-- Static mode turns each Linear and Conv2d (with a BatchNorm after it folded in, and a ReLU
-- after it fused) into QuantizedLinear / QuantizedConv2d: s8 weights with one scale per output
-- channel, i32 biases, and u8 activations whose scale and zero point come from running the
-- float model on the calibration data.  MaxPool2d and Flatten between them stay in u8; any
-- other layer runs in f32 between a Dequantize and a Quantize.  Dynamic mode turns each
-- Linear into DynamicQuantizedLinear, which quantizes its input row by row as it arrives; it
-- needs no calibration.  The result is an nn.Sequential that predicts, evaluates, saves and
-- loads like any model, and compiles to the C model graph; its `quantization` table records
-- the options used and the f32 model's tensor bytes (saved as "lunet.quant", shown by `lunet info`).
--
-- Options:
--   mode          "static" (default) or "dynamic"
--   calibration   static mode: a dataset, an {x, y} pair or a tensor of inputs (a few hundred
--                 samples of the training data are plenty)
--   method        "minmax" (default): each activation's range is the least and greatest value
--                 seen; "percentile": the `percentile` and 100 - `percentile` percentiles of
--                 its values (clips rare outliers, finer steps for the rest).  An output that
--                 leaves the int8 layers (the logits) always keeps its full range.
--   percentile    99.99
--   weight_bits   7 (default) or 8.  7-bit weights ([-63, 63]) run on the fast AVX2 kernel on
--                 every x86-64 CPU; 8-bit weights are twice as fine but, on CPUs without AVX-512
--                 VNNI, run on the plain C kernel (lunet.h, "int8")
--   keep_first, keep_last   leave the first / last Linear or Conv2d in f32
--   batch_size    calibration batch size (256)
local core = require("lunet.core")
local nn = require("lunet.nn")
local architecture = require("lunet.architecture")
local train = require("lunet.train")
local qparams = require("lunet.nn.qparams")
local model_file = require("lunet.model_file")

local quantize = {}

local OPTIONS = { mode = true, calibration = true, method = true, percentile = true, weight_bits = true,
  keep_first = true, keep_last = true, batch_size = true }

-- The model's layers in the order they run: Sequentials flattened, Dropout and Identity dropped.
local function leaves(model, out)
  local class = getmetatable(model)
  if class == nn.Sequential then
    for i = 1, #model do leaves(model[i], out) end
  elseif class ~= nn.Dropout and class ~= nn.Identity then
    out[#out + 1] = model
  end
  return out
end

local function folds(layer, bn)
  local lc, bc = getmetatable(layer), getmetatable(bn)
  return bn.track_running_stats
    and ((lc == nn.Linear and bc == nn.BatchNorm1d) or (lc == nn.Conv2d and bc == nn.BatchNorm2d))
end

-- The layers grouped into units: a Linear or Conv2d with the BatchNorm after it and the ReLU
-- after that ("linear", "conv2d"); MaxPool2d and Flatten ("pass": they work on u8 as well);
-- any other layer ("float").
local function units_of(layers)
  local units, i = {}, 1
  while i <= #layers do
    local m = layers[i]
    local class = getmetatable(m)
    local u = { modules = { m }, layer = m }
    if class == nn.Linear or class == nn.Conv2d then
      u.kind = class == nn.Linear and "linear" or "conv2d"
      if layers[i + 1] and folds(m, layers[i + 1]) then
        u.bn = layers[i + 1]
        u.modules[#u.modules + 1] = u.bn
        i = i + 1
      end
      if layers[i + 1] and getmetatable(layers[i + 1]) == nn.ReLU then
        u.relu = true
        u.modules[#u.modules + 1] = layers[i + 1]
        i = i + 1
      end
    elseif class == nn.MaxPool2d or class == nn.Flatten then
      u.kind = "pass"
    else
      u.kind = "float"
    end
    units[#units + 1] = u
    i = i + 1
  end
  return units
end

-- The unit's weight and bias in f32 with its BatchNorm folded in (computed in f64).
local function folded_weights(u)
  local w = u.layer.weight:detach():to("f64")
  local b = u.layer.bias and u.layer.bias:detach():to("f64")
  if u.bn then
    local bn = u.bn
    local std = (bn.running_var:detach():to("f64") + bn.eps):sqrt()
    local scale = bn.weight and bn.weight:detach():to("f64") / std or core.ones_like(std) / std
    local shape = { w:size(1) }
    for _ = 2, w:dim() do shape[#shape + 1] = 1 end
    w = w * scale:reshape(shape)
    b = ((b or core.zeros_like(scale)) - bn.running_mean:detach():to("f64")) * scale
    if bn.bias then b = b + bn.bias:detach():to("f64") end
  end
  return w:to("f32"), b and b:to("f32")
end

-- A fresh copy of a built-in layer with its weights (the quantized model shares nothing with
-- the float one).
local function copy_module(m)
  local c = architecture.build(architecture.describe(m))
  c:load_state_dict(m:state_dict())
  return c
end

---------------------------------------------------------------------------------------------
-- Calibration: the range of every unit's output (and of the input) on the calibration data

local function inputs_of(calibration)
  if core.is_tensor(calibration) then return calibration end
  if type(calibration) == "table" and core.is_tensor(calibration.x) then return calibration.x end
  if type(calibration) == "table" and core.is_tensor(calibration[1]) then return calibration[1] end
  error("quantize: calibration must be a dataset, an {x, y} pair or a tensor of inputs", 3)
end

local SAMPLES_PER_BATCH = 4096

local function observer(method)
  return { lo = math.huge, hi = -math.huge, values = method == "percentile" and {} or nil }
end

local function next_prime(n)
  local function prime(p)
    if p < 2 then return false end
    for d = 2, math.floor(math.sqrt(p)) do
      if p % d == 0 then return false end
    end
    return true
  end
  while not prime(n) do n = n + 1 end
  return n
end

local function observe(o, t)
  o.lo = math.min(o.lo, t:min():item())
  o.hi = math.max(o.hi, t:max():item())
  if o.values then -- evenly spaced elements, enough to place the percentiles
    local flat = t:reshape({ t:numel() })
    -- a prime step, so that the picks do not keep landing on the same channels or pixels
    local step = next_prime(math.max(1, t:numel() // SAMPLES_PER_BATCH))
    local picked = flat:index_select(1, core.arange(1, t:numel() + 1, step, "i64")):totable()
    table.move(picked, 1, #picked, #o.values + 1, o.values)
  end
end

-- The observer's range: min-max, or the percentiles of what it sampled.
local function range_of(o, percentile)
  if not o.values or #o.values == 0 then return o.lo, o.hi end
  local v = o.values
  table.sort(v)
  local function at(p) return v[math.max(1, math.min(#v, math.floor(p / 100 * (#v - 1) + 0.5) + 1))] end
  return at(100 - percentile), at(percentile)
end

local function calibrate(model, units, x, opts)
  local observers = {}
  for k = 0, #units do observers[k] = observer(opts.method) end
  train.evaluating(model, function()
    local n = x:size(1)
    for first = 1, n, opts.batch_size do
      local act = x:narrow(1, first, math.min(opts.batch_size, n - first + 1))
      observe(observers[0], act)
      for k, u in ipairs(units) do
        for _, m in ipairs(u.modules) do act = m(act) end
        observe(observers[k], act)
      end
    end
  end)
  -- params[k]: the parameters of unit k's output (0: the input); minmax[k]: the same from the
  -- full range, for outputs that leave the int8 layers (clipping the logits would tie them).
  local params, minmax = {}, {}
  for k = 0, #units do
    local o = observers[k]
    params[k] = { core.qparams_for_range(range_of(o, opts.percentile)) }
    minmax[k] = { core.qparams_for_range(o.lo, o.hi) }
  end
  return params, minmax
end

---------------------------------------------------------------------------------------------
-- Building the quantized model

local function quantized_layer(u, bits, input, output)
  local w, b = folded_weights(u)
  local qw, scale = core.quantize_weight(w, bits)
  local m
  if u.kind == "linear" then
    m = nn.QuantizedLinear(w:size(2), w:size(1), { bias = b ~= nil, relu = u.relu })
  else
    local c = u.layer
    m = nn.QuantizedConv2d(c.in_channels, c.out_channels, c.kernel_size, { stride = c.stride, padding = c.padding,
      dilation = c.dilation, bias = b ~= nil, relu = u.relu })
  end
  m.weight:copy(qw)
  m.weight_scale:copy(scale)
  qparams.set(m, "input_", input[1], input[2])
  qparams.set(m, "output_", output[1], output[2])
  local in_scale = qparams.get(m, "input_") -- as stored (f32)
  if b then m.bias:copy(core.quantize_bias(b, in_scale, m.weight_scale)) end
  return m
end

local function dynamic_layer(u, bits)
  local w, b = folded_weights(u)
  local qw, scale = core.quantize_weight(w, bits)
  local m = nn.DynamicQuantizedLinear(w:size(2), w:size(1), { bias = b ~= nil, relu = u.relu })
  m.weight:copy(qw)
  m.weight_scale:copy(scale)
  if b then m.bias:copy(b) end
  return m
end

-- The indices of the units that become int8 layers.
local function chosen(units, opts)
  local candidates = {}
  for k, u in ipairs(units) do
    local ok = u.kind == "linear" or (u.kind == "conv2d" and opts.mode == "static" and u.layer.groups == 1)
    if ok then candidates[#candidates + 1] = k end
  end
  local first, last = candidates[1], candidates[#candidates]
  local set = {}
  for _, k in ipairs(candidates) do
    if not ((opts.keep_first and k == first) or (opts.keep_last and k == last)) then set[k] = true end
  end
  return set
end

-- True when unit k's output leaves the int8 layers (through pass units) for f32 ones or the end.
local function leaves_int8(units, set, k)
  for j = k + 1, #units do
    if set[j] then return false end
    if units[j].kind ~= "pass" then return true end
  end
  return true
end

local function build(units, params, minmax, opts)
  local out, u8 = {}, nil -- u8: the parameters of the current u8 activation, nil in f32
  local set = chosen(units, opts)
  local function add(m) out[#out + 1] = m end
  for k, u in ipairs(units) do
    if set[k] and opts.mode == "dynamic" then
      add(dynamic_layer(u, opts.weight_bits))
    elseif set[k] then
      if not u8 then
        u8 = params[k - 1]
        add(nn.Quantize(u8[1], u8[2]))
      end
      local output = leaves_int8(units, set, k) and minmax[k] or params[k]
      add(quantized_layer(u, opts.weight_bits, u8, output))
      u8 = output
    elseif u.kind == "pass" and u8 then
      add(copy_module(u.layer))
    else
      if u8 then
        add(nn.Dequantize(u8[1], u8[2]))
        u8 = nil
      end
      for _, m in ipairs(u.modules) do add(copy_module(m)) end
    end
  end
  if u8 then add(nn.Dequantize(u8[1], u8[2])) end
  return nn.Sequential(table.unpack(out))
end

--- The int8 version of a trained model (see the top of this file for the options).
function quantize.quantize(model, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then error(string.format("quantize: unknown option %q", tostring(k)), 2) end
  end
  opts = { mode = opts.mode or "static", calibration = opts.calibration, method = opts.method or "minmax",
    percentile = opts.percentile or 99.99, weight_bits = opts.weight_bits or 7, keep_first = opts.keep_first,
    keep_last = opts.keep_last, batch_size = opts.batch_size or 256 }
  if opts.mode ~= "static" and opts.mode ~= "dynamic" then
    error("quantize: mode must be \"static\" or \"dynamic\"", 2)
  end
  if opts.method ~= "minmax" and opts.method ~= "percentile" then
    error("quantize: method must be \"minmax\" or \"percentile\"", 2)
  end
  if not (opts.percentile > 50 and opts.percentile <= 100) then
    error("quantize: percentile must be in (50, 100]", 2)
  end
  if opts.weight_bits ~= 7 and opts.weight_bits ~= 8 then error("quantize: weight_bits must be 7 or 8", 2) end
  local units = units_of(leaves(model, {}))
  local params, minmax
  if opts.mode == "static" then
    if opts.calibration == nil then
      error("quantize: static quantization needs calibration data ({calibration = dataset}); "
        .. "or ask for {mode = \"dynamic\"}", 2)
    end
    local x = inputs_of(opts.calibration)
    params, minmax = calibrate(model, units, x, opts)
    opts.calibration_samples = x:size(1)
  end
  local q = build(units, params, minmax, opts):eval()
  q.input_shape, q.class_names = model.input_shape, model.class_names
  q.quantization = { mode = opts.mode, weight_bits = opts.weight_bits,
    calibration = opts.mode == "static" and opts.method or nil,
    percentile = opts.mode == "static" and opts.method == "percentile" and opts.percentile or nil,
    calibration_samples = opts.calibration_samples,
    -- saved with q, so that `lunet info` can compare the int8 file with the f32 one it came from
    fp32_tensor_bytes = model_file.tensor_bytes(model) }
  return q
end

return quantize
