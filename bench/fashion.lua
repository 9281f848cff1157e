-- Fashion-MNIST training and inference speed, the lunet side of ../shared/bench/torch_peer.py.
--
--   lua5.4 bench/fashion.lua [--model mlp|cnn] [--epochs N] [--threads T] [--limit N] [--seed S]
--                            [--onnx_int8 PATH]
--
-- Same models, hyper-parameters (Adam lr 1e-3, batch 64, cross-entropy), flags and JSON keys
-- as the PyTorch peer, so the two lines can be compared directly: train_samples_per_s (the
-- training loop only), test_accuracy, infer_b1_us and infer_b256_samples_per_s (eval mode,
-- no autograd; lunet's through model:predict, which runs the compiled C model graph).  Extra
-- keys: modules_infer_* (the same through the Lua modules one by one), rss_mb (resident memory
-- after each epoch), rss_growth_after_epoch_1 (the largest RSS after epoch 1 relative to
-- epoch 1), and allocs_after_first_step (calls that reached the system allocator from the end
-- of the last epoch's first step to the end of its last full batch of 64: 0 means the tensor
-- cache served every steady step).
--
-- A second line, peer "lunet-int8", has the same keys for the model quantized by lunet.quantize
-- (static int8, calibrated on 512 training images), plus its accuracy change in points, its
-- speed-ups over the f32 line, and both model files' sizes.  --onnx_int8 also exports that
-- model to PATH as ONNX (bench/compare_int8.lua times it in ONNX Runtime).
local lunet = require("lunet")
local cjson = require("cjson")
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local function parse_args(argv)
  local a = { model = "mlp", epochs = 1, threads = 1, limit = 60000, seed = 0, onnx_int8 = "" }
  local i = 1
  while i <= #argv do
    local flag, value = argv[i]:match("^%-%-([%w_]+)=?(.*)$")
    if not flag then error("unexpected argument " .. argv[i]) end
    if value == "" then
      i = i + 1
      value = argv[i]
    end
    if a[flag] == nil then error("unknown flag --" .. flag) end
    a[flag] = (flag == "model" or flag == "onnx_int8") and value or math.tointeger(tonumber(value))
    i = i + 1
  end
  assert(a.model == "mlp" or a.model == "cnn", "--model must be mlp or cnn")
  return a
end

local function build(kind)
  if kind == "mlp" then
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
  end
  return nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
end

local function rss_mb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+) kB")
    if kb then return tonumber(kb) / 1024 end
  end
end

-- Seconds per call of run(batch) at batch size bs, the way torch_peer.py's latency() measures
-- a forward pass.
local function latency(run, x, bs, reps)
  return lunet.no_grad(function()
    for _ = 1, 10 do run(x:narrow(1, 1, bs)) end
    local started = lunet.clock()
    for r = 0, reps - 1 do
      local first = (r * bs) % 9000
      run(x:narrow(1, first + 1, bs))
    end
    return (lunet.clock() - started) / reps
  end)
end

