local lunet = require("lunet")
local h = require("spec.helpers")

describe("autograd", function()
  it("computes gradients of a scalar loss into the leaves", function()
    local x = lunet.tensor({ 1, 2, 3 }, { requires_grad = true })
    local w = lunet.tensor({ 0.5, -1, 2 }, { requires_grad = true })
    local loss = (x * w):sum()
    assert.are.equal("SumBackward", loss.grad_fn)
    assert.is_false(loss.is_leaf)
    loss:backward()
    assert.are.same({ 0.5, -1, 2 }, x.grad:totable())
    assert.are.same({ 1, 2, 3 }, w.grad:totable())
  end)

  it("accumulates over backward calls until the gradient is zeroed or dropped", function()
    local x = lunet.tensor({ 1, 2 }, { requires_grad = true })
    local loss = (x * x):sum()
    loss:backward({ retain_graph = true })
    loss:backward()
    assert.are.same({ 4, 8 }, x.grad:totable())
    x:zero_grad()
    assert.are.same({ 0, 0 }, x.grad:totable())
    x.grad = nil
    assert.is_nil(x.grad)
    lunet.zero_grad({ x })
  end)

  it("frees the graph after backward unless told to keep it", function()
    local x = lunet.ones({ 2 }, { requires_grad = true })
    local loss = (x * 3):sum()
    loss:backward()
    h.assert_error_contains(function() loss:backward() end, "freed by an earlier backward", "retain_graph")
  end)

  it("takes an explicit gradient for non-scalar outputs", function()
    local x = lunet.tensor({ 1, 2, 3 }, { requires_grad = true })
    local y = x * 2
    h.assert_error_contains(function() y:backward() end, "backward", "shape [3]")
    y:backward(lunet.tensor({ 1, 0.5, 0 }))
    assert.are.same({ 2, 1, 0 }, x.grad:totable())
  end)

  it("records nothing under no_grad and restores grad mode after errors", function()
    local x = lunet.ones({ 2 }, { requires_grad = true })
    local y, extra = lunet.no_grad(function(a) return a * 2, "extra" end, x)
    assert.is_false(y.requires_grad)
    assert.are.equal("extra", extra)
    assert.is_true(lunet.is_grad_enabled())
    assert.has_error(function() lunet.no_grad(function() error("inside") end) end)
    assert.is_true(lunet.is_grad_enabled())
    local z = lunet.no_grad(function() return lunet.enable_grad(function() return x * 2 end) end)
    assert.is_true(z.requires_grad)
  end)

  it("detach cuts the graph but shares the data", function()
    local x = lunet.ones({ 2 }, { requires_grad = true })
    local d = (x * 2):detach()
    assert.is_false(d.requires_grad)
    assert.is_true(d.is_leaf)
    local loss = (x * d):sum()
    loss:backward()
    assert.are.same({ 2, 2 }, x.grad:totable()) -- d is a constant here
  end)

  it("refuses in-place changes autograd would miss", function()
    local x = lunet.ones({ 2 }, { requires_grad = true })
    h.assert_error_contains(function() x:fill(0) end, "fill", "leaf tensor that requires grad")
    lunet.no_grad(function() x:fill(3) end) -- how optimizers update parameters
    assert.are.same({ 3, 3 }, x:totable())
    local w = lunet.ones({ 2 })
    local loss = (x * w):sum()
    w:fill(5)
    h.assert_error_contains(function() loss:backward() end, "MulBackward", "modified in place")
  end)

  it("passes gradients through dtype conversions and integer ops stop them", function()
    local x = lunet.tensor({ 1.5, 2.5 }, { dtype = "f64", requires_grad = true })
    local loss = (x:to("f32") * 2):sum()
    loss:backward()
    assert.are.equal("f64", x.grad.dtype)
    assert.are.same({ 2, 2 }, x.grad:totable())
    assert.is_false(x:to("i32").requires_grad)
    h.assert_error_contains(function() lunet.ones({ 2 }, "i64").requires_grad = true end,
      "requires_grad", "only float tensors")
  end)

  it("only lets leaves change requires_grad", function()
    local x = lunet.ones({ 2 }, { requires_grad = true })
    local y = x * 2
    h.assert_error_contains(function() y.requires_grad = false end, "only leaf tensors", "detach")
    assert.are.equal(x, x:requires_grad_(false))
    assert.is_false(x.requires_grad)
  end)
end)

