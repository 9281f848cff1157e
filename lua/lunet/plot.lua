--- Small, self-contained SVG charts: training curves, plus the drawing helpers that
-- lunet.metrics uses for its confusion-matrix picture.
--
--     local plot = require("lunet.plot")
--     local history = {loss = {0.9, 0.5, 0.4}, val_loss = {1.0, 0.7, 0.6},
--                      accuracy = {0.70, 0.82, 0.86}, val_accuracy = {0.66, 0.78, 0.80}}
--     assert(plot.curves(history, "curves.svg", {title = "Fashion-MNIST MLP"}))
--
-- The files are plain SVG 1.1 in one piece: no scripts, no external fonts (only the generic
-- "sans-serif" family), no images, so they open in any browser and can be attached to a
-- report or a CI artifact as they are.  Misuse (a series that is not a list of numbers) raises;
-- a file that cannot be written returns nil and a message, like io.open.
local plot = {}

plot.SVG_NAMESPACE = "http://www.w3.org/2000/svg"

--- Colors for training (solid) and validation (dashed) lines: matplotlib's first two.
plot.TRAIN_COLOR = "#1f77b4"
plot.VALIDATION_COLOR = "#ff7f0e"

local FONT_FAMILY = "sans-serif"
-- Average advance of a sans-serif glyph relative to the font size; used only to reserve room
-- for labels, so it errs on the wide side.
local GLYPH_WIDTH = 0.62

---------------------------------------------------------------------------------------------
-- Text

