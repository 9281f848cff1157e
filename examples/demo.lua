-- What `make demo` runs: a short tour of tensors and autograd, then a Fashion-MNIST model
-- trained, evaluated and plotted.
--
--   lua5.4 examples/demo.lua
local lunet = require("lunet")
local nn, optim, data, metrics = lunet.nn, lunet.optim, lunet.data, lunet.metrics
lunet.manual_seed(0)

print("lunet " .. lunet.version)
print("\n-- tensors")
local a = lunet.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
print(a)
print("a:sum(2)      ->", a:sum(2))
print("a:transpose() ->", a:transpose())
print("a @ a^T       ->", a:matmul(a:transpose()))
print("a:gt(2)       ->", a:gt(2))

print("\n-- autograd: fitting y = 3x - 2 by gradient descent")
local x = lunet.linspace(-1, 1, 200):reshape({ 200, 1 })
local y = x * 3 - 2 + lunet.randn({ 200, 1 }) * 0.1
local w = lunet.zeros({ 1, 1 }, { requires_grad = true })
local b = lunet.zeros({ 1 }, { requires_grad = true })
local learning_rate = 0.5
for step = 1, 60 do
  local prediction = x:matmul(w) + b
  local loss = ((prediction - y) ^ 2):mean()
  w.grad, b.grad = nil, nil
  loss:backward()
  lunet.no_grad(function()
    w:copy(w - w.grad * learning_rate)
    b:copy(b - b.grad * learning_rate)
  end)
  if step % 15 == 0 then
    print(string.format("step %2d  loss %.5f  w %.4f  b %.4f", step, loss:item(), w:item(), b:item()))
  end
end

print("\n-- gradient check (float64 central differences)")
local p = lunet.randn({ 3, 4 }, { dtype = "f64", requires_grad = true })
local q = lunet.randn({ 4, 2 }, { dtype = "f64", requires_grad = true })
local function f(m, n) return m:matmul(n):relu():sum(1) end
print("gradcheck(relu(p @ q):sum(1)) ->", lunet.gradcheck(f, { p, q }))

print("\n-- training an MLP on Fashion-MNIST (2 epochs)")
local train, test = data.fashion_mnist()
local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
local history = model:fit(train, {
  epochs = 2, batch_size = 64, loss = nn.CrossEntropyLoss(),
  optimizer = optim.Adam(model:parameters(), { lr = 1e-3 }), validation_split = 0.1, seed = 0,
})
local results = model:evaluate(test)
print("test: " .. tostring(results))
print(metrics.format_confusion(results.confusion, train.classes))
history:plot("demo_curves.svg", { title = "Fashion-MNIST MLP" })
print("wrote demo_curves.svg (loss and accuracy per epoch, training and validation)")
