--- lunet.data: datasets, batching and data files for training.
--
--     local data = require("lunet.data")
--     local train, test = data.fashion_mnist()
--     local fit, validation = data.split(train, 0.9, 1)
--     for xb, yb in data.DataLoader(fit, {batch_size = 64, shuffle = true}):batches() do ... end
local data = {}

data.TensorDataset = require("lunet.data.TensorDataset")
data.DataLoader = require("lunet.data.DataLoader")
data.fashion_mnist = require("lunet.data.fashion_mnist")

local files = require("lunet.data.files")
data.read_idx = files.read_idx
data.read_csv = files.read_csv

local stats = require("lunet.data.stats")
data.mean_std = stats.mean_std
data.normalize = stats.normalize

--- Splits a dataset at random: the first part gets round(N * fraction) samples, the second
-- the rest (see TensorDataset:split).
-- @param dataset a TensorDataset
-- @param fraction in [0, 1]
-- @param[opt] seed an integer for a reproducible split
-- @return first, second
function data.split(dataset, fraction, seed) return dataset:split(fraction, seed) end

return data
