-- The compiled model graph (lunet.compile) behind model:predict and model:evaluate: the same
-- answers as the modules, kept in step with the model as it changes, and a fallback to the
-- modules for models it cannot take.
local lunet = require("lunet")
local h = require("spec.helpers")
local nn, core = lunet.nn, require("lunet.core")

-- The model's outputs through its modules, in evaluation mode and without autograd.
local function by_modules(model, x)
  local was = model.training
  model:eval()
  core.set_grad_enabled(false)
  local y = model(x)
  core.set_grad_enabled(true)
  model:train(was)
  return y
end

local function max_diff(a, b) return (a - b):abs():max():item() end

describe("compiled models", function()
  local test
  setup(function()
    lunet.set_num_threads(1)
    local _
    _, test = lunet.data.fashion_mnist()
  end)
  teardown(function() lunet.set_num_threads(1) end)

  for _, case in ipairs({ { "mlp", h.fashion_mlp }, { "cnn", h.fashion_cnn } }) do
    it("predict gives the modules' bits for the " .. case[1] .. " on 2,000 test images, on 1 and 2 threads", function()
      lunet.manual_seed(11)
      local model = case[2]()
      local x = test.x:narrow(1, 1, 2000)
      local want = by_modules(model, x)
      for threads = 1, 2 do
        lunet.set_num_threads(threads)
        local got = model:predict(x)
        assert.are.same(want:shape(), got:shape())
        assert.are.equal(0, max_diff(want, got))
        assert.is_false(got.requires_grad)
      end
      lunet.set_num_threads(1)
      assert.is_not_nil(rawget(model, "_compiled"), "predict did not compile the model")
    end)
  end

  it("fuses activations and folds BatchNorm, within rounding of the modules", function()
    lunet.manual_seed(12)
    local model = nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(8, 8, 3, { stride = 2 }), nn.LeakyReLU(0.2), nn.BatchNorm2d(8), nn.GlobalAvgPool2d(),
      nn.Linear(8, 16), nn.BatchNorm1d(16), nn.GELU(), nn.Dropout(0.5), nn.Linear(16, 10), nn.Sigmoid(),
      nn.Tanh(), nn.Softmax(2))
    -- statistics that are not the defaults, so that folding has something to fold
    model:fit({ test.x:narrow(1, 1, 256), test.y:narrow(1, 1, 256) }, { epochs = 1, batch_size = 64, verbose = 0 })
    local graph = lunet.compile(model, { 1, 28, 28 })
    local kinds = {}
    for _, layer in ipairs(graph:layers()) do kinds[#kinds + 1] = layer.kind .. (layer.activation and "+" .. layer.activation or "") end
    assert.are.same({ "conv2d+relu", "avg_pool2d", "conv2d+leaky_relu", "batch_norm", "adaptive_avg_pool2d", "flatten",
      "linear+gelu", "linear+sigmoid", "tanh", "softmax" }, kinds)
    local x = test.x:narrow(1, 1, 300)
    assert.is_true(model.training)
    assert.is_true(max_diff(by_modules(model, x), model:predict(x)) < 1e-6)
    assert.is_true(model.training, "predict changed the model's mode")
  end)

  it("follows the model: an optimizer step, a copied state dict and a replaced layer are seen", function()
    lunet.manual_seed(13)
    local model = h.fashion_mlp()
    local x, y = test.x:narrow(1, 1, 64), test.y:narrow(1, 1, 64)
    local before = model:predict(x)
    local opt = lunet.optim.SGD(model:parameters(), { lr = 0.5 })
    opt:zero_grad()
    nn.CrossEntropyLoss()(model(x), y):backward()
    opt:step()
    local after = model:predict(x)
    assert.is_true(max_diff(before, after) > 1e-3)
    assert.are.equal(0, max_diff(by_modules(model, x), after))

    local other = h.fashion_mlp()
    model:load_state_dict(other:state_dict())
    assert.are.equal(0, max_diff(by_modules(other, x), model:predict(x)))

    model[4] = nn.Linear(128, 3)
    local replaced = model:predict(x)
    assert.are.same({ 64, 3 }, replaced:shape())
    assert.are.equal(0, max_diff(by_modules(model, x), replaced))

    model[2].weight = lunet.zeros({ 128, 784 })
    model[2].weight.requires_grad = true
    assert.are.equal(0, max_diff(by_modules(model, x), model:predict(x)))
  end)

  it("recompiles for another sample shape or dtype", function()
    lunet.manual_seed(14)
    local model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(4, 2))
    local small, large = lunet.rand({ 5, 1, 8, 8 }), lunet.rand({ 3, 1, 20, 16 })
    assert.are.equal(0, max_diff(by_modules(model, small), model:predict(small)))
    assert.are.equal(0, max_diff(by_modules(model, large), model:predict(large)))
    local model64 = nn.Sequential(nn.Conv2d(1, 4, 3, { dtype = "f64" }), nn.ReLU(), nn.GlobalAvgPool2d(),
      nn.Linear(4, 2, { dtype = "f64" }))
    local x64 = small:to("f64")
    assert.are.equal("f64", model64:predict(x64).dtype)
    assert.are.equal(0, max_diff(by_modules(model64, x64), model64:predict(x64)))
  end)

  it("evaluate runs the graph and reports what the modules give", function()
    lunet.manual_seed(15)
    local model = h.fashion_cnn()
    local subset = { test.x:narrow(1, 1, 500), test.y:narrow(1, 1, 500) }
    local r = model:evaluate(subset, { batch_size = 128 })
    assert.is_not_nil(rawget(model, "_compiled"))
    local logits = by_modules(model, subset[1])
    local correct = logits:argmax(2):eq(subset[2]):sum():item()
    assert.are.equal(correct / 500, r.accuracy)
    assert.is_true(math.abs(nn.CrossEntropyLoss()(logits, subset[2]):item() - r.loss) < 1e-6)
  end)

  it("leaves models it cannot take to their modules, and says why", function()
    local Doubler = nn.Module:extend("Doubler")
    function Doubler:forward(x) return x * 2 end
    local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), Doubler())
    local graph, reason = lunet.compile(model, { 1, 28, 28 })
    assert.is_nil(graph)
    assert.is_truthy(reason:find("Doubler is not a built-in layer", 1, true), reason)
    local x = test.x:narrow(1, 1, 10)
    assert.are.equal(0, max_diff(by_modules(model, x), model:predict(x)))

    local no_stats = nn.Sequential(nn.Flatten(), nn.Linear(784, 4), nn.BatchNorm1d(4, { track_running_stats = false }))
    graph, reason = lunet.compile(no_stats, { 1, 28, 28 })
    assert.is_nil(graph)
    assert.is_truthy(reason:find("without running statistics", 1, true), reason)
  end)

  it("reports a model that does not fit its input with the layer and the shapes", function()
    local model = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))
    h.assert_error_contains(function() model:predict(test.x:narrow(1, 1, 2)) end,
      "linear layer 2 takes 100 features but gets samples of shape [784]")
  end)
end)