local function main(argv)
  local a = parse_args(argv)
  lunet.set_num_threads(a.threads)
  lunet.manual_seed(a.seed)
  local train, test = data.fashion_mnist()
  if a.limit < train:size() then train = train:subset(1, a.limit) end
  local model = build(a.model)
  local opt = optim.Adam(model:parameters(), { lr = 1e-3 })
  local loss_fn = nn.CrossEntropyLoss()
  local batch_size = 64
  local loader = data.DataLoader(train, { batch_size = batch_size, shuffle = true, seed = a.seed })

  local train_seconds, rss, allocs_steady = 0, {}, 0
  for epoch = 1, a.epochs do
    model:train()
    local started = lunet.clock()
    local allocs_at_step_1, allocs_at_last_full_step
    for xb, yb, step in loader:batches() do
      opt:zero_grad()
      local loss = loss_fn(model(xb), yb)
      loss:backward()
      opt:step()
      if epoch == a.epochs and xb:size(1) == batch_size then -- a last, smaller batch has sizes of its own
        local allocs = lunet.alloc_stats().system_allocs
        if step == 1 then allocs_at_step_1 = allocs end
        allocs_at_last_full_step = allocs
      end
    end
    train_seconds = train_seconds + (lunet.clock() - started)
    if epoch == a.epochs then allocs_steady = allocs_at_last_full_step - allocs_at_step_1 end
    rss[epoch] = math.floor(rss_mb() * 10 + 0.5) / 10
  end
  local growth = 0
  for epoch = 2, #rss do growth = math.max(growth, (rss[epoch] - rss[1]) / rss[1]) end

  local accuracy = model:evaluate(test, { batch_size = 1000 }).accuracy
  model:eval()
  local function predict(x) return model:predict(x) end -- through the compiled C graph
  local result = {
    peer = "lunet-" .. lunet.version, model = a.model, threads = a.threads, epochs = a.epochs,
    train_samples_per_s = math.floor(a.epochs * train:size() / train_seconds * 10 + 0.5) / 10,
    test_accuracy = math.floor(accuracy * 1e4 + 0.5) / 1e4,
    infer_b1_us = math.floor(latency(predict, test.x, 1, 2000) * 1e7 + 0.5) / 10,
    infer_b256_samples_per_s = math.floor(256 / latency(predict, test.x, 256, 50) * 10 + 0.5) / 10,
    modules_infer_b1_us = math.floor(latency(model, test.x, 1, 2000) * 1e7 + 0.5) / 10,
    modules_infer_b256_samples_per_s = math.floor(256 / latency(model, test.x, 256, 50) * 10 + 0.5) / 10,
    rss_mb = rss, rss_growth_after_epoch_1 = math.floor(growth * 1e4 + 0.5) / 1e4,
    allocs_after_first_step = allocs_steady,
  }
  print(cjson.encode(result))

  -- The same model quantized to int8 (lunet.quantize, static, 512 training images to calibrate),
  -- measured the same way, with its file size beside the f32 one's.
  local started_q = lunet.clock()
  local q = lunet.quantize(model, { calibration = train:subset(1, 512) })
  local quantize_seconds = lunet.clock() - started_q
  local function predict_q(x) return q:predict(x) end
  -- The bytes of m's model file.
  local function file_bytes(m)
    local path = os.tmpname()
    m:save(path)
    local f = assert(io.open(path, "rb"))
    local n = f:seek("end")
    f:close()
    os.remove(path)
    return n
  end
  local int8 = {
    peer = "lunet-int8", model = a.model, threads = a.threads, epochs = a.epochs,
    train_samples_per_s = result.train_samples_per_s,
    test_accuracy = math.floor(q:evaluate(test, { batch_size = 1000 }).accuracy * 1e4 + 0.5) / 1e4,
    infer_b1_us = math.floor(latency(predict_q, test.x, 1, 2000) * 1e7 + 0.5) / 10,
    infer_b256_samples_per_s = math.floor(256 / latency(predict_q, test.x, 256, 50) * 10 + 0.5) / 10,
    quantize_seconds = math.floor(quantize_seconds * 1000 + 0.5) / 1000,
    file_bytes = file_bytes(q), f32_file_bytes = file_bytes(model),
  }
  int8.accuracy_change_points = math.floor((int8.test_accuracy - result.test_accuracy) * 1e4 + 0.5) / 100
  int8.b256_speedup = math.floor(int8.infer_b256_samples_per_s / result.infer_b256_samples_per_s * 100 + 0.5) / 100
  int8.b1_speedup = math.floor(result.infer_b1_us / int8.infer_b1_us * 100 + 0.5) / 100
  int8.file_fraction = math.floor(int8.file_bytes / int8.f32_file_bytes * 1000 + 0.5) / 1000
  print(cjson.encode(int8))
  if a.onnx_int8 ~= "" then lunet.onnx.export(q, a.onnx_int8, { input_shape = { 1, 1, 28, 28 } }) end
end

main(arg)
