-- A spec-like workout for `make valgrind-check`: valgrind must report no definitely-lost
-- bytes after it.  It creates, views, computes, fails on purpose, back-propagates, releases
-- and lets the collector finish the rest.
local lunet = require("lunet")
lunet.manual_seed(0)
lunet.set_num_threads(1)

for _ = 1, 20 do
  local x = lunet.randn({ 8, 16 }, { requires_grad = true })
  local w = lunet.randn({ 16, 4 }, { dtype = "f32", requires_grad = true })
  local b = lunet.zeros({ 4 }, { requires_grad = true })
  local y = (x:matmul(w) + b):relu():sigmoid():tanh()
  local loss = (y * y):mean() + y:max() - y:min() + (y:abs() + 1):log():sqrt():sum(2):exp():mean()
  loss:backward()
  local v, i = x:max(2)
  local views = { x:transpose(), x:narrow(1, 2, 3), x:slice(2, 1, -1, 3), x[2], x:view({ -1 }),
    x:unsqueeze(1):squeeze(), x:flatten(), b:expand({ 3, 4 }), x:contiguous(), x:to("f64"):to("i8"), v, i }
  for _, t in ipairs(views) do assert(tostring(t)) end
  local probe = lunet.randn({ 3, 2 }, { dtype = "f64", requires_grad = true })
  local p = lunet.gradcheck(function(a) return (a ^ 2):sum(1) end, { probe })
  assert(p)
  -- failures must free their temporaries
  assert(not pcall(function() return x:matmul(x) end))
  assert(not pcall(function() return lunet.tensor({ { 1 }, { 2, 3 } }) end))
  assert(not pcall(function() return lunet.tensor({ 1, "x" }) end))
  assert(not pcall(function() return x:reshape({ 7, 7 }) end))
  assert(not pcall(function() loss:backward() end))
  local released = lunet.ones({ 3 })
  released:release()
  assert(not pcall(function() return released + 1 end))
  do
    local scoped <close> = lunet.ones({ 5 }) * 2
    assert(scoped:sum():item() == 10)
  end
  assert(lunet.no_grad(function() return (x * 2).requires_grad end) == false)
  assert(lunet.tensor({ { 1, 2 }, { 3, 4 } }, "i32"):matmul(lunet.eye(2, "i32")):sum():item() == 10)
end
collectgarbage("collect")
print("leakcheck: done")
