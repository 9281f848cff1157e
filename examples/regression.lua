-- A real regression: learn y = sin(2x) + 0.5x from noisy samples, and report R^2.
--
--   lua5.4 examples/regression.lua
--
-- 2,000 points x in [-3, 3] with y = sin(2x) + 0.5x + N(0, 0.1^2); an MLP with two hidden
-- layers of 64 tanh units, Adam, mean squared error.  The R^2 on 500 held-out points is
-- close to 1 - 0.01 / var(y), the best any model can do against noise of that size.
local lunet = require("lunet")
local nn, optim, data, metrics = lunet.nn, lunet.optim, lunet.data, lunet.metrics

lunet.manual_seed(1)
-- The known function, evaluated in Lua (lunet has no sin op; this is data generation, once).
local function make(n)
  local x = lunet.rand({ n, 1 }) * 6 - 3
  local ys = {}
  for i, row in ipairs(x:totable()) do ys[i] = { math.sin(2 * row[1]) + 0.5 * row[1] } end
  return x, lunet.tensor(ys) + lunet.randn({ n, 1 }) * 0.1
end

local x_train, y_train = make(2000)
local x_test, y_test = make(500)

local model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
model:fit(data.TensorDataset(x_train, y_train), {
  epochs = 150, batch_size = 64, loss = nn.MSELoss(),
  optimizer = optim.Adam(model:parameters(), { lr = 3e-3 }), verbose = 0,
})

local prediction = model:predict(x_test)
local r2 = metrics.r2_score(prediction, y_test)
local variance = ((y_test - y_test:mean()) ^ 2):mean():item()
local best = 1 - 0.01 / variance
print(string.format("test MSE %.5f  R^2 %.4f  (the noise allows at most about %.4f)",
  metrics.mse(prediction, y_test), r2, best))
