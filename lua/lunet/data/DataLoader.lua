--- Batches of a dataset, in order or shuffled anew every epoch.
--
--     local loader = data.DataLoader(ds, {batch_size = 64, shuffle = true, seed = 1})
--     for xb, yb, i in loader:batches() do ... end     -- #loader batches per epoch
--
-- Shuffling draws from the loader's own lunet.Generator, so iterating never moves the
-- default generator that weight initialisation and dropout use: a run's weights do not
-- depend on how many epochs a loader went through.
local core = require("lunet.core")

local DataLoader = {}
DataLoader.__index = DataLoader

local function option(options, name, kind, default)
  local value = options[name]
  if value == nil then return default end
  if (kind == "integer" and math.type(value) ~= "integer") or (kind ~= "integer" and type(value) ~= kind) then
    error(string.format("DataLoader: %s must be %s %s, got %s", name, kind == "integer" and "an" or "a", kind,
      tostring(value)), 4)
  end
  return value
end

-- A seed for the loader's generator, drawn once from the default generator.
local function draw_seed()
  return math.floor(core.rand({ 1 }, "f64"):item() * 2 ^ 53)
end

local function new(dataset, options)
  if type(dataset) ~= "table" or type(dataset.size) ~= "function" or type(dataset.batch) ~= "function" then
    error("DataLoader: dataset must offer size() and batch() (a TensorDataset, say), got " .. type(dataset), 3)
  end
  options = options or {}
  if type(options) ~= "table" then error("DataLoader: options must be a table, got " .. type(options), 3) end
  local self = setmetatable({
    dataset = dataset,
    batch_size = option(options, "batch_size", "integer", 64),
    shuffle = option(options, "shuffle", "boolean", false),
    drop_last = option(options, "drop_last", "boolean", false),
  }, DataLoader)
  if self.batch_size < 1 then error("DataLoader: batch_size must be >= 1, got " .. self.batch_size, 3) end
  local seed = option(options, "seed", "integer", nil)
  if self.shuffle then self.generator = core.Generator(seed or draw_seed()) end
  return self
end

setmetatable(DataLoader, {
  --- Creates a loader.
  -- @param dataset a TensorDataset (or anything with size(), batch(indices), batch(first, count))
  -- @param[opt] options batch_size (64), shuffle (false), drop_last (false): leave out the
  --   last batch when it is smaller than batch_size, seed (an integer for the shuffling
  --   generator; without one it is drawn from the default generator, once, here)
  __call = function(_, dataset, options) return new(dataset, options) end,
})

--- The number of batches in an epoch.
function DataLoader:__len()
  local n = self.dataset:size()
  if self.drop_last then return n // self.batch_size end
  return (n + self.batch_size - 1) // self.batch_size
end

--- One epoch: an iterator yielding xb, yb, batch_number.  In order, each batch is a view of
-- the dataset (no copy); shuffled, each batch is one index_select through a permutation that
-- is drawn afresh by every call.
function DataLoader:batches()
  local n, size, count = self.dataset:size(), self.batch_size, #self
  local order = self.generator and self.generator:randperm(n)
  local dataset, number = self.dataset, 0
  return function()
    if number >= count then return nil end
    number = number + 1
    local first = (number - 1) * size + 1
    local length = math.min(size, n - first + 1)
    local xb, yb
    if order then
      xb, yb = dataset:batch(order:narrow(1, first, length))
    else
      xb, yb = dataset:batch(first, length)
    end
    return xb, yb, number
  end
end

return DataLoader
