local lunet = require("lunet")
local metrics = require("lunet.metrics")
local h = require("spec.helpers")

local function close(expected, got, tol)
  tol = tol or 1e-12
  local difference = math.abs(expected - got)
  -- written as <= so that NaN fails too
  assert.is_true(difference <= tol, string.format("expected %.15g, got %.15g", expected, got))
end

local function is_nan(x) return x ~= x end

describe("metrics.predictions", function()
  it("takes the argmax of each row of scores, ties going to the lower class", function()
    local logits = lunet.tensor({ { 0.1, 2.0, -1 }, { 3, 3, 0 }, { -5, -4, -3 } })
    local predicted = metrics.predictions(logits)
    assert.are.equal("i64", predicted.dtype)
    assert.are.same({ 2, 1, 3 }, predicted:totable())
    assert.are.same({ 2, 1 }, metrics.predictions(lunet.tensor({ { 0, 1 }, { 1, 0 } }, "f64")):totable())
  end)

  it("passes 1-d i64 labels through and converts other label forms to i64", function()
    local labels = lunet.tensor({ 3, 1, 2 }, "i64")
    assert.is_true(rawequal(labels, metrics.predictions(labels)))
    local from_i32 = metrics.predictions(lunet.tensor({ 3, 1 }, "i32"))
    assert.are.equal("i64", from_i32.dtype)
    assert.are.same({ 3, 1 }, from_i32:totable())
    assert.are.same({ 2, 4 }, metrics.predictions({ 2, 4 }):totable())
    assert.are.same({ 2, 4 }, metrics.predictions(lunet.tensor({ { 2 }, { 4 } }, "u8")):totable())
    assert.are.same({ 5, 1 }, metrics.predictions(lunet.tensor({ 5, 1 })):totable()) -- whole-number floats
    assert.are.same({ 0 }, metrics.predictions(lunet.zeros({ 0, 4 })):shape())
  end)

  it("refuses fractional labels and a single score column", function()
    h.assert_error_contains(function() metrics.predictions(lunet.tensor({ 0.2, 0.9 })) end,
      "predictions:", "fractional")
    h.assert_error_contains(function() metrics.predictions(lunet.tensor({ { 0.2 }, { 0.9 } })) end,
      "predictions:", "[2,1]", "ambiguous")
    h.assert_error_contains(function() metrics.predictions(lunet.zeros({ 2, 2, 2 }, "i64")) end,
      "predictions:", "1-d", "[2,2,2]")
    h.assert_error_contains(function() metrics.predictions("cat") end, "predictions:", "string")
  end)
end)

describe("metrics.accuracy", function()
  it("counts matching labels", function()
    -- predicted 1 2 3 2 1 against true 1 2 2 2 3: samples 1, 2 and 4 are right
    local predicted = lunet.tensor({ 1, 2, 3, 2, 1 }, "i64")
    local truth = lunet.tensor({ 1, 2, 2, 2, 3 }, "i64")
    close(3 / 5, metrics.accuracy(predicted, truth))
    close(1, metrics.accuracy(truth, truth))
    close(0, metrics.accuracy(lunet.tensor({ 2, 1 }, "i64"), { 1, 2 }))
  end)

  it("takes logits and (N, 1) targets", function()
    local logits = lunet.tensor({ { 5, 1, 0 }, { 0, 0, 9 }, { 1, 2, 0 }, { 3, 0, 2 } })
    -- argmax: 1, 3, 2, 1
    close(2 / 4, metrics.accuracy(logits, lunet.tensor({ { 1 }, { 2 }, { 2 }, { 3 } }, "i64")))
  end)

  it("gives NaN for no samples and refuses mismatched lengths", function()
    assert.is_true(is_nan(metrics.accuracy(lunet.tensor({}, "i64"), lunet.tensor({}, "i64"))))
    h.assert_error_contains(function() metrics.accuracy(lunet.tensor({ 1, 2, 3 }, "i64"), { 1, 2 }) end,
      "accuracy:", "3 predictions but 2 targets")
  end)
end)

