-- Trains the reference MLP on Fashion-MNIST and reports how it does.
--
--   lua5.4 examples/train_mlp.lua [epochs=10] [seed=0]
--
-- Flatten -> Linear(784, 128) -> ReLU -> Linear(128, 10), Adam lr 1e-3, batch 64: the model
-- and settings of ../shared/bench/torch_peer.py.  Writes mlp_curves.svg and
-- mlp_confusion.svg in the current directory.
local lunet = require("lunet")
local nn, optim, data, metrics = lunet.nn, lunet.optim, lunet.data, lunet.metrics

local epochs = tonumber(arg[1]) or 10
local seed = tonumber(arg[2]) or 0
lunet.manual_seed(seed)

local train, test = data.fashion_mnist()
local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
print(model)

local history = model:fit(train, {
  epochs = epochs, batch_size = 64, seed = seed,
  loss = nn.CrossEntropyLoss(),
  optimizer = optim.Adam(model:parameters(), { lr = 1e-3 }),
  validation_split = 0.1,
})

local results = model:evaluate(test)
print("\ntest: " .. tostring(results))
print(metrics.classification_report(results.confusion, train.classes))
print(metrics.format_confusion(results.confusion, train.classes))
history:plot("mlp_curves.svg", { title = "MLP on Fashion-MNIST" })
metrics.plot_confusion(results.confusion, "mlp_confusion.svg", train.classes, { title = "MLP, test set" })
print("wrote mlp_curves.svg and mlp_confusion.svg")
