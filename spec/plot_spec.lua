-- The SVG files are checked with an independent XML parser, expat (Debian lua-expat), with
-- namespace processing on, so an unescaped "&" or "<", a stray control character, invalid
-- UTF-8 or an element outside the SVG namespace fails these specs.
local lunet = require("lunet")
local lxp = require("lxp")
local metrics = require("lunet.metrics")
local plot = require("lunet.plot")
local h = require("spec.helpers")

local SVG = "http://www.w3.org/2000/svg"

local directory, written = nil, {}

local function temp_path(name)
  local path = directory .. "/" .. name
  written[#written + 1] = path
  return path
end

-- Parses a file into a tree of {name, attributes, children, text}; element names are
-- "namespace|local" as expat reports them with a namespace separator.
local function parse(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("a")
  file:close()
  local root, stack = nil, {}
  local parser = lxp.new({
    StartElement = function(_, name, attributes)
      local node = { name = name, attributes = attributes, children = {}, parts = {} }
      if #stack == 0 then root = node else table.insert(stack[#stack].children, node) end
      stack[#stack + 1] = node
    end,
    EndElement = function()
      local node = table.remove(stack)
      node.text = table.concat(node.parts)
    end,
    CharacterData = function(_, data)
      if #stack > 0 then table.insert(stack[#stack].parts, data) end
    end,
  }, "|")
  local ok, message, line, column = parser:parse(text)
  if ok then ok, message, line, column = parser:parse() end
  parser:close()
  if not ok then error(string.format("%s is not well-formed XML: %s at line %s, column %s", path, message, line, column), 2) end
  return root, text
end

-- Every element under node (itself included) with the given local name in the SVG namespace
-- and, when given, the given word in its class attribute.
local function find_all(node, local_name, class_word, out)
  out = out or {}
  if node.name == SVG .. "|" .. local_name then
    local classes = " " .. (node.attributes.class or "") .. " "
    if not class_word or classes:find(" " .. class_word .. " ", 1, true) then out[#out + 1] = node end
  end
  for _, child in ipairs(node.children) do find_all(child, local_name, class_word, out) end
  return out
end

local function texts(node, class_word)
  local out = {}
  for _, t in ipairs(find_all(node, "text", class_word)) do out[#out + 1] = t.text end
  return out
end

local function count_of(list, value)
  local n = 0
  for _, v in ipairs(list) do if v == value then n = n + 1 end end
  return n
end

local function points_of(polyline)
  local points = {}
  for x, y in polyline.attributes.points:gmatch("([-%d.]+),([-%d.]+)") do
    points[#points + 1] = { tonumber(x), tonumber(y) }
  end
  return points
end

-- The root must be <svg> in the SVG namespace with a viewBox "0 0 width height".
local function assert_svg_root(root)
  assert.are.equal(SVG .. "|svg", root.name)
  local x, y, w, hgt = root.attributes.viewBox:match("^(%S+) (%S+) (%S+) (%S+)$")
  assert.are.equal("0", x)
  assert.are.equal("0", y)
  assert.are.equal(tonumber(root.attributes.width), tonumber(w))
  assert.are.equal(tonumber(root.attributes.height), tonumber(hgt))
  assert.is_true(tonumber(w) > 0 and tonumber(hgt) > 0)
end

-- No attribute anywhere may hold nan or inf (a browser would drop the element).
local function assert_finite_attributes(text)
  for value in text:gmatch('="([^"]*)"') do
    assert.is_nil(value:lower():find("nan") or value:lower():find("inf"), "attribute value " .. value)
  end
end

-- Nothing that references outside the file: no scripts, images, external stylesheets or links.
local function assert_self_contained(root)
  for _, name in ipairs({ "script", "image", "use", "a", "foreignObject", "style" }) do
    assert.are.equal(0, #find_all(root, name), "element " .. name)
  end
  local function walk(node)
    for key, value in pairs(node.attributes) do
      if type(key) == "string" then
        assert.is_nil(key:find("href"), "attribute " .. key)
        assert.is_nil(tostring(value):find("^https?:"), "attribute " .. key)
      end
    end
    for _, child in ipairs(node.children) do walk(child) end
  end
  walk(root)
end

setup(function()
  directory = os.tmpname()
  os.remove(directory)
  assert(os.execute("mkdir -p '" .. directory .. "'"))
end)

teardown(function()
  for _, path in ipairs(written) do os.remove(path) end
  os.remove(directory)
end)

describe("plot helpers", function()
  it("escapes the XML special characters and replaces what XML forbids", function()
    assert.are.equal("a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;", plot.escape_xml("a & b <c> \"d\" 'e'"))
    assert.are.equal("x\u{FFFD}y\u{FFFD}z\tw", plot.escape_xml("x\1y\255z\tw"))
    assert.are.equal("42", plot.escape_xml(42))
  end)

  it("chooses nice ticks that cover the range", function()
    local ticks, step = plot.nice_ticks(0, 1, 6)
    assert.are.same({ 0, 0.2, 0.4, 0.6, 0.8, 1 }, ticks)
    assert.are.equal(0.2, step)
    ticks, step = plot.nice_ticks(0.22, 2.26, 6)
    assert.are.same({ 0, 0.5, 1, 1.5, 2, 2.5 }, ticks)
    assert.are.equal(0.5, step)
    ticks = plot.nice_ticks(3, 97, 5)
    assert.are.same({ 0, 20, 40, 60, 80, 100 }, ticks)
    ticks = plot.nice_ticks(1, 3, 6, 1)
    assert.are.same({ 1, 2, 3 }, ticks)
    ticks = plot.nice_ticks(-0.013, 0.0042, 5)
    assert.are.same({ -0.015, -0.01, -0.005, 0, 0.005 }, ticks)
  end)

  it("widens an empty range around a constant", function()
    local ticks = plot.nice_ticks(5, 5, 5)
    assert.is_true(ticks[1] < 5 and ticks[#ticks] > 5)
    ticks = plot.nice_ticks(0, 0, 5)
    assert.is_true(ticks[1] < 0 and ticks[#ticks] > 0)
  end)

  it("formats tick labels with the decimals the step needs", function()
    assert.are.equal("0.75", plot.format_tick(0.75, 0.25))
    assert.are.equal("0.4", plot.format_tick(0.4, 0.2))
    assert.are.equal("15", plot.format_tick(15, 5))
    assert.are.equal("0", plot.format_tick(0, 0.2))
    assert.are.equal("2e-05", plot.format_tick(2e-5, 1e-5))
    assert.are.equal("1.5e-05", plot.format_tick(1.5e-5, 5e-6))
    assert.are.equal("3e+06", plot.format_tick(3e6, 1e6))
  end)

  it("abbreviates on character boundaries", function()
    assert.are.equal("short", plot.abbreviate("short", 5))
    assert.are.equal("Ankle…", plot.abbreviate("Ankle boot", 7))
    assert.are.equal("ééé…", plot.abbreviate("éééééé", 4))
    assert.are.equal(4, plot.display_width("ééé…"))
  end)
end)

describe("plot.curves", function()
  local history = {
    loss = { 1.2, 0.8, 0.5 }, val_loss = { 1.3, 0.9, 0.7 },
    accuracy = { 0.60, 0.75, 0.85 }, val_accuracy = { 0.55, 0.70, 0.80 },
  }

  it("writes a well-formed, self-contained SVG with one panel for losses and one for accuracies", function()
    local path = temp_path("curves.svg")
    assert.are.equal(path, plot.curves(history, path, { title = "MLP & <friends>" }))
    local root, text = parse(path)
    assert_svg_root(root)
    assert_self_contained(root)
    assert_finite_attributes(text)
    assert.are.equal(2, #find_all(root, "g", "panel"))
    local lines = find_all(root, "polyline", "series")
    assert.are.equal(4, #lines)
    for _, line in ipairs(lines) do assert.are.equal(3, #points_of(line)) end
    assert.are.equal(6, #find_all(root, "circle", "training"))
    assert.are.equal(6, #find_all(root, "circle", "validation"))
    assert.are.same({ "training", "validation", "training", "validation" }, texts(root, "legend"))
    assert.are.same({ "epoch", "loss", "epoch", "accuracy" }, texts(root, "axis-label"))
    -- the title went through escaping and came back unchanged through the parser
    assert.are.same({ "MLP & <friends>" }, texts(root, "title"))
    assert.are.equal("MLP & <friends>", find_all(root, "title")[1].text)
    assert.truthy(text:find("MLP &amp; &lt;friends&gt;", 1, true))
  end)

  it("maps values linearly onto the y axis, larger values higher up", function()
    local path = temp_path("linear.svg")
    assert(plot.curves({ loss = { 0, 1, 2, 4 } }, path))
    local points = points_of(find_all(parse(path), "polyline", "training")[1])
    local y0, y1, y2, y4 = points[1][2], points[2][2], points[3][2], points[4][2]
    assert.is_true(y0 > y1 and y1 > y2 and y2 > y4)
    assert.is_true(math.abs((y0 - y1) - (y1 - y2)) < 0.02)
    assert.is_true(math.abs((y0 - y4) - 4 * (y0 - y1)) < 0.05)
    -- epochs are evenly spaced, left to right
    assert.is_true(math.abs((points[2][1] - points[1][1]) - (points[4][1] - points[3][1])) < 0.02)
    assert.is_true(points[4][1] > points[1][1])
  end)

  it("puts each tick label where the data would be drawn", function()
    local path = temp_path("ticks.svg")
    assert(plot.curves({ loss = { 0.4, 1.6 } }, path))
    local root = parse(path)
    local points = points_of(find_all(root, "polyline", "training")[1])
    -- the y tick labels are right-aligned at the axis; find the ones reading 0.4 and 1.6
    local label_y = {}
    for _, t in ipairs(find_all(root, "text", "tick")) do
      if t.attributes["text-anchor"] == "end" then label_y[tonumber(t.text)] = tonumber(t.attributes.y) end
    end
    assert.is_not_nil(label_y[0.4])
    assert.is_not_nil(label_y[1.6])
    -- labels sit 4 units below their tick so that they are centred on it
    assert.is_true(math.abs(label_y[0.4] - 4 - points[1][2]) < 0.02)
    assert.is_true(math.abs(label_y[1.6] - 4 - points[2][2]) < 0.02)
  end)

  it("skips NaN, infinite and missing values", function()
    local path = temp_path("gaps.svg")
    assert(plot.curves({ loss = { 1, 0 / 0, 0.5, math.huge, 0.25 }, val_loss = { [2] = 0.8, [5] = 0.6 } }, path))
    local root, text = parse(path)
    assert_finite_attributes(text)
    assert.are.equal(3, #points_of(find_all(root, "polyline", "training")[1]))
    assert.are.equal(2, #points_of(find_all(root, "polyline", "validation")[1]))
    assert.are.equal(3, #find_all(root, "circle", "training"))
    assert.are.equal(2, #find_all(root, "circle", "validation"))
  end)

  it("draws a single epoch as points, centred, with no lines", function()
    local path = temp_path("single.svg")
    assert(plot.curves({ loss = { 0.7 }, val_loss = { 0.9 } }, path))
    local root, text = parse(path)
    assert_finite_attributes(text)
    assert.are.equal(0, #find_all(root, "polyline"))
    local dots = find_all(root, "circle", "point")
    assert.are.equal(2, #dots)
    assert.are.equal(dots[1].attributes.cx, dots[2].attributes.cx)
    local frame = find_all(find_all(root, "g", "panel")[1], "rect")[1]
    local middle = tonumber(frame.attributes.x) + tonumber(frame.attributes.width) / 2
    assert.is_true(math.abs(tonumber(dots[1].attributes.cx) - middle) < 0.02)
    assert.are.same({ "1" }, (function()
      local labels = {}
      for _, t in ipairs(find_all(root, "text", "tick")) do
        if t.attributes["text-anchor"] == "middle" then labels[#labels + 1] = t.text end
      end
      return labels
    end)())
  end)

  it("gives a constant series a usable axis with distinct tick labels", function()
    local path = temp_path("constant.svg")
    assert(plot.curves({ accuracy = { 0.9, 0.9, 0.9 } }, path))
    local root, text = parse(path)
    assert_finite_attributes(text)
    local labels = {}
    for _, t in ipairs(find_all(root, "text", "tick")) do
      if t.attributes["text-anchor"] == "end" then
        assert.is_nil(labels[t.text], "repeated tick label " .. t.text)
        labels[t.text] = true
      end
    end
    local points = points_of(find_all(root, "polyline", "training")[1])
    local frame = find_all(find_all(root, "g", "panel")[1], "rect")[1]
    local top = tonumber(frame.attributes.y)
    local bottom = top + tonumber(frame.attributes.height)
    assert.is_true(points[1][2] > top + 1 and points[1][2] < bottom - 1)
  end)

  it("gives other series such as lr their own panel, after loss and accuracy", function()
    local path = temp_path("three.svg")
    assert(plot.curves({ lr = { 1e-3, 1e-5 }, loss = { 2300, 1100 }, accuracy = { 0.1, 0.2 } }, path))
    local root = parse(path)
    assert.are.equal(3, #find_all(root, "g", "panel"))
    assert.are.same({ "epoch", "loss", "epoch", "accuracy", "epoch", "lr" }, texts(root, "axis-label"))
    -- each panel has its own scale: every line spans most of its panel's height
    for _, panel in ipairs(find_all(root, "g", "panel")) do
      local points = points_of(find_all(panel, "polyline")[1])
      local frame = find_all(panel, "rect")[1]
      assert.is_true(math.abs(points[1][2] - points[2][2]) > 0.5 * tonumber(frame.attributes.height))
    end
    -- tiny learning rates still get tick labels that read as distinct numbers
    local seen = {}
    for _, t in ipairs(find_all(find_all(root, "g", "panel")[3], "text", "tick")) do
      if t.attributes["text-anchor"] == "end" then
        local value = tonumber(t.text)
        assert.is_not_nil(value, t.text)
        assert.is_nil(seen[value])
        seen[value] = true
      end
    end
  end)

  it("says so when a panel has no finite values", function()
    local path = temp_path("empty.svg")
    assert(plot.curves({ loss = { 0 / 0, 0 / 0 } }, path))
    local root = parse(path)
    assert.are.same({ "no finite values" }, texts(root, "note"))
    assert.are.equal(0, #find_all(root, "polyline"))
  end)

  it("returns nil and a message for a path it cannot write", function()
    local path = directory .. "/no/such/directory/curves.svg"
    local result, message = plot.curves(history, path)
    assert.is_nil(result)
    assert.truthy(message:find(path, 1, true))
    result, message = plot.curves(history, directory) -- a directory, not a file
    assert.is_nil(result)
    assert.is_string(message)
  end)

  it("raises on series that are not lists of numbers", function()
    h.assert_error_contains(function() plot.curves({ loss = { 1, "2" } }, temp_path("bad.svg")) end,
      "series.loss[2]", "number")
    h.assert_error_contains(function() plot.curves({ loss = 3 } , temp_path("bad.svg")) end, "series.loss", "list")
    h.assert_error_contains(function() plot.curves({}, temp_path("bad.svg")) end, "no series")
  end)
end)

describe("metrics.plot_confusion", function()
  local cm = lunet.tensor({ { 5, 1, 0 }, { 2, 7, 1 }, { 0, 3, 9 } }, "i64")
  local names = { "cats & dogs", "<bird>", "fish" }

  -- The count texts as a map from their value to their cell's row and column, found from
  -- their coordinates: rows and columns are ranked by distinct y and x positions.
  local function cells_by_position(root)
    local xs, ys, count_texts = {}, {}, texts(root, "count")
    local nodes = find_all(root, "text", "count")
    for _, node in ipairs(nodes) do
      xs[tonumber(node.attributes.x)] = true
      ys[tonumber(node.attributes.y)] = true
    end
    local function ranks(set)
      local sorted = {}
      for v in pairs(set) do sorted[#sorted + 1] = v end
      table.sort(sorted)
      local rank = {}
      for i, v in ipairs(sorted) do rank[v] = i end
      return rank
    end
    local column_of, row_of = ranks(xs), ranks(ys)
    local grid = {}
    for i, node in ipairs(nodes) do
      local row, column = row_of[tonumber(node.attributes.y)], column_of[tonumber(node.attributes.x)]
      grid[row] = grid[row] or {}
      grid[row][column] = count_texts[i]
    end
    return grid
  end

  it("writes a heat map with counts, true classes as rows and predicted classes as columns", function()
    local path = temp_path("confusion.svg")
    assert.are.equal(path, metrics.plot_confusion(cm, path, names, { title = "Test & <set>" }))
    local root, text = parse(path)
    assert_svg_root(root)
    assert_self_contained(root)
    assert_finite_attributes(text)
    assert.are.equal(9, #find_all(root, "rect", "cell"))
    assert.are.same({ { "5", "1", "0" }, { "2", "7", "1" }, { "0", "3", "9" } }, cells_by_position(root))
    assert.are.same({ "predicted class", "true class" }, texts(root, "axis-label"))
    assert.are.same({ "Test & <set>" }, texts(root, "title"))
    -- each escaped name comes back from the parser intact, once beside a row and once under a column
    local shown = texts(root, "class-name")
    assert.are.equal(6, #shown)
    for _, name in ipairs(names) do assert.are.equal(2, count_of(shown, name)) end
    assert.truthy(text:find("cats &amp; dogs", 1, true))
    assert.truthy(text:find("&lt;bird&gt;", 1, true))
  end)

  it("shades larger counts darker and writes light text on dark cells", function()
    local path = temp_path("shades.svg")
    assert(metrics.plot_confusion(cm, path))
    local root = parse(path)
    local cells = find_all(root, "rect", "cell")
    local function darkness(fill)
      local r, g, b = fill:match("#(%x%x)(%x%x)(%x%x)")
      return 765 - tonumber(r, 16) - tonumber(g, 16) - tonumber(b, 16)
    end
    -- cells come row by row: [1][1] = 5, [1][2] = 1, [1][3] = 0, ..., [3][3] = 9 (the largest)
    assert.are.equal("#08306b", cells[9].attributes.fill)
    assert.are.equal("#f7fbff", cells[3].attributes.fill)
    assert.is_true(darkness(cells[1].attributes.fill) > darkness(cells[2].attributes.fill))
    local counts = find_all(root, "text", "count")
    assert.are.equal("#ffffff", counts[9].attributes.fill)
    assert.are.equal("#222222", counts[3].attributes.fill)
    -- with no names given the classes are numbered
    assert.are.same({ "1", "2", "3", "1", "2", "3" }, texts(root, "class-name"))
  end)

  it("shows row fractions when normalized", function()
    local path = temp_path("normalized.svg")
    assert(metrics.plot_confusion(cm, path, names, { normalize = true }))
    local root = parse(path)
    -- rows sum to 6, 10 and 12
    assert.are.same({ { "0.83", "0.17", "0.00" }, { "0.20", "0.70", "0.10" }, { "0.00", "0.25", "0.75" } },
      cells_by_position(root))
  end)

  it("shows colour only when there are too many classes for numbers", function()
    local k = 30
    local big = metrics.confusion_matrix(lunet.arange(1, k + 1, 1, "i64"), lunet.arange(1, k + 1, 1, "i64"), k)
    local path = temp_path("many.svg")
    assert(metrics.plot_confusion(big, path))
    local root = parse(path)
    assert.are.equal(k * k, #find_all(root, "rect", "cell"))
    assert.are.equal(0, #find_all(root, "text", "count"))
  end)

  it("returns nil and a message for a path it cannot write", function()
    local path = directory .. "/missing/confusion.svg"
    local result, message = metrics.plot_confusion(cm, path, names)
    assert.is_nil(result)
    assert.truthy(message:find(path, 1, true))
  end)
end)