describe("metrics.confusion_matrix", function()
  it("puts the true class on rows and the predicted class on columns", function()
    -- two samples of class 1 predicted as 2, one of class 2 predicted as 2, one of class 3 as 1
    local cm = metrics.confusion_matrix(lunet.tensor({ 2, 2, 2, 1 }, "i64"), lunet.tensor({ 1, 1, 2, 3 }, "i64"), 3)
    assert.are.equal("i64", cm.dtype)
    assert.are.same({ 3, 3 }, cm:shape())
    assert.are.same({ { 0, 2, 0 }, { 0, 1, 0 }, { 1, 0, 0 } }, cm:totable())
  end)

  it("agrees with counting sample by sample, from logits", function()
    lunet.manual_seed(3)
    local k, n = 5, 400
    local logits = lunet.randn({ n, k })
    local truth = (lunet.rand({ n }) * k):to("i64") + 1
    local predicted = logits:argmax(2):totable()
    local labels = truth:totable()
    local expected = {}
    for i = 1, k do
      expected[i] = {}
      for j = 1, k do expected[i][j] = 0 end
    end
    for s = 1, n do
      expected[labels[s]][predicted[s]] = expected[labels[s]][predicted[s]] + 1
    end
    local cm = metrics.confusion_matrix(logits, truth, k)
    assert.are.same(expected, cm:totable())
    assert.are.equal(n, cm:sum():item())
  end)

  it("infers the number of classes from the labels when not given", function()
    assert.are.same({ { 1, 0, 0, 0 }, { 0, 0, 0, 1 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } },
      metrics.confusion_matrix({ 1, 4 }, { 1, 2 }):totable())
  end)

  it("gives a zero matrix for no samples", function()
    assert.are.same({ { 0, 0 }, { 0, 0 } },
      metrics.confusion_matrix(lunet.tensor({}, "i64"), lunet.tensor({}, "i64"), 2):totable())
  end)

  it("refuses labels outside 1..K, such as 0-based ones", function()
    h.assert_error_contains(function() metrics.confusion_matrix({ 1, 2 }, { 0, 1 }, 2) end,
      "confusion_matrix:", "target label 0 is outside 1..2", "1-based")
    h.assert_error_contains(function() metrics.confusion_matrix({ 1, 3 }, { 1, 2 }, 2) end,
      "confusion_matrix:", "predicted label 3 is outside 1..2")
    h.assert_error_contains(function() metrics.confusion_matrix({ 1 }, { 1 }, 0) end,
      "num_classes must be a positive integer")
  end)
end)

