local lunet = require("lunet")
local h = require("spec.helpers")

-- Sums a 3-d nested table over dim d (1-based) with plain loops.
local function loop_sum(t, d)
  local a, b, c = #t, #t[1], #t[1][1]
  local out = {}
  for i = 1, a do
    for j = 1, b do
      for k = 1, c do
        local key = d == 1 and { j, k } or d == 2 and { i, k } or { i, j }
        out[key[1]] = out[key[1]] or {}
        out[key[1]][key[2]] = (out[key[1]][key[2]] or 0) + t[i][j][k]
      end
    end
  end
  return out
end

describe("reductions", function()
  lunet.manual_seed(1)
  local x = lunet.randn({ 2, 3, 4 }, "f64")
  local values = x:totable()

  it("sum and mean over each dim, with and without keepdim", function()
    for d = 1, 3 do
      local expected = loop_sum(values, d)
      h.assert_values(x:sum(d), expected, 1e-12)
      h.assert_values(x:sum(d - 4), expected, 1e-12) -- negative dims count from the end
      local kept = x:sum(d, true)
      assert.are.equal(1, kept:size(d))
      assert.are.equal(3, kept:dim())
      h.assert_values(x:mean(d), x:sum(d) / x:size(d), 1e-12)
    end
    local total = 0
    for _, v in ipairs(h.flatten(values)) do total = total + v end
    assert.are.same({}, x:sum():shape())
    assert.is_true(math.abs(x:sum():item() - total) < 1e-12)
    assert.is_true(math.abs(x:mean():item() - total / 24) < 1e-12)
  end)

  it("max and min over a dim return values and 1-based indices", function()
    local t = lunet.tensor({ { 3, 9, 9 }, { -1, -5, 2 } })
    local v, i = t:max(2)
    assert.are.same({ 9, 2 }, v:totable())
    assert.are.same({ 2, 3 }, i:totable()) -- ties go to the first index
    assert.are.equal("i64", i.dtype)
    v, i = t:min(1, true)
    assert.are.same({ { -1, -5, 2 } }, v:totable())
    assert.are.same({ { 2, 2, 2 } }, i:totable())
    assert.are.equal(9, t:max():item())
    assert.are.equal(-5, t:min():item())
  end)

  it("argmax and argmin, over a dim or the flattened tensor", function()
    local t = lunet.tensor({ { 3, 9, 1 }, { 4, 0, 8 } })
    assert.are.same({ 2, 3 }, t:argmax(2):totable())
    assert.are.same({ 1, 2, 1 }, t:argmin(1):totable())
    assert.are.equal(2, t:argmax():item())
    assert.are.equal(5, t:argmin():item())
    assert.are.same({ { 2 }, { 3 } }, t:argmax(2, true):totable())
  end)

  it("sums integers into i64 and averages them as f32", function()
    local u = lunet.full({ 1000 }, 255, "u8")
    assert.are.equal("i64", u:sum().dtype)
    assert.are.equal(255000, u:sum():item())
    assert.are.equal("f32", u:mean().dtype)
    assert.are.equal(255, u:mean():item())
  end)
end)

describe("matmul", function()
  -- (n x k) * (k x m) with plain loops over nested tables
  local function loop_matmul(a, b)
    local out = {}
    for i = 1, #a do
      out[i] = {}
      for j = 1, #b[1] do
        local s = 0
        for k = 1, #b do s = s + a[i][k] * b[k][j] end
        out[i][j] = s
      end
    end
    return out
  end

  it("multiplies matrices, transposed views included", function()
    lunet.manual_seed(2)
    local a, b = lunet.randn({ 5, 7 }, "f64"), lunet.randn({ 7, 3 }, "f64")
    local expected = loop_matmul(a:totable(), b:totable())
    h.assert_values(a:matmul(b), expected, 1e-12)
    h.assert_values(lunet.matmul(a:transpose():contiguous():transpose(), b), expected, 1e-12)
    h.assert_values(a:matmul(b:transpose():contiguous():transpose()), expected, 1e-12)
  end)

  it("broadcasts batch dims and handles vectors like torch.matmul", function()
    local a, b = lunet.randn({ 4, 2, 3 }), lunet.randn({ 5, 1, 3, 6 })
    local c = a:matmul(b)
    assert.are.same({ 5, 4, 2, 6 }, c:shape())
    h.assert_values(c[3][2], a[2]:matmul(b[3][1]), 1e-5)
    local v = lunet.randn({ 3 })
    assert.are.same({ 4, 2 }, a:matmul(v):shape())
    assert.are.same({ 4, 3 }, lunet.randn({ 2 }):matmul(a):shape())
    assert.are.same({}, v:matmul(v):shape())
  end)

  it("multiplies integer matrices exactly", function()
    local a = lunet.tensor({ { 1, 2 }, { 3, 4 } }, "i64")
    assert.are.same({ { 7, 10 }, { 15, 22 } }, a:matmul(a):totable())
  end)
end)
