--- Finite-difference gradient check, in float64.
--
-- gradcheck(fn, inputs, [opts]) calls fn(inputs...) on float64 copies of the inputs and
-- compares, for every output element and every element of every input that requires grad,
-- the derivative autograd computes with the central difference
-- (f(x + eps) - f(x - eps)) / (2 eps).  It returns true, or false and a message naming the
-- input, the element and both values.  opts: eps (1e-6), atol (1e-5), rtol (1e-3).
local core = require("lunet.core")
local grad_mode = require("lunet.grad_mode")

local function multi_index(flat, shape)
  -- 1-based multi-index of the 1-based flat position in a C-ordered tensor of shape
  local idx, rest = {}, flat - 1
  for d = #shape, 1, -1 do
    idx[d] = rest % shape[d] + 1
    rest = rest // shape[d]
  end
  return "[" .. table.concat(idx, ",") .. "]"
end

local function without_grad(fn, ...) return grad_mode.run(false, fn, ...) end

local function gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  assert(type(fn) == "function", "gradcheck: fn must be a function")
  assert(type(inputs) == "table", "gradcheck: inputs must be a list of tensors")

  -- float64 copies; those of inputs that require grad are the ones checked
  local args, checked = {}, {}
  for i, x in ipairs(inputs) do
    if core.is_tensor(x) and (x.dtype == "f32" or x.dtype == "f64") then
      args[i] = core.tensor(x, { dtype = "f64", requires_grad = x.requires_grad })
      if x.requires_grad then checked[#checked + 1] = i end
    else
      args[i] = x
    end
  end
  if #checked == 0 then return false, "gradcheck: no input requires grad" end

  local function run()
    local out = fn(table.unpack(args, 1, #inputs))
    if not core.is_tensor(out) then error("gradcheck: fn must return a tensor, got " .. type(out), 0) end
    return out
  end

  local probe = without_grad(run)
  if probe.dtype ~= "f64" then
    return false, "gradcheck: fn returned a " .. probe.dtype
      .. " tensor; compute in f64 (pass every tensor as an input)"
  end
  local out_numel, out_shape = probe:numel(), probe:shape()

  -- analytical Jacobian, one backward per output element: rows[j][i][k]
  local rows = {}
  for j = 1, out_numel do
    for _, i in ipairs(checked) do args[i].grad = nil end
    local out = run()
    local seed = core.zeros(out_shape, "f64")
    seed:reshape(-1):set(j, 1)
    out:backward(seed)
    rows[j] = {}
    for _, i in ipairs(checked) do
      local g = args[i].grad
      rows[j][i] = g and g:reshape(-1):totable() or {}
    end
  end

  -- numerical Jacobian, one column per perturbed input element
  for _, i in ipairs(checked) do
    local x = args[i]
    local flat = x:view(-1)
    for k = 1, x:numel() do
      local original = flat[k]
      without_grad(function() flat:set(k, original + eps) end)
      local plus = without_grad(run):reshape(-1):totable()
      without_grad(function() flat:set(k, original - eps) end)
      local minus = without_grad(run):reshape(-1):totable()
      without_grad(function() flat:set(k, original) end)
      for j = 1, out_numel do
        local numerical = (plus[j] - minus[j]) / (2 * eps)
        local analytical = rows[j][i][k] or 0
        -- written so that a NaN on either side counts as a mismatch
        local close = math.abs(analytical - numerical) <= atol + rtol * math.abs(numerical)
        if not close then
          return false, string.format(
            "gradcheck: input %d element %s (output element %s): analytical %.10g, numerical %.10g",
            i, multi_index(k, x:shape()), multi_index(j, out_shape), analytical, numerical)
        end
      end
    end
  end
  return true
end

return gradcheck