describe("metrics.precision_recall_f1", function()
  -- rows = true class, columns = predicted class
  --   true cat:  2 cat, 1 dog, 0 bird
  --   true dog:  1 cat, 1 dog, 1 bird
  --   true bird: 0 cat, 0 dog, 3 bird
  -- cat:  TP 2, predicted 3 (column), support 3 (row) -> P 2/3, R 2/3, F1 2/3
  -- dog:  TP 1, predicted 2, support 3                -> P 1/2, R 1/3, F1 2*1/(2+3) = 0.4
  -- bird: TP 3, predicted 4, support 3                -> P 3/4, R 1,   F1 2*3/(4+3) = 6/7
  local cm = { { 2, 1, 0 }, { 1, 1, 1 }, { 0, 0, 3 } }

  it("computes per-class values and macro averages (worked example)", function()
    local scores = metrics.precision_recall_f1(lunet.tensor(cm, "i64"))
    local per_class = scores.per_class
    close(2 / 3, per_class.precision[1]); close(2 / 3, per_class.recall[1]); close(2 / 3, per_class.f1[1])
    close(1 / 2, per_class.precision[2]); close(1 / 3, per_class.recall[2]); close(0.4, per_class.f1[2])
    close(3 / 4, per_class.precision[3]); close(1, per_class.recall[3]); close(6 / 7, per_class.f1[3])
    assert.are.same({ 3, 3, 3 }, per_class.support)
    close((2 / 3 + 1 / 2 + 3 / 4) / 3, scores.precision)
    close((2 / 3 + 1 / 3 + 1) / 3, scores.recall)
    close((2 / 3 + 0.4 + 6 / 7) / 3, scores.f1)
    close(6 / 9, scores.accuracy)
    assert.are.equal(9, scores.support)
  end)

  it("weights the weighted average by support", function()
    -- class 1: TP 4 of support 4, predicted 5 -> P 4/5, R 1; class 2: TP 0 of 1, never predicted
    local scores = metrics.precision_recall_f1({ { 4, 0 }, { 1, 0 } })
    close((4 / 5 * 4 + 0 * 1) / 5, scores.weighted.precision)
    close((1 * 4 + 0 * 1) / 5, scores.weighted.recall)
    close((8 / 9 * 4 + 0) / 5, scores.weighted.f1)
  end)

  it("counts a class that is never predicted as precision 0 (zero_division = 0)", function()
    -- class 2 (column 2) has no predictions; its samples went to classes 1 and 3
    --   class 1: TP 2, predicted 3, support 3 -> 2/3, 2/3, 2/3
    --   class 2: TP 0, predicted 0, support 2 -> 0 (not NaN), 0, 0
    --   class 3: TP 3, predicted 5, support 3 -> 3/5, 1, 6/8
    local scores = metrics.precision_recall_f1({ { 2, 0, 1 }, { 1, 0, 1 }, { 0, 0, 3 } })
    assert.are.equal(0, scores.per_class.precision[2])
    assert.are.equal(0, scores.per_class.recall[2])
    assert.are.equal(0, scores.per_class.f1[2])
    close((2 / 3 + 0 + 3 / 5) / 3, scores.precision)
    close((2 / 3 + 0 + 1) / 3, scores.recall)
    close((2 / 3 + 0 + 6 / 8) / 3, scores.f1)
  end)

  it("keeps a class with no samples and no predictions in the macro average", function()
    local scores = metrics.precision_recall_f1({ { 1, 0 }, { 0, 0 } })
    assert.are.same({ 1, 0 }, scores.per_class.precision)
    close(0.5, scores.precision)
    close(0.5, scores.f1)
  end)

  it("refuses matrices that are not square counts", function()
    h.assert_error_contains(function() metrics.precision_recall_f1({ { 1, 2 }, { 3 } }) end, "square")
    h.assert_error_contains(function() metrics.precision_recall_f1({ { 1, -2 }, { 3, 4 } }) end, "[1,2]", "count")
    h.assert_error_contains(function() metrics.precision_recall_f1(lunet.zeros({ 2, 2, 2 })) end, "2-d")
  end)
end)

