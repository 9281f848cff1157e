-- Model files (model:save, lunet.load) and checkpoints (lunet.checkpoint, fit{checkpoint,
-- resume}): round trips on Fashion-MNIST, hostile files, crashes mid-write, resuming a run.
local lunet = require("lunet")
local h = require("spec.helpers")
local nn, safetensors, json = lunet.nn, lunet.safetensors, require("lunet.json")

local mlp, cnn = h.fashion_mlp, h.fashion_cnn

local read_bytes, write_bytes = h.read_bytes, h.write_bytes

local st_bytes = h.safetensors_bytes

describe("model files", function()
  local directory, train, test
  setup(function()
    directory = h.make_directory()
    lunet.set_num_threads(1)
    train, test = lunet.data.fashion_mnist()
  end)
  teardown(function() h.remove_directory(directory) end)
  local function path_of(name) return directory .. "/" .. name end

  describe("round trip on the Fashion-MNIST test set", function()
    for _, case in ipairs({ { "mlp", mlp }, { "cnn", cnn } }) do
      it("gives bit-identical predictions for the " .. case[1], function()
        lunet.manual_seed(3)
        local model = case[2]()
        model:fit(train:subset(1, 3200), { epochs = 1, batch_size = 64, verbose = 0 })
        local path = path_of(case[1] .. ".safetensors")
        model:save(path)
        local again = lunet.load(path)
        assert.are.same(lunet.architecture.describe(model), lunet.architecture.describe(again))
        local a, b = model:predict(test.x), again:predict(test.x)
        assert.are.same({ 10000, 10 }, b:shape())
        assert.are.equal(0, a:ne(b):sum():item(), "every output equal")
        assert.are.equal(0, (a - b):abs():max():item())
        -- what fit recorded comes back with the model
        assert.are.same({ 1, 28, 28 }, again.input_shape)
        assert.are.same(test.classes, again.class_names)
        -- saving the loaded model gives the same bytes
        local path2 = path_of(case[1] .. "-again.safetensors")
        again:save(path2)
        assert.are.equal(read_bytes(path), read_bytes(path2))
      end)
    end

    it("keeps every built-in layer's settings", function()
      lunet.manual_seed(1)
      local model = nn.Sequential(
        nn.Conv2d(3, 8, 3, { stride = 2, padding = 1, dilation = 1, groups = 1, bias = false }),
        nn.BatchNorm2d(8, { eps = 1e-3, momentum = 0.2 }), nn.LeakyReLU(0.05),
        nn.Conv2d(8, 8, 3, { padding = "same", groups = 4 }), nn.GELU({ approximate = "tanh" }),
        nn.MaxPool2d(3, { stride = 1, padding = 1 }), nn.AvgPool2d(2, { count_include_pad = false }),
        nn.Sequential(nn.Sigmoid(), nn.Tanh(), nn.Identity()), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.3), nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4, { bias = false }),
        nn.Softmax(2), nn.LogSoftmax(-1))
      model:train()
      model(lunet.randn({ 4, 3, 12, 12 })) -- moves the running statistics
      local path = path_of("many.safetensors")
      model:save(path, { input_shape = { 3, 12, 12 }, class_names = { "a", "b", "c", "d" } })
      local again = lunet.load(path)
      assert.are.same(lunet.architecture.describe(model), lunet.architecture.describe(again))
      assert.is_false(again.training)
      model:eval()
      local x = lunet.randn({ 5, 3, 12, 12 })
      assert.are.equal(0, (model(x) - again(x)):abs():max():item())
      assert.are.same({ "a", "b", "c", "d" }, again.class_names)
    end)
  end)

  describe("files other writers made", function()
    it("weights only: lunet.load says how to load them, load_state_dict does", function()
      lunet.manual_seed(2)
      local model = mlp()
      local path = path_of("weights.safetensors")
      safetensors.write(path, model:state_dict())
      h.assert_error_contains(function() lunet.load(path) end, path, "no lunet.graph",
        "model:load_state_dict(lunet.safetensors.read(path))")
      local other = mlp()
      other:load_state_dict((safetensors.read(path)))
      local x = test.x:narrow(1, 1, 50)
      assert.are.equal(0, (model:predict(x) - other:predict(x)):abs():max():item())
    end)

    it("a model of user-defined modules is saved with its weights only", function()
      local Net = nn.Module:extend("Net")
      function Net:init() self.fc = nn.Linear(4, 2) end
      function Net:forward(x) return self.fc(x) end
      local path = path_of("custom.safetensors")
      Net():save(path)
      local _, metadata = safetensors.read(path)
      assert.is_nil(metadata["lunet.graph"])
      h.assert_error_contains(function() lunet.load(path) end, path, "no lunet.graph")
    end)
  end)

  describe("hostile files", function()
    local graph = json.encode({ model = { type = "Sequential", layers = {
      { type = "Linear", in_features = 2, out_features = 1, bias = true } } } })
    local function model_file(graph_text, tensors_header, data)
      tensors_header = tensors_header or {
        ["1.weight"] = { dtype = "F32", shape = { 1, 2 }, data_offsets = { 0, 8 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 8, 12 } },
      }
      tensors_header.__metadata__ = { ["lunet.format"] = "1", ["lunet.graph"] = graph_text }
      return st_bytes(tensors_header, data or string.rep("\0", 12))
    end
    local function refused(name, bytes, ...)
      local path = path_of(name)
      write_bytes(path, bytes)
      h.assert_error_contains(function() lunet.load(path) end, path, ...)
    end

    it("the good file loads (the cases below differ from it in one thing)", function()
      local path = path_of("good.safetensors")
      write_bytes(path, model_file(graph))
      assert.are.same({ 1, 2 }, lunet.load(path)[1].weight:shape())
    end)

    it("refuses broken safetensors containers", function()
      local good = model_file(graph)
      refused("truncated", good:sub(1, -2), "run past the end of the data section")
      refused("short", good:sub(1, 5), "the file holds 5 bytes")
      refused("header_past_end", string.pack("<I8", #good) .. good:sub(9), "runs past the end of the file")
      refused("overlap", model_file(graph, {
        ["1.weight"] = { dtype = "F32", shape = { 1, 2 }, data_offsets = { 0, 8 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 4, 8 } } }), "overlap")
      refused("out_of_range", model_file(graph, {
        ["1.weight"] = { dtype = "F32", shape = { 1, 2 }, data_offsets = { 0, 8 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 8, 4000 } } }), "run past the end")
      refused("overflow", model_file(graph, {
        ["1.weight"] = { dtype = "F32", shape = { 4294967296, 4294967296, 16 }, data_offsets = { 0, 8 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 8, 12 } } }), "overflows a 64-bit element count")
      refused("f16", model_file(graph, {
        ["1.weight"] = { dtype = "F16", shape = { 1, 2 }, data_offsets = { 0, 4 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 4, 8 } } }, string.rep("\0", 8)),
        "dtype F16 is not supported")
    end)

    it("refuses a graph that does not describe a model it can build", function()
      refused("bad_json", model_file('{"model": [1, 2'), "lunet.graph is not valid JSON")
      refused("not_object", model_file('[1]'), "lunet.graph must be an object")
      refused("unknown_type", model_file(json.encode({ model = { type = "Sequential", layers = {
        { type = "Transformer" } } } })), 'model.layers[1]: unknown layer type "Transformer"')
      refused("bad_setting", model_file(json.encode({ model = { type = "Sequential", layers = {
        { type = "Linear", in_features = -2, out_features = 1, bias = true } } } })),
        "model.layers[1] (Linear): in_features must be a positive integer")
      refused("fraction_size", model_file(json.encode({ model = { type = "Sequential", layers = {
        { type = "Linear", in_features = 2.5, out_features = 1, bias = true } } } })), "in_features must be")
      refused("missing_setting", model_file(json.encode({ model = { type = "Sequential", layers = {
        { type = "Linear", in_features = 2, out_features = 1 } } } })), 'setting "bias" is missing')
      refused("extra_setting", model_file(json.encode({ model = { type = "Sequential", layers = {
        { type = "Linear", in_features = 2, out_features = 1, bias = true, code = "os.exit()" } } } })),
        'unknown setting "code"')
      local deep = string.rep('{"type":"Sequential","layers":[', 40) .. '{"type":"ReLU"}' .. string.rep("]}", 40)
      refused("deep_json", model_file('{"model":' .. deep .. "}"), "lunet.graph is not valid JSON", "nested")
      local nested = { type = "ReLU" }
      for _ = 1, 40 do nested = { type = "Sequential", layers = { nested } } end
      h.assert_error_contains(function() lunet.architecture.check(nested) end, "nested more than 32 deep")
      refused("unknown_field", model_file(json.encode({ model = { type = "ReLU" }, extra = 1 })),
        'unknown field "extra"')
      refused("old_format", model_file(graph):gsub('"lunet.format":"1"', '"lunet.format":"9"'),
        'lunet.format "9" is not one this lunet reads')
    end)

    it("checks the tensors against the graph before building anything", function()
      -- a layer of 2^24 x 2^24 weights (1 PiB) is refused by its tensor's shape, not by an allocation
      refused("huge_layer", model_file(json.encode({ model = { type = "Sequential", layers = {
        { type = "Linear", in_features = 1 << 24, out_features = 1 << 24, bias = true } } } })),
        'tensor "1.bias" has shape [1] but the model in lunet.graph needs [16777216]')
      refused("missing_tensor", model_file(graph, {
        ["1.weight"] = { dtype = "F32", shape = { 1, 2 }, data_offsets = { 0, 8 } } }, string.rep("\0", 8)),
        'tensor "1.bias" is missing')
      refused("extra_tensor", model_file(graph, {
        ["1.weight"] = { dtype = "F32", shape = { 1, 2 }, data_offsets = { 0, 8 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 8, 12 } },
        ["2.weight"] = { dtype = "F32", shape = { 1 }, data_offsets = { 12, 16 } } }, string.rep("\0", 16)),
        'tensor "2.weight" is not a parameter or buffer')
      refused("integer_weights", model_file(graph, {
        ["1.weight"] = { dtype = "I32", shape = { 1, 2 }, data_offsets = { 0, 8 } },
        ["1.bias"] = { dtype = "F32", shape = { 1 }, data_offsets = { 8, 12 } } }),
        'tensor "1.weight" has dtype i32; expected f32 or f64')
    end)
  end)

  describe("a process killed during save", function()
    it("leaves the old file or the new one, never a broken one", function()
      local path = path_of("killed.safetensors")
      -- the child saves two different models over path, alternately, until it is killed
      local script = path_of("saver.lua")
      write_bytes(script, string.format([[
package.path = %q
package.cpath = %q
local lunet = require("lunet")
local models = {}
for i = 1, 2 do
  lunet.manual_seed(i)
  models[i] = lunet.nn.Sequential(lunet.nn.Linear(784, 512), lunet.nn.ReLU(), lunet.nn.Linear(512, 10))
end
models[1]:save(%q)
io.stdout:write("ready\n")
io.stdout:flush()
local i = 0
while true do
  i = i + 1
  models[i %% 2 + 1]:save(%q)
end
]], package.path, package.cpath, path, path))
      local expected = {}
      for i = 1, 2 do
        lunet.manual_seed(i)
        local m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
        expected[i] = m[1].weight:sum():item()
      end
      local seen = {}
      for round = 1, 12 do
        os.remove(path)
        -- start, wait until the first save is done, let it save for a while, kill it hard
        local delay = string.format("0.%02d", 5 + (round * 7) % 30)
        local command = string.format("lua5.4 %s > %s.out 2>&1 & pid=$!; " ..
          "for _ in $(seq 200); do grep -q ready %s.out 2>/dev/null && break; sleep 0.05; done; " ..
          "sleep %s; kill -9 $pid; wait $pid 2>/dev/null; true", script, script, script, delay)
        assert(os.execute(command))
        local model = lunet.load(path) -- raises if the file is broken
        local sum = model[1].weight:sum():item()
        assert.is_true(sum == expected[1] or sum == expected[2], "one of the two models")
        seen[sum == expected[1] and 1 or 2] = true
      end
      assert.is_true(seen[1] and seen[2], "the kills landed on both models' saves")
    end)
  end)
end)

describe("checkpoints", function()
  local directory
  setup(function() directory = h.make_directory() end)
  teardown(function() h.remove_directory(directory) end)
  local function path_of(name) return directory .. "/" .. name end

  it("keep the model, the optimizer, the random state and plain values exactly", function()
    lunet.manual_seed(5)
    local model = mlp()
    local opt = lunet.optim.Adam(model:parameters(), { lr = 1e-3 })
    local x, y = lunet.randn({ 8, 784 }), lunet.tensor({ 1, 2, 3, 4, 5, 6, 7, 8 }, "i64")
    for _ = 1, 3 do
      opt:zero_grad()
      nn.CrossEntropyLoss()(model(x), y):backward()
      opt:step()
    end
    local path = path_of("plain.ckpt")
    lunet.checkpoint.save(path, { model = model, optimizer = opt, epoch = 7, best = 0.25, note = "x\n\"y\"",
      flags = { true, false }, big = math.maxinteger, nested = { [3] = { a = lunet.ones({ 2 }) } } })
    local expected_draw = lunet.rand({ 4 })

    lunet.manual_seed(99)
    local other = mlp()
    local other_opt = lunet.optim.Adam(other:parameters(), { lr = 0.5 })
    local saved = lunet.checkpoint.load(path, { model = other, optimizer = other_opt })
    assert.are.equal(7, saved.epoch)
    assert.are.equal("integer", math.type(saved.epoch))
    assert.are.equal(0.25, saved.best)
    assert.are.equal("x\n\"y\"", saved.note)
    assert.are.same({ true, false }, saved.flags)
    assert.are.equal(math.maxinteger, saved.big)
    h.assert_values(saved.nested[3].a, { 1, 1 })
    assert.are.equal(0, (lunet.rand({ 4 }) - expected_draw):abs():max():item(), "the random state came back")
    for name, t in pairs(model:state_dict()) do
      assert.are.equal(0, (t - other:state_dict()[name]):abs():max():item(), name)
    end
    assert.are.equal(1e-3, other_opt:get_lr())
    -- one more step from the same state gives the same weights
    for _, m in ipairs({ { model, opt }, { other, other_opt } }) do
      m[2]:zero_grad()
      nn.CrossEntropyLoss()(m[1](x), y):backward()
      m[2]:step()
    end
    assert.are.equal(0, (model[2].weight - other[2].weight):abs():max():item())
  end)

  it("refuse files that are not checkpoints, or damaged ones, naming the file", function()
    local path = path_of("model.safetensors")
    mlp():save(path)
    h.assert_error_contains(function() lunet.checkpoint.load(path) end, path, "not a lunet checkpoint")
    local bad = path_of("bad.ckpt")
    safetensors.write(bad, {}, { ["lunet.format"] = "1", ["lunet.checkpoint"] = '{"table":[[{"s":"a"},{"t":"gone"}]]}' })
    h.assert_error_contains(function() lunet.checkpoint.load(bad) end, bad, "names a tensor the file does not have")
    safetensors.write(bad, {}, { ["lunet.format"] = "1", ["lunet.checkpoint"] = '{"table":[[{"s":"a"},{"i":"1.5"}]]}' })
    h.assert_error_contains(function() lunet.checkpoint.load(bad) end, bad, "not a 64-bit decimal integer")
    safetensors.write(bad, {}, { ["lunet.format"] = "1", ["lunet.checkpoint"] = '{"table":' })
    h.assert_error_contains(function() lunet.checkpoint.load(bad) end, bad, "not valid JSON")
  end)

  it("let fit resume a stopped run: 2 + 2 epochs give the same weights as 4, bit for bit", function()
    -- three processes: 4 epochs straight; 2 epochs with a checkpoint; a fresh one resuming to 4
    local run = [[
local lunet = require("lunet")
local nn = lunet.nn
lunet.set_num_threads(1)
lunet.manual_seed(%d)
local train = lunet.data.fashion_mnist():subset(1, 1500)
local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
local opt = lunet.optim.Adam(model:parameters(), { lr = 1e-3 })
local scheduler = lunet.optim.StepLR(opt, { step_size = 1, gamma = 0.5 })
local history = model:fit(train, { epochs = %d, batch_size = 64, optimizer = opt, scheduler = scheduler,
  validation_split = 0.1, verbose = 0, checkpoint = %s, resume = %s })
model:save(%q)
print("epochs", history.epochs, "lr", history.lr[history.epochs])
]]
    local ckpt, straight, resumed = path_of("run.ckpt"), path_of("straight.safetensors"), path_of("resumed.safetensors")
    local out1 = h.run_lua_child("", string.format(run, 4, 4, "nil", "false", straight))
    local out2 = h.run_lua_child("", string.format(run, 4, 2, string.format("%q", ckpt), "false", path_of("half.st")))
    local out3 = h.run_lua_child("", string.format(run, 123, 4, string.format("%q", ckpt), "true", resumed))
    assert.are.equal("epochs\t4\tlr\t0.000125\n", out1) -- 1e-3 halved after each of 3 epochs
    assert.are.equal("epochs\t2\tlr\t0.0005\n", out2)
    assert.are.equal(out1, out3)
    assert.are.equal(read_bytes(straight), read_bytes(resumed), "the same bytes: the same weights")
  end)
end)
