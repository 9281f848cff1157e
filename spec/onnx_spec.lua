-- lunet.onnx: exported files against independent readers (the ONNX checker from Debian's
-- python3-onnx, ONNX Runtime through ../shared/bench/ort_run.js), PyTorch's exports imported
-- and checked against PyTorch's own outputs, and hostile files.
local lunet = require("lunet")
local cjson = require("cjson")
local h = require("spec.helpers")

local nn = lunet.nn
local PYTHON = "/usr/bin/python3"
local ORT_RUN = "../shared/bench/ort_run.js"
local NODE_PATH = "build/npm/node_modules"
local TOLERANCE = 1e-5
local IMAGES = 100

-- Child processes run without the sanitizer runtime that `make spec-asan` preloads into lua.
local function run(command)
  local pipe = assert(io.popen("env -u LD_PRELOAD " .. command .. " 2>&1"))
  local output = pipe:read("a")
  local ok = pipe:close()
  return ok, output
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local write_file, read_file = h.write_bytes, h.read_bytes

local function python(script, ...)
  local script_path = os.tmpname()
  write_file(script_path, script)
  local args = { PYTHON, script_path }
  for _, a in ipairs({ ... }) do args[#args + 1] = shell_quote(a) end
  local ok, output = run(table.concat(args, " "))
  os.remove(script_path)
  assert(ok, "python failed:\n" .. output)
  return output
end

local directory
local test_images

setup(function()
  directory = h.make_directory()
  local _, test = lunet.data.fashion_mnist()
  test_images = test.x:narrow(1, 1, IMAGES):contiguous()
end)

teardown(function()
  h.remove_directory(directory)
end)

local function path_of(name) return directory .. "/" .. name end

local function max_difference(a, b)
  local x, y = h.flatten(a:totable()), h.flatten(b:totable())
  assert.are.equal(#x, #y, "element count")
  local worst = 0
  for i = 1, #x do
    local d = math.abs(x[i] - y[i])
    if d ~= d then return math.huge end
    worst = math.max(worst, d)
  end
  return worst
end

local mlp, cnn = h.fashion_mlp, h.fashion_cnn

-- Gives every BatchNorm running statistics and affine parameters far from the identity, so that
-- a fold that forgot any of them shows.
local function perturb_batch_norms(model)
  for i = 1, #model do
    local m = model[i]
    if m.running_mean then
      local n = m.running_mean:numel()
      m.running_mean:copy(lunet.randn({ n }) * 0.3)
      m.running_var:copy(lunet.rand({ n }) + 0.5)
      m.weight:detach():copy(lunet.rand({ n }) + 0.5)
      m.bias:detach():copy(lunet.randn({ n }) * 0.2)
    end
  end
  return model
end

-- The outputs ONNX Runtime gives for the file on inputs x.
local function onnx_runtime(file, x)
  local values = h.flatten(x:totable())
  for i, v in ipairs(values) do values[i] = string.format("%.9g", v) end
  local input_path = file .. ".input.json"
  write_file(input_path, string.format('{"input":{"shape":[%s],"dtype":"float32","data":[%s]}}',
    table.concat(x:shape(), ","), table.concat(values, ",")))
  local ok, output = run(string.format("NODE_PATH=%s node %s %s %s", NODE_PATH, ORT_RUN, shell_quote(file),
    shell_quote(input_path)))
  assert(ok, "ort_run.js failed:\n" .. output)
  local result = cjson.decode(output).outputs.output
  return lunet.tensor(result.data):reshape(result.shape)
end

local CHECKER = [[
import sys, onnx
model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
print("checked", model.ir_version, model.opset_import[0].version, " ".join(n.op_type for n in model.graph.node))
]]

describe("onnx.export", function()
  local function exported(name, model)
    local file = path_of(name .. ".onnx")
    local written, size = lunet.onnx.export(model, file, { input_shape = { 1, 1, 28, 28 }, dynamic_batch = true })
    assert.are.equal(file, written)
    assert.are.equal(#read_file(file), size)
    return file
  end

  local function assert_matches_runtime(name, model)
    local file = exported(name, model)
    local expected = model:predict(test_images)
    local got = onnx_runtime(file, test_images)
    assert.are.same(expected:shape(), got:shape())
    local difference = max_difference(expected, got)
    assert.is_true(difference <= TOLERANCE, string.format("%s: ONNX Runtime differs from lunet by %g", name, difference))
    return file
  end

  it("writes an MLP and a CNN that pass the ONNX checker with full_check", function()
    lunet.manual_seed(1)
    for name, model in pairs({ mlp = mlp(), cnn = cnn() }) do
      local output = python(CHECKER, exported(name, model))
      assert.truthy(output:find("checked 7 13", 1, true), output)
    end
  end)

  it("gives ONNX Runtime's outputs within 1e-5 of predict on Fashion-MNIST images (MLP)", function()
    lunet.manual_seed(2)
    assert_matches_runtime("mlp_runtime", mlp())
  end)

  it("gives ONNX Runtime's outputs within 1e-5 of predict on Fashion-MNIST images (CNN)", function()
    lunet.manual_seed(3)
    assert_matches_runtime("cnn_runtime", cnn())
  end)

  it("folds BatchNorm into the Conv2d and Linear before it, and exports a lone BatchNorm", function()
    lunet.manual_seed(4)
    local model = perturb_batch_norms(nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1 }), nn.BatchNorm2d(8),
      nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 14 * 14, 32), nn.BatchNorm1d(32),
      nn.ReLU(), nn.Linear(32, 10)))
    local file = assert_matches_runtime("batch_norm", model)
    local output = python(CHECKER, file)
    assert.truthy(output:find("Conv Relu MaxPool BatchNormalization Flatten Gemm Relu Gemm", 1, true), output)
  end)

  it("exports Softmax, LogSoftmax, GELU and the other activations with their settings", function()
    lunet.manual_seed(5)
    local model = nn.Sequential(nn.Conv2d(1, 4, 3, { stride = 2 }), nn.GELU(), nn.AvgPool2d(2),
      nn.Flatten({ start_dim = 3 }), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 36, 16),
      nn.GELU({ approximate = "tanh" }), nn.Dropout(0.5), nn.Sigmoid(), nn.Identity(), nn.Tanh(),
      nn.Linear(16, 10), nn.Softmax(-1))
    local file = assert_matches_runtime("activations", model)
    local output = python(CHECKER, file)
    assert.truthy(output:find("Erf", 1, true) and output:find("Reshape LeakyRelu Flatten", 1, true)
      and output:find("Softmax", 1, true), output)
    file = assert_matches_runtime("log_softmax", nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(2)))
    assert.truthy(python(CHECKER, file):find("Flatten Gemm LogSoftmax", 1, true))
  end)

  it("refuses a model whose layers do not accept input_shape, naming the layer", function()
    h.assert_error_contains(function()
      lunet.onnx.export(mlp(), path_of("bad.onnx"), { input_shape = { 1, 1, 14, 14 } })
    end, "bad.onnx", "layer 2 (Linear)")
    h.assert_error_contains(function() lunet.onnx.export(mlp(), path_of("bad.onnx"), {}) end, "input_shape")
  end)