describe("gradcheck (float64 central differences) holds for", function()
  lunet.manual_seed(123)

  local cases = {
    { "add with broadcasting", function(a, b) return a + b end, { { 2, 3 }, { 3 } } },
    { "add of a column and a row", function(a, b) return a + b end, { { 3, 1 }, { 1, 4 } } },
    { "sub with broadcasting", function(a, b) return a - b end, { { 2, 1, 3 }, { 4, 1 } } },
    { "mul with broadcasting", function(a, b) return a * b end, { { 2, 3 }, { 2, 1 } } },
    { "mul by a number", function(a) return a * 3 - 2 end, { { 2, 3 } } },
    { "div with broadcasting", function(a, b) return a / b end, { { 2, 3 }, { 3, positive = true } } },
    { "number divided by a tensor", function(a) return 2 / a end, { { 4, positive = true } } },
    { "pow, tensor exponent", function(a, b) return a ^ b end, { { 2, 3, positive = true }, { 2, 3 } } },
    { "pow, number exponent", function(a) return a ^ 3 end, { { 2, 3 } } },
    { "pow, number base", function(a) return 2 ^ a end, { { 2, 3 } } },
    { "neg", function(a) return -a end, { { 2, 3 } } },
    { "abs", function(a) return a:abs() end, { { 2, 3 } } },
    { "relu", function(a) return a:relu() end, { { 2, 3 } } },
    { "exp", function(a) return a:exp() end, { { 2, 3 } } },
    { "log", function(a) return a:log() end, { { 2, 3, positive = true } } },
    { "sqrt", function(a) return a:sqrt() end, { { 2, 3, positive = true } } },
    { "sigmoid", function(a) return a:sigmoid() end, { { 2, 3 } } },
    { "tanh", function(a) return a:tanh() end, { { 2, 3 } } },
    { "clamp", function(a) return a:clamp(-0.5, 0.5) end, { { 3, 4 } } },
    { "clamp below only", function(a) return a:clamp(0) end, { { 3, 4 } } },
    { "sum of all", function(a) return a:sum() end, { { 2, 3, 4 } } },
    { "sum over dim 1", function(a) return a:sum(1) end, { { 2, 3, 4 } } },
    { "sum over dim 2, keepdim", function(a) return a:sum(2, true) end, { { 2, 3, 4 } } },
    { "sum over dim 3", function(a) return a:sum(3) end, { { 2, 3, 4 } } },
    { "mean of all", function(a) return a:mean() end, { { 2, 3, 4 } } },
    { "mean over dim 1", function(a) return a:mean(1) end, { { 2, 3, 4 } } },
    { "mean over dim 2", function(a) return a:mean(2) end, { { 2, 3, 4 } } },
    { "mean over dim 3, keepdim", function(a) return a:mean(3, true) end, { { 2, 3, 4 } } },
    { "max of all", function(a) return a:max() end, { { 3, 4 } } },
    { "min of all", function(a) return a:min() end, { { 3, 4 } } },
    { "max over dim 1", function(a) return (a:max(1)) end, { { 3, 4, 2 } } },
    { "max over dim 2", function(a) return (a:max(2)) end, { { 3, 4, 2 } } },
    { "min over dim 3, keepdim", function(a) return (a:min(3, true)) end, { { 3, 4, 2 } } },
    { "matmul of matrices", function(a, b) return a:matmul(b) end, { { 3, 4 }, { 4, 2 } } },
    { "matmul with batch dims", function(a, b) return a:matmul(b) end, { { 2, 3, 4 }, { 2, 4, 2 } } },
    { "matmul broadcasting batch dims", function(a, b) return a:matmul(b) end, { { 2, 1, 3, 4 }, { 3, 4, 2 } } },
    { "matmul matrix by vector", function(a, b) return a:matmul(b) end, { { 3, 4 }, { 4 } } },
    { "matmul vector by batch", function(a, b) return a:matmul(b) end, { { 3 }, { 2, 3, 2 } } },
    { "matmul dot product", function(a, b) return a:matmul(b) end, { { 5 }, { 5 } } },
    { "matmul of transposed views", function(a, b) return a:transpose():matmul(b:transpose()) end, { { 4, 3 }, { 2, 4 } } },
    { "clone", function(a) return a:clone() end, { { 2, 3 } } },
    { "contiguous of a transpose", function(a) return a:transpose():contiguous() end, { { 2, 3 } } },
    { "view", function(a) return a:view({ 3, 2 }) end, { { 2, 3 } } },
    { "reshape that copies", function(a) return a:transpose():reshape({ 6 }) end, { { 2, 3 } } },
    { "transpose", function(a) return a:transpose(1, 3) end, { { 2, 3, 4 } } },
    { "permute", function(a) return a:permute(3, 1, 2) end, { { 2, 3, 4 } } },
    { "narrow", function(a) return a:narrow(2, 2, 2) end, { { 2, 4 } } },
    { "slice with a step", function(a) return a:slice(2, 1, -1, 2) end, { { 3, 5 } } },
    { "select", function(a) return a:select(1, 2) end, { { 3, 4 } } },
    { "indexing", function(a) return a[2] end, { { 3, 4 } } },
    { "squeeze", function(a) return a:squeeze() end, { { 1, 3, 1 } } },
    { "unsqueeze", function(a) return a:unsqueeze(2) end, { { 2, 3 } } },
    { "flatten", function(a) return a:flatten() end, { { 2, 3, 2 } } },
    { "expand", function(a) return a:expand({ 2, 3, 4 }) end, { { 3, 1 } } },
    { "index_select with repeats", function(a) return a:index_select(2, lunet.tensor({ 3, 1, 3 }, "i64")) end, { { 2, 4 } } },
    { "a composite expression", function(a, b)
      return ((a:matmul(b) + 1):relu() * a:sum(2, true)):mean(1)
    end, { { 3, 4 }, { 4, 5 } } },
  }

  for _, case in ipairs(cases) do
    local name, fn, shapes = case[1], case[2], case[3]
    it(name, function() h.assert_gradcheck_shapes(fn, shapes, name) end)
  end

  it("and it reports a wrong gradient, naming the input, element and both values", function()
    -- x * detach(x) hides one of the two paths from autograd: d/dx is 2x, autograd sees x
    local x = lunet.tensor({ 1, 2 }, { dtype = "f64", requires_grad = true })
    local ok, message = lunet.gradcheck(function(a) return a * a:detach() end, { x })
    assert.is_false(ok)
    assert.truthy(message:find("input 1 element [1]", 1, true), message)
    assert.truthy(message:find("analytical 1", 1, true), message)
    assert.truthy(message:find("numerical 2", 1, true), message)
  end)

  it("and it insists on float64 computations", function()
    local x = lunet.ones({ 2 }, { requires_grad = true })
    local ok, message = lunet.gradcheck(function(a) return a:to("f32") end, { x })
    assert.is_false(ok)
    assert.truthy(message:find("f32", 1, true))
  end)
end)
