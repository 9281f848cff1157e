-- lunet's int8 inference against the other int8 engines on one thread, alternating rounds:
--   lunet      bench/fashion.lua's "lunet-int8" line (and its f32 line), which also exports
--              the int8 model as ONNX (--onnx_int8)
--   ORT        ONNX Runtime 1.30 running that exported file (../shared/bench/ort_run.js
--              --bench, ORT_THREADS=1) on the same test images, batch 1 and 256
--   PyTorch    static int8 of the same model (bench/torch_int8.py: fbgemm, onednn, qnnpack)
--              and, for the MLP, dynamic int8 (../shared/bench/torch_peer.py)
-- Prints a Markdown table of the medians, and lunet-int8's b256 throughput over each peer's.
--
--   lua5.4 bench/compare_int8.lua [--models mlp,cnn] [--rounds 3]
--
-- Needs onnxruntime-node in build/npm/node_modules (make test installs it) and python3-torch.
local lunet = require("lunet")
local common = require("bench.common")

local opts = common.flags(arg, { models = "mlp,cnn", rounds = "3" })
local json_lines, median = common.json_lines, common.median

local NODE = "NODE_PATH=build/npm/node_modules ORT_THREADS=1 node ../shared/bench/ort_run.js"
local directory = os.tmpname()
os.remove(directory)
assert(os.execute("mkdir -p " .. directory))

-- ort_run.js input files holding the first 1 and 256 test images.
local inputs = {}
do
  local _, test = lunet.data.fashion_mnist()
  for _, n in ipairs({ 1, 256 }) do
    local values = test.x:narrow(1, 1, n):contiguous():reshape({ n * 784 }):totable()
    for k, v in ipairs(values) do values[k] = string.format("%.9g", v) end
    inputs[n] = string.format("%s/input_%d.json", directory, n)
    local f = assert(io.open(inputs[n], "w"))
    f:write(string.format('{"input":{"shape":[%d,1,28,28],"dtype":"float32","data":[%s]}}', n,
      table.concat(values, ",")))
    f:close()
  end
end

local function ort(file)
  local b1 = json_lines(string.format("%s %s %s --bench 2000", NODE, file, inputs[1]))[1]
  local b256 = json_lines(string.format("%s %s %s --bench 50", NODE, file, inputs[256]))[1]
  assert(b1 and b256, "ort_run.js failed on " .. file)
  return { peer = "onnxruntime-1.30 (lunet's int8 ONNX)", infer_b1_us = math.floor(b1.mean_us * 10 + 0.5) / 10,
    infer_b256_samples_per_s = math.floor(256 / b256.mean_us * 1e7 + 0.5) / 10 }
end

print("| model | peer | test accuracy | b1 latency (us) | b256 samples/s | lunet-int8 b256 / peer |")
print("|---|---|---|---|---|---|")
for model in opts.models:gmatch("[^,]+") do
  local samples, order = {}, {}
  local function add(line)
    if not samples[line.peer] then
      samples[line.peer] = {}
      order[#order + 1] = line.peer
    end
    table.insert(samples[line.peer], line)
  end
  local onnx = string.format("%s/%s_int8.onnx", directory, model)
  for _ = 1, tonumber(opts.rounds) do
    local lunet_lines = json_lines(string.format("lua5.4 bench/fashion.lua --model %s --onnx_int8 %s", model, onnx))
    assert(#lunet_lines == 2, "bench/fashion.lua failed")
    add(lunet_lines[2])
    add(lunet_lines[1])
    add(ort(onnx))
    for _, line in ipairs(json_lines("/usr/bin/python3 bench/torch_int8.py --model " .. model)) do add(line) end
    if model == "mlp" then
      for _, line in ipairs(json_lines("/usr/bin/python3 ../shared/bench/torch_peer.py --model mlp")) do
        if line.peer:find("int8", 1, true) then add(line) end
      end
    end
  end
  local function med(peer, key)
    local values = {}
    for _, line in ipairs(samples[peer]) do values[#values + 1] = line[key] end
    return #values > 0 and median(values) or nil
  end
  local ours = med("lunet-int8", "infer_b256_samples_per_s")
  for _, peer in ipairs(order) do
    local accuracy, b256 = med(peer, "test_accuracy"), med(peer, "infer_b256_samples_per_s")
    print(string.format("| %s | %s | %s | %s | %s | %.2f |", model, peer, accuracy and string.format("%.4f", accuracy)
      or "lunet-int8's (outputs bit-identical)", tostring(med(peer, "infer_b1_us")), tostring(b256), ours / b256))
  end
end
os.execute("rm -rf " .. directory)
