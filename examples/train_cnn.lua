-- Trains a convolutional network on Fashion-MNIST to about 93% test accuracy in 13 minutes
-- on a 2-core machine.
--
--   lua5.4 examples/train_cnn.lua [epochs=8] [seed=0]
--
-- Two stages of two 3x3 convolutions with batch normalisation, 2x2 max pooling after each
-- stage, then a 128-unit layer; AdamW with a cosine learning-rate schedule, label smoothing,
-- dropout, and random horizontal flips of the training images (clothes are roughly
-- symmetric).  Uses every core (lunet.set_num_threads).  Writes cnn_curves.svg,
-- cnn_confusion.svg and fashion_cnn.safetensors (the weights) in the current directory.
local lunet = require("lunet")
local nn, optim, data, metrics = lunet.nn, lunet.optim, lunet.data, lunet.metrics

local epochs = tonumber(arg[1]) or 8
local seed = tonumber(arg[2]) or 0
lunet.manual_seed(seed)

local function conv_block(cin, cout)
  return nn.Conv2d(cin, cout, 3, { padding = 1, bias = false }), nn.BatchNorm2d(cout), nn.ReLU()
end

local layers = {}
local function add(...) for _, m in ipairs({ ... }) do layers[#layers + 1] = m end end
add(conv_block(1, 32))
add(conv_block(32, 32))
add(nn.MaxPool2d(2))                                        -- 14x14
add(conv_block(32, 64))
add(conv_block(64, 64))
add(nn.MaxPool2d(2))                                        -- 7x7
add(nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128, { bias = false }), nn.BatchNorm1d(128), nn.ReLU())
add(nn.Dropout(0.25), nn.Linear(128, 10))
local model = nn.Sequential(table.unpack(layers))
print(model)

local train, test = data.fashion_mnist()

-- Random horizontal flips: each image of a batch is mirrored with probability 1/2.
local reversed = lunet.arange(28, 0, -1, "i64") -- columns 28, 27, ..., 1
local function flip_half(xb, yb)
  local mask = lunet.rand({ xb:size(1), 1, 1, 1 }):lt(0.5):to("f32")
  return xb * (1 - mask) + xb:index_select(4, reversed) * mask, yb
end

local optimizer = optim.AdamW(model:parameters(), { lr = 2e-3, weight_decay = 1e-4 })
local started = lunet.clock()
local history = model:fit(train, {
  epochs = epochs, batch_size = 128, seed = seed,
  loss = nn.CrossEntropyLoss({ label_smoothing = 0.1 }),
  optimizer = optimizer,
  scheduler = optim.CosineAnnealingLR(optimizer, { T_max = epochs }),
  transform = flip_half,
  validation_data = test,
})
local minutes = (lunet.clock() - started) / 60

local results = model:evaluate(test)
print(string.format("\ntest: %s  (%.1f minutes of training on %d threads)", tostring(results), minutes,
  lunet.get_num_threads()))
print(metrics.classification_report(results.confusion, train.classes))
history:plot("cnn_curves.svg", { title = "CNN on Fashion-MNIST" })
metrics.plot_confusion(results.confusion, "cnn_confusion.svg", train.classes, { title = "CNN, test set" })
model:save("fashion_cnn.safetensors")
print("wrote cnn_curves.svg, cnn_confusion.svg and fashion_cnn.safetensors")
