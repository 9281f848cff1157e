-- The first half of `make demo`: a short tour of tensors and autograd, then a Fashion-MNIST
-- MLP trained, evaluated, plotted, quantized to int8 and exported to ONNX, and both models
-- written into a model repository that examples/demo_serve.lua serves over HTTP.
--
--   lua5.4 examples/demo.lua [dir=build/demo]
--
-- Writes into dir: curves.svg, fashion_mlp.onnx, fashion_mlp_int8.onnx and the repository
-- models/fashion_mlp/1/model.safetensors, models/fashion_mlp_int8/1/model.safetensors.
local lunet = require("lunet")
local lfs = require("lfs")
local nn, optim, data, metrics = lunet.nn, lunet.optim, lunet.data, lunet.metrics
lunet.manual_seed(0)

local dir = arg[1] or "build/demo"
local function quoted(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function make_directory(path) assert(os.execute("mkdir -p " .. quoted(path))) end
make_directory(dir)

print("lunet " .. lunet.version)
print("\n-- tensors")
local a = lunet.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
print(a)
print("a:sum(2)      ->", a:sum(2))
print("a:transpose() ->", a:transpose())
print("a @ a^T       ->", a:matmul(a:transpose()))
print("a:gt(2)       ->", a:gt(2))

print("\n-- autograd: fitting y = 3x - 2 by gradient descent")
local x = lunet.linspace(-1, 1, 200):reshape({ 200, 1 })
local y = x * 3 - 2 + lunet.randn({ 200, 1 }) * 0.1
local w = lunet.zeros({ 1, 1 }, { requires_grad = true })
local b = lunet.zeros({ 1 }, { requires_grad = true })
local learning_rate = 0.5
for step = 1, 60 do
  local prediction = x:matmul(w) + b
  local loss = ((prediction - y) ^ 2):mean()
  w.grad, b.grad = nil, nil
  loss:backward()
  lunet.no_grad(function()
    w:copy(w - w.grad * learning_rate)
    b:copy(b - b.grad * learning_rate)
  end)
  if step % 15 == 0 then
    print(string.format("step %2d  loss %.5f  w %.4f  b %.4f", step, loss:item(), w:item(), b:item()))
  end
end

print("\n-- gradient check (float64 central differences)")
local p = lunet.randn({ 3, 4 }, { dtype = "f64", requires_grad = true })
local q = lunet.randn({ 4, 2 }, { dtype = "f64", requires_grad = true })
local function f(m, n) return m:matmul(n):relu():sum(1) end
print("gradcheck(relu(p @ q):sum(1)) ->", lunet.gradcheck(f, { p, q }))

print("\n-- training an MLP on Fashion-MNIST (2 epochs)")
local train, test = data.fashion_mnist()
local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
local history = model:fit(train, {
  epochs = 2, batch_size = 64, loss = nn.CrossEntropyLoss(),
  optimizer = optim.Adam(model:parameters(), { lr = 1e-3 }), validation_split = 0.1, seed = 0,
})
local results = model:evaluate(test)
print("test: " .. tostring(results))
print(metrics.format_confusion(results.confusion, train.classes))
history:plot(dir .. "/curves.svg", { title = "Fashion-MNIST MLP" })
print("wrote " .. dir .. "/curves.svg (loss and accuracy per epoch, training and validation)")

print("\n-- int8 quantization (static, min-max calibration on 512 training images)")
local int8_model = lunet.quantize(model, { calibration = train:subset(1, 512) })
local int8_results = int8_model:evaluate(test)
print(string.format("test accuracy: fp32 %.2f%%, int8 %.2f%% (%+.2f points)", 100 * results.accuracy,
  100 * int8_results.accuracy, 100 * (int8_results.accuracy - results.accuracy)))

local named = { { model, "fashion_mlp" }, { int8_model, "fashion_mlp_int8" } }
print("\n-- ONNX export (opset 13, input \"input\" [batch,1,28,28], output \"output\" [batch,10])")
for _, m in ipairs(named) do
  local path, size = lunet.onnx.export(m[1], dir .. "/" .. m[2] .. ".onnx", { input_shape = { 1, 1, 28, 28 } })
  print(string.format("wrote %s (%.1f KiB)", path, size / 1024))
end

print("\n-- model repository (<name>/<version>/model.safetensors, what the server loads)")
for _, m in ipairs(named) do
  local version_dir = string.format("%s/models/%s/1", dir, m[2])
  make_directory(version_dir)
  -- fit recorded the input shape and the class names; the file keeps them for the server
  local path = m[1]:save(version_dir .. "/model.safetensors")
  print(string.format("wrote %s (%.1f KiB)", path, lfs.attributes(path, "size") / 1024))
end
