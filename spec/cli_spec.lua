-- The lunet command (lua/lunet/cli.lua), run as a real process from the repository root.
local lunet = require("lunet")
local h = require("spec.helpers")
local json = require("lunet.json")
local nn = lunet.nn

-- Runs the command line; returns its output (stdout and stderr) and exit status.
local function lunet_command(args)
  local pipe = assert(io.popen("lua5.4 lua/lunet/cli.lua " .. args .. " 2>&1"))
  local output = pipe:read("a")
  local _, _, status = pipe:close()
  return output, status
end

describe("the lunet command", function()
  local directory
  setup(function() directory = h.make_directory() end)
  teardown(function() h.remove_directory(directory) end)

  it("info lists layers, output shapes, parameters, dtype, size and classes", function()
    lunet.manual_seed(0)
    local model = h.fashion_cnn()
    local path = directory .. "/cnn.safetensors"
    model:save(path, { input_shape = { 1, 28, 28 }, class_names = { "T-shirt", "Trouser" } })
    local output, status = lunet_command("info " .. path)
    assert.are.equal(0, status, output)
    for _, expected in ipairs({
      string.format("%s: lunet model, %.1f KiB", path, #h.read_bytes(path) / 1024), "input: [N, 1, 28, 28]",
      "Conv2d(1, 32, kernel_size=3)", "[1, 32, 26, 26]", "[1, 64, 5, 5]", "[1, 1600]", "102,464",
      "Linear(64, 10)", "[1, 10]", "parameters: 121,930 (f32)", "classes: T-shirt, Trouser",
    }) do
      assert.is_truthy(output:find(expected, 1, true), expected .. " in:\n" .. output)
    end
  end)

  it("info shows how an int8 model was quantized and its tensors against the f32 model's", function()
    lunet.manual_seed(0)
    local model = h.fashion_cnn()
    local calibration = lunet.data.fashion_mnist():subset(1, 256)
    local q = lunet.quantize(model, { calibration = calibration, method = "percentile" })
    local f32_path, int8_path = directory .. "/f32.safetensors", directory .. "/int8.safetensors"
    model:save(f32_path)
    q:save(int8_path, { input_shape = { 1, 28, 28 } })
    -- a safetensors file is an 8-byte header length, the header, then the tensors' bytes
    local function data_bytes(path)
      local bytes = h.read_bytes(path)
      return #bytes - 8 - string.unpack("<I8", bytes)
    end
    local int8_bytes, f32_bytes = data_bytes(int8_path), data_bytes(f32_path)
    assert.is_true(int8_bytes < 0.3 * f32_bytes)
    local output, status = lunet_command("info " .. int8_path)
    assert.are.equal(0, status, output)
    assert.is_truthy(output:find("int8: static, 7-bit weights, percentile (99.99) calibration on 256 samples\n", 1,
      true), output)
    local tensors, f32, percent, smaller = output:match(
      "size: tensors ([%d.]+) KiB, fp32 model's ([%d.]+) KiB %(([%d.]+)%%, ([%d.]+)x smaller%)\n")
    assert.is_truthy(tensors, output)
    assert.are.equal(string.format("%.1f", int8_bytes / 1024), tensors)
    assert.are.equal(string.format("%.1f", f32_bytes / 1024), f32)
    assert.are.equal(string.format("%.1f", 100 * int8_bytes / f32_bytes), percent)
    assert.are.equal(string.format("%.1f", f32_bytes / int8_bytes), smaller)

    -- a file saved before fp32_tensor_bytes was recorded: no comparison, the rest as before
    local state, metadata = lunet.safetensors.read(int8_path)
    local quant = json.decode(metadata["lunet.quant"])
    quant.fp32_tensor_bytes = nil
    metadata["lunet.quant"] = json.encode(quant)
    local old_path = directory .. "/old_int8.safetensors"
    lunet.safetensors.write(old_path, state, metadata)
    output, status = lunet_command("info " .. old_path)
    assert.are.equal(0, status, output)
    assert.is_truthy(output:find("int8: static, 7-bit weights", 1, true), output)
    assert.is_truthy(output:find(string.format("size: tensors %.1f KiB\n", int8_bytes / 1024), 1, true), output)
    assert.is_falsy(output:find("fp32", 1, true), output)

    -- an f32 model's output has no int8 lines
    output = lunet_command("info " .. f32_path)
    assert.is_falsy(output:find("int8:", 1, true) or output:find("size:", 1, true), output)
  end)

  it("export writes ONNX and convert brings it back as a model file that predicts the same", function()
    lunet.manual_seed(4)
    local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    local path = directory .. "/mlp.safetensors"
    model:save(path, { input_shape = { 1, 28, 28 } })
    local onnx_path, back = directory .. "/mlp.onnx", directory .. "/back.safetensors"
    local output, status = lunet_command("export " .. path .. " --onnx " .. onnx_path)
    assert.are.equal(0, status, output)
    assert.is_truthy(output:find("wrote " .. onnx_path, 1, true), output)
    output, status = lunet_command("convert " .. onnx_path .. " " .. back)
    assert.are.equal(0, status, output)
    local again = lunet.load(back)
    local x = lunet.rand({ 20, 1, 28, 28 })
    assert.is_true((model:predict(x) - again:predict(x)):abs():max():item() < 1e-6)
  end)

  it("reports a bad file with status 1 and a usage mistake with status 2", function()
    local output, status = lunet_command("info " .. directory .. "/missing.safetensors")
    assert.are.equal(1, status)
    assert.is_truthy(output:find(directory .. "/missing.safetensors", 1, true), output)
    output, status = lunet_command("frobnicate")
    assert.are.equal(2, status)
    assert.is_truthy(output:find("usage: lunet info FILE", 1, true), output)
    output, status = lunet_command("export x.safetensors")
    assert.are.equal(2, status)
    assert.is_truthy(output:find("export needs --onnx OUT", 1, true), output)
  end)
end)
