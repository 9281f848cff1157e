local lunet = require("lunet")
local h = require("spec.helpers")
local nn, F = lunet.nn, lunet.nn.functional

describe("nn.Module", function()
  it("registers parameters and children assigned to fields, in order", function()
    local Net = nn.Module:extend("Net")
    function Net:init()
      self.hidden = nn.Linear(4, 8)
      self.scale = lunet.ones({ 8 }, { requires_grad = true })
      self.constant = lunet.ones({ 8 }) -- does not require grad: a plain field
      self.out = nn.Linear(8, 2)
    end
    function Net:forward(x) return self.out(self.hidden(x):relu() * self.scale) end
    local net = Net()
    local names = {}
    for _, entry in ipairs(net:named_parameters()) do names[#names + 1] = entry[1] end
    assert.are.same({ "scale", "hidden.weight", "hidden.bias", "out.weight", "out.bias" }, names)
    assert.are.equal(5, #net:parameters())
    assert.are.equal(4 * 8 + 8 + 8 + 8 * 2 + 2, net:parameter_count())
    assert.are.same({ 3, 2 }, net(lunet.randn({ 3, 4 })):shape())
  end)

  it("trains a module written in Lua through the same autograd", function()
    lunet.manual_seed(3)
    local Affine = nn.Module:extend("Affine")
    function Affine:init() self.w = lunet.zeros({ 1 }, { requires_grad = true }) end
    function Affine:forward(x) return x * self.w end
    local m = Affine()
    local opt = lunet.optim.SGD(m:parameters(), { lr = 0.1 })
    local x = lunet.randn({ 32 })
    for _ = 1, 100 do
      opt:zero_grad()
      local loss = ((m(x) - x * 3) ^ 2):mean()
      loss:backward()
      opt:step()
    end
    assert.is_true(math.abs(m.w:item() - 3) < 1e-3)
  end)

  it("switches train and eval mode through the tree and drops gradients", function()
    local model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model:eval()
    assert.is_false(model[2].training)
    local x = lunet.ones({ 4, 2 })
    assert.are.same(model[1](x):totable(), model(x):totable()) -- dropout is off
    model:train()
    assert.is_true(model[2].training)
    model(x):sum():backward()
    assert.is_not_nil(model[1].weight.grad)
    model:zero_grad()
    assert.is_nil(model[1].weight.grad)
  end)

  it("prints a summary with each layer's parameter count and the total", function()
    local text = tostring(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10)))
    assert.truthy(text:find("(1): Conv2d(1, 8, kernel_size=3)", 1, true))
    assert.truthy(text:find("80 params", 1, true))
    assert.truthy(text:find("54,090 params", 1, true))
    assert.truthy(text:find("Total parameters: 54,170 (trainable: 54,170)", 1, true))
  end)
end)

