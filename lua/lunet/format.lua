--- Text form of tensors, in PyTorch's layout.
--
-- Values share one width and one style chosen from the displayed values: integers in a
-- float tensor print as "3.", ordinary values with four decimals, and values spanning more
-- than three orders of magnitude (or beyond 1e8, or below 1e-4) in scientific notation.
-- Tensors with more than 1000 elements show three items at each end of every dim.
-- The suffix always names the dtype and the shape, and the autograd state when there is one.
-- Also the digit grouping of counts in summaries (format.group_digits).
local format = {}

--- An integer with its thousands separated by commas: 1234567 -> "1,234,567".
function format.group_digits(n)
  local s = tostring(n)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local SUMMARIZE_ABOVE = 1000
local EDGE_ITEMS = 3
local LINE_WIDTH = 80
local PRECISION = 4
local ELLIPSIS = {} -- marks the elided middle of a summarized dim

-- The displayed part of t as nested Lua tables (numbers at the leaves).
local function displayed(t, summarize)
  local size, rows = #t, {}
  local function add(i)
    if t:dim() == 1 then
      rows[#rows + 1] = t[i]
    else
      rows[#rows + 1] = displayed(t[i], summarize)
    end
  end
  if summarize and size > 2 * EDGE_ITEMS then
    for i = 1, EDGE_ITEMS do add(i) end
    rows[#rows + 1] = ELLIPSIS
    for i = size - EDGE_ITEMS + 1, size do add(i) end
  else
    for i = 1, size do add(i) end
  end
  return rows
end

local function each_value(rows, fn)
  if type(rows) == "number" then return fn(rows) end
  for _, v in ipairs(rows) do
    if v ~= ELLIPSIS then each_value(v, fn) end
  end
end

local function special(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
end

-- Returns a function formatting one value at the common width.
local function formatter(rows, is_float)
  local width = 1
  if not is_float then
    each_value(rows, function(v) width = math.max(width, #tostring(v)) end)
    return function(v)
      local s = tostring(v)
      return string.rep(" ", width - #s) .. s
    end
  end

  local min, max, int_mode, any = math.huge, 0, true, false
  each_value(rows, function(v)
    if v ~= 0 and not special(v) then
      any = true
      local a = math.abs(v)
      min, max = math.min(min, a), math.max(max, a)
      if v ~= math.ceil(v) then int_mode = false end
    end
  end)
  local style = "int"
  if any then
    local wide = max / min > 1000 or max > 1e8
    if (int_mode and wide) or (not int_mode and (wide or min < 1e-4)) then
      style = "sci"
    elseif not int_mode then
      style = "fixed"
    end
  end
  local function text(v)
    local s = special(v)
    if s then return s end
    if style == "sci" then return string.format("%." .. PRECISION .. "e", v) end
    if style == "fixed" then return string.format("%." .. PRECISION .. "f", v) end
    return string.format("%.0f.", v)
  end
  each_value(rows, function(v)
    if v ~= 0 and not special(v) then width = math.max(width, #text(v)) end
  end)
  return function(v)
    local s = text(v)
    return string.rep(" ", width - #s) .. s
  end, width
end

local function vector_text(rows, indent, fmt, width)
  local per_line = math.max(1, math.floor((LINE_WIDTH - indent) / (width + 2)))
  local items = {}
  for _, v in ipairs(rows) do items[#items + 1] = v == ELLIPSIS and " ..." or fmt(v) end
  local lines = {}
  for i = 1, #items, per_line do
    lines[#lines + 1] = table.concat(items, ", ", i, math.min(i + per_line - 1, #items))
  end
  return "[" .. table.concat(lines, ",\n" .. string.rep(" ", indent + 1)) .. "]"
end

local function nested_text(rows, ndim, indent, fmt, width)
  if ndim == 1 then return vector_text(rows, indent, fmt, width) end
  local parts = {}
  for _, r in ipairs(rows) do
    parts[#parts + 1] = r == ELLIPSIS and "..." or nested_text(r, ndim - 1, indent + 1, fmt, width)
  end
  return "[" .. table.concat(parts, "," .. string.rep("\n", ndim - 1) .. string.rep(" ", indent + 1)) .. "]"
end

--- The text __tostring shows for a tensor.
function format.tensor(t)
  if t:is_released() then return "lunet.Tensor (released)" end
  local prefix = "tensor("
  local is_float = t.dtype == "f32" or t.dtype == "f64"
  local body
  if t:numel() == 0 then
    body = "[]"
  elseif t:dim() == 0 then
    local fmt = formatter(t:item(), is_float)
    body = fmt(t:item()):match("^%s*(.-)$")
  else
    local rows = displayed(t, t:numel() > SUMMARIZE_ABOVE)
    local fmt, width = formatter(rows, is_float)
    width = width or #fmt(0)
    body = nested_text(rows, t:dim(), #prefix, fmt, width)
  end
  local suffix = { "dtype=" .. t.dtype, "shape=[" .. table.concat(t:shape(), ",") .. "]" }
  if t.grad_fn then
    suffix[#suffix + 1] = "grad_fn=<" .. t.grad_fn .. ">"
  elseif t.requires_grad then
    suffix[#suffix + 1] = "requires_grad=true"
  end
  return prefix .. body .. ", " .. table.concat(suffix, ", ") .. ")"
end

return format
