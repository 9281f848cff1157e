-- Trains the reference MLP briefly on Fashion-MNIST and exports it as ONNX (opset 13), ready
-- for ONNX Runtime or any other ONNX reader.
--
--   lua5.4 examples/export_onnx.lua [out=fashion_mlp.onnx] [epochs=1]
--
-- The file takes inputs named "input" of shape (batch, 1, 28, 28) and gives logits named
-- "output" of shape (batch, 10); `lunet.onnx.load(out)` reads it back as a lunet model.
local lunet = require("lunet")
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local out = arg[1] or "fashion_mlp.onnx"
local epochs = tonumber(arg[2]) or 1
lunet.manual_seed(0)

local train, test = data.fashion_mnist()
local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
model:fit(train, { epochs = epochs, batch_size = 64, loss = nn.CrossEntropyLoss(),
  optimizer = optim.Adam(model:parameters(), { lr = 1e-3 }) })
print(string.format("test accuracy: %.4f", model:evaluate(test).accuracy))

local path, size = lunet.onnx.export(model, out, { input_shape = { 1, 1, 28, 28 }, dynamic_batch = true })
print(string.format("wrote %s (%d bytes)", path, size))