end)

-- int8 models (lunet.quantize, 7-bit weights by default) against ONNX Runtime's QLinearConv,
-- QLinearMatMul, QuantizeLinear and DequantizeLinear: the integer arithmetic is exact on both
-- sides and the requantization is the spec's (float multiplier x_scale * w_scale / y_scale,
-- rounding half to even), so the outputs must be equal bit for bit.  (8-bit weights are not
-- held to this: ONNX Runtime's AVX2 u8 x s8 kernel adds products in pairs with vpmaddubsw,
-- which saturates at 32767 when weights reach +-127, while lunet's int8 products are exact.)
describe("onnx.export of int8 models", function()
  local train_set = lunet.data.fashion_mnist()

  local function quantized(build, seed)
    lunet.manual_seed(seed)
    local model = build()
    model:fit(train_set:subset(1, 2000), { epochs = 1, batch_size = 64, verbose = 0 })
    return lunet.quantize(model:eval(), { calibration = train_set:subset(1, 256) })
  end

  local function assert_equals_runtime(name, q)
    local file = path_of(name .. ".onnx")
    lunet.onnx.export(q, file, { input_shape = { 1, 1, 28, 28 } })
    local got = onnx_runtime(file, test_images)
    local expected = q:predict(test_images)
    assert.are.same(expected:shape(), got:shape())
    assert.are.equal(0, max_difference(expected, got), name .. ": ONNX Runtime's int8 outputs differ from lunet's")
    return python(CHECKER, file)
  end

  it("equals ONNX Runtime bit for bit on 100 Fashion-MNIST images (MLP: Linear with bias as a 1x1 QLinearConv)",
    function()
      local output = assert_equals_runtime("mlp_int8", quantized(mlp, 11))
      assert.truthy(output:find("checked 7 13 Flatten QuantizeLinear Reshape QLinearConv Reshape Reshape QLinearConv "
        .. "Reshape DequantizeLinear", 1, true), output)
    end)

  it("equals ONNX Runtime bit for bit on 100 Fashion-MNIST images (CNN: u8 max pooling between QLinearConvs)",
    function()
      local output = assert_equals_runtime("cnn_int8", quantized(cnn, 12))
      assert.truthy(output:find("QuantizeLinear QLinearConv MaxPool QLinearConv MaxPool Flatten Reshape QLinearConv",
        1, true), output)
    end)

  it("equals ONNX Runtime with padding, folded BatchNorm, QLinearMatMul, and a fused ReLU above zero point 0",
    function()
      local q = quantized(function()
        return nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1, bias = false }), nn.BatchNorm2d(8), nn.ReLU(),
          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 32, { bias = false }), nn.ReLU(),
          nn.Linear(32, 10, { bias = false }))
      end, 13)
      -- Moves the first layer's output zero point to 9, so its fused ReLU clamps above the u8
      -- floor and the export needs a Clip; the next layers read the same parameters.
      local scale = q[2].output_scale:item()
      q[2].output_zero_point:fill(9)
      q[5].input_zero_point:fill(9)
      assert.are.equal(scale, q[5].input_scale:item())
      local output = assert_equals_runtime("padded_int8", q)
      assert.truthy(output:find("QuantizeLinear QLinearConv Clip MaxPool Flatten QLinearMatMul QLinearMatMul "
        .. "DequantizeLinear", 1, true), output)
    end)

  it("refuses a dynamic int8 model, saying why", function()
    local d = lunet.quantize(mlp(), { mode = "dynamic" })
    h.assert_error_contains(function()
      lunet.onnx.export(d, path_of("dynamic.onnx"), { input_shape = { 1, 1, 28, 28 } })
    end, "dynamic.onnx", "layer 2 (DynamicQuantizedLinear)", "one scale per tensor")
  end)
