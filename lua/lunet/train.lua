--- Training, evaluation and prediction for any module: model:fit, model:evaluate,
-- model:predict, and the state-dict methods they rely on.  lunet.init installs these on
-- nn.Module, so every model, built-in or written in Lua, has them.
--
--     local history = model:fit(train, {
--       epochs = 5, batch_size = 64, loss = nn.CrossEntropyLoss(),
--       optimizer = optim.Adam(model:parameters(), {lr = 1e-3}),
--       validation_split = 0.1, callbacks = {callbacks.EarlyStopping{patience = 2}}})
--     print(model:evaluate(test))
local core = require("lunet.core")
local grad_mode = require("lunet.grad_mode")
local data = require("lunet.data")
local metrics = require("lunet.metrics")
local optim = require("lunet.optim")
local CrossEntropyLoss = require("lunet.nn.CrossEntropyLoss")
local History = require("lunet.History")
local progress = require("lunet.progress")
local compile = require("lunet.compile")

local train = {}

local FIT_OPTIONS = {
  epochs = true, batch_size = true, loss = true, optimizer = true, scheduler = true, scheduler_interval = true,
  validation_split = true, validation_data = true, shuffle = true, seed = true, drop_last = true, callbacks = true,
  verbose = true, output = true, eval_batch_size = true, transform = true, checkpoint = true, resume = true,
}

local function check_options(opts, allowed, fn)
  for key in pairs(opts) do
    if not allowed[key] then error(string.format("%s: unknown option %s", fn, tostring(key)), 3) end
  end
end

-- Classification: (N, K) float scores against (N) integer classes.
local function is_classification(output, targets)
  return targets ~= nil and output:dim() == 2 and (output.dtype == "f32" or output.dtype == "f64")
    and targets:dim() == 1 and targets.dtype ~= "f32" and targets.dtype ~= "f64"
end

local function as_dataset(d, fn)
  if type(d) == "table" and type(d.size) == "function" and type(d.batch) == "function" then return d end
  if type(d) == "table" and core.is_tensor(d[1]) then return data.TensorDataset(d[1], d[2]) end
  error(fn .. ": expected a dataset (data.TensorDataset) or a pair {x, y} of tensors", 3)
end

-- The model's outputs for x in evaluation mode: through its compiled C graph when it has one
-- (lunet.compile), else through the modules.
local function infer(model, x)
  local graph = compile.current_graph(model, x)
  if graph then return graph:forward(x) end
  return model(x)
end

--- Runs fn with the model in evaluation mode and without autograd, restoring both after;
-- returns what fn returns.
local function evaluating(model, fn)
  local was_training = model.training
  model:eval()
  local ok, result = pcall(grad_mode.run, false, fn)
  model:train(was_training)
  if not ok then error(result, 0) end
  return result
end
train.evaluating = evaluating

---------------------------------------------------------------------------------------------
-- Evaluation

