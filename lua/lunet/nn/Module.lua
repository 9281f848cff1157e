--- The base class of every layer and model.
--
-- A module owns parameters (tensors that require grad), buffers (state such as running
-- statistics) and child modules, each under a name.  Assigning a module or a tensor that
-- requires grad to a new field registers it, as in PyTorch:
--
--     local Net = nn.Module:extend("Net")
--     function Net:init()
--       self.hidden = nn.Linear(4, 8)
--       self.out = nn.Linear(8, 2)
--     end
--     function Net:forward(x) return self.out(self.hidden(x):relu()) end
--
-- Calling a module calls forward.  Classes are made with Module:extend(name) and instantiated
-- by calling them (Net()), which runs init with the arguments.
local core = require("lunet.core")
local group_digits = require("lunet.format").group_digits

local Module = {}
Module.__index = Module
Module.__name = "Module"

-- The metamethods every class carries (Lua does not inherit them through __index).
local METAMETHODS = { "__call", "__tostring", "__newindex" }

--- Makes a subclass named name; call it to make instances.
function Module:extend(name)
  local class = setmetatable({}, {
    __index = self,
    __call = function(c, ...) return c:new(...) end,
    __tostring = function(c) return "class " .. c.__name end,
  })
  class.__index = class
  class.__name = name or "Module"
  class.super = self
  for _, m in ipairs(METAMETHODS) do class[m] = self[m] end
  return class
end

--- Creates an instance and runs init(...) on it.
function Module:new(...)
  local instance = setmetatable({
    training = true,
    _children = {}, -- names, in registration order
    _parameter_names = {},
    _buffer_names = {},
  }, self)
  instance:init(...)
  return instance
end

--- Sets up a new instance; subclasses override it.
function Module:init() end

--- The computation; subclasses override it.
function Module:forward()
  error(self.__name .. ": forward is not implemented", 2)
end

function Module:__call(...) return self:forward(...) end

local function is_module(v)
  return type(v) == "table" and getmetatable(v) ~= nil and getmetatable(v).forward ~= nil and v._children ~= nil
end
Module.is_module = is_module

-- New fields: modules become children, tensors that require grad become parameters.
function Module:__newindex(key, value)
  if is_module(value) then
    self._children[#self._children + 1] = key
  elseif core.is_tensor and core.is_tensor(value) and value.requires_grad then
    self._parameter_names[#self._parameter_names + 1] = key
  end
  rawset(self, key, value)
end

--- Registers t (a tensor or nil) as parameter name; it is made to require grad.
function Module:register_parameter(name, t)
  if t ~= nil and not t.requires_grad then t.requires_grad = true end
  if rawget(self, name) == nil then self._parameter_names[#self._parameter_names + 1] = name end
  rawset(self, name, t)
  return t
end

--- Registers t as buffer name: state that is saved with the module but not trained.
function Module:register_buffer(name, t)
  if rawget(self, name) == nil then self._buffer_names[#self._buffer_names + 1] = name end
  rawset(self, name, t)
  return t
end

--- Registers m as child name (what assigning it to a new field does).
function Module:add_module(name, m)
  assert(is_module(m), "add_module: " .. tostring(name) .. " is not a module")
  if rawget(self, name) == nil then self._children[#self._children + 1] = name end
  rawset(self, name, m)
  return m
end

--- The child modules as a list of {name, module}, in registration order.
function Module:children()
  local out = {}
  for _, name in ipairs(self._children) do
    local m = rawget(self, name)
    if m ~= nil then out[#out + 1] = { name, m } end
  end
  return out
end

-- Walks parameters (kind "parameter") or buffers (kind "buffer") depth first.
local function collect(module, kind, prefix, out, seen)
  local names = kind == "parameter" and module._parameter_names or module._buffer_names
  for _, name in ipairs(names) do
    local t = rawget(module, name)
    if t ~= nil and not seen[t] then
      seen[t] = true
      out[#out + 1] = { prefix .. name, t }
    end
  end
  for _, child in ipairs(module:children()) do
    collect(child[2], kind, prefix .. child[1] .. ".", out, seen)
  end
  return out
end

--- Every parameter of this module and its descendants as a list of {name, tensor}, with
-- dotted names ("1.weight", "encoder.fc.bias"); a tensor shared by two modules appears once.
function Module:named_parameters() return collect(self, "parameter", "", {}, {}) end

--- Every parameter as a list of tensors (what optimizers take).
function Module:parameters()
  local out = {}
  for _, entry in ipairs(self:named_parameters()) do out[#out + 1] = entry[2] end
  return out
end

--- Every buffer as a list of {name, tensor}.
function Module:named_buffers() return collect(self, "buffer", "", {}, {}) end

--- The number of parameter elements (trainable ones only when trainable_only).
function Module:parameter_count(trainable_only)
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not trainable_only or p.requires_grad then n = n + p:numel() end
  end
  return n
end

--- Sets training mode (true by default) here and in every descendant; returns self.
function Module:train(mode)
  if mode == nil then mode = true end
  rawset(self, "training", mode)
  for _, child in ipairs(self:children()) do child[2]:train(mode) end
  return self
end

--- Evaluation mode: dropout off, batch norm on running statistics; returns self.
function Module:eval() return self:train(false) end

--- Drops every parameter's gradient (the next backward starts from nothing).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

--- The settings shown by tostring (subclasses override it: "784, 128, bias=true").
function Module:extra_repr() return "" end

local function own_parameter_count(module)
  local n = 0
  for _, name in ipairs(module._parameter_names) do
    local t = rawget(module, name)
    if t then n = n + t:numel() end
  end
  return n
end

local function describe(module, indent, lines, name)
  local head = (name and ("(" .. name .. "): ") or "") .. module.__name
  local children = module:children()
  if #children == 0 then
    local own = own_parameter_count(module)
    local text = string.rep("  ", indent) .. head .. "(" .. module:extra_repr() .. ")"
    if own > 0 then text = text .. string.rep(" ", math.max(1, 56 - #text)) .. group_digits(own) .. " params" end
    lines[#lines + 1] = text
    return
  end
  lines[#lines + 1] = string.rep("  ", indent) .. head .. "("
  for _, child in ipairs(children) do describe(child[2], indent + 1, lines, child[1]) end
  lines[#lines + 1] = string.rep("  ", indent) .. ")"
end

--- A summary: the module tree with each layer's settings and parameter count, and totals.
function Module:__tostring()
  local lines = {}
  describe(self, 0, lines)
  local total, trainable = self:parameter_count(false), self:parameter_count(true)
  lines[#lines + 1] = string.format("Total parameters: %s (trainable: %s)", group_digits(total),
    group_digits(trainable))
  return table.concat(lines, "\n")
end

return Module