describe("layers", function()
  it("initialise like PyTorch: uniform within 1/sqrt(fan_in)", function()
    lunet.manual_seed(0)
    local linear = nn.Linear(400, 300)
    local bound = 1 / math.sqrt(400)
    assert.is_true(linear.weight:abs():max():item() <= bound)
    assert.is_true(linear.weight:abs():max():item() > 0.95 * bound)
    -- a uniform distribution on [-b, b] has standard deviation b / sqrt(3)
    local std = ((linear.weight - linear.weight:mean()) ^ 2):mean():sqrt():item()
    assert.is_true(math.abs(std - bound / math.sqrt(3)) < 0.02 * bound)
    local conv = nn.Conv2d(16, 8, 3)
    assert.is_true(conv.weight:abs():max():item() <= 1 / math.sqrt(16 * 9))
    assert.are.same({ 8, 16, 3, 3 }, conv.weight:shape())
  end)

  it("nn.init fills tensors with the documented distributions", function()
    lunet.manual_seed(1)
    local t = lunet.empty({ 200, 100 })
    nn.init.xavier_uniform(t)
    assert.is_true(t:abs():max():item() <= math.sqrt(6 / 300))
    nn.init.kaiming_normal(t, { nonlinearity = "relu" })
    local std = t:pow(2):mean():sqrt():item()
    assert.is_true(math.abs(std - math.sqrt(2 / 100)) < 0.01)
    nn.init.constant(t, 0.5)
    assert.are.equal(0.5, t:max():item())
    assert.are.equal(math.sqrt(2), nn.init.calculate_gain("relu"))
  end)

  it("compute the shapes PyTorch computes", function()
    local x = lunet.randn({ 2, 3, 17, 15 })
    assert.are.same({ 2, 6, 9, 8 }, nn.Conv2d(3, 6, 3, { stride = 2, padding = 1 })(x):shape())
    assert.are.same({ 2, 6, 17, 15 }, nn.Conv2d(3, 6, 5, { padding = "same" })(x):shape())
    assert.are.same({ 2, 3, 8, 7 }, nn.MaxPool2d(2)(x):shape())
    assert.are.same({ 2, 3, 9, 8 }, nn.MaxPool2d(2, { ceil_mode = true })(x):shape())
    assert.are.same({ 2, 3, 6, 5 }, nn.AvgPool2d(3, { stride = 3, padding = 1 })(x):shape())
    assert.are.same({ 2, 3, 4, 2 }, nn.AdaptiveAvgPool2d({ 4, 2 })(x):shape())
    assert.are.same({ 2, 3 }, nn.GlobalAvgPool2d()(x):shape())
    assert.are.same({ 2, 3 * 17 * 15 }, nn.Flatten()(x):shape())
    h.assert_values(nn.GlobalAvgPool2d()(x), x:mean(4):mean(3), 1e-6)
  end)

  it("batch norm tracks running statistics in training and uses them in evaluation", function()
    lunet.manual_seed(2)
    local bn = nn.BatchNorm1d(3, { momentum = 0.5 })
    local x = lunet.randn({ 64, 3 }) * 2 + 5
    local y = bn(x)
    h.assert_values(y:mean(1), { 0, 0, 0 }, 1e-5)
    local n = 64
    local var_unbiased = ((x - x:mean(1, true)) ^ 2):sum(1) / (n - 1)
    h.assert_values(bn.running_mean, x:mean(1) * 0.5, 1e-5)
    h.assert_values(bn.running_var, var_unbiased * 0.5 + 0.5, 1e-4)
    assert.are.equal(1, bn.num_batches_tracked:item())
    bn:eval()
    local expected = (x - bn.running_mean) / (bn.running_var + 1e-5):sqrt()
    h.assert_values(bn(x), expected, 1e-5)
    h.assert_error_contains(function() return nn.BatchNorm2d(3)(x) end, "BatchNorm2d: expected a (N, C, H, W) input")
  end)

  it("dropout zeroes about p of the elements and rescales the rest", function()
    lunet.manual_seed(4)
    local d = nn.Dropout(0.3)
    local y = d(lunet.ones({ 100, 100 }))
    local kept = y:gt(0):sum():item() / 10000
    assert.is_true(math.abs(kept - 0.7) < 0.03)
    h.assert_values(y:max(), 1 / 0.7, 1e-6)
  end)

  it("softmax rows sum to one and log_softmax is its log", function()
    local x = lunet.randn({ 5, 7 })
    h.assert_values(nn.Softmax()(x):sum(2), { 1, 1, 1, 1, 1 }, 1e-6)
    h.assert_values(nn.LogSoftmax()(x), nn.Softmax()(x):log(), 1e-5)
  end)

  it("Sequential runs ReLU then MaxPool2d as pooling then ReLU, with identical results", function()
    lunet.manual_seed(5)
    local conv = nn.Conv2d(2, 3, 3)
    local model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))
    local x = lunet.randn({ 2, 2, 9, 9 }, { requires_grad = true })
    local fast = model(x)
    local plain = F.max_pool2d(conv(x):relu(), { kernel_size = 2 })
    assert.are.same(plain:totable(), fast:totable())
    fast:sum():backward()
    local g_fast = x.grad:clone()
    x.grad = nil
    plain:sum():backward()
    assert.are.same(x.grad:totable(), g_fast:totable())
  end)

  it("Sequential returns its activations' memory without the collector, and leaves user modules' tensors alone", function()
    lunet.manual_seed(6)
    local kept
    local Keep = nn.Module:extend("Keep")
    function Keep:forward(x)
      kept = x -- a user module may hold on to its input and return it
      return x
    end
    local model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 8),
      Keep(), nn.Linear(8, 3))
    local x = lunet.randn({ 5, 1, 8, 8 })
    local function step()
      local out = model(x)
      local loss = out:sum()
      loss:backward()
      out:release()
      loss:release()
    end
    step()
    collectgarbage() -- what earlier specs left behind goes now, not during the measurement
    collectgarbage("stop")
    local ok, err = pcall(function()
      local live = lunet.alloc_stats().live_bytes
      for _ = 1, 5 do
        kept:release() -- the user's own reference, released by the user
        step()
        assert.are.equal(live, lunet.alloc_stats().live_bytes)
      end
      assert.is_false(kept:is_released())
      assert.are.equal(5 * 8, kept:numel())
      assert.is_false(x:is_released())
    end)
    collectgarbage("restart")
    assert(ok, err)
  end)
