-- lunet.quantize and the int8 layers: accuracy against the f32 model, the modules against the
-- compiled graph, model files, and the kernels against integer arithmetic done here in Lua.
local lunet = require("lunet")
local helpers = require("spec.helpers")

local nn, data = lunet.nn, lunet.data

local train_set, test_set = data.fashion_mnist()

local function trained(build, samples)
  lunet.manual_seed(0)
  local model = build()
  model:fit(train_set:subset(1, samples), { epochs = 1, batch_size = 64, verbose = 0,
    optimizer = lunet.optim.Adam(model:parameters(), { lr = 1e-3 }) })
  return model:eval()
end

local mlp = trained(helpers.fashion_mlp, 20000)
local calibration = train_set:subset(1, 512)

local function file_size(path) return #helpers.read_bytes(path) end

describe("lunet.quantize", function()
  local fp32 = mlp:evaluate(test_set).accuracy

  it("static int8 keeps the MLP's test accuracy within half a point", function()
    local q = lunet.quantize(mlp, { calibration = calibration })
    assert.is_true(math.abs(q:evaluate(test_set).accuracy - fp32) <= 0.005)
    assert.equals("QuantizedLinear", q[3].__name)
    assert.is_true(q[3].relu)
  end)

  it("percentile calibration and 8-bit weights keep it too", function()
    local p = lunet.quantize(mlp, { calibration = calibration, method = "percentile" })
    assert.is_true(math.abs(p:evaluate(test_set).accuracy - fp32) <= 0.005)
    local w8 = lunet.quantize(mlp, { calibration = calibration, weight_bits = 8 })
    assert.is_true(math.abs(w8:evaluate(test_set).accuracy - fp32) <= 0.005)
    assert.equals(127, w8[3].weight:abs():max():item())
  end)

  it("dynamic int8 needs no calibration, keeps the accuracy, and answers each row alone", function()
    local d = lunet.quantize(mlp, { mode = "dynamic" })
    assert.equals("DynamicQuantizedLinear", d[2].__name)
    assert.is_true(math.abs(d:evaluate(test_set).accuracy - fp32) <= 0.005)
    local x = test_set.x:narrow(1, 1, 300)
    local all, some = d:predict(x), d:predict(x:narrow(1, 11, 5))
    assert.equals(0, (all:narrow(1, 11, 5) - some):abs():max():item())
  end)

  it("runs the same bits through the modules and through the compiled graph", function()
    local q = lunet.quantize(mlp, { calibration = calibration })
    local x = test_set.x:narrow(1, 1, 600)
    assert.equals(0, (q(x) - q:predict(x)):abs():max():item())
  end)

  it("keeps the first and last layers in f32 when asked", function()
    local q = lunet.quantize(mlp, { calibration = calibration, keep_first = true })
    assert.equals("Linear", q[2].__name)
    assert.equals("Quantize", q[4].__name)
    local k = lunet.quantize(mlp, { calibration = calibration, keep_last = true })
    assert.equals("Dequantize", k[#k - 1].__name)
    assert.equals("Linear", k[#k].__name)
    local x = test_set.x:narrow(1, 1, 100)
    assert.equals(0, (q(x) - q:predict(x)):abs():max():item())
  end)

  it("quantizes a CNN: u8 max pooling and flatten between the int8 layers, BatchNorm folded", function()
    local cnn = trained(function()
      return nn.Sequential(nn.Conv2d(1, 8, 3, { bias = false }), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 13 * 13, 10))
    end, 6000)
    local q = lunet.quantize(cnn, { calibration = calibration })
    local names = {}
    for i = 1, #q do names[i] = q[i].__name end
    assert.same({ "Quantize", "QuantizedConv2d", "MaxPool2d", "Flatten", "QuantizedLinear", "Dequantize" }, names)
    assert.is_true(math.abs(q:evaluate(test_set).accuracy - cnn:evaluate(test_set).accuracy) <= 0.005)
    local x = test_set.x:narrow(1, 1, 300)
    assert.equals(0, (q(x) - q:predict(x)):abs():max():item())
  end)

  it("saves and loads an int8 model: same predictions, under 30% of the f32 file", function()
    local dir = helpers.make_directory()
    local q = lunet.quantize(mlp, { calibration = calibration })
    mlp:save(dir .. "/f32.safetensors")
    q:save(dir .. "/int8.safetensors")
    local again = lunet.load(dir .. "/int8.safetensors")
    local x = test_set.x:narrow(1, 1, 1000)
    assert.equals(0, (again:predict(x) - q:predict(x)):abs():max():item())
    assert.same({ mode = "static", weight_bits = 7, calibration = "minmax", calibration_samples = 512,
      fp32_tensor_bytes = 4 * mlp:parameter_count() }, again.quantization)
    local tensors = lunet.safetensors.read(dir .. "/int8.safetensors")
    assert.equals("i8", tensors["3.weight"].dtype)
    assert.equals("i32", tensors["3.bias"].dtype)
    assert.equals("f32", tensors["3.weight_scale"].dtype)
    assert.is_true(file_size(dir .. "/int8.safetensors") <= 0.3 * file_size(dir .. "/f32.safetensors"))
    helpers.remove_directory(dir)
  end)

  it("refuses a file whose int8 tensors have the wrong dtype", function()
    local dir = helpers.make_directory()
    local q = lunet.quantize(mlp, { calibration = calibration })
    local state = q:state_dict()
    state["3.weight"] = state["3.weight"]:to("f32")
    q:save(dir .. "/good.safetensors")
    local _, metadata = lunet.safetensors.read(dir .. "/good.safetensors")
    lunet.safetensors.write(dir .. "/bad.safetensors", state, metadata)
    local ok, err = pcall(lunet.load, dir .. "/bad.safetensors")
    assert.is_false(ok)
    assert.matches('tensor "3.weight" has dtype f32; expected i8', err, 1, true)
    helpers.remove_directory(dir)
  end)

  it("says what is wrong with its options", function()
    assert.has_error(function() lunet.quantize(mlp) end,
      "quantize: static quantization needs calibration data ({calibration = dataset}); or ask for {mode = \"dynamic\"}")
    assert.has_error(function() lunet.quantize(mlp, { calibration = calibration, weight_bits = 4 }) end,
      "quantize: weight_bits must be 7 or 8")
    assert.has_error(function() lunet.quantize(mlp, { calibrate = calibration }) end,
      "quantize: unknown option \"calibrate\"")
  end)
end)

describe("int8 kernels", function()
  -- The exact answer in Lua integers: clamp(round_half_even(acc * m) + zp, low, 255), with the
  -- float multiply done in f32 as the kernels do (through a tensor).
  local function expected_qlinear(x, w, bias, multipliers, zp, relu)
    local out = {}
    for r = 1, #x do
      out[r] = {}
      for o = 1, #w do
        local acc = bias[o]
        for k = 1, #w[o] do acc = acc + x[r][k] * w[o][k] end
        out[r][o] = acc
      end
    end
    local acc = lunet.tensor(out, "f32") * multipliers -- f32 product, exact float(acc) for these sizes
    local rows = acc:totable()
    for r = 1, #rows do
      for o = 1, #rows[r] do
        local v = rows[r][o]
        local lo = relu and 0 or -zp
        v = math.max(lo, math.min(255 - zp, v))
        local f = math.floor(v)
        local rounded = (v - f > 0.5 or (v - f == 0.5 and f % 2 == 1)) and f + 1 or f
        rows[r][o] = rounded + zp
      end
    end
    return rows
  end

  for _, case in ipairs({ { limit = 63, name = "7-bit weights (the AVX2 kernel)" },
    { limit = 127, name = "8-bit weights (the plain kernel)" } }) do
    it("qlinear is exact at the extremes with " .. case.name, function()
      local k, o = 66, 9
      local x, w = {}, {}
      for r = 1, 5 do
        x[r] = {}
        for i = 1, k do x[r][i] = (r + i) % 3 == 0 and 0 or 255 end
      end
      for c = 1, o do
        w[c] = {}
        for i = 1, k do w[c][i] = (c % 2 == 0) and case.limit or -case.limit end
      end
      w[1][1] = -case.limit
      local bias, scale = {}, {}
      for c = 1, o do bias[c], scale[c] = c * 1000 - 4000, 1 / 2048 * c end
      local x_zp, y_scale, y_zp = 0, 0.5, 100
      local layer = { weight = lunet.tensor(w, "i8"), scale = lunet.tensor(scale, "f32"),
        bias = lunet.tensor(bias, "i32"), output_scale = y_scale, output_zero_point = y_zp, relu = true }
      local got = require("lunet.core").qlinear(lunet.tensor(x, "u8"), 1.0, x_zp, layer):totable()
      -- multiplier = x_scale * w_scale / y_scale in f32: 1 * scale / 0.5, exact here
      local m = {}
      for c = 1, o do m[c] = scale[c] / y_scale end
      local want = expected_qlinear(x, w, bias, lunet.tensor({ m }, "f32"), y_zp, true)
      assert.same(want, got)
    end)
  end
end)
