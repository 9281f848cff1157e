-- lunet.optim: updates against references computed here from torch.optim's (1.13) formulas,
-- parameter groups, state round trips, gradient clipping, schedules, and clear errors.
local lunet = require("lunet")
local core = require("lunet.core")
local optim = require("lunet.optim")
local h = require("spec.helpers")

-- ---- references, one element at a time, written from PyTorch's documented algorithms ----------

local reference = {}

function reference.SGD(o, p, g, s)
  o = { lr = o.lr, momentum = o.momentum or 0, dampening = o.dampening or 0, weight_decay = o.weight_decay or 0,
        nesterov = o.nesterov, maximize = o.maximize }
  if o.maximize then g = -g end
  if o.weight_decay ~= 0 then g = g + o.weight_decay * p end
  if o.momentum ~= 0 then
    s.buf = s.buf and o.momentum * s.buf + (1 - o.dampening) * g or g
    g = o.nesterov and g + o.momentum * s.buf or s.buf
  end
  return p - o.lr * g
end

local function adam(o, p, g, s, decoupled)
  local beta1, beta2 = o.betas and o.betas[1] or 0.9, o.betas and o.betas[2] or 0.999
  local lr, eps = o.lr or 1e-3, o.eps or 1e-8
  local weight_decay = o.weight_decay or (decoupled and 1e-2 or 0)
  s.step, s.m, s.v, s.vmax = (s.step or 0) + 1, s.m or 0, s.v or 0, s.vmax or 0
  if o.maximize then g = -g end
  if decoupled then
    p = p * (1 - lr * weight_decay)
  elseif weight_decay ~= 0 then
    g = g + weight_decay * p
  end
  s.m = beta1 * s.m + (1 - beta1) * g
  s.v = beta2 * s.v + (1 - beta2) * g * g
  local second = s.v
  if o.amsgrad then -- the running maximum of the raw second moment, as PyTorch's code keeps it
    s.vmax = math.max(s.vmax, s.v)
    second = s.vmax
  end
  local m_hat, v_hat = s.m / (1 - beta1 ^ s.step), second / (1 - beta2 ^ s.step)
  return p - lr * m_hat / (math.sqrt(v_hat) + eps)
end

function reference.Adam(o, p, g, s) return adam(o, p, g, s, false) end
function reference.AdamW(o, p, g, s) return adam(o, p, g, s, true) end

function reference.RMSprop(o, p, g, s)
  local lr, alpha, eps = o.lr or 1e-2, o.alpha or 0.99, o.eps or 1e-8
  local weight_decay, momentum = o.weight_decay or 0, o.momentum or 0
  s.sq, s.ga, s.buf = s.sq or 0, s.ga or 0, s.buf or 0
  if o.maximize then g = -g end
  if weight_decay ~= 0 then g = g + weight_decay * p end
  s.sq = alpha * s.sq + (1 - alpha) * g * g
  local avg
  if o.centered then
    s.ga = alpha * s.ga + (1 - alpha) * g
    avg = math.sqrt(s.sq - s.ga * s.ga)
  else
    avg = math.sqrt(s.sq)
  end
  avg = avg + eps -- after the square root
  if momentum > 0 then
    s.buf = momentum * s.buf + g / avg
    return p - lr * s.buf
  end
  return p - lr * g / avg
end

-- ---- helpers -------------------------------------------------------------------------------------

local initial = { 0.8, -1.3, 0.25, 2.1 }

-- A gradient that depends on the parameter and the step, as a real loss's would.
local function gradient_values(values, step)
  local g = {}
  for k, x in ipairs(values) do g[k] = 0.6 * x + 0.3 * math.cos(step + k) - 0.05 * k end
  return g
end

local function set_gradient(w, step)
  w.grad = lunet.tensor(gradient_values(w:totable(), step), w.dtype)
end