-- Replaces bytes that are not valid UTF-8 with U+FFFD, so that an XML parser never rejects
-- the file because of a class name read from a Latin-1 file.
local function valid_utf8(text)
  local parts, position = {}, 1
  while position <= #text do
    local length, bad = utf8.len(text, position)
    if length then
      parts[#parts + 1] = text:sub(position)
      break
    end
    parts[#parts + 1] = text:sub(position, bad - 1)
    parts[#parts + 1] = "\u{FFFD}"
    position = bad + 1
  end
  return table.concat(parts)
end

local XML_ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }

--- Escapes text for XML character data and attribute values.
-- Besides the five special characters it replaces what XML 1.0 forbids outright (control
-- characters other than tab, newline and carriage return, U+FFFE, U+FFFF) and invalid UTF-8
-- with U+FFFD, so any Lua string yields a well-formed document.
-- @param text any value; it is converted with tostring
-- @return the escaped string
function plot.escape_xml(text)
  text = valid_utf8(tostring(text))
  text = text:gsub("[%z\1-\8\11\12\14-\31]", "\u{FFFD}")
  text = text:gsub("\u{FFFE}", "\u{FFFD}"):gsub("\u{FFFF}", "\u{FFFD}")
  return (text:gsub("[&<>\"']", XML_ENTITIES))
end

--- The number of characters a string shows as: UTF-8 code points, or bytes when the string is
-- not valid UTF-8.  (Wide East Asian glyphs count as one; terminals may show them as two.)
function plot.display_width(text)
  return utf8.len(text) or #text
end

--- Shortens text to at most max_chars characters, ending it with "…" when it was cut.
-- Cuts at UTF-8 character boundaries when the text is valid UTF-8.
-- @param text string
-- @param max_chars integer >= 1
function plot.abbreviate(text, max_chars)
  local width = plot.display_width(text)
  if width <= max_chars then return text end
  if max_chars <= 1 then return "…" end
  local kept = utf8.len(text) and text:sub(1, utf8.offset(text, max_chars) - 1) or text:sub(1, max_chars - 1)
  -- "Ankle…" reads better than "Ankle …"
  return kept:gsub("%s+$", "") .. "…"
end

--- The approximate width in user units of text set in the generic sans-serif font; used to
-- reserve margins for labels.
function plot.text_width(text, font_size)
  return plot.display_width(tostring(text)) * font_size * GLYPH_WIDTH
end

---------------------------------------------------------------------------------------------
-- Numbers and ticks

local function is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

-- The "nice" number (1, 2, 5 or 10 times a power of ten) nearest to x.
local function nice_number(x)
  local exponent = math.floor(math.log(x, 10))
  local fraction = x / 10 ^ exponent
  local nice = fraction < 1.5 and 1 or fraction < 3 and 2 or fraction < 7 and 5 or 10
  return nice * 10 ^ exponent
end

--- Tick values for an axis covering [low, high]: about `count` multiples of a step that is
-- 1, 2 or 5 times a power of ten (after Heckbert's "nice numbers" in Graphics Gems).  The first
-- tick is at or below low and the last at or above high, so the ticks also give the axis
-- range.  An empty range (low == high) is widened around the value first, so constant series
-- get a usable axis.
-- @param low number
-- @param high number
-- @param count wanted number of ticks (default 5)
-- @param min_step optional smallest allowed step (1 for integer axes such as epochs)
-- @return list of ticks, the step
function plot.nice_ticks(low, high, count, min_step)
  assert(is_finite(low) and is_finite(high), "nice_ticks: low and high must be finite numbers")
  count = math.max(2, count or 5)
  if low > high then low, high = high, low end
  if high - low < 1e-12 * math.max(math.abs(low), math.abs(high), 1e-300) then
    -- a constant: open a window of +-10% around it (or +-1 around zero)
    local half = low ~= 0 and math.abs(low) * 0.1 or 1
    low, high = low - half, high + half
  end
  -- Heckbert first rounds the range up to a nice number; dividing the raw range instead keeps
  -- closer to the wanted count (a 0.2..2.3 loss gets 0.5 steps rather than 1)
  local step = nice_number((high - low) / (count - 1))
  if min_step and step < min_step then step = min_step end
  local first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
  local ticks = {}
  for k = first, last do
    -- k * step rather than repeated addition, and snapped to the step's precision, so that
    -- ticks print as 0.3 rather than 0.30000000000000004
    local value = k * step
    local decimals = math.max(0, -math.floor(math.log(step, 10)) + 1)
    if decimals < 15 then value = tonumber(string.format("%." .. decimals .. "f", value)) end
    ticks[#ticks + 1] = value
  end
  return ticks, step
end

--- Formats a tick value with as many decimals as the step needs (0.25 steps -> "0.75",
-- 5 steps -> "15"), switching to scientific notation for very small or very large values.
function plot.format_tick(value, step)
  if value == 0 then return "0" end
  local magnitude = math.max(math.abs(value), step)
  if magnitude >= 1e6 or step < 1e-4 then
    local text = string.format("%.2e", value)
    -- trim "1.50e-05" to "1.5e-05" and "2.00e+06" to "2e+06"
    return (text:gsub("%.?0+e", "e"))
  end
  local decimals = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
  if step * 10 ^ decimals % 1 > 1e-6 then decimals = decimals + 1 end -- a 0.25 step needs two
  return string.format("%." .. decimals .. "f", value)
end

--- Formats a coordinate for an SVG attribute: at most two decimals, no trailing zeros.
function plot.format_number(value)
  if math.type(value) == "integer" then return tostring(value) end
  assert(is_finite(value), "plot: a coordinate is not a finite number")
  local text = string.format("%.2f", value):gsub("0+$", ""):gsub("%.$", "")
  if text == "-0" then text = "0" end
  return text
end

---------------------------------------------------------------------------------------------
-- Writing files

--- Writes contents to path, replacing the file.
-- @return path, or nil and a message naming the file when it cannot be opened or written
function plot.write_file(path, contents)
  local file, open_error = io.open(path, "wb")
  if not file then return nil, open_error end
  local written, write_error = file:write(contents)
  local closed, close_error = file:close()
  if not written then return nil, path .. ": " .. tostring(write_error) end
  if not closed then return nil, path .. ": " .. tostring(close_error) end
  return path
end

---------------------------------------------------------------------------------------------
-- An SVG document builder

local Svg = {}
Svg.__index = Svg

local function attribute_text(attributes)
  if not attributes then return "" end
  local names = {}
  for name in pairs(attributes) do names[#names + 1] = name end
  table.sort(names) -- a stable order makes files comparable between runs
  local parts = {}
  for _, name in ipairs(names) do
    local value = attributes[name]
    if type(value) == "number" then value = plot.format_number(value) end
    -- Lua-friendly keys: font_size becomes font-size (no SVG attribute has an underscore)
    parts[#parts + 1] = string.format(' %s="%s"', name:gsub("_", "-"), plot.escape_xml(value))
  end
  return table.concat(parts)
end

--- Starts an SVG document of the given size in user units.  The root carries the SVG
-- namespace, a viewBox (so the picture scales) and the font family; a white background and,
-- when title is given, a <title> element come first.
-- @return a builder with element, open, close, text, line, rect, circle, polyline, render, write
function plot.svg(width, height, title)
  local self = setmetatable({ parts = {}, depth = 0, open_names = {} }, Svg)
  self.parts[1] = '<?xml version="1.0" encoding="UTF-8"?>\n'
  self:open("svg", {
    xmlns = plot.SVG_NAMESPACE, version = "1.1", width = width, height = height,
    viewBox = string.format("0 0 %s %s", plot.format_number(width), plot.format_number(height)),
    font_family = FONT_FAMILY,
  })
  if title then self:element("title", nil, title) end
  self:rect(0, 0, width, height, { fill = "#ffffff" })
  return self
end

--- Appends an element; with text it gets that (escaped) text as content, otherwise it is
-- written self-closed.
function Svg:element(name, attributes, text)
  local indent = string.rep("  ", self.depth)
  if text == nil then
    self.parts[#self.parts + 1] = string.format("%s<%s%s/>\n", indent, name, attribute_text(attributes))
  else
    self.parts[#self.parts + 1] = string.format("%s<%s%s>%s</%s>\n", indent, name, attribute_text(attributes),
      plot.escape_xml(text), name)
  end
  return self
end

--- Opens a container element (g, svg, defs, linearGradient); close it with close().
function Svg:open(name, attributes)
  self.parts[#self.parts + 1] = string.format("%s<%s%s>\n", string.rep("  ", self.depth), name,
    attribute_text(attributes))
  self.depth = self.depth + 1
  self.open_names[#self.open_names + 1] = name
  return self
end

--- Closes the innermost open element.
function Svg:close()
  local name = table.remove(self.open_names)
  assert(name, "plot: close() without a matching open()")
  self.depth = self.depth - 1
  self.parts[#self.parts + 1] = string.format("%s</%s>\n", string.rep("  ", self.depth), name)
  return self
end

local function merged(base, extra)
  for k, v in pairs(extra or {}) do base[k] = v end
  return base
end

--- Appends a text element at (x, y); attributes may set font_size, text_anchor, fill,
-- transform and so on.  Font size defaults to 12.
function Svg:text(x, y, text, attributes)
  return self:element("text", merged({ x = x, y = y, font_size = 12 }, attributes), text)
end

--- Appends a line from (x1, y1) to (x2, y2).
function Svg:line(x1, y1, x2, y2, attributes)
  return self:element("line", merged({ x1 = x1, y1 = y1, x2 = x2, y2 = y2, stroke = "#000000" }, attributes))
end

--- Appends a rectangle.
function Svg:rect(x, y, width, height, attributes)
  return self:element("rect", merged({ x = x, y = y, width = width, height = height }, attributes))
end

--- Appends a circle.
function Svg:circle(cx, cy, r, attributes)
  return self:element("circle", merged({ cx = cx, cy = cy, r = r }, attributes))
end

--- Appends a polyline through a list of {x, y} points (not filled).
function Svg:polyline(points, attributes)
  local coordinates = {}
  for i, p in ipairs(points) do
    coordinates[i] = plot.format_number(p[1]) .. "," .. plot.format_number(p[2])
  end
  return self:element("polyline", merged({ points = table.concat(coordinates, " "), fill = "none" }, attributes))
end

--- The finished document as a string (closes whatever is still open, the root included).
function Svg:render()
  while #self.open_names > 0 do self:close() end
  return table.concat(self.parts)
end

--- Writes the finished document to path.
-- @return path, or nil and a message
function Svg:write(path)
  return plot.write_file(path, self:render())
end

---------------------------------------------------------------------------------------------
-- Training curves

local PANEL_PLOT_WIDTH = 400   -- the plotting area of one panel
local PANEL_PLOT_HEIGHT = 260
local PANEL_GAP = 24
local TICK_FONT = 11
local LABEL_FONT = 13
local TITLE_FONT = 16
local HEADER_HEIGHT = 28       -- the legend row above each plotting area
local MARKER_LIMIT = 60        -- beyond this many epochs markers would merge into a smear
local VALIDATION_PREFIX = "val_"

-- The largest positive integer key of a list that may have holes (nil for missing epochs).
local function list_length(list)
  local n = 0
  for k in pairs(list) do
    if math.type(k) == "integer" and k > n then n = k end
  end
  return n
end

-- Checks the series table and groups its keys into panels: loss first, accuracy second, the
-- rest by name; each panel has the training key (base) and/or the validation key (val_base).
local function panels_of(series)
  assert(type(series) == "table", "plot.curves: series must be a table such as {loss = {...}, val_loss = {...}}")
  local by_base, epochs = {}, 0
  for key, values in pairs(series) do
    if type(key) ~= "string" then error("plot.curves: series keys must be names such as loss or val_loss", 3) end
    if type(values) ~= "table" then
      error(string.format("plot.curves: series.%s must be a list of numbers, got a %s", key, type(values)), 3)
    end
    for index, value in pairs(values) do
      if math.type(index) ~= "integer" or index < 1 or type(value) ~= "number" then
        error(string.format("plot.curves: series.%s[%s] must be a number (one per epoch), got a %s", key,
          tostring(index), type(value)), 3)
      end
    end
    local base = key:sub(1, #VALIDATION_PREFIX) == VALIDATION_PREFIX and key:sub(#VALIDATION_PREFIX + 1) or key
    if base == "" then base = key end
    local panel = by_base[base] or { name = base }
    by_base[base] = panel
    if base ~= key then panel.validation = values else panel.training = values end
    epochs = math.max(epochs, list_length(values))
  end
  local panels = {}
  for _, panel in pairs(by_base) do panels[#panels + 1] = panel end
  if #panels == 0 then error("plot.curves: no series to plot", 3) end
  local rank = { loss = 1, accuracy = 2 }
  table.sort(panels, function(a, b)
    local ra, rb = rank[a.name] or 3, rank[b.name] or 3
    if ra ~= rb then return ra < rb end
    return a.name < b.name
  end)
  return panels, epochs
end

local function finite_range(panel)
  local low, high = math.huge, -math.huge
  for _, values in ipairs({ panel.training or {}, panel.validation or {} }) do
    for _, v in pairs(values) do
      if is_finite(v) then low, high = math.min(low, v), math.max(high, v) end
    end
  end
  if low > high then return nil end
  return low, high
end

-- Ticks for the epoch axis: integers, and a domain of exactly [1, epochs] so the first and
-- last epochs sit on the edges (a single epoch sits in the middle of [0.5, 1.5]).
local function epoch_axis(epochs)
  if epochs <= 1 then return { 1 }, 0.5, 1.5 end
  local ticks = plot.nice_ticks(1, epochs, 6, 1)
  local inside = {}
  for _, t in ipairs(ticks) do
    if t >= 1 and t <= epochs then inside[#inside + 1] = math.tointeger(t) or t end
  end
  return inside, 1, epochs
end

local function draw_series(svg, values, epochs, to_x, to_y, style)
  local points, present = {}, {}
  for epoch = 1, epochs do
    local v = values[epoch]
    if is_finite(v) then
      points[#points + 1] = { to_x(epoch), to_y(v) }
      present[epoch] = true
    end
  end
  if #points >= 2 then
    svg:polyline(points, {
      class = "series " .. style.kind, stroke = style.color, stroke_width = 2,
      stroke_dasharray = style.dash, stroke_linejoin = "round",
    })
  end
  -- Markers show every point on short runs; on long runs only points that no line reaches
  -- (their neighbours are missing), so a lone epoch never disappears.
  local i = 0
  for epoch = 1, epochs do
    if present[epoch] then
      i = i + 1
      if epochs <= MARKER_LIMIT or (not present[epoch - 1] and not present[epoch + 1]) then
        svg:circle(points[i][1], points[i][2], 3, { class = "point " .. style.kind, fill = style.color })
      end
    end
  end
end

local function draw_legend(svg, right, y, entries)
  -- each entry is a 24-unit line sample, a 6-unit gap and the label; entries are 14 units apart
  -- and the whole legend ends at the right edge of the plotting area
  local widths, total = {}, 0
  for k, entry in ipairs(entries) do
    widths[k] = 30 + plot.text_width(entry.label, TICK_FONT)
    total = total + widths[k] + (k > 1 and 14 or 0)
  end
  local x = right - total
  for k, entry in ipairs(entries) do
    svg:line(x, y, x + 24, y, { stroke = entry.color, stroke_width = 2, stroke_dasharray = entry.dash })
    svg:circle(x + 12, y, 3, { fill = entry.color })
    svg:text(x + 30, y + 4, entry.label, { class = "legend", font_size = TICK_FONT, fill = "#333333" })
    x = x + widths[k] + 14
  end
end

-- Draws one panel with its top-left corner at (left, top); returns nothing.
local function draw_panel(svg, panel, left, top, epochs, margin_left)
  local plot_left, plot_top = left + margin_left, top + HEADER_HEIGHT
  local plot_right, plot_bottom = plot_left + PANEL_PLOT_WIDTH, plot_top + PANEL_PLOT_HEIGHT
  svg:open("g", { class = "panel" })

  local x_ticks, x_low, x_high = epoch_axis(epochs)
  local function to_x(epoch)
    return plot_left + (epoch - x_low) / (x_high - x_low) * PANEL_PLOT_WIDTH
  end
  local low, high = finite_range(panel)

  -- grid lines and y ticks
  if low then
    local y_ticks, step = plot.nice_ticks(low, high, 6)
    local y_low, y_high = y_ticks[1], y_ticks[#y_ticks]
    local function to_y(v)
      return plot_bottom - (v - y_low) / (y_high - y_low) * PANEL_PLOT_HEIGHT
    end
    for _, t in ipairs(y_ticks) do
      local y = to_y(t)
      svg:line(plot_left, y, plot_right, y, { stroke = "#e5e5e5", stroke_width = 1 })
      svg:line(plot_left - 5, y, plot_left, y, { stroke = "#333333" })
      svg:text(plot_left - 8, y + 4, plot.format_tick(t, step),
        { class = "tick", font_size = TICK_FONT, text_anchor = "end", fill = "#333333" })
    end
    panel.to_y = to_y
  else
    svg:text((plot_left + plot_right) / 2, (plot_top + plot_bottom) / 2, "no finite values",
      { class = "note", font_size = LABEL_FONT, text_anchor = "middle", fill = "#777777" })
  end

  -- x ticks
  for _, t in ipairs(x_ticks) do
    local x = to_x(t)
    svg:line(x, plot_bottom, x, plot_bottom + 5, { stroke = "#333333" })
    svg:text(x, plot_bottom + 18, tostring(t),
      { class = "tick", font_size = TICK_FONT, text_anchor = "middle", fill = "#333333" })
  end

  -- the frame, drawn after the grid so that it stays on top
  svg:rect(plot_left, plot_top, PANEL_PLOT_WIDTH, PANEL_PLOT_HEIGHT,
    { fill = "none", stroke = "#333333", stroke_width = 1 })

  -- axis labels
  svg:text((plot_left + plot_right) / 2, plot_bottom + 38, "epoch",
    { class = "axis-label", font_size = LABEL_FONT, text_anchor = "middle" })
  local label_x, label_y = left + 16, (plot_top + plot_bottom) / 2
  svg:text(label_x, label_y, panel.name, {
    class = "axis-label", font_size = LABEL_FONT, text_anchor = "middle",
    transform = string.format("rotate(-90 %s %s)", plot.format_number(label_x), plot.format_number(label_y)),
  })

  -- lines and legend
  local legend = {}
  local styles = {
    { values = panel.training, kind = "training", label = "training", color = plot.TRAIN_COLOR },
    { values = panel.validation, kind = "validation", label = "validation", color = plot.VALIDATION_COLOR,
      dash = "6 4" },
  }
  for _, style in ipairs(styles) do
    if style.values then
      if low then draw_series(svg, style.values, epochs, to_x, panel.to_y, style) end
      legend[#legend + 1] = style
    end
  end
  draw_legend(svg, plot_right, top + HEADER_HEIGHT / 2 + 2, legend)
  svg:close()
end

--- Writes an SVG of training curves: one panel per quantity (loss, then accuracy, then any
-- other keys such as lr, by name), epochs on the x axis, training values as a solid line and
-- validation values (keys starting with "val_") as a dashed line, with a legend per panel.
--
-- Values that are missing (nil) or not finite (NaN, inf) are skipped: the line joins the
-- neighbouring epochs.  Each panel has its own y axis with "nice" ticks, so series of very
-- different sizes (a loss near 2, an accuracy near 0.9, a learning rate near 1e-4) each fill
-- their panel.  A single epoch and a constant series give a centred point and a +-10% axis.
-- @param series table of lists, one number per epoch: {loss = {...}, val_loss = {...},
--   accuracy = {...}, val_accuracy = {...}} or any subset; other keys get panels of their own
-- @param path the file to write
-- @param opts optional {title = string}
-- @return path, or nil and a message when the file cannot be written
function plot.curves(series, path, opts)
  opts = opts or {}
  assert(type(path) == "string", "plot.curves: path must be a string")
  local panels, epochs = panels_of(series)

  -- Every panel reserves the same left margin, wide enough for the longest tick label of
  -- any panel, so that the plotting areas line up.
  local widest_tick = 0
  for _, panel in ipairs(panels) do
    local low, high = finite_range(panel)
    if low then
      local ticks, step = plot.nice_ticks(low, high, 6)
      for _, t in ipairs(ticks) do
        widest_tick = math.max(widest_tick, plot.text_width(plot.format_tick(t, step), TICK_FONT))
      end
    end
  end
  local margin_left = math.ceil(widest_tick) + 40
  local margin_right = 16
  local panel_width = margin_left + PANEL_PLOT_WIDTH + margin_right
  local title_height = opts.title and 40 or 8
  local width = #panels * panel_width + (#panels - 1) * PANEL_GAP + 16
  local height = title_height + HEADER_HEIGHT + PANEL_PLOT_HEIGHT + 56

  local svg = plot.svg(width, height, opts.title or "training curves")
  if opts.title then
    svg:text(width / 2, 26, opts.title,
      { class = "title", font_size = TITLE_FONT, font_weight = "bold", text_anchor = "middle" })
  end
  for i, panel in ipairs(panels) do
    draw_panel(svg, panel, 8 + (i - 1) * (panel_width + PANEL_GAP), title_height, epochs, margin_left)
  end
  return svg:write(path)
end

return plot