end)

-- PyTorch builds the reference MLP (reading its input through a Reshape, as x.reshape(-1, 784)
-- exports, with its initializers also listed as graph inputs) and CNN, exports them with
-- torch.onnx.export, and writes its own outputs on the images lunet gives it.
local TORCH_EXPORTER = [[
import sys, numpy, torch
from torch import nn
directory = sys.argv[1]
images = torch.from_numpy(numpy.fromfile(directory + "/images.f32", dtype="<f4").reshape(-1, 1, 28, 28))
torch.manual_seed(0)
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    def forward(self, x):
        return self.net(x.reshape(-1, 784))
models = {
    "torch_mlp": (MLP(), True),
    "torch_cnn": (nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10)), False),
}
for name, (model, initializers_as_inputs) in models.items():
    model.eval()
    torch.onnx.export(model, images[:1], directory + "/" + name + ".onnx", input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      opset_version=13, keep_initializers_as_inputs=initializers_as_inputs)
    with torch.no_grad():
        model(images).numpy().astype("<f4").tofile(directory + "/" + name + ".expected.f32")
print("exported")
]]

describe("onnx.load", function()
  local tensor_bytes = require("lunet.onnx.tensor_bytes")

  local function read_f32(path, shape)
    local bytes = read_file(path)
    local count = #bytes // 4
    return tensor_bytes.tensor(tensor_bytes.decode_values(bytes, 1, count, "f32"), shape, "f32")
  end

  local exported_by_torch = false
  local function torch_exports()
    if not exported_by_torch then
      write_file(path_of("images.f32"), tensor_bytes.encode(test_images, "f32"))
      assert.truthy(python(TORCH_EXPORTER, directory):find("exported", 1, true))
      exported_by_torch = true
    end
  end

  for _, name in ipairs({ "torch_mlp", "torch_cnn" }) do
    it("loads PyTorch's " .. name:sub(7):upper() .. " and predicts within 1e-5 of PyTorch on Fashion-MNIST images",
      function()
        torch_exports()
        local model = lunet.onnx.load(path_of(name .. ".onnx"))
        assert.are.same({ 1, 28, 28 }, model.input_shape)
        local expected = read_f32(path_of(name .. ".expected.f32"), { IMAGES, 10 })
        local got = model:predict(test_images)
        local difference = max_difference(expected, got)
        assert.is_true(difference <= TOLERANCE, string.format("%s: lunet differs from PyTorch by %g", name, difference))
        -- The imported model is a native one: it saves and loads with its architecture.
        local saved = path_of(name .. ".safetensors")
        model:save(saved)
        assert.are.equal(0, max_difference(got, lunet.load(saved):predict(test_images)))
      end)
  end

  it("reads back what onnx.export wrote, predicting the same", function()
    lunet.manual_seed(6)
    local model = nn.Sequential(nn.Conv2d(1, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.ReLU(),
      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 10), nn.LeakyReLU(0.1), nn.Softmax(2))
    perturb_batch_norms(model)
    local file = path_of("round_trip.onnx")
    lunet.onnx.export(model, file, { input_shape = { 1, 1, 28, 28 } })
    local again = lunet.onnx.load(file)
    local difference = max_difference(model:predict(test_images), again:predict(test_images))
    assert.is_true(difference <= TOLERANCE, string.format("round trip differs by %g", difference))
  end)

  it("keeps a BatchNorm1d after a Linear on (N, L, features) unfolded, and loads in evaluation mode", function()
    -- BatchNorm1d normalises dim 2 there (L), not the Linear's features: folding would be wrong.
    lunet.manual_seed(7)
    local model = perturb_batch_norms(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)))
    local file = path_of("linear_3d.onnx")
    lunet.onnx.export(model, file, { input_shape = { 2, 3, 4 } })
    local again = lunet.onnx.load(file)
    assert.is_false(again.training)
    local x = lunet.randn({ 5, 3, 4 })
    local difference = max_difference(model:predict(x), again:predict(x))
    assert.is_true(difference <= TOLERANCE, string.format("round trip differs by %g", difference))
    assert.is_nil(rawget(model[1], "_compiled"), "export compiled a graph on a layer")
  end)

  it("names every unsupported operator with its node", function()
    local file = path_of("gelu.onnx")
    lunet.onnx.export(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.GELU()), file, { input_shape = { 1, 784 } })
    h.assert_error_contains(function() lunet.onnx.load(file) end, "gelu.onnx", "unsupported operators",
      "Div (node \"Div_3\")", "Erf (node \"Erf_4\")", "Mul (node \"Mul_6\")", "Mul (node \"Mul_7\")")
  end)

  describe("refuses hostile files with an error naming the file", function()
    local good
    setup(function()
      good = path_of("good.onnx")
      lunet.onnx.export(mlp(), good, { input_shape = { 1, 1, 28, 28 } })
    end)

    local function assert_refused(name, bytes, ...)
      local file = path_of(name)
      write_file(file, bytes)
      h.assert_error_contains(function() lunet.onnx.load(file) end, "onnx.load: " .. file .. ": ", ...)
    end

    it("truncated at many places", function()
      local bytes = read_file(good)
      for _, length in ipairs({ 0, 1, 2, 3, 10, 100, 1000, #bytes // 2, #bytes - 1 }) do
        assert_refused("truncated.onnx", bytes:sub(1, length))
      end
    end)

    it("with lengths past the end, wire types onnx.proto does not use, and overlong numbers", function()
      local graph_key, huge_length = string.char(0x3a), string.rep(string.char(0xff), 9) .. string.char(0x01)
      assert_refused("huge.onnx", graph_key .. huge_length, "claims more than 2^53 bytes")
      assert_refused("past_end.onnx", graph_key .. string.char(0x80, 0x80, 0x04) .. "x", "claims 65536 bytes",
        "has 1 left")
      assert_refused("group.onnx", string.char(0x3b), "wire type 3")
      assert_refused("overlong.onnx", string.char(0x08) .. string.rep(string.char(0x80), 11), "longer than 10 bytes")
      assert_refused("text.onnx", "this is not an ONNX file\n")
    end)

    it("with garbled bytes", function()
      local bytes = read_file(good)
      lunet.manual_seed(7)
      local positions = lunet.randperm(#bytes):narrow(1, 1, 40):totable()
      for _, position in ipairs(positions) do
        local garbled = bytes:sub(1, position - 1) .. string.char(0xff) .. bytes:sub(position + 1)
        local file = path_of("garbled.onnx")
        write_file(file, garbled)
        -- A byte inside a weight changes only the weight; anything else must be refused cleanly.
        local ok, err = pcall(lunet.onnx.load, file)
        if not ok then assert.truthy(tostring(err):find("onnx.load: " .. file .. ": ", 1, true), tostring(err)) end
      end
    end)

    it("whose weights' dims claim more than their bytes hold", function()
      local bytes = read_file(good)
      -- The first weight's dims [128, 784] become [16383, 784] (a varint of the same length, so
      -- the file stays well-formed): 12.8 million values claimed, 100352 held.
      local at = bytes:find(string.char(0x08, 0x80, 0x01, 0x08, 0x90, 0x06), 1, true)
      assert.truthy(at, "the first weight's dims")
      local swollen = bytes:sub(1, at) .. string.char(0xff, 0x7f) .. bytes:sub(at + 3)
      assert.are.equal(#bytes, #swollen)
      assert_refused("swollen.onnx", swollen, "dims [16383,784] need more values than the 100352 it holds")
    end)

    it("that does not exist", function()
      h.assert_error_contains(function() lunet.onnx.load(path_of("missing.onnx")) end, "missing.onnx")
    end)
  end)
end)
