--- Feature statistics and standardisation: data.mean_std and data.normalize.
local core = require("lunet.core")
local grad_mode = require("lunet.grad_mode")

local stats = {}

-- Rows are summed in chunks of about this many elements, converted to f64 one chunk at a
-- time: f64 sums keep their precision over millions of values, and the chunks keep the f64
-- copies small (Fashion-MNIST's training images are 47 million values).
local CHUNK_ELEMENTS = 1 << 20

-- The dims that mean_std reduces: all but the channel dim of NCHW images, else the samples.
local function reduced_dims(x)
  if x:dim() == 4 then return { 1, 3, 4 } end
  return { 1 }
end

-- Sums over each chunk of x's rows of f(chunk in f64), reduced over dims and kept for
-- broadcasting.
local function chunked_sum(x, dims, f)
  local n = x:size(1)
  local rows = math.max(1, CHUNK_ELEMENTS // math.max(1, x:numel() // n))
  local total
  for first = 1, n, rows do
    local part = f(x:narrow(1, first, math.min(rows, n - first + 1)):to("f64"))
    for _, d in ipairs(dims) do part = part:sum(d, true) end
    total = total and total + part or part
  end
  return total
end

local function compute(x)
  local dims = reduced_dims(x)
  local count = 1
  for _, d in ipairs(dims) do count = count * x:size(d) end
  local mean = chunked_sum(x, dims, function(chunk) return chunk end) / count
  local variance = chunked_sum(x, dims, function(chunk)
    local deviation = chunk - mean
    return deviation * deviation
  end) / count
  local std = variance:sqrt()
  -- A constant feature (an always-black border pixel) has std 0; dividing by 1 instead
  -- leaves it at 0 rather than turning it into NaN, as scikit-learn's StandardScaler does.
  std = std + std:eq(0):to("f64")
  local dtype = (x.dtype == "f64" or x.dtype == "f32") and x.dtype or "f32"
  return mean:to(dtype), std:to(dtype)
end

--- The mean and standard deviation of x's features, shaped to broadcast against x.
-- For a 4-d (N, C, H, W) tensor the statistics are per channel, over N, H and W, shaped
-- (1, C, 1, 1); otherwise they are over the samples (dim 1), shaped (1, ...): per column
-- for a 2-d (N, F) tensor.  The std is the population one (divided by the count, so
-- normalize gives exactly unit variance), and a std of 0 is reported as 1.  Computed in
-- f64; returned in x's float dtype (f32 for integer x).
-- @return mean, std
function stats.mean_std(x)
  if not core.is_tensor(x) then error("mean_std: expected a tensor, got " .. type(x), 2) end
  if x:dim() == 0 or x:size(1) == 0 then
    error("mean_std: x needs at least one sample (a first dim of size >= 1)", 2)
  end
  return grad_mode.run(false, compute, x)
end

--- (x - mean) / std, broadcasting mean and std (as mean_std returns them) against x.
function stats.normalize(x, mean, std)
  if not (core.is_tensor(x) and core.is_tensor(mean) and core.is_tensor(std)) then
    error("normalize: expected tensors x, mean and std", 2)
  end
  return (x - mean) / std
end

return stats
