--- A dataset held in tensors: sample i is row i of x (and of y).
--
--     local ds = data.TensorDataset(x, y)      -- x (N, ...), y (N, ...) or nil
--     #ds, ds:size()                           -- N
--     local xi, yi = ds:get(i)                 -- x[i], y[i]
--     local xb, yb = ds:batch(indices)         -- rows at 1-based i64 indices (a copy)
--     local xb, yb = ds:batch(first, count)    -- a contiguous range (views, no copy)
--
-- A DataLoader needs only size() and the two forms of batch(), so any table offering them
-- can stand in for a TensorDataset.
local core = require("lunet.core")
local stats = require("lunet.data.stats")

local TensorDataset = {}
TensorDataset.__index = TensorDataset

local function shape_text(t) return "[" .. table.concat(t:shape(), ",") .. "]" end

local function new(x, y, classes)
  if not core.is_tensor(x) then error("TensorDataset: x must be a tensor, got " .. type(x), 3) end
  if x:dim() == 0 then error("TensorDataset: x must have a samples dim, got a 0-d tensor", 3) end
  if y ~= nil then
    if not core.is_tensor(y) then error("TensorDataset: y must be a tensor or nil, got " .. type(y), 3) end
    if y:dim() == 0 or y:size(1) ~= x:size(1) then
      error(string.format("TensorDataset: x %s and y %s differ in their first (samples) dim",
        shape_text(x), shape_text(y)), 3)
    end
  end
  return setmetatable({ x = x, y = y, classes = classes }, TensorDataset)
end

-- A dataset made from rows of this one; it keeps the class names.
local function derive(self, x, y) return new(x, y, self.classes) end

setmetatable(TensorDataset, {
  --- Creates a dataset from inputs x (N, ...) and optional targets y (N, ...).
  -- @param x tensor whose first dim counts the samples
  -- @param[opt] y tensor with the same first dim
  -- @return a TensorDataset with fields x, y (and classes, which loaders may set)
  __call = function(_, x, y) return new(x, y) end,
})

--- The number of samples.
function TensorDataset:size() return self.x:size(1) end

TensorDataset.__len = TensorDataset.size

function TensorDataset:__tostring()
  local text = string.format("TensorDataset(%d samples, x %s %s", self:size(), self.x.dtype, shape_text(self.x))
  if self.y then text = text .. string.format(", y %s %s", self.y.dtype, shape_text(self.y)) end
  return text .. ")"
end

--- Sample i: x[i] and y[i] (views of rows, or numbers for 1-d tensors).
-- @param i 1-based index (negative counts from the end)
function TensorDataset:get(i)
  if self.y then return self.x[i], self.y[i] end
  return self.x[i]
end

-- Indices as an i64 tensor (a Lua list is accepted for convenience).
local function index_tensor(indices)
  if type(indices) == "table" then return core.tensor(indices, "i64") end
  return indices
end

--- A batch of samples: batch(indices) gathers the rows at 1-based positions (an integer
-- tensor or a list) into new tensors; batch(first, count) returns the rows first ..
-- first+count-1 as views that share storage with the dataset.
-- @return xb, yb (yb is nil when the dataset has no y)
function TensorDataset:batch(first, count)
  if type(first) == "number" then
    if type(count) ~= "number" then error("batch: expected batch(indices) or batch(first, count)", 2) end
    return self.x:narrow(1, first, count), self.y and self.y:narrow(1, first, count)
  end
  local indices = index_tensor(first)
  if not core.is_tensor(indices) then
    error("batch: expected an index tensor, a list of indices, or (first, count); got " .. type(first), 2)
  end
  return self.x:index_select(1, indices), self.y and self.y:index_select(1, indices)
end

--- A smaller dataset: subset(first, count) is a contiguous range sharing storage with this
-- one; subset(indices) copies the rows at the given 1-based positions.
function TensorDataset:subset(first, count)
  if type(first) == "number" and type(count) ~= "number" then
    error("subset: expected subset(first, count) or subset(indices)", 2)
  end
  return derive(self, self:batch(first, count))
end

--- Splits the samples at random into two datasets.  The first gets round(N * fraction)
-- samples (halves round up), the second the rest; both are copies in a random order.
-- @param fraction the share of the first part, in [0, 1]
-- @param[opt] seed an integer: the same seed gives the same split; without one the
--   permutation is drawn from the default generator (so lunet.manual_seed fixes it)
-- @return first, second
function TensorDataset:split(fraction, seed)
  if type(fraction) ~= "number" or fraction < 0 or fraction > 1 then
    error("split: fraction must be a number in [0, 1], got " .. tostring(fraction), 2)
  end
  if seed ~= nil and math.type(seed) ~= "integer" then
    error("split: seed must be an integer, got " .. tostring(seed), 2)
  end
  local n = self:size()
  local first = math.floor(n * fraction + 0.5)
  local order = seed and core.Generator(seed):randperm(n) or core.randperm(n)
  return self:subset(order:narrow(1, 1, first)), self:subset(order:narrow(1, first + 1, n - first))
end

--- A dataset whose x is (x - mean) / std, sharing y.  Without arguments the statistics come
-- from this dataset's x (see data.mean_std) and are returned too, for the test set.
-- @return dataset, mean, std
function TensorDataset:normalize(mean, std)
  if mean == nil and std == nil then mean, std = stats.mean_std(self.x) end
  return derive(self, stats.normalize(self.x, mean, std), self.y), mean, std
end

return TensorDataset