-- Runs `steps` steps of optim[name](options) and of the reference side by side; returns the
-- largest relative difference of the parameter values after any step.
local function compare_with_reference(name, options, dtype, steps)
  local w = lunet.tensor(initial, { dtype = dtype, requires_grad = true })
  local opt = optim[name]({ w }, options)
  local want = w:totable()
  local state = {}
  for k = 1, #want do state[k] = {} end
  local worst = 0
  for step = 1, steps do
    set_gradient(w, step)
    local g = w.grad:totable()
    opt:step()
    local got = w:totable()
    for k = 1, #want do
      want[k] = reference[name](options, want[k], g[k], state[k])
      worst = math.max(worst, math.abs(got[k] - want[k]) / (1 + math.abs(want[k])))
    end
  end
  return worst
end

local function same_values(a, b)
  local x, y = h.flatten(a:totable()), h.flatten(b:totable())
  if #x ~= #y then return false end
  for i = 1, #x do
    if x[i] ~= y[i] then return false end
  end
  return true
end

-- ---- specs ----------------------------------------------------------------------------------------

describe("optim", function()
  describe("each optimizer's update matches a hand-computed reference over several steps", function()
    local cases = {
      { "SGD", { lr = 0.1 } },
      { "SGD", { lr = 0.1, momentum = 0.9 } },
      { "SGD", { lr = 0.1, momentum = 0.8, dampening = 0.25, weight_decay = 0.05 } },
      { "SGD", { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.1 } },
      { "SGD", { lr = 0.1, momentum = 0.5, maximize = true, weight_decay = 0.1 } },
      { "Adam", { lr = 0.1 } },
      { "Adam", { lr = 0.05, betas = { 0.8, 0.9 }, eps = 0.1 } },
      { "Adam", { lr = 0.05, weight_decay = 0.2 } },
      { "Adam", { lr = 0.05, betas = { 0.5, 0.6 }, eps = 1e-3, amsgrad = true } },
      { "Adam", { lr = 0.05, weight_decay = 0.1, maximize = true } },
      { "AdamW", { lr = 0.05 } },
      { "AdamW", { lr = 0.05, weight_decay = 0.3, betas = { 0.7, 0.8 }, eps = 1e-2, amsgrad = true } },
      { "AdamW", { lr = 0.05, weight_decay = 0.3, maximize = true } },
      { "RMSprop", { lr = 0.01 } },
      { "RMSprop", { lr = 0.05, alpha = 0.9, eps = 0.1 } },
      { "RMSprop", { lr = 0.01, momentum = 0.9, weight_decay = 0.1 } },
      { "RMSprop", { lr = 0.01, alpha = 0.8, eps = 1e-3, centered = true } },
      { "RMSprop", { lr = 0.01, centered = true, momentum = 0.5, weight_decay = 0.2, maximize = true } },
    }
    for _, case in ipairs(cases) do
      local name, options = case[1], case[2]
      local keys = {}
      for key, value in pairs(options) do
        keys[#keys + 1] = key .. "=" .. (type(value) == "table" and "{" .. table.concat(value, ",") .. "}" or tostring(value))
      end
      table.sort(keys)
      it(name .. " {" .. table.concat(keys, ", ") .. "}", function()
        local worst64 = compare_with_reference(name, options, "f64", 5)
        assert(worst64 <= 1e-12, string.format("f64: differs from the reference by %g", worst64))
        local worst32 = compare_with_reference(name, options, "f32", 5)
        assert(worst32 <= 1e-5, string.format("f32: differs from the reference by %g", worst32))
      end)
    end
  end)

  it("trains through backward in the usual loop and zero_grad clears or zero-fills", function()
    local w = lunet.tensor({ 1, -2 }, { requires_grad = true })
    local opt = optim.SGD({ w }, { lr = 0.25 })
    for _ = 1, 2 do
      opt:zero_grad()
      local loss = (w * w):sum()
      loss:backward()
      opt:step()
    end
    -- w <- w - 0.25 * 2w = w / 2, twice
    assert.are.same({ 0.25, -0.5 }, w:totable())
    assert.is_not_nil(w.grad)
    opt:zero_grad(false)
    assert.are.same({ 0, 0 }, w.grad:totable())
    opt:zero_grad()
    assert.is_nil(w.grad)
    opt:step() -- no gradients: nothing moves
    assert.are.same({ 0.25, -0.5 }, w:totable())
  end)

  it("returns the closure's loss from step(closure)", function()
    local w = lunet.tensor({ 3 }, { requires_grad = true })
    local opt = optim.SGD({ w }, { lr = 0.5 })
    local loss = opt:step(function()
      opt:zero_grad()
      local l = (w * w):sum()
      l:backward()
      return l
    end)
    assert.are.equal(9, loss:item())
    assert.are.same({ 0 }, w:totable())
  end)

  describe("parameter groups", function()
    it("take their own options over the optimizer's", function()
      local a = lunet.tensor({ 1, 1 }, { dtype = "f64", requires_grad = true })
      local b = lunet.tensor({ 1, 1 }, { dtype = "f64", requires_grad = true })
      local opt = optim.SGD({ { params = { a }, lr = 0.5 }, { params = { b } } }, { lr = 0.1 })
      assert.are.equal(0.5, opt.param_groups[1].lr)
      assert.are.equal(0.1, opt.param_groups[2].lr)
      assert.are.equal(0.5, opt.lr)
      a.grad = lunet.tensor({ 1, 2 }, "f64")
      b.grad = lunet.tensor({ 1, 2 }, "f64")
      opt:step()
      assert.are.same({ 0.5, 0 }, a:totable())
      h.assert_values(b, { 0.9, 0.8 }, 1e-15)
      opt:set_lr(0.25)
      assert.are.equal(0.25, opt.param_groups[1].lr)
      assert.are.equal(0.25, opt.param_groups[2].lr)
      opt.lr = 0.125
      assert.are.equal(0.125, opt:get_lr())
      assert.are.equal(0.125, opt.param_groups[2].lr)
    end)

    it("keep a step count per parameter, so one without a gradient catches up correctly", function()
      local a = lunet.tensor({ 1 }, { dtype = "f64", requires_grad = true })
      local b = lunet.tensor({ 1 }, { dtype = "f64", requires_grad = true })
      local opt = optim.Adam({ a, b }, { lr = 0.1 })
      a.grad = lunet.tensor({ 0.5 }, "f64")
      opt:step()
      assert.are.same({ 1 }, b:totable())
      b.grad = lunet.tensor({ 0.5 }, "f64")
      opt:step()
      local state = opt:state().state
      assert.are.equal(2, state[1].step)
      assert.are.equal(1, state[2].step)
      -- b's first Adam step moves it by lr * g / (|g| + eps): the bias correction of step 1
      h.assert_values(b, { 1 - 0.1 * 0.5 / (0.5 + 1e-8) }, 1e-12)
      local s = {}
      local want = reference.Adam({ lr = 0.1 }, 1, 0.5, s)
      want = reference.Adam({ lr = 0.1 }, want, 0.5, s)
      h.assert_values(a, { want }, 1e-12)
    end)
  end)

  describe("state() and load_state()", function()
    local function round_trip(name, options)
      local w1 = lunet.tensor({ 0.5, -1.5, 2 }, { dtype = "f32", requires_grad = true })
      local opt1 = optim[name]({ w1 }, options)
      for step = 1, 3 do
        set_gradient(w1, step)
        opt1:step()
      end
      local saved = opt1:state()
      local w2 = lunet.tensor(w1, { requires_grad = true })
      -- The copy continues as the original would even after the original moved on.
      for step = 4, 6 do
        set_gradient(w1, step)
        opt1:step()
      end
      local opt2 = optim[name]({ w2 }, { lr = 0.5 })
      opt2:load_state(saved)
      assert.are.equal(saved.param_groups[1].lr, opt2.lr)
      local saved_values = {}
      for key, value in pairs(saved.state[1]) do
        if lunet.is_tensor(value) then saved_values[key] = value:totable() end
      end
      for step = 4, 6 do
        set_gradient(w2, step)
        opt2:step()
      end
      assert.is_true(same_values(w1, w2), name .. ": resumed training differs")
      -- load_state copied the tensors: training opt2 left the saved table as it was
      for key, values in pairs(saved_values) do assert.are.same(values, saved.state[1][key]:totable()) end
      local s1, s2 = opt1:state(), opt2:state()
      for key, value in pairs(s1.state[1]) do
        if lunet.is_tensor(value) then
          assert.is_true(same_values(value, s2.state[1][key]), name .. ": state " .. key .. " differs")
        else
          assert.are.same(value, s2.state[1][key])
        end
      end
    end

    it("resume training bit for bit", function()
      round_trip("SGD", { lr = 0.1, momentum = 0.9, nesterov = true })
      round_trip("Adam", { lr = 0.01, amsgrad = true })
      round_trip("AdamW", { lr = 0.01, weight_decay = 0.1 })
      round_trip("RMSprop", { lr = 0.01, momentum = 0.5, centered = true })
    end)

    it("is a plain table of copies with numbered parameters", function()
      local a = lunet.tensor({ 1, 2 }, { requires_grad = true })
      local b = lunet.tensor({ 3 }, { requires_grad = true })
      local opt = optim.Adam({ { params = { a } }, { params = { b }, lr = 0.01 } })
      a.grad = lunet.tensor({ 1, 1 })
      opt:step()
      local saved = opt:state()
      assert.are.equal("Adam", saved.optimizer)
      assert.are.same({ 1 }, saved.param_groups[1].params)
      assert.are.same({ 2 }, saved.param_groups[2].params)
      assert.are.same({ 0.9, 0.999 }, saved.param_groups[1].betas)
      assert.are.equal(0.01, saved.param_groups[2].lr)
      assert.are.equal(1, saved.state[1].step)
      assert.is_nil(saved.state[2])
      assert.is_false(saved.state[1].exp_avg:shares_storage(opt.param_state[a].exp_avg))
    end)

    it("refuses a state that does not fit, and changes nothing then", function()
      local w = lunet.tensor({ 1, 2 }, { requires_grad = true })
      local opt = optim.Adam({ w }, { lr = 0.1 })
      w.grad = lunet.tensor({ 1, 1 })
      opt:step()
      local saved = opt:state()
      local other = optim.Adam({ lunet.tensor({ 1, 2, 3 }, { requires_grad = true }) }, { lr = 0.2 })
      h.assert_error_contains(function() other:load_state(saved) end,
        "Adam: load_state: exp_avg of parameter 1 has shape [2] but the parameter has shape [3]")
      assert.are.equal(0.2, other.lr)
      h.assert_error_contains(function() optim.SGD({ w }, { lr = 1 }):load_state(saved) end,
        "SGD: load_state: the state was saved by Adam")
      local two = optim.Adam({ { params = { w } }, { params = { lunet.ones({ 1 }) } } })
      h.assert_error_contains(function() two:load_state(saved) end, "the state has 1 parameter groups but the optimizer has 2")
      saved.param_groups[1].lr_rate = 1
      h.assert_error_contains(function() opt:load_state(saved) end, "unknown option 'lr_rate'")
      saved.param_groups[1].lr_rate = nil
      saved.state[1].exp_avg_sq = nil
      h.assert_error_contains(function() opt:load_state(saved) end, "the state of parameter 1 has no exp_avg_sq")
    end)
  end)

  describe("clip_grad_norm", function()
    local function with_grads()
      local a = lunet.tensor({ 3, 0 }, { dtype = "f64", requires_grad = true })
      local b = lunet.tensor({ { -4 } }, { dtype = "f64", requires_grad = true })
      local c = lunet.tensor({ 100 }, { dtype = "f64", requires_grad = true }) -- no gradient: ignored
      a.grad = lunet.tensor({ 3, 0 }, "f64")
      b.grad = lunet.tensor({ { -4 } }, "f64")
      return { a, b, c }, a, b, c
    end

    it("scales the gradients to the joint 2-norm and returns the norm before", function()
      local params, a, b, c = with_grads()
      assert.are.equal(5, optim.clip_grad_norm(params, 1))
      local scale = 1 / (5 + 1e-6)
      h.assert_values(a.grad, { 3 * scale, 0 }, 1e-15)
      h.assert_values(b.grad, { { -4 * scale } }, 1e-15)
      assert.is_nil(c.grad)
    end)

    it("leaves gradients below max_norm alone and knows the 1, inf and p norms", function()
      local params, a = with_grads()
      assert.are.equal(3, optim.clip_grad_norm(a, 10))
      assert.are.equal(5, optim.clip_grad_norm(params, 10))
      assert.are.same({ 3, 0 }, a.grad:totable())
      assert.are.equal(7, optim.clip_grad_norm(params, 10, 1))
      assert.are.equal(4, optim.clip_grad_norm(params, 10, math.huge))
      assert.are.equal(4, optim.clip_grad_norm(params, 10, "inf"))
      h.assert_values(lunet.tensor(optim.clip_grad_norm(params, 10, 3), "f64"), (27 + 64) ^ (1 / 3), 1e-12)
      assert.are.equal(4, optim.clip_grad_norm(params, 2, "inf"))
      h.assert_values(a.grad, { 3 * 2 / (4 + 1e-6), 0 }, 1e-15)
    end)

    it("rejects a negative max_norm and an unknown norm", function()
      local params = with_grads()
      h.assert_error_contains(function() optim.clip_grad_norm(params, -1) end, "clip_grad_norm: max_norm must be >= 0, got -1")
      h.assert_error_contains(function() optim.clip_grad_norm(params, 1, "two") end, "clip_grad_norm: norm_type must be a number or \"inf\"")
      h.assert_error_contains(function() optim.clip_grad_norm(params, 1, 0) end, "clip_grad_norm: norm_type must be > 0")
    end)
  end)

  describe("schedulers", function()
    local function optimizer_with_lr(lr)
      return optim.SGD({ lunet.ones({ 1 }, { requires_grad = true }) }, { lr = lr })
    end

    -- The lr after construction, then after each of `steps` steps.
    local function lr_sequence(scheduler, opt, steps)
      local lrs = { opt.lr }
      assert.are.same({ opt.lr }, scheduler:get_last_lr())
      for _ = 1, steps do
        scheduler:step()
        lrs[#lrs + 1] = opt.lr
        assert.are.same({ opt.lr }, scheduler:get_last_lr())
      end
      return lrs
    end

    it("StepLR multiplies by gamma every step_size epochs", function()
      local opt = optimizer_with_lr(1)
      local lrs = lr_sequence(optim.StepLR(opt, { step_size = 2, gamma = 0.5 }), opt, 6)
      assert.are.same({ 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125 }, lrs)
      local opt10 = optimizer_with_lr(1)
      assert.are.same({ 1, 1, 1, 0.1 }, lr_sequence(optim.StepLR(opt10, { step_size = 3 }), opt10, 3))
    end)

    it("CosineAnnealingLR follows half a cosine down to eta_min and back up", function()
      local opt = optimizer_with_lr(1)
      local lrs = lr_sequence(optim.CosineAnnealingLR(opt, { T_max = 4, eta_min = 0.1 }), opt, 10)
      for t = 0, 10 do
        local want = 0.1 + (1 - 0.1) * (1 + math.cos(math.pi * t / 4)) / 2
        assert(math.abs(lrs[t + 1] - want) < 1e-12, string.format("epoch %d: lr %.17g, expected %.17g", t, lrs[t + 1], want))
      end
      assert(math.abs(lrs[5] - 0.1) < 1e-15 and math.abs(lrs[9] - 1) < 1e-12)
    end)

    it("LinearWarmup rises linearly from start_factor * lr and then stays", function()
      local opt = optimizer_with_lr(0.1)
      local lrs = lr_sequence(optim.LinearWarmup(opt, { warmup_steps = 4, start_factor = 0.25 }), opt, 6)
      local want = { 0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1, 0.1 }
      for i = 1, #want do
        assert(math.abs(lrs[i] - want[i]) < 1e-15, string.format("step %d: lr %.17g, expected %.17g", i - 1, lrs[i], want[i]))
      end
      local opt2 = optimizer_with_lr(1)
      optim.LinearWarmup(opt2, { warmup_steps = 10 })
      assert.are.equal(0.1, opt2.lr) -- the default start_factor
    end)

    it("ReduceLROnPlateau reduces after more than patience bad epochs, with cooldown and min_lr", function()
      local function run(options, metrics)
        local opt = optimizer_with_lr(1)
        local plateau = optim.ReduceLROnPlateau(opt, options)
        assert.are.same({ 1 }, plateau:get_last_lr())
        local lrs = {}
        for i, metric in ipairs(metrics) do
          plateau:step(metric)
          lrs[i] = opt.lr
        end
        return lrs
      end
      local metrics = { 10, 9.5, 9.2, 9.1, 5, 5, 5, 5, 5, 5, 5, 5 }
      local base = { patience = 2, factor = 0.5, cooldown = 1, threshold = 0.1 }
      -- 9.5 is not below 10 * (1 - 0.1): bad; the third bad epoch (9.1) reduces; 5 improves
      -- during the cooldown; three more bad epochs reduce again; the bad epoch in the next
      -- cooldown (9) does not count, so the third reduction waits until epoch 12.
      assert.are.same({ 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125 }, run(base, metrics))
      base.min_lr = 0.3
      assert.are.same({ 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3 }, run(base, metrics))
      -- "abs" in "max" mode: better means above best + threshold
      local rising = { 1, 1.05, 1.2, 1.25, 1.28, 1.29 }
      assert.are.same({ 1, 1, 1, 1, 1, 0.1 },
        run({ mode = "max", threshold_mode = "abs", threshold = 0.1, patience = 2 }, rising))
      -- changes smaller than eps are skipped
      assert.are.same({ 1, 1 }, run({ patience = 0, min_lr = 1 - 1e-9 }, { 1, 2 }))
      assert.are.same({ 1, 1 - 1e-9 }, run({ patience = 0, min_lr = 1 - 1e-9, eps = 0 }, { 1, 2 }))
      -- a metric tensor works as well as a number
      local opt = optimizer_with_lr(1)
      local plateau = optim.ReduceLROnPlateau(opt, { patience = 0 })
      plateau:step(lunet.tensor(2))
      plateau:step(lunet.tensor(3))
      assert.are.equal(0.1, opt.lr)
    end)

    it("save and restore their state", function()
      local function run(make, metric_of)
        local w = lunet.ones({ 1 }, { requires_grad = true })
        local opt = optim.SGD({ w }, { lr = 1 })
        local scheduler = make(opt)
        for epoch = 1, 3 do scheduler:step(metric_of(epoch)) end
        local saved_opt, saved = opt:state(), scheduler:state()
        local expected = {}
        for epoch = 4, 9 do
          scheduler:step(metric_of(epoch))
          expected[#expected + 1] = opt.lr
        end
        local opt2 = optim.SGD({ w }, { lr = 1 })
        local scheduler2 = make(opt2)
        opt2:load_state(saved_opt)
        scheduler2:load_state(saved)
        local got = {}
        for epoch = 4, 9 do
          scheduler2:step(metric_of(epoch))
          got[#got + 1] = opt2.lr
        end
        assert.are.same(expected, got)
      end
      local function none() end
      run(function(opt) return optim.StepLR(opt, { step_size = 2, gamma = 0.5 }) end, none)
      run(function(opt) return optim.CosineAnnealingLR(opt, { T_max = 5 }) end, none)
      run(function(opt) return optim.LinearWarmup(opt, { warmup_steps = 6 }) end, none)
      run(function(opt) return optim.ReduceLROnPlateau(opt, { patience = 1, cooldown = 1 }) end,
        function(epoch) return 10 - math.min(epoch, 2) end)
      local opt = optimizer_with_lr(1)
      h.assert_error_contains(function() optim.StepLR(opt, { step_size = 1 }):load_state(optim.CosineAnnealingLR(opt, { T_max = 2 }):state()) end,
        "StepLR: load_state: the state was saved by CosineAnnealingLR")
    end)
  end)

  describe("misuse gives a clear error", function()
    local w = lunet.tensor({ 1, 2 }, { requires_grad = true })

    it("unknown option names, naming the option", function()
      h.assert_error_contains(function() optim.Adam({ w }, { lr_rate = 1e-3 }) end,
        "Adam: unknown option 'lr_rate' (known options: amsgrad, betas, eps, lr, maximize, weight_decay)")
      h.assert_error_contains(function() optim.SGD({ { params = { w }, moment = 0.9 } }, { lr = 0.1 }) end,
        "SGD: param group 1: unknown option 'moment'")
      h.assert_error_contains(function() optim.StepLR(optim.SGD({ w }, { lr = 1 }), { step_size = 1, gama = 0.5 }) end,
        "StepLR: unknown option 'gama'")
      h.assert_error_contains(function() optim.ReduceLROnPlateau(optim.SGD({ w }, { lr = 1 }), { patient = 3 }) end,
        "ReduceLROnPlateau: unknown option 'patient'")
    end)

    it("missing and invalid values", function()
      h.assert_error_contains(function() optim.SGD({ w }) end, "SGD: option lr is required")
      h.assert_error_contains(function() optim.SGD({ { params = { w } } }) end, "SGD: param group 1: option lr is required")
      h.assert_error_contains(function() optim.SGD({ w }, { lr = -1 }) end, "SGD: option lr must be a number >= 0, got -1")
      h.assert_error_contains(function() optim.SGD({ w }, { lr = 0.1, dampening = 0.5, nesterov = true }) end,
        "SGD: nesterov momentum needs momentum > 0 and dampening 0")
      h.assert_error_contains(function() optim.Adam({ w }, { betas = { 1, 0.999 } }) end,
        "Adam: option betas[1] must be a number in [0, 1), got 1")
      h.assert_error_contains(function() optim.Adam({ w }, { betas = 0.9 }) end, "Adam: option betas must be a list of two numbers")
      h.assert_error_contains(function() optim.AdamW({ w }, { eps = -1 }) end, "AdamW: option eps must be a number >= 0, got -1")
      h.assert_error_contains(function() optim.RMSprop({ w }, { centered = "yes" }) end,
        "RMSprop: option centered must be true or false, got \"yes\"")
      h.assert_error_contains(function() optim.Adam({ w }, { lr = 0 / 0 }) end, "Adam: option lr must be a number >= 0")
      local opt = optim.Adam({ w })
      h.assert_error_contains(function() opt:set_lr(-0.5) end, "Adam: set_lr: option lr must be a number >= 0, got -0.5")
      h.assert_error_contains(function() opt.lr = "fast" end, "Adam: set_lr: option lr must be a number >= 0, got \"fast\"")
      assert.are.equal(1e-3, opt.lr)
    end)

    it("bad parameter lists", function()
      h.assert_error_contains(function() optim.Adam({}) end, "Adam: params is an empty list")
      h.assert_error_contains(function() optim.Adam(w) end, "Adam: params must be a list", "wrap it in a list")
      h.assert_error_contains(function() optim.Adam({ w, 3 }) end, "Adam: params[2] is number, not a lunet.Tensor")
      h.assert_error_contains(function() optim.Adam({ w, w }) end, "Adam: params[2] appears more than once")
      h.assert_error_contains(function() optim.Adam({ w * 2 }) end, "Adam: params[1] is not a leaf tensor (it comes from MulBackward)")
      h.assert_error_contains(function() optim.Adam({ lunet.tensor({ 1, 2 }, "i64") }) end,
        "Adam: params[1] has dtype i64; only f32 and f64 tensors can be optimized")
      h.assert_error_contains(function() optim.Adam({ lunet.ones({ 2, 3 }):transpose(1, 2) }) end, "Adam: params[1] is not contiguous")
      h.assert_error_contains(function() optim.Adam({ { params = { w } }, { params = { w } } }) end,
        "Adam: param group 2: params[1] appears more than once")
    end)

    it("bad scheduler settings", function()
      local opt = optim.SGD({ w }, { lr = 1 })
      h.assert_error_contains(function() optim.StepLR(opt) end, "StepLR: option step_size is required")
      h.assert_error_contains(function() optim.StepLR(opt, { step_size = 1.5 }) end, "StepLR: option step_size must be an integer >= 1, got 1.5")
      h.assert_error_contains(function() optim.CosineAnnealingLR(opt, { T_max = 0 }) end, "CosineAnnealingLR: option T_max must be an integer >= 1, got 0")
      h.assert_error_contains(function() optim.LinearWarmup(opt, { warmup_steps = 5, start_factor = 0 }) end,
        "LinearWarmup: option start_factor must be > 0")
      h.assert_error_contains(function() optim.ReduceLROnPlateau(opt, { mode = "down" }) end,
        "ReduceLROnPlateau: option mode must be \"min\" or \"max\", got \"down\"")
      h.assert_error_contains(function() optim.ReduceLROnPlateau(opt, { factor = 1 }) end,
        "ReduceLROnPlateau: option factor must be a number in [0, 1), got 1")
      h.assert_error_contains(function() optim.ReduceLROnPlateau(opt, { min_lr = { 0, 0 } }) end,
        "option min_lr has 2 entries but the optimizer has 1 parameter groups")
      h.assert_error_contains(function() optim.ReduceLROnPlateau(opt):step() end, "ReduceLROnPlateau: step: expected the metric as a number, got nil")
      h.assert_error_contains(function() optim.StepLR({}, { step_size = 1 }) end, "StepLR: expected an optimizer")
    end)

    it("direct calls of the C steps with mismatched lists", function()
      local a = lunet.tensor({ 1, 2 }, { requires_grad = true })
      a.grad = lunet.tensor({ 1, 1 })
      local options = { lr = 0.1, betas = { 0.9, 0.999 } }
      h.assert_error_contains(function() core.adam_step({ a }, {}, {}, nil, 1, options) end,
        "adam_step: exp_avg has 0 entries but params has 1")
      h.assert_error_contains(function() core.adam_step({ a }, { 1 }, { a }, nil, 1, options) end,
        "adam_step: exp_avg[1] is number, not a lunet.Tensor")
      h.assert_error_contains(function() core.adam_step({ a }, { lunet.zeros({ 3 }) }, { lunet.zeros({ 2 }) }, nil, 1, options) end,
        "adam: exp_avg[0] has shape [3] but params[0] has shape [2]")
      h.assert_error_contains(function() core.sgd_step({ a }, nil, 1, { lr = "big" }) end, "sgd_step: option lr must be a number, got string")
      h.assert_error_contains(function() core.rmsprop_step({ a }, { lunet.zeros({ 2 }) }, nil, nil, {}) end,
        "rmsprop_step: option lr is required")
      assert.are.same({ 1, 2 }, a:totable())
    end)
  end)
end)