describe("metrics text output", function()
  local cm = lunet.tensor({ { 2, 1, 0 }, { 1, 1, 1 }, { 0, 0, 3 } }, "i64")

  it("formats the confusion matrix with true classes as rows", function()
    local text = metrics.format_confusion(cm, { "cat", "dog", "bird" })
    assert.are.equal(table.concat({
      "      predicted",
      "true   cat   dog  bird", -- one width for all columns, so the grid stays regular
      "cat      2     1     0",
      "dog      1     1     1",
      "bird     0     0     3",
    }, "\n") .. "\n", text)
  end)

  it("numbers the classes when no names are given and widens columns for large counts", function()
    local text = metrics.format_confusion({ { 12345, 2 }, { 0, 7 } })
    assert.are.equal("      predicted\ntrue      1      2\n1     12345      2\n2         0      7\n", text)
  end)

  it("shortens long class names and keeps the columns aligned", function()
    local names = { "T-shirt/top", "a name far longer than sixteen characters" }
    local text = metrics.format_confusion({ { 1, 0 }, { 0, 1 } }, names)
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(4, #lines)
    assert.truthy(lines[2]:find("T-shir…", 1, true))
    assert.truthy(lines[3]:find("^T%-shirt/top "))
    assert.truthy(lines[4]:find("^a name far long… ")) -- 16 characters with the "…"
    assert.truthy(lines[2]:find("a name…", 1, true))
    -- every body line is as wide (in characters) as the header line
    for i = 3, 4 do assert.are.equal(utf8.len(lines[2]), utf8.len(lines[i])) end
  end)

  it("writes a classification report in scikit-learn's layout", function()
    local expected = table.concat({
      "              precision    recall  f1-score   support",
      "",
      "         cat       0.67      0.67      0.67         3",
      "         dog       0.50      0.33      0.40         3",
      "        bird       0.75      1.00      0.86         3",
      "",
      "    accuracy                           0.67         9",
      "   macro avg       0.64      0.67      0.64         9",
      "weighted avg       0.64      0.67      0.64         9",
      "",
    }, "\n")
    assert.are.equal(expected, metrics.classification_report(cm, { "cat", "dog", "bird" }))
  end)

  it("widens the report for long names and numbers classes by default", function()
    -- class 1: TP 1, predicted 2, support 1 -> 0.50 1.00 0.67; class 2: never predicted -> zeros
    local report = metrics.classification_report({ { 1, 0 }, { 1, 0 } }, { "a rather long class name", "b" })
    assert.truthy(report:find("\na rather long class name       0.50      1.00      0.67         1\n", 1, true))
    assert.truthy(report:find("\n" .. string.rep(" ", 23) .. "b       0.00      0.00      0.00         1\n", 1, true))
    assert.truthy(report:find("\n" .. string.rep(" ", 12) .. "weighted avg       0.25      0.50      0.33         2\n",
      1, true))
    local numbered = metrics.classification_report({ { 1, 0 }, { 0, 1 } })
    assert.truthy(numbered:find("\n           1       1.00      1.00      1.00         1\n", 1, true))
    assert.truthy(numbered:find("\n           2       1.00      1.00      1.00         1\n", 1, true))
  end)

  it("refuses a class name list of the wrong length", function()
    h.assert_error_contains(function() metrics.format_confusion(cm, { "a", "b" }) end, "list of 3 names")
  end)
end)

describe("regression metrics", function()
  -- pred 1 2 3 4 against target 1 3 2 6: errors 0 -1 1 -2
  -- mse = (0 + 1 + 1 + 4) / 4 = 1.5, mae = (0 + 1 + 1 + 2) / 4 = 1
  -- mean(target) = 3, total sum of squares = 4 + 0 + 1 + 9 = 14, residual = 6 -> r2 = 1 - 6/14
  local pred = lunet.tensor({ 1, 2, 3, 4 })
  local target = lunet.tensor({ 1, 3, 2, 6 })

  it("computes mse, mae and r2 against hand-computed values", function()
    close(1.5, metrics.mse(pred, target))
    close(1, metrics.mae(pred, target))
    close(1 - 6 / 14, metrics.r2_score(pred, target))
    close(1, metrics.r2_score(target, target))
  end)

  it("accepts Lua lists and mixes (N) with (N, 1) without broadcasting to (N, N)", function()
    close(1.5, metrics.mse({ 1, 2, 3, 4 }, { 1, 3, 2, 6 }))
    close(1.5, metrics.mse(pred:reshape({ 4, 1 }), target))
    close(1, metrics.mae(pred, target:reshape({ 4, 1 })))
    close(1 - 6 / 14, metrics.r2_score(pred:reshape({ 4, 1 }), target))
  end)

  it("averages r2 over output columns", function()
    -- column 1 is the example above; column 2: pred 0 0 0 0 against 1 2 3 4 (mean 2.5):
    -- residual 1 + 4 + 9 + 16 = 30, total 2.25 + 0.25 + 0.25 + 2.25 = 5 -> r2 = 1 - 6 = -5
    local p = lunet.tensor({ { 1, 0 }, { 2, 0 }, { 3, 0 }, { 4, 0 } }, "f64")
    local t = lunet.tensor({ { 1, 1 }, { 3, 2 }, { 2, 3 }, { 6, 4 } }, "f64")
    close(((1 - 6 / 14) + (-5)) / 2, metrics.r2_score(p, t))
    close((6 + 30) / 8, metrics.mse(p, t))
  end)

  it("follows scikit-learn for a constant target and a single sample", function()
    assert.are.equal(1, metrics.r2_score({ 2, 2, 2 }, { 2, 2, 2 }))
    assert.are.equal(0, metrics.r2_score({ 1, 2, 3 }, { 2, 2, 2 }))
    assert.is_true(is_nan(metrics.r2_score({ 1 }, { 2 })))
  end)

  it("takes tensors that require grad and refuses mismatched inputs", function()
    local p = lunet.tensor({ 1, 2 }, { requires_grad = true })
    close(2.5, metrics.mse(p, { 2, 4 }))
    h.assert_error_contains(function() metrics.mse({ 1, 2, 3 }, { 1, 2 }) end, "mse:", "3 values", "2")
    h.assert_error_contains(function() metrics.mae(lunet.zeros({ 2, 3 }), lunet.zeros({ 3, 2 })) end,
      "mae:", "[2,3]", "[3,2]")
    h.assert_error_contains(function() metrics.r2_score({}, {}) end, "r2_score:", "no samples")
  end)
end)