local Results = {}
Results.__index = Results
Results.__tostring = function(r)
  local parts = {}
  for _, name in ipairs({ "loss", "accuracy", "precision", "recall", "f1" }) do
    if r[name] then parts[#parts + 1] = string.format("%s %.4f", name, r[name]) end
  end
  return table.concat(parts, "  ")
end

--- Evaluates the model on a dataset in evaluation mode, without autograd.
-- @param dataset a TensorDataset (or {x, y})
-- @param[opt] opts loss (the criterion; the one fit last used, else CrossEntropyLoss),
--   batch_size (1000)
-- @return a table {loss, accuracy, precision, recall, f1 (macro averages), confusion (the
--   (K, K) i64 confusion matrix, rows true), per_class}; accuracy and the rest only for
--   classification.  tostring() gives a one-line summary.
function train.evaluate(model, dataset, opts)
  opts = opts or {}
  check_options(opts, { loss = true, batch_size = true }, "evaluate")
  dataset = as_dataset(dataset, "evaluate")
  local criterion = opts.loss or rawget(model, "_fit_loss") or CrossEntropyLoss()
  local loader = data.DataLoader(dataset, { batch_size = opts.batch_size or 1000 })
  return evaluating(model, function()
    local loss_sum, count, confusion = 0, 0, nil
    for xb, yb in loader:batches() do
      local out = infer(model, xb)
      local n = xb:size(1)
      if yb ~= nil then loss_sum = loss_sum + criterion(out, yb):item() * n end
      count = count + n
      if is_classification(out, yb) then
        local cm = metrics.confusion_matrix(out, yb, out:size(2))
        confusion = confusion and confusion + cm or cm
      end
    end
    local results = setmetatable({ loss = count > 0 and loss_sum / count or 0 / 0 }, Results)
    if confusion then
      local scores = metrics.precision_recall_f1(confusion)
      results.accuracy, results.precision, results.recall, results.f1 = scores.accuracy, scores.precision,
        scores.recall, scores.f1
      results.per_class, results.confusion = scores.per_class, confusion
    end
    return results
  end)
end

---------------------------------------------------------------------------------------------
-- Prediction

--- The model's outputs for x, in evaluation mode, without autograd, batch by batch: through
-- its compiled graph (lunet.compile), or through its modules when it does not compile.
-- @param x a tensor whose first dim is the batch (or a dataset: its x is used)
-- @param[opt] opts batch_size (256; the compiled graph always runs slices of
--   LUNET_MODEL_MAX_BATCH = 256, which its buffers are sized for)
function train.predict(model, x, opts)
  opts = opts or {}
  if type(x) == "table" and core.is_tensor(x.x) then x = x.x end
  if not core.is_tensor(x) then error("predict: expected a tensor of inputs", 2) end
  local batch_size = opts.batch_size or 256
  -- The compiled graph is inference-only whatever the model's mode, runs no autograd, and
  -- runs big batches in slices itself.
  local graph = compile.current_graph(model, x)
  if graph then return graph:forward(x) end
  return evaluating(model, function()
    local n = x:size(1)
    if n <= batch_size then return model(x) end
    local parts = {}
    for first = 1, n, batch_size do
      parts[#parts + 1] = model(x:narrow(1, first, math.min(batch_size, n - first + 1)))
    end
    return core.cat(parts, 1)
  end)
end

---------------------------------------------------------------------------------------------
-- Fitting

local function call_callbacks(list, method, ...)
  for _, cb in ipairs(list) do
    if cb[method] then cb[method](cb, ...) end
  end
end

local function split_validation(dataset, opts)
  if opts.validation_data then return dataset, as_dataset(opts.validation_data, "fit") end
  local fraction = opts.validation_split
  if not fraction then return dataset, nil end
  if not (fraction > 0 and fraction < 1) then error("fit: validation_split must be in (0, 1)", 3) end
  -- The last fraction of the dataset, as Keras does: deterministic, and disjoint from training.
  local n = dataset:size()
  local n_val = math.floor(n * fraction + 0.5)
  if n_val < 1 or n_val >= n then error("fit: validation_split leaves an empty training or validation set", 3) end
  return dataset:subset(1, n - n_val), dataset:subset(n - n_val + 1, n_val)
end

local function step_scheduler(scheduler, logs)
  if scheduler.needs_metric then
    scheduler:step(logs[scheduler.monitor or (logs.val_loss and "val_loss" or "loss")])
  else
    scheduler:step()
  end
end

-- What a saved model records of its data (model_file): one sample's shape and the class names,
-- each unless the model already has it.
local function remember_input(model, xb, dataset)
  if rawget(model, "input_shape") == nil then
    local shape = xb:shape()
    table.remove(shape, 1)
    rawset(model, "input_shape", shape)
  end
  if rawget(model, "class_names") == nil and type(dataset.classes) == "table" then
    rawset(model, "class_names", { table.unpack(dataset.classes) })
  end
end

-- The state fit needs to continue a run: written after every epoch when opts.checkpoint is set.
local function save_run(path, trainer, scheduler, loader, epoch)
  local h = trainer.history
  require("lunet.checkpoint").save(path, {
    model = trainer.model, optimizer = trainer.optimizer, scheduler = scheduler, epoch = epoch,
    history = { epochs = h.epochs, metrics = rawget(h, "metrics"), order = rawget(h, "order") },
    shuffle = loader.generator and loader.generator:state() or nil,
  })
end

-- Restores a run saved by save_run; returns the last finished epoch.
local function resume_run(path, trainer, scheduler, loader)
  local into = { model = trainer.model, optimizer = trainer.optimizer, scheduler = scheduler }
  local saved = require("lunet.checkpoint").load(path, into)
  if math.type(saved.epoch) ~= "integer" or type(saved.history) ~= "table" then
    error(path .. ": not a checkpoint written by fit (no epoch or history)", 0)
  end
  local h = trainer.history
  h.epochs, h.metrics, h.order = saved.history.epochs, saved.history.metrics, saved.history.order
  if loader.generator and saved.shuffle then loader.generator:set_state(saved.shuffle) end
  return saved.epoch
end

--- Trains the model on a dataset.
-- @param dataset a TensorDataset (x, y) or a pair {x, y}
-- @param[opt] opts
--   epochs (1), batch_size (32), loss (nn.CrossEntropyLoss()),
--   optimizer (optim.Adam(model:parameters(), {lr = 1e-3})),
--   scheduler (stepped after every epoch, or after every batch with scheduler_interval =
--   "step", LinearWarmup's default; ReduceLROnPlateau gets val_loss, or loss without
--   validation data),
--   validation_split (a fraction held out from the end of the dataset) or validation_data,
--   shuffle (true), seed (the shuffling seed), drop_last (false),
--   transform (a function(xb, yb) -> xb, yb applied to each training batch: augmentation),
--   callbacks (a list: EarlyStopping, ModelCheckpoint, CSVLogger or your own),
--   verbose (1: a live progress bar on a terminal, one line per epoch otherwise; 2: one line
--   per epoch; 0: silent), output (io.stdout), eval_batch_size (1000),
--   checkpoint (a path: the model, optimizer, scheduler, history, shuffling and random state
--   are saved there after every epoch, atomically), resume (true: when the checkpoint file
--   exists, carry on from its last epoch up to `epochs`, as if the run had never stopped)
-- @return a History: history.loss[epoch], history.val_accuracy[epoch], ..., history:plot(path)
function train.fit(model, dataset, opts)
  opts = opts or {}
  check_options(opts, FIT_OPTIONS, "fit")
  dataset = as_dataset(dataset, "fit")
  local epochs = opts.epochs or 1
  local criterion = opts.loss or CrossEntropyLoss()
  local optimizer = opts.optimizer or optim.Adam(model:parameters(), { lr = 1e-3 })
  local scheduler = opts.scheduler
  local interval = opts.scheduler_interval or (scheduler and scheduler.interval) or "epoch"
  if interval ~= "epoch" and interval ~= "step" then
    error("fit: scheduler_interval must be \"epoch\" or \"step\"", 2)
  end
  local train_set, val_set = split_validation(dataset, opts)
  local loader = data.DataLoader(train_set, {
    batch_size = opts.batch_size or 32, shuffle = opts.shuffle ~= false, seed = opts.seed,
    drop_last = opts.drop_last or false,
  })
  local callbacks = opts.callbacks or {}
  local display = progress.new(opts.verbose == nil and 1 or opts.verbose, epochs, opts.output)
  local trainer = { model = model, optimizer = optimizer, history = History.new(), stop_training = false,
    log_order = { "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time" } }
  rawset(model, "_fit_loss", criterion)

  local first_epoch = 1
  if opts.resume then
    if not opts.checkpoint then error("fit: resume needs a checkpoint path", 2) end
    local f = io.open(opts.checkpoint, "rb")
    if f then
      f:close()
      first_epoch = resume_run(opts.checkpoint, trainer, scheduler, loader) + 1
    end
  end

  call_callbacks(callbacks, "on_train_begin", trainer)
  for epoch = first_epoch, epochs do
    call_callbacks(callbacks, "on_epoch_begin", trainer, epoch)
    model:train()
    display:epoch_begin(epoch, #loader)
    local started = core.clock()
    local loss_sum, correct, count, classification = 0, 0, 0, false
    for xb, yb, step in loader:batches() do
      if opts.transform then xb, yb = opts.transform(xb, yb) end
      if epoch == first_epoch and step == 1 then remember_input(model, xb, dataset) end
      optimizer:zero_grad()
      local out = model(xb)
      local loss = criterion(out, yb)
      loss:backward()
      optimizer:step()
      if scheduler and interval == "step" then scheduler:step() end
      local n = xb:size(1)
      loss_sum, count = loss_sum + loss:item() * n, count + n
      if is_classification(out, yb) then
        classification = true
        correct = correct + out:argmax(2):eq(yb):sum():item()
      end
      display:step(step, { loss = loss_sum / count, accuracy = classification and correct / count or nil },
        trainer.log_order)
    end
    local logs = { loss = loss_sum / count, accuracy = classification and correct / count or nil }
    if val_set then
      local r = train.evaluate(model, val_set, { loss = criterion, batch_size = opts.eval_batch_size })
      logs.val_loss, logs.val_accuracy = r.loss, r.accuracy
    end
    logs.lr = optimizer:get_lr()
    logs.time = core.clock() - started
    trainer.history:append(logs, trainer.log_order)
    display:epoch_end(logs, { "loss", "accuracy", "val_loss", "val_accuracy" })
    call_callbacks(callbacks, "on_epoch_end", trainer, epoch, logs)
    if scheduler and interval == "epoch" then step_scheduler(scheduler, logs) end
    if opts.checkpoint then save_run(opts.checkpoint, trainer, scheduler, loader, epoch) end
    if trainer.stop_training then break end
  end
  call_callbacks(callbacks, "on_train_end", trainer, trainer.history)
  return trainer.history
end

---------------------------------------------------------------------------------------------
-- State

--- Parameters and buffers by dotted name ("1.weight", "4.running_mean"): the tensors
-- themselves, not copies.
function train.state_dict(model)
  local state = {}
  for _, entry in ipairs(model:named_parameters()) do state[entry[1]] = entry[2] end
  for _, entry in ipairs(model:named_buffers()) do state[entry[1]] = entry[2] end
  return state
end

--- Copies values from state (name -> tensor) into the model's parameters and buffers.
-- @param[opt] opts strict (true): every name must match both ways and shapes must agree
-- @return the missing names and the unexpected names (lists)
function train.load_state_dict(model, state, opts)
  local strict = not (opts and opts.strict == false)
  local own = train.state_dict(model)
  local missing, unexpected = {}, {}
  for name in pairs(own) do
    if state[name] == nil then missing[#missing + 1] = name end
  end
  for name in pairs(state) do
    if own[name] == nil then unexpected[#unexpected + 1] = name end
  end
  table.sort(missing)
  table.sort(unexpected)
  if strict and (#missing > 0 or #unexpected > 0) then
    local function list(names) return #names > 0 and table.concat(names, ", ") or "none" end
    error(string.format("load_state_dict: missing %s; unexpected %s", list(missing), list(unexpected)), 2)
  end
  grad_mode.run(false, function()
    for name, target in pairs(own) do
      local source = state[name]
      if source ~= nil then
        local a, b = table.concat(target:shape(), ","), table.concat(source:shape(), ",")
        if a ~= b then
          error(string.format("load_state_dict: %s has shape [%s] in the model but [%s] given", name, a, b), 0)
        end
        target:copy(source)
      end
    end
  end)
  return missing, unexpected
end

--- Writes the model to a safetensors file (atomically), with its architecture when it is made
-- of built-in layers: see lunet.model_file.  opts: input_shape, class_names.
function train.save(model, path, opts)
  return require("lunet.model_file").save(model, path, opts)
end

--- Loads parameters and buffers from a safetensors file written by save (or by another
-- writer using the same names: "1.weight", ...); opts as load_state_dict.
function train.load_weights(model, path, opts)
  local safetensors = require("lunet.safetensors")
  return train.load_state_dict(model, (safetensors.read(path)), opts)
end

--- Installs fit, evaluate, predict, the state-dict methods, save and load_weights on a module
-- class.
function train.install(Module)
  Module.fit, Module.evaluate, Module.predict = train.fit, train.evaluate, train.predict
  Module.state_dict, Module.load_state_dict = train.state_dict, train.load_state_dict
  Module.save, Module.load_weights = train.save, train.load_weights
end

return train
