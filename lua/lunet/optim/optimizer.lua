--- The base of lunet's optimizers, with torch.optim.Optimizer's behaviour: parameter groups,
-- per-parameter state made at a parameter's first update, zero_grad, the learning rate, and
-- state()/load_state() for checkpoints.
--
-- A concrete optimizer (sgd.lua, adam.lua, ...) is made with Optimizer.class and defines:
--
--   Class.check_group(group)           nil, or a message when a group's settings are invalid
--   Class.init_state(group, param)     the state table of a parameter at its first update
--   Class.update(group, params, states)
--                                      updates params (those of the group that have a gradient,
--                                      with their states) in C and advances the states
--   Class.required_state               state keys that load_state() insists on
--
-- The arithmetic is in C (lunet.core.*_step); Lua only decides which tensors take part.
local core = require("lunet.core")
local settings = require("lunet.optim.settings")

local Optimizer = {}

--- Marks an option that has no default and must be given (SGD's lr).
Optimizer.required = settings.required

--- Makes an optimizer class.
-- @param name the name used in messages and in state() ("Adam")
-- @param default_options option name -> default (Optimizer.required when there is none)
-- @return the class; Class(params, options) makes an optimizer
function Optimizer.class(name, default_options)
  local class = { name = name, default_options = default_options, required_state = {} }
  class.__name = "lunet.optim." .. name
  -- opt.lr reads the first group's rate and `opt.lr = x` sets every group's (set_lr).
  class.__index = function(self, key)
    if key == "lr" then return self.param_groups[1].lr end
    return class[key]
  end
  class.__newindex = function(self, key, value)
    if key == "lr" then
      self:set_lr(value)
    else
      rawset(self, key, value)
    end
  end
  class.__tostring = function(self)
    return string.format("%s (%d parameter group%s, lr %g)", name, #self.param_groups,
      #self.param_groups == 1 and "" or "s", self.param_groups[1].lr)
  end
  return setmetatable(class, {
    __index = Optimizer,
    __call = function(cls, params, options) return Optimizer.new(cls, params, options) end,
  })
end

--- Makes an optimizer of class over params.
-- @param params a list of tensors, or a list of parameter groups {params = {...}, lr = ...}
--   whose options override the optimizer's
-- @param options the optimizer's options (see each class); unknown names raise
function Optimizer.new(class, params, options)
  local self = setmetatable({
    defaults = settings.merge(class.name, options, class.default_options, nil, true),
    param_groups = {},
    param_state = {}, -- param tensor -> its state table
  }, class)
  -- Check the defaults now unless a required one is left to the groups, so that a bad value
  -- fails at once even when every group overrides it.
  local complete = true
  for _, value in pairs(self.defaults) do
    if value == settings.required then complete = false end
  end
  local message = complete and class.check_group(self.defaults)
  if message then settings.fail(class.name, "%s", message) end
  if type(params) ~= "table" then
    settings.fail(class.name, "params must be a list of tensors or of parameter groups, got %s%s",
      core.is_tensor(params) and "a single tensor" or type(params),
      core.is_tensor(params) and " (wrap it in a list: {t})" or "")
  end
  if #params == 0 then settings.fail(class.name, "params is an empty list") end
  if core.is_tensor(params[1]) then
    self:add_param_group({ params = params }, true)
  else
    for _, group in ipairs(params) do self:add_param_group(group) end
  end
  return self
end

local function group_label(self, implicit)
  if implicit then return nil end
  return "param group " .. (#self.param_groups + 1)
end

--- Adds a parameter group {params = {...}, option = value, ...}; options it does not set
-- take the optimizer's values.
-- @param group the group table (not kept: the optimizer stores its own copy)
-- @param implicit true for the single group made from a plain list of tensors (messages
--   then do not mention groups)
function Optimizer:add_param_group(group, implicit)
  local label = group_label(self, implicit)
  local prefix = label and (label .. ": ") or ""
  if type(group) ~= "table" then
    settings.fail(self.name, "%sa parameter group must be a table {params = {...}, ...}, got %s", prefix,
      core.is_tensor(group) and "a tensor among groups" or type(group))
  end
  local params = group.params
  if core.is_tensor(params) then params = { params } end
  if type(params) ~= "table" then
    settings.fail(self.name, "%sa parameter group needs params, a list of tensors", prefix)
  end
  local options = {}
  for key, value in pairs(group) do
    if key ~= "params" then options[key] = value end
  end
  local new = settings.merge(self.name, options, self.defaults, label)
  local message = self.check_group(new)
  if message then settings.fail(self.name, "%s%s", prefix, message) end

  local seen = {}
  for _, other in ipairs(self.param_groups) do
    for _, p in ipairs(other.params) do seen[p] = true end
  end
  new.params = {}
  for i = 1, #params do
    local p = params[i]
    local where = string.format("%sparams[%d]", prefix, i)
    if not core.is_tensor(p) then settings.fail(self.name, "%s is %s, not a lunet.Tensor", where, type(p)) end
    if p.dtype ~= "f32" and p.dtype ~= "f64" then
      settings.fail(self.name, "%s has dtype %s; only f32 and f64 tensors can be optimized", where, p.dtype)
    end
    if not p.is_leaf then
      settings.fail(self.name, "%s is not a leaf tensor (it comes from %s); optimize the tensor it was computed from",
        where, p.grad_fn)
    end
    if not p:is_contiguous() then
      settings.fail(self.name, "%s is not contiguous; optimize the tensor it is a view of", where)
    end
    if seen[p] then settings.fail(self.name, "%s appears more than once among the parameters", where) end
    seen[p] = true
    new.params[i] = p
  end
  self.param_groups[#self.param_groups + 1] = new
end

--- Clears the gradients of every parameter.
-- @param set_to_none true (the default, as PyTorch) drops each .grad; false fills them with
--   zeros in place instead
function Optimizer:zero_grad(set_to_none)
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      if set_to_none == false then
        p:zero_grad()
      else
        p.grad = nil
      end
    end
  end
end

--- Updates every parameter that has a gradient, one C call per group (parameters whose step
-- counts differ, because some had no gradient at times, are updated in one call per count).
-- @param closure optional function that re-evaluates the model and returns the loss
-- @return the closure's result, if a closure was given
function Optimizer:step(closure)
  local loss
  if closure ~= nil then loss = closure() end
  for _, group in ipairs(self.param_groups) do
    local params, states = {}, {}
    for _, p in ipairs(group.params) do
      if p.grad ~= nil then
        local state = self.param_state[p]
        if state == nil then
          state = self.init_state(group, p)
          self.param_state[p] = state
        end
        params[#params + 1] = p
        states[#states + 1] = state
      end
    end
    if #params > 0 then self.update(group, params, states) end
  end
  return loss
end

--- Splits params and their states by the step each is about to take (state.step + 1), in
-- increasing order.  Almost always one batch: parameters differ only when some of them had
-- no gradient in earlier steps.
-- @return a list of {step =, params =, states =}
function Optimizer.batches_by_step(params, states)
  local first = states[1].step
  local uniform = true
  for i = 2, #states do
    if states[i].step ~= first then
      uniform = false
      break
    end
  end
  if uniform then return { { step = first + 1, params = params, states = states } } end
  local by_step, batches = {}, {}
  for i, state in ipairs(states) do
    local step = state.step + 1
    local batch = by_step[step]
    if batch == nil then
      batch = { step = step, params = {}, states = {} }
      by_step[step] = batch
      batches[#batches + 1] = batch
    end
    batch.params[#batch.params + 1] = params[i]
    batch.states[#batch.states + 1] = state
  end
  table.sort(batches, function(a, b) return a.step < b.step end)
  return batches
end

--- The learning rate of the first parameter group (param_groups[i].lr for the others).
function Optimizer:get_lr()
  return self.param_groups[1].lr
end

--- Sets the learning rate of every parameter group.
function Optimizer:set_lr(lr)
  local message = settings.number({ lr = lr }, "lr", 0)
  if message then settings.fail(self.name, "set_lr: %s", message) end
  for _, group in ipairs(self.param_groups) do group.lr = lr end
end

--- The optimizer's state as a plain table of copies, for checkpoints:
-- {optimizer = name, param_groups = {{lr =, ..., params = {1, 2}}, ...},
--  state = {[index] = {step =, <state tensors>}}}.
-- Parameters are numbered 1, 2, ... through the groups in order, as PyTorch's state_dict does.
function Optimizer:state()
  local groups, states, index = {}, {}, 0
  for g, group in ipairs(self.param_groups) do
    local saved = { params = {} }
    for key, value in pairs(group) do
      if key ~= "params" then saved[key] = settings.copy(value) end
    end
    for _, p in ipairs(group.params) do
      index = index + 1
      saved.params[#saved.params + 1] = index
      local state = self.param_state[p]
      if state ~= nil then states[index] = settings.copy(state) end
    end
    groups[g] = saved
  end
  return { optimizer = self.name, param_groups = groups, state = states }
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- The state of one parameter from a saved table, copied and converted to the parameter's dtype.
local function load_param_state(self, saved, p, index)
  if type(saved) ~= "table" then
    settings.fail(self.name, "load_state: the state of parameter %s is %s, not a table", tostring(index), type(saved))
  end
  for _, key in ipairs(self.required_state) do
    if saved[key] == nil then
      settings.fail(self.name, "load_state: the state of parameter %s has no %s", tostring(index), key)
    end
  end
  local keys = {}
  for key in pairs(saved) do keys[#keys + 1] = key end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end) -- the first bad key is always the same one
  local state = {}
  for _, key in ipairs(keys) do
    local value = saved[key]
    if core.is_tensor(value) then
      if not same_shape(value:shape(), p:shape()) then
        settings.fail(self.name, "load_state: %s of parameter %s has shape %s but the parameter has shape %s", key,
          tostring(index), settings.shape_string(value:shape()), settings.shape_string(p:shape()))
      end
      state[key] = core.tensor(value, p.dtype)
    else
      state[key] = settings.copy(value)
    end
  end
  return state
end

--- Restores a table made by state(), so that training resumes exactly where it was saved.
-- The optimizer must have the same groups with the same numbers of parameters; settings and
-- state are copied (state tensors converted to their parameter's dtype).  Nothing changes
-- when the table does not fit.
function Optimizer:load_state(saved)
  if type(saved) ~= "table" or type(saved.param_groups) ~= "table" then
    settings.fail(self.name, "load_state: expected a table made by state(), got %s", type(saved))
  end
  if saved.optimizer ~= nil and saved.optimizer ~= self.name then
    settings.fail(self.name, "load_state: the state was saved by %s", tostring(saved.optimizer))
  end
  if #saved.param_groups ~= #self.param_groups then
    settings.fail(self.name, "load_state: the state has %d parameter groups but the optimizer has %d",
      #saved.param_groups, #self.param_groups)
  end
  local new_groups, param_of_index = {}, {}
  for g, group in ipairs(self.param_groups) do
    local saved_group = saved.param_groups[g]
    if type(saved_group) ~= "table" or type(saved_group.params) ~= "table" or #saved_group.params ~= #group.params then
      settings.fail(self.name, "load_state: parameter group %d of the state does not match the optimizer's, "
        .. "which has %d parameters", g, #group.params)
    end
    local options = {}
    for key, value in pairs(group) do
      if key ~= "params" then options[key] = value end
    end
    for key, value in pairs(saved_group) do
      if key ~= "params" then options[key] = value end
    end
    local label = "load_state: param group " .. g
    local new = settings.merge(self.name, options, self.default_options, label)
    local message = self.check_group(new)
    if message then settings.fail(self.name, "%s: %s", label, message) end
    new_groups[g] = new
    for i, index in ipairs(saved_group.params) do param_of_index[index] = group.params[i] end
  end
  local new_state = {}
  for index, saved_state in pairs(saved.state or {}) do
    local p = param_of_index[index]
    if p == nil then
      settings.fail(self.name, "load_state: there is state for parameter %s, which no parameter group lists",
        tostring(index))
    end
    new_state[p] = load_param_state(self, saved_state, p, index)
  end
  -- Commit: the group tables are updated in place, so references to them stay valid.
  for g, group in ipairs(self.param_groups) do
    for key in pairs(group) do
      if key ~= "params" then group[key] = nil end
    end
    for key, value in pairs(new_groups[g]) do group[key] = value end
  end
  self.param_state = new_state
end

return Optimizer