end)

describe("losses", function()
  it("cross-entropy equals the negative log-softmax at the (1-based) targets", function()
    local logits = lunet.tensor({ { 2, 1, 0 }, { 0, 0, 3 } }, "f64")
    local targets = lunet.tensor({ 1, 3 }, "i64")
    local function nll(row, t)
      local s = 0
      for _, v in ipairs(row) do s = s + math.exp(v) end
      return -(row[t] - math.log(s))
    end
    local expected = (nll({ 2, 1, 0 }, 1) + nll({ 0, 0, 3 }, 3)) / 2
    h.assert_values(nn.CrossEntropyLoss()(logits, targets), expected, 1e-12)
    local per_row = nn.CrossEntropyLoss({ reduction = "none" })(logits, targets)
    h.assert_values(per_row, { nll({ 2, 1, 0 }, 1), nll({ 0, 0, 3 }, 3) }, 1e-12)
  end)

  it("label smoothing and class weights follow PyTorch's definitions", function()
    local logits = lunet.tensor({ { 2, 1, 0 }, { 0, 0, 3 } }, "f64")
    local targets = lunet.tensor({ 1, 3 }, "i64")
    local logp = F.log_softmax(logits):totable()
    local w = { 1, 2, 0.5 }
    -- loss_i = (1 - e) w_t (-logp_t) + (e / C) sum_j w_j (-logp_j); mean divides by sum w_t
    local e, total = 0.2, 0
    for i, t in ipairs({ 1, 3 }) do
      local smooth = 0
      for j = 1, 3 do smooth = smooth - w[j] * logp[i][j] end
      total = total + (1 - e) * w[t] * -logp[i][t] + e / 3 * smooth
    end
    local loss = nn.CrossEntropyLoss({ weight = lunet.tensor(w, "f64"), label_smoothing = e })(logits, targets)
    h.assert_values(loss, total / (w[1] + w[3]), 1e-12)
  end)

  it("ignore_index drops rows from the loss and the mean", function()
    local logits = lunet.tensor({ { 2, 1, 0 }, { 0, 0, 3 } }, "f64")
    local both = nn.CrossEntropyLoss()(logits:narrow(1, 1, 1), lunet.tensor({ 2 }, "i64"))
    local ignored = nn.CrossEntropyLoss({ ignore_index = 0 })(logits, lunet.tensor({ 2, 0 }, "i64"))
    h.assert_values(ignored, both, 1e-12)
  end)

  it("MSE, L1 and BCE-with-logits match their formulas", function()
    local x, y = lunet.tensor({ 0.5, -1, 2 }, "f64"), lunet.tensor({ 1, 0, 1 }, "f64")
    h.assert_values(nn.MSELoss()(x, y), (0.25 + 1 + 1) / 3, 1e-12)
    h.assert_values(nn.L1Loss({ reduction = "sum" })(x, y), 0.5 + 1 + 1, 1e-12)
    local function bce(v, t) return -(t * math.log(1 / (1 + math.exp(-v))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-v)))) end
    h.assert_values(nn.BCEWithLogitsLoss()(x, y), (bce(0.5, 1) + bce(-1, 0) + bce(2, 1)) / 3, 1e-12)
    local big = nn.BCEWithLogitsLoss()(lunet.tensor({ 100, -100 }, "f64"), lunet.tensor({ 0, 1 }, "f64"))
    h.assert_values(big, 100, 1e-9) -- stable where sigmoid saturates
  end)

  it("report bad targets and options clearly", function()
    local logits = lunet.randn({ 2, 3 })
    h.assert_error_contains(function() return nn.CrossEntropyLoss()(logits, lunet.tensor({ 1, 4 }, "i64")) end,
      "cross_entropy: target 4 at position 2 is out of range 1..3")
    h.assert_error_contains(function() return nn.CrossEntropyLoss({ label_smothing = 0.1 }) end,
      "CrossEntropyLoss: unknown option label_smothing")
    h.assert_error_contains(function() return nn.CrossEntropyLoss()(logits, lunet.tensor({ 1.0, 2.0 })) end,
      "cross_entropy: targets must be a 1-d integer tensor")
  end)
end)
