--- Evaluation metrics: accuracy, confusion matrices, precision/recall/F1, text reports, an SVG
-- heat map of the confusion matrix, and regression errors.
--
--     local metrics = require("lunet.metrics")
--     local logits = model:predict(test.x)                    -- (N, K)
--     print(metrics.accuracy(logits, test.y))                -- 0.87
--     local cm = metrics.confusion_matrix(logits, test.y, 10) -- (K, K) i64
--     print(metrics.classification_report(cm, test.class_names))
--     metrics.plot_confusion(cm, "confusion.svg", test.class_names, {normalize = true})
--
-- Conventions, the same as scikit-learn's so numbers can be compared with it:
-- class labels are 1-based (1..K, like every class index in lunet's Lua API); in a confusion
-- matrix rows are the true class and columns the predicted class; a ratio whose denominator
-- is zero (precision of a class never predicted, recall of a class with no samples) counts as 0,
-- scikit-learn's zero_division=0, and such classes still count in the macro average.
--
-- The per-sample work (argmax, comparing, counting) is done by tensor ops in C; Lua only loops
-- over the K classes.
local core = require("lunet.core")
local plot = require("lunet.plot")

local metrics = {}

local FLOAT_DTYPES = { f32 = true, f64 = true }

---------------------------------------------------------------------------------------------
-- Argument checking

local function fail(fn_name, message, ...)
  -- level 0: the position inside this file would not help the caller; the message names the function
  error(fn_name .. ": " .. string.format(message, ...), 0)
end

-- A 1-d i64 tensor of class labels from a tensor of any dtype ((N) or (N, 1)) or a Lua list.
-- Float tensors are accepted when every value is a whole number (labels stored as f32).
local function labels_from(value, fn_name, what)
  local t = value
  if type(value) == "table" and not core.is_tensor(value) then t = core.tensor(value, "i64") end
  if not core.is_tensor(t) then
    fail(fn_name, "%s must be a tensor or a list of class labels, got a %s", what, type(value))
  end
  if t:dim() == 2 and t:size(2) == 1 then t = t:flatten() end
  if t:dim() ~= 1 then
    fail(fn_name, "%s must be 1-d class labels (N), got shape [%s]", what, table.concat(t:shape(), ","))
  end
  if t.dtype == "i64" then return t end
  if FLOAT_DTYPES[t.dtype] and t:numel() > 0 then
    local whole = t:detach():to("i64")
    if t:ne(whole:to(t.dtype)):sum():item() > 0 then
      fail(fn_name, "%s must hold whole-number class labels; got fractional values (pass (N, K) scores for argmax)",
        what)
    end
    return whole
  end
  return t:to("i64")
end

-- The predicted labels of logits/probabilities (N, K) or labels (N); see metrics.predictions.
local function predictions_from(value, fn_name)
  if core.is_tensor(value) and FLOAT_DTYPES[value.dtype] and value:dim() == 2 then
    if value:size(2) < 2 then
      fail(fn_name, "scores of shape [%d,1] are ambiguous: threshold a single logit column into labels first",
        value:size(1))
    end
    if value:size(1) == 0 then return core.tensor({}, "i64") end
    return value:argmax(2)
  end
  return labels_from(value, fn_name, "predictions")
end

local function same_length(fn_name, predicted, targets)
  if predicted:numel() ~= targets:numel() then
    fail(fn_name, "%d predictions but %d targets", predicted:numel(), targets:numel())
  end
end

-- Checks that labels lie in 1..K; they index matrix rows and columns, so anything else
-- (0-based labels, most often) would silently count in the wrong cell.
local function check_range(fn_name, labels, num_classes, what)
  if labels:numel() == 0 then return end
  local low, high = labels:min():item(), labels:max():item()
  if low < 1 or high > num_classes then
    local bad = low < 1 and low or high
    fail(fn_name, "%s label %d is outside 1..%d (labels are 1-based)", what, bad, num_classes)
  end
end

-- A confusion matrix (tensor or nested table) as a Lua table of integer rows, and K.
local function matrix_rows(cm, fn_name)
  local rows = cm
  if core.is_tensor(cm) then
    if cm:dim() ~= 2 then
      fail(fn_name, "the confusion matrix must be 2-d, got shape [%s]", table.concat(cm:shape(), ","))
    end
    rows = cm:totable()
  elseif type(cm) ~= "table" then
    fail(fn_name, "the confusion matrix must be a (K, K) tensor or table, got a %s", type(cm))
  end
  local k = #rows
  if k == 0 then fail(fn_name, "the confusion matrix is empty") end
  local counts = {}
  for i = 1, k do
    if type(rows[i]) ~= "table" or #rows[i] ~= k then
      fail(fn_name, "the confusion matrix must be square (K, K); row %d does not have %d entries", i, k)
    end
    counts[i] = {}
    for j = 1, k do
      local count = math.tointeger(rows[i][j])
      if not count or count < 0 then
        fail(fn_name, "confusion matrix entry [%d,%d] = %s is not a count", i, j, tostring(rows[i][j]))
      end
      counts[i][j] = count
    end
  end
  return counts, k
end

-- Class names as strings, "1".."K" by default.
local function class_names_for(names, k, fn_name)
  local result = {}
  if names == nil then
    for i = 1, k do result[i] = tostring(i) end
    return result
  end
  if type(names) ~= "table" or #names ~= k then
    fail(fn_name, "class_names must be a list of %d names", k)
  end
  for i = 1, k do result[i] = tostring(names[i]) end
  return result
end

---------------------------------------------------------------------------------------------
-- Classification

--- The predicted class of each sample.
-- @param logits_or_labels a float tensor of scores (N, K) (logits or probabilities; the
--   argmax over the last dim is taken, ties going to the lower class), or labels: a 1-d
--   integer tensor (N), which is returned as it is when already i64, or a Lua list
-- @return 1-d i64 tensor (N) of 1-based classes
function metrics.predictions(logits_or_labels)
  return predictions_from(logits_or_labels, "predictions")
end

--- The fraction of samples whose predicted class equals the target.
-- @param logits_or_predictions scores (N, K) or predicted labels (N), as for predictions()
-- @param targets true labels (N), 1-based, a tensor or a list
-- @return a number in [0, 1]; NaN when there are no samples (0 of 0, as scikit-learn)
function metrics.accuracy(logits_or_predictions, targets)
  local predicted = predictions_from(logits_or_predictions, "accuracy")
  local truth = labels_from(targets, "accuracy", "targets")
  same_length("accuracy", predicted, truth)
  local n = truth:numel()
  if n == 0 then return 0 / 0 end
  return predicted:eq(truth):sum():item() / n
end

--- Counts of (true class, predicted class) pairs.
-- Computed as one bincount of (target - 1) * K + prediction, so the work is in C.
-- @param logits_or_predictions scores (N, K) or predicted labels (N)
-- @param targets true labels (N), in 1..K
-- @param num_classes K; when nil, the largest label seen (give it explicitly, since a class
--   that happens to be absent from a small batch would otherwise shrink the matrix)
-- @return an i64 tensor (K, K): entry [i][j] counts samples of true class i predicted as j
function metrics.confusion_matrix(logits_or_predictions, targets, num_classes)
  local predicted = predictions_from(logits_or_predictions, "confusion_matrix")
  local truth = labels_from(targets, "confusion_matrix", "targets")
  same_length("confusion_matrix", predicted, truth)
  if num_classes == nil then
    if truth:numel() == 0 then fail("confusion_matrix", "num_classes is needed when there are no samples") end
    num_classes = math.max(truth:max():item(), predicted:max():item())
  end
  if math.type(num_classes) ~= "integer" or num_classes < 1 then
    fail("confusion_matrix", "num_classes must be a positive integer, got %s", tostring(num_classes))
  end
  check_range("confusion_matrix", truth, num_classes, "target")
  check_range("confusion_matrix", predicted, num_classes, "predicted")
  local cell = (truth - 1) * num_classes + predicted
  return cell:bincount(num_classes * num_classes):view(num_classes, num_classes)
end

--- Precision, recall and F1 per class and their macro and weighted averages.
-- For class k: precision = TP / (TP + FP) (column k), recall = TP / (TP + FN) (row k),
-- F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of the two.  When a denominator is zero
-- (a class never predicted has no precision; a class with no samples has no recall) the value
-- is 0, like scikit-learn's zero_division=0, and the class still counts in the macro average
-- (scikit-learn with labels = all K classes).
-- @param cm a confusion matrix (K, K), rows = true class, tensor or nested table of counts
-- @return {precision = macro, recall = macro, f1 = macro, accuracy = trace / total (NaN if the
--   matrix is all zeros), support = total, weighted = {precision, recall, f1} (averages
--   weighted by support), per_class = {precision = {...}, recall = {...}, f1 = {...},
--   support = {...}}}
function metrics.precision_recall_f1(cm)
  local counts, k = matrix_rows(cm, "precision_recall_f1")
  local per_class = { precision = {}, recall = {}, f1 = {}, support = {} }
  local total, correct = 0, 0
  local macro = { precision = 0, recall = 0, f1 = 0 }
  local weighted = { precision = 0, recall = 0, f1 = 0 }
  for class = 1, k do
    local true_positives, predicted, support = counts[class][class], 0, 0
    for other = 1, k do
      predicted = predicted + counts[other][class]
      support = support + counts[class][other]
    end
    local precision = predicted > 0 and true_positives / predicted or 0
    local recall = support > 0 and true_positives / support or 0
    local f1 = (predicted + support) > 0 and 2 * true_positives / (predicted + support) or 0
    per_class.precision[class], per_class.recall[class], per_class.f1[class] = precision, recall, f1
    per_class.support[class] = support
    for name, value in pairs({ precision = precision, recall = recall, f1 = f1 }) do
      macro[name] = macro[name] + value / k
      weighted[name] = weighted[name] + value * support
    end
    total, correct = total + support, correct + true_positives
  end
  for name, value in pairs(weighted) do weighted[name] = total > 0 and value / total or 0 end
  return {
    precision = macro.precision, recall = macro.recall, f1 = macro.f1,
    accuracy = correct / total, support = total, weighted = weighted, per_class = per_class,
  }
end

---------------------------------------------------------------------------------------------
-- Text

local ROW_NAME_MAX = 16    -- characters of a class name beside a row of the text table
local COLUMN_NAME_MAX = 7  -- ... and above a column, where it sets the column width

local function pad_left(text, width)
  return string.rep(" ", width - plot.display_width(text)) .. text
end

local function pad_right(text, width)
  return text .. string.rep(" ", width - plot.display_width(text))
end

--- The confusion matrix as a text table for terminals: one row per true class, one column per
-- predicted class, counts right-aligned.  Names longer than 16 characters (rows) or 7
-- (column headers) are shortened with "…".
-- @param cm (K, K) counts, rows = true class
-- @param class_names optional list of K names (default "1".."K")
-- @return a string of K + 2 lines ending in a newline
function metrics.format_confusion(cm, class_names)
  local counts, k = matrix_rows(cm, "format_confusion")
  local names = class_names_for(class_names, k, "format_confusion")
  local row_labels, headers = {}, {}
  local row_width, column_width = #"true", 1
  for i = 1, k do
    row_labels[i] = plot.abbreviate(names[i], ROW_NAME_MAX)
    headers[i] = plot.abbreviate(names[i], COLUMN_NAME_MAX)
    row_width = math.max(row_width, plot.display_width(row_labels[i]))
    column_width = math.max(column_width, plot.display_width(headers[i]))
    for j = 1, k do column_width = math.max(column_width, #tostring(counts[i][j])) end
  end
  local gap = "  "
  local lines = { pad_right("", row_width) .. gap .. "predicted" }
  local header = { pad_right("true", row_width) }
  for j = 1, k do header[#header + 1] = pad_left(headers[j], column_width) end
  lines[#lines + 1] = table.concat(header, gap)
  for i = 1, k do
    local cells = { pad_right(row_labels[i], row_width) }
    for j = 1, k do cells[#cells + 1] = pad_left(tostring(counts[i][j]), column_width) end
    lines[#lines + 1] = table.concat(cells, gap)
  end
  return table.concat(lines, "\n") .. "\n"
end

--- A text report in the layout of scikit-learn's classification_report (digits = 2):
-- precision, recall, F1 and support per class, then accuracy, the macro average and the
-- support-weighted average.  Zero denominators count as 0 (see precision_recall_f1).
-- @param cm (K, K) counts, rows = true class
-- @param class_names optional list of K names (default "1".."K")
-- @return the report string
function metrics.classification_report(cm, class_names)
  local scores = metrics.precision_recall_f1(cm)
  local k = #scores.per_class.support
  local names = class_names_for(class_names, k, "classification_report")
  local width = #"weighted avg"
  for _, name in ipairs(names) do width = math.max(width, plot.display_width(name)) end

  local out = { pad_left("", width) .. " " .. string.format(" %9s %9s %9s %9s", "precision", "recall",
    "f1-score", "support"), "\n\n" }
  local function row(label, precision, recall, f1, support)
    out[#out + 1] = pad_left(label, width) .. " " .. string.format(" %9.2f %9.2f %9.2f %9d\n", precision, recall, f1,
      support)
  end
  local per_class = scores.per_class
  for class = 1, k do
    row(names[class], per_class.precision[class], per_class.recall[class], per_class.f1[class],
      per_class.support[class])
  end
  out[#out + 1] = "\n"
  out[#out + 1] = pad_left("accuracy", width) .. " " .. string.format(" %9s %9s %9.2f %9d\n", "", "", scores.accuracy,
    scores.support)
  row("macro avg", scores.precision, scores.recall, scores.f1, scores.support)
  row("weighted avg", scores.weighted.precision, scores.weighted.recall, scores.weighted.f1, scores.support)
  return table.concat(out)
end

---------------------------------------------------------------------------------------------
-- The SVG heat map

-- matplotlib's "Blues" colour map at five stops, from no samples to the most.
local BLUES = {
  { 0.00, 0xf7, 0xfb, 0xff }, { 0.25, 0xc6, 0xdb, 0xef }, { 0.50, 0x6b, 0xae, 0xd6 },
  { 0.75, 0x21, 0x71, 0xb5 }, { 1.00, 0x08, 0x30, 0x6b },
}

local function blues(fraction)
  fraction = math.min(1, math.max(0, fraction))
  for i = 2, #BLUES do
    local high = BLUES[i]
    if fraction <= high[1] then
      local low = BLUES[i - 1]
      local t = (fraction - low[1]) / (high[1] - low[1])
      local function channel(c) return math.floor(low[c] + (high[c] - low[c]) * t + 0.5) end
      return string.format("#%02x%02x%02x", channel(2), channel(3), channel(4))
    end
  end
end

local CELL_MAX, CELL_MIN, MATRIX_TARGET = 64, 18, 440 -- cell size bounds and the matrix's usual width
local CELL_TEXT_MIN = 22      -- smaller cells get no numbers (more than 20 classes)
local NAME_MAX = 24           -- characters of a class name on an axis
local LABEL_FONT, TITLE_FONT = 13, 16

--- Writes the confusion matrix as an SVG heat map: one square per (true, predicted) pair,
-- shaded from white to dark blue and labelled with its count (or, with normalize = true, the
-- fraction of its row, i.e. of that true class); rows are the true class ("true class" axis,
-- left), columns the predicted class ("predicted class" axis, below), class names on both
-- axes (shortened to 24 characters; the cell tooltips carry the full names), a colour bar on
-- the right.  With more than 20 classes the cells are too small for numbers and show colour only.
-- @param cm (K, K) counts, rows = true class
-- @param path the file to write
-- @param class_names optional list of K names (default "1".."K")
-- @param opts optional {title = string, normalize = boolean}
-- @return path, or nil and a message when the file cannot be written
function metrics.plot_confusion(cm, path, class_names, opts)
  opts = opts or {}
  local counts, k = matrix_rows(cm, "plot_confusion")
  local names = class_names_for(class_names, k, "plot_confusion")
  if type(path) ~= "string" then fail("plot_confusion", "path must be a string, got a %s", type(path)) end
  local normalize = opts.normalize and true or false
  local title = opts.title or (normalize and "Confusion matrix (fraction of each true class)" or "Confusion matrix")

  -- the values shown and the colour scale's top
  local values, scale_max = {}, normalize and 1 or 0
  for i = 1, k do
    values[i] = {}
    local row_total = 0
    for j = 1, k do row_total = row_total + counts[i][j] end
    for j = 1, k do
      if normalize then
        values[i][j] = row_total > 0 and counts[i][j] / row_total or 0
      else
        values[i][j] = counts[i][j]
        scale_max = math.max(scale_max, counts[i][j])
      end
    end
  end
  if scale_max == 0 then scale_max = 1 end

  -- sizes
  local cell = math.max(CELL_MIN, math.min(CELL_MAX, MATRIX_TARGET // k))
  local name_font = math.min(12, cell * 0.7)
  local short_names, widest_name = {}, 0
  for i = 1, k do
    short_names[i] = plot.abbreviate(names[i], NAME_MAX)
    widest_name = math.max(widest_name, plot.text_width(short_names[i], name_font))
  end
  -- column names go under their columns, turned 45 degrees when they would not fit across
  local rotate_columns = widest_name > cell - 4
  local column_names_height = rotate_columns and (widest_name * 0.71 + name_font) or name_font + 2

  local title_height = 44
  local matrix_left = 8 + 20 + 8 + math.ceil(widest_name) + 8
  if rotate_columns then -- keep the first column's slanted name inside the picture
    matrix_left = math.max(matrix_left, math.ceil(widest_name * 0.71 - cell / 2) + 12)
  end
  local matrix_top = title_height
  local matrix_size = k * cell
  local colorbar_left = matrix_left + matrix_size + 20
  local colorbar_width = 14
  local colorbar_ticks, tick_step = plot.nice_ticks(0, scale_max, 5)
  local widest_tick = 0
  for _, t in ipairs(colorbar_ticks) do
    widest_tick = math.max(widest_tick, plot.text_width(plot.format_tick(t, tick_step), 11))
  end
  local width = math.ceil(colorbar_left + colorbar_width + 8 + widest_tick + 12)
  width = math.max(width, math.ceil(plot.text_width(title, TITLE_FONT) + 24))
  local height = math.ceil(matrix_top + matrix_size + 10 + column_names_height + 14 + LABEL_FONT + 12)

  local svg = plot.svg(width, height, title)
  svg:text(width / 2, 28, title,
    { class = "title", font_size = TITLE_FONT, font_weight = "bold", text_anchor = "middle" })

  -- cells
  local cell_font = math.min(14, cell * 0.34)
  svg:open("g", { class = "matrix" })
  for i = 1, k do
    for j = 1, k do
      local fraction = values[i][j] / scale_max
      local x, y = matrix_left + (j - 1) * cell, matrix_top + (i - 1) * cell
      local shown = normalize and string.format("%.2f", values[i][j]) or tostring(values[i][j])
      svg:open("rect", { class = "cell", x = x, y = y, width = cell, height = cell, fill = blues(fraction),
        stroke = "#ffffff", stroke_width = 1 })
      svg:element("title", nil, string.format("true %s, predicted %s: %s", names[i], names[j],
        normalize and string.format("%s (%d)", shown, counts[i][j]) or shown))
      svg:close()
      if cell >= CELL_TEXT_MIN then
        -- shrink long counts (10000+) so they stay inside their square
        local font = math.min(cell_font, (cell - 4) / (#shown * 0.62))
        svg:text(x + cell / 2, y + cell / 2 + font * 0.35, shown, { class = "count", font_size = font,
          text_anchor = "middle", fill = fraction > 0.55 and "#ffffff" or "#222222" })
      end
    end
  end
  svg:close()

  -- class names: rows to the left, columns below
  for i = 1, k do
    local y = matrix_top + (i - 0.5) * cell
    svg:text(matrix_left - 6, y + name_font * 0.35, short_names[i],
      { class = "class-name", font_size = name_font, text_anchor = "end" })
  end
  local names_top = matrix_top + matrix_size + 6
  for j = 1, k do
    local x = matrix_left + (j - 0.5) * cell
    if rotate_columns then
      local y = names_top + name_font * 0.7
      svg:text(x, y, short_names[j], { class = "class-name", font_size = name_font, text_anchor = "end",
        transform = string.format("rotate(-45 %s %s)", plot.format_number(x), plot.format_number(y)) })
    else
      svg:text(x, names_top + name_font, short_names[j],
        { class = "class-name", font_size = name_font, text_anchor = "middle" })
    end
  end

  -- axis labels
  local matrix_middle = matrix_left + matrix_size / 2
  svg:text(matrix_middle, names_top + column_names_height + 4 + LABEL_FONT, "predicted class",
    { class = "axis-label", font_size = LABEL_FONT, text_anchor = "middle" })
  local label_x, label_y = 8 + LABEL_FONT, matrix_top + matrix_size / 2
  svg:text(label_x, label_y, "true class", { class = "axis-label", font_size = LABEL_FONT, text_anchor = "middle",
    transform = string.format("rotate(-90 %s %s)", plot.format_number(label_x), plot.format_number(label_y)) })

  -- colour bar: the gradient runs bottom (0) to top (scale_max), with the same stops as the cells
  svg:open("defs")
  svg:open("linearGradient", { id = "lunet-confusion-scale", x1 = 0, y1 = 1, x2 = 0, y2 = 0 })
  for _, stop in ipairs(BLUES) do
    svg:element("stop", { offset = stop[1], stop_color = blues(stop[1]) })
  end
  svg:close()
  svg:close()
  svg:rect(colorbar_left, matrix_top, colorbar_width, matrix_size,
    { class = "colorbar", fill = "url(#lunet-confusion-scale)", stroke = "#333333", stroke_width = 1 })
  for _, t in ipairs(colorbar_ticks) do
    if t <= scale_max + 1e-9 then
      local y = matrix_top + matrix_size - t / scale_max * matrix_size
      svg:line(colorbar_left + colorbar_width, y, colorbar_left + colorbar_width + 4, y, { stroke = "#333333" })
      svg:text(colorbar_left + colorbar_width + 7, y + 4, plot.format_tick(t, tick_step),
        { class = "tick", font_size = 11, fill = "#333333" })
    end
  end
  return svg:write(path)
end

---------------------------------------------------------------------------------------------
-- Regression

-- Both arguments as detached f64 tensors of one shape: (N, D) when both are (N, D) with D > 1
-- (several outputs), otherwise flattened, so that (N) against (N, 1) never broadcasts to (N, N).
local function regression_pair(prediction, target, fn_name)
  local function tensor_of(value, what)
    if core.is_tensor(value) then return value:detach() end
    if type(value) == "table" then return core.tensor(value, "f64") end
    fail(fn_name, "%s must be a tensor or a list of numbers, got a %s", what, type(value))
  end
  prediction, target = tensor_of(prediction, "pred"), tensor_of(target, "target")
  if prediction:numel() ~= target:numel() then
    fail(fn_name, "pred has %d values but target has %d", prediction:numel(), target:numel())
  end
  if prediction:numel() == 0 then fail(fn_name, "no samples") end
  local same_shape = table.concat(prediction:shape(), ",") == table.concat(target:shape(), ",")
  local function is_column(t) return t:dim() == 1 or (t:dim() == 2 and t:size(2) == 1) end
  if not same_shape and not (is_column(prediction) and is_column(target)) then
    fail(fn_name, "pred shape [%s] and target shape [%s] differ", table.concat(prediction:shape(), ","),
      table.concat(target:shape(), ","))
  end
  if not (same_shape and prediction:dim() == 2 and prediction:size(2) > 1) then
    prediction, target = prediction:flatten(), target:flatten()
  end
  return prediction:to("f64"), target:to("f64")
end

--- Mean squared error, mean((pred - target)^2), computed in float64.
-- @param pred predictions: a tensor or a list of numbers
-- @param target targets of the same shape ((N) and (N, 1) may be mixed)
-- @return a number
function metrics.mse(pred, target)
  local p, t = regression_pair(pred, target, "mse")
  return ((p - t) ^ 2):mean():item()
end

--- Mean absolute error, mean(|pred - target|), computed in float64.
-- @param pred predictions: a tensor or a list of numbers
-- @param target targets of the same shape
-- @return a number
function metrics.mae(pred, target)
  local p, t = regression_pair(pred, target, "mae")
  return (p - t):abs():mean():item()
end

-- R^2 from the two sums of squares, with scikit-learn's answers for a constant target.
local function r2_of(residual_sum, total_sum)
  if total_sum == 0 then return residual_sum == 0 and 1 or 0 end
  return 1 - residual_sum / total_sum
end

--- Coefficient of determination, 1 - sum((target - pred)^2) / sum((target - mean(target))^2).
-- As in scikit-learn: a constant target gives 1 for a perfect prediction and 0 otherwise;
-- fewer than two samples give NaN; for (N, D) inputs with D > 1 the score of each output
-- column is computed and their plain mean returned.
-- @param pred predictions: a tensor or a list of numbers
-- @param target targets of the same shape
-- @return a number (1 is perfect, 0 is as good as predicting the mean, below 0 is worse)
function metrics.r2_score(pred, target)
  local p, t = regression_pair(pred, target, "r2_score")
  if t:size(1) < 2 then return 0 / 0 end
  if t:dim() == 1 then
    return r2_of(((t - p) ^ 2):sum():item(), ((t - t:mean():item()) ^ 2):sum():item())
  end
  local residual = ((t - p) ^ 2):sum(1):totable()
  local total = ((t - t:mean(1, true)) ^ 2):sum(1):totable()
  local score = 0
  for column = 1, #residual do score = score + r2_of(residual[column], total[column]) / #residual end
  return score
end

return metrics
