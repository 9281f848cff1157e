--- Settings of optimizers and schedulers: merging user options over defaults, rejecting
-- unknown names (a typo such as lr_rate must not pass silently), checking values, and copying.
--
-- The check functions take a settings table and a key and return nil when the value is fine,
-- or a message naming the option and the value; callers add who is complaining.
local core = require("lunet.core")

local settings = {}

--- Marks an option that has no default and must be given (SGD's lr, as in PyTorch).
settings.required = setmetatable({}, { __tostring = function() return "<required>" end })

--- Raises message prefixed with the owner ("Adam: ...").  Level 0: the message is complete
-- without a position, as the errors raised by the C core are.
function settings.fail(owner, message, ...)
  error(owner .. ": " .. string.format(message, ...), 0)
end

local function sorted_keys(t)
  local keys = {}
  for key in pairs(t) do keys[#keys + 1] = tostring(key) end
  table.sort(keys)
  return keys
end

--- A deep copy of a setting or a state value: tables are copied, tensors cloned.
function settings.copy(value)
  if core.is_tensor(value) then return core.tensor(value) end
  if type(value) ~= "table" then return value end
  local out = {}
  for key, v in pairs(value) do out[key] = settings.copy(v) end
  return out
end

--- Checks that every key of options is one of defaults' and returns defaults overridden by
-- options (copied).  Raises for an unknown name, or for a required option that is missing.
-- @param owner the name used in messages ("Adam", "StepLR")
-- @param options the user's table (nil means none)
-- @param defaults name -> default value (settings.required for none)
-- @param where optional context added after the owner ("param group 2")
-- @param keep_required when true a missing required option stays settings.required instead of
--   raising (an optimizer's defaults, which each parameter group may still complete)
function settings.merge(owner, options, defaults, where, keep_required)
  local prefix = where and (where .. ": ") or ""
  if options ~= nil and type(options) ~= "table" then
    settings.fail(owner, "%soptions must be a table, got %s", prefix, type(options))
  end
  local merged = {}
  for key, value in pairs(options or {}) do
    if defaults[key] == nil then
      settings.fail(owner, "%sunknown option '%s' (known options: %s)", prefix, tostring(key),
        table.concat(sorted_keys(defaults), ", "))
    end
    merged[key] = settings.copy(value)
  end
  for key, value in pairs(defaults) do
    if merged[key] == nil then
      if value == settings.required then
        if not keep_required then settings.fail(owner, "%soption %s is required", prefix, key) end
        merged[key] = value
      else
        merged[key] = settings.copy(value)
      end
    end
  end
  return merged
end

local function show(value)
  if type(value) == "string" then return string.format("%q", value) end
  return tostring(value)
end

--- A number >= min (and <= max when given).  NaN fails.
function settings.number(t, key, min, max)
  local v = t[key]
  if type(v) ~= "number" or v ~= v or v < min or (max and v > max) then
    local range = max and string.format("in [%g, %g]", min, max) or string.format(">= %g", min)
    return string.format("option %s must be a number %s, got %s", key, range, show(v))
  end
end

--- A rate in [0, 1): betas, and ReduceLROnPlateau's factor.
function settings.rate(t, key)
  local v = t[key]
  if type(v) ~= "number" or not (v >= 0 and v < 1) then
    return string.format("option %s must be a number in [0, 1), got %s", key, show(v))
  end
end

--- An integer >= min.
function settings.integer(t, key, min)
  local v = t[key]
  local n = type(v) == "number" and math.tointeger(v) or nil
  if n == nil or n < min then
    return string.format("option %s must be an integer >= %d, got %s", key, min, show(v))
  end
end

function settings.boolean(t, key)
  if type(t[key]) ~= "boolean" then
    return string.format("option %s must be true or false, got %s", key, show(t[key]))
  end
end

--- One of a list of strings.
function settings.one_of(t, key, choices)
  for _, choice in ipairs(choices) do
    if t[key] == choice then return nil end
  end
  return string.format("option %s must be \"%s\", got %s", key, table.concat(choices, "\" or \""), show(t[key]))
end

--- Adam's betas: a list of two numbers in [0, 1).
function settings.betas(t)
  local betas = t.betas
  if type(betas) ~= "table" or #betas ~= 2 then
    return string.format("option betas must be a list of two numbers {beta1, beta2}, got %s", show(betas))
  end
  for i = 1, 2 do
    local message = settings.rate(betas, i)
    if message then return (message:gsub("^option " .. i, "option betas[" .. i .. "]")) end
  end
end

--- "[2,3]" for a shape list.
function settings.shape_string(shape)
  return "[" .. table.concat(shape, ",") .. "]"
end

return settings
