-- Quantizes a Fashion-MNIST model to int8 (lunet.quantize) and compares it with the f32 one:
-- test accuracy, prediction time on one thread, file size; then exports it to ONNX.
--
--   lua5.4 examples/quantize.lua [model.safetensors] [out=model_int8.safetensors]
--
-- Give it a model file (fashion_cnn.safetensors from examples/train_cnn.lua, say); without one
-- it trains the reference CNN of bench/fashion.lua for one epoch, so that it runs on its own.
-- Static int8 with min-max calibration on 512 training images: each Conv2d and Linear (with a
-- BatchNorm after it folded in) becomes an int8 layer, and activations flow between them as u8.
-- Writes out and, next to it, the same model as ONNX (out with .onnx for .safetensors).
local lunet = require("lunet")
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local model_path = arg[1]
local out = arg[2] or "model_int8.safetensors"
local onnx_path = out:gsub("%.safetensors$", "") .. ".onnx"
lunet.manual_seed(0)

local train, test = data.fashion_mnist()

local model
if model_path then
  model = lunet.load(model_path)
  print("loaded " .. model_path)
else
  model = nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
  print("no model file given: training the reference CNN for 1 epoch")
  model:fit(train, { epochs = 1, batch_size = 64, loss = nn.CrossEntropyLoss(),
    optimizer = optim.Adam(model:parameters(), { lr = 1e-3 }) })
end
model:eval()

-- A few hundred training images are enough to find each activation's range.
local started = lunet.clock()
local q = lunet.quantize(model, { calibration = train:subset(1, 512) })
print(string.format("quantized in %.2f s:", lunet.clock() - started))
print(q)

local fp32_accuracy, int8_accuracy = model:evaluate(test).accuracy, q:evaluate(test).accuracy
print(string.format("\ntest accuracy: fp32 %.2f%%, int8 %.2f%% (%+.2f points)", 100 * fp32_accuracy,
  100 * int8_accuracy, 100 * (int8_accuracy - fp32_accuracy)))

-- Timed on one thread: the per-core speed of the int8 kernels against the f32 ones, and steadier
-- than a multi-threaded figure on a busy machine.
local function seconds_to_predict(m)
  m:predict(test.x:narrow(1, 1, 256)) -- compiles the model graph and warms up
  local t0 = lunet.clock()
  m:predict(test.x)
  return lunet.clock() - t0
end
local threads = lunet.get_num_threads()
lunet.set_num_threads(1)
local fp32_seconds, int8_seconds = seconds_to_predict(model), seconds_to_predict(q)
lunet.set_num_threads(threads)
print(string.format("predicting the %d test images on 1 thread: fp32 %.3f s, int8 %.3f s (speed-up %.2fx)",
  test:size(), fp32_seconds, int8_seconds, fp32_seconds / int8_seconds))

local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local size = f:seek("end")
  f:close()
  return size
end
-- The f32 model's file: the one given, or the trained model saved to a temporary file.
local fp32_file = model_path or os.tmpname()
if not model_path then model:save(fp32_file) end
local fp32_bytes = file_size(fp32_file)
if not model_path then os.remove(fp32_file) end
q:save(out, { input_shape = q.input_shape or { 1, 28, 28 } }) -- so that `lunet info` shows output shapes
local int8_bytes = file_size(out)
print(string.format("model file: fp32 %.1f KiB, int8 %.1f KiB (%.1f%% of it, %.1fx smaller); wrote %s",
  fp32_bytes / 1024, int8_bytes / 1024, 100 * int8_bytes / fp32_bytes, fp32_bytes / int8_bytes, out))

-- The same int8 model as ONNX (QuantizeLinear, QLinearConv, QLinearMatMul, DequantizeLinear), which
-- ONNX Runtime runs with the same outputs bit for bit.
local path, size = lunet.onnx.export(q, onnx_path, { input_shape = { 1, 1, 28, 28 } })
print(string.format("wrote %s (%.1f KiB)", path, size / 1024))
