local lunet = require("lunet")
local h = require("spec.helpers")
local nn, optim, data, callbacks = lunet.nn, lunet.optim, lunet.data, lunet.callbacks

-- Two well separated Gaussian blobs in 2-d, labels 1 and 2.
local function blobs(n, seed)
  lunet.manual_seed(seed or 0)
  local x = lunet.randn({ n, 2 }) * 0.5
  local y = lunet.zeros({ n }, "i64")
  for i = 1, n do
    local class = i % 2 + 1
    y:set(i, class)
    x:set(i, 1, x:get(i, 1) + (class == 1 and -2 or 2))
  end
  return data.TensorDataset(x, y)
end

local function tmpname() return os.tmpname() end

describe("model:fit", function()
  it("learns a separable problem and records a history per epoch", function()
    local ds = blobs(400)
    local model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    local history = model:fit(ds, { epochs = 5, batch_size = 32, verbose = 0, validation_split = 0.25,
      optimizer = optim.Adam(model:parameters(), { lr = 0.05 }) })
    assert.are.equal(5, history.epochs)
    assert.are.equal(5, #history.loss)
    assert.are.equal(5, #history.val_accuracy)
    assert.is_true(history.loss[5] < history.loss[1])
    assert.is_true(history.val_accuracy[5] > 0.97)
    assert.are.equal(0.05, history.lr[5])
    local results = model:evaluate(ds)
    assert.is_true(results.accuracy > 0.97)
    assert.are.same({ 2, 2 }, results.confusion:shape())
    assert.are.equal(400, results.confusion:sum():item())
    assert.truthy(tostring(results):find("accuracy [01]%.%d%d%d%d"))
  end)

  it("prints one line per epoch when not on a terminal", function()
    local path = tmpname()
    local out = assert(io.open(path, "w"))
    local model = nn.Sequential(nn.Linear(2, 2))
    model:fit(blobs(64), { epochs = 2, verbose = 1, output = out, validation_split = 0.5 })
    out:close()
    local text = assert(io.open(path)):read("a")
    os.remove(path)
    assert.truthy(text:find("epoch 1/2 - ", 1, true))
    assert.truthy(text:find("epoch 2/2 - .* - loss: [%d.]+ %- accuracy: [%d.]+ %- val_loss: [%d.]+"))
  end)

  it("steps schedulers, applies a batch transform and rejects unknown options", function()
    local model = nn.Sequential(nn.Linear(2, 2))
    local opt = optim.SGD(model:parameters(), { lr = 1 })
    local seen = 0
    model:fit(blobs(64), { epochs = 3, batch_size = 16, verbose = 0, optimizer = opt,
      scheduler = optim.StepLR(opt, { step_size = 1, gamma = 0.5 }),
      transform = function(xb, yb) seen = seen + 1; return xb, yb end })
    assert.are.equal(0.125, opt.lr)
    assert.are.equal(12, seen)
    h.assert_error_contains(function() model:fit(blobs(8), { epoch = 2 }) end, "fit: unknown option epoch")
  end)

  it("stops early, logs CSV and writes checkpoints", function()
    local csv, checkpoint = tmpname(), tmpname() .. "-{epoch}.safetensors"
    local model = nn.Sequential(nn.Linear(2, 2))
    -- lr 0: nothing improves, so EarlyStopping with patience 1 stops after epoch 2
    local stop = callbacks.EarlyStopping({ monitor = "val_loss", patience = 1 })
    local save = callbacks.ModelCheckpoint(checkpoint)
    local history = model:fit(blobs(64), { epochs = 10, verbose = 0, validation_split = 0.25,
      optimizer = optim.SGD(model:parameters(), { lr = 0 }),
      callbacks = { stop, callbacks.CSVLogger(csv), save } })
    assert.are.equal(2, history.epochs)
    assert.are.equal(2, stop.stopped_epoch)
    local lines = {}
    for line in io.lines(csv) do lines[#lines + 1] = line end
    os.remove(csv)
    assert.are.equal("epoch,loss,accuracy,val_loss,val_accuracy,lr,time", lines[1])
    assert.are.equal(3, #lines)
    assert.are.equal(2, #save.saved)
    local copy = nn.Sequential(nn.Linear(2, 2))
    copy:load_weights(save.saved[2])
    assert.are.same(model[1].weight:totable(), copy[1].weight:totable())
    for _, path in ipairs(save.saved) do os.remove(path) end
  end)
end)

describe("model:predict and the state dict", function()
  it("predicts in evaluation mode, batch by batch, without autograd", function()
    lunet.manual_seed(7)
    local model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    local x = lunet.randn({ 10, 3 })
    local all = model:predict(x, { batch_size = 3 })
    assert.is_false(all.requires_grad)
    assert.is_true(model.training) -- the mode is restored
    model:eval()
    h.assert_values(all, model(x), 1e-6)
  end)

  it("round-trips parameters and buffers through a safetensors file", function()
    local path = tmpname()
    local a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    a(lunet.randn({ 8, 3 })) -- moves the running statistics
    a:save(path)
    local b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b:load_weights(path)
    os.remove(path)
    for name, t in pairs(a:state_dict()) do assert.are.same(t:totable(), b:state_dict()[name]:totable()) end
    h.assert_error_contains(function() nn.Sequential(nn.Linear(3, 5)):load_state_dict(a:state_dict()) end,
      "load_state_dict: missing none; unexpected 2.bias")
  end)
end)
