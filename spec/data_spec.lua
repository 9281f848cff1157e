-- lunet.data: Fashion-MNIST from the real files, datasets, loaders, splits, statistics, CSV.
local lunet = require("lunet")
local core = require("lunet.core") -- the C readers, which return nil, message, code
local data = require("lunet.data")
local h = require("spec.helpers")

local FASHION_DIR = "/usr/share/datasets/fashion-mnist"

-- Bytes first .. first+count-1 (1-based) of a gzip file, decompressed by zcat: a reader that
-- shares no code with lunet's.
local function zcat_bytes(path, first, count)
  local command = string.format("zcat %s | head -c %d | tail -c %d | od -An -v -tu1", path, first + count - 1, count)
  local pipe = assert(io.popen(command))
  local bytes = {}
  for value in pipe:read("a"):gmatch("%d+") do bytes[#bytes + 1] = tonumber(value) end
  pipe:close()
  return bytes
end

-- A dataset whose x and y both hold the sample ids 1..n, so batches show which rows they hold.
local function id_dataset(n)
  local ids = lunet.arange(1, n + 1, { dtype = "i64" })
  return data.TensorDataset(ids:clone(), ids)
end

-- The ids in a list of id batches, and whether each id appears exactly once in 1..n.
local function collect(batches)
  local seen = {}
  for _, b in ipairs(batches) do
    for _, id in ipairs(b:totable()) do seen[#seen + 1] = id end
  end
  return seen
end

local function is_permutation(ids, n)
  if #ids ~= n then return false end
  local count = {}
  for _, id in ipairs(ids) do
    if id < 1 or id > n or count[id] then return false end
    count[id] = true
  end
  return true
end

local function epoch_ids(loader)
  local batches = {}
  for xb, yb in loader:batches() do
    h.assert_values(xb, yb) -- x and y rows travel together
    batches[#batches + 1] = yb
  end
  return collect(batches)
end

describe("lunet.data", function()
  local train, test

  setup(function()
    train, test = data.fashion_mnist({ dir = FASHION_DIR })
  end)

  describe("fashion_mnist", function()
    it("has 60000 training and 10000 test images, (N,1,28,28) f32, and i64 labels", function()
      assert.are.same({ 60000, 1, 28, 28 }, train.x:shape())
      assert.are.same({ 10000, 1, 28, 28 }, test.x:shape())
      assert.are.same({ 60000 }, train.y:shape())
      assert.are.same({ 10000 }, test.y:shape())
      assert.are.equal("f32", train.x.dtype)
      assert.are.equal("i64", train.y.dtype)
      assert.are.equal(60000, #train)
      assert.are.equal(10000, test:size())
    end)

    it("scales pixels to [0, 1] as byte / 255, matching the file's bytes", function()
      assert.are.equal(0, train.x:min():item())
      assert.are.equal(1, train.x:max():item())
      -- the first training image, decompressed by zcat (16 header bytes, then 784 pixels)
      local pixels = zcat_bytes(FASHION_DIR .. "/train-images-idx3-ubyte.gz", 17, 784)
      assert.are.equal(784, #pixels)
      local expected = lunet.tensor(pixels):div(255)
      h.assert_values(train.x[1]:reshape({ 784 }), expected, 0)
      -- and every test pixel is exactly the raw byte divided by 255 in f32
      local raw = data.read_idx(FASHION_DIR .. "/t10k-images-idx3-ubyte.gz")
      assert.are.equal("u8", raw.dtype)
      local same = test.x:reshape({ 10000, 28, 28 }):eq(raw:div(255.0)):to("i64"):sum():item()
      assert.are.equal(10000 * 784, same)
    end)

    it("has 1-based labels 1..10, the files' labels plus one", function()
      assert.are.equal(1, train.y:min():item())
      assert.are.equal(10, train.y:max():item())
      assert.are.same({ 10, 1, 1, 4, 1, 3, 8, 3, 6, 6 }, train.y:narrow(1, 1, 10):totable())
      assert.are.same({ 10, 3, 2, 2, 7, 2, 5, 7, 6, 8 }, test.y:narrow(1, 1, 10):totable())
      local raw = zcat_bytes(FASHION_DIR .. "/t10k-labels-idx1-ubyte.gz", 9 + 9990, 10) -- the last ten
      for i = 1, 10 do raw[i] = raw[i] + 1 end
      assert.are.same(raw, test.y:narrow(1, 9991, 10):totable())
    end)

    it("has balanced classes and their names", function()
      local six_thousand, one_thousand = {}, {}
      for i = 1, 10 do six_thousand[i], one_thousand[i] = 6000, 1000 end
      assert.are.same(six_thousand, train.y:bincount():totable())
      assert.are.same(one_thousand, test.y:bincount():totable())
      assert.are.same({ "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot" }, train.classes)
      assert.are.equal("Ankle boot", test.classes[test.y[1]])
    end)

    it("raises a clear error for a missing directory, naming the path and the package", function()
      h.assert_error_contains(function() data.fashion_mnist({ dir = "/nonexistent/fashion" }) end,
        "fashion_mnist: /nonexistent/fashion/train-images-idx3-ubyte.gz: No such file or directory",
        "install the Debian package dataset-fashion-mnist", "FASHION_MNIST_DIR")
    end)

    it("reads the directory from FASHION_MNIST_DIR", function()
      local pipe = assert(io.popen("FASHION_MNIST_DIR=/nonexistent/env-dir lua5.4 -e " ..
        "'print(pcall(require(\"lunet.data\").fashion_mnist))' 2>&1"))
      local output = pipe:read("a")
      pipe:close()
      assert.is_truthy(output:find("false\tfashion_mnist: /nonexistent/env-dir/train-images-idx3-ubyte.gz", 1, true),
        output)
    end)
  end)

  describe("TensorDataset", function()
    it("gives samples, batches by index and by range, and its size", function()
      local x, y = train:get(1)
      assert.are.same({ 1, 28, 28 }, x:shape())
      assert.are.equal(10, y)
      local xb, yb = train:batch(lunet.tensor({ 3, 1, 60000 }, "i64"))
      assert.are.same({ 3, 1, 28, 28 }, xb:shape())
      assert.are.same({ train.y[3], train.y[1], train.y[60000] }, yb:totable())
      h.assert_values(xb[2], train.x[1])
      local xl, yl = train:batch({ 2, 4 })
      assert.are.same({ 1, 4 }, yl:totable())
      assert.are.same({ 2, 1, 28, 28 }, xl:shape())
      local xr, yr = train:batch(5, 3)
      assert.is_true(xr:shares_storage(train.x) and yr:shares_storage(train.y))
      assert.are.same(train.y:narrow(1, 5, 3):totable(), yr:totable())
    end)

    it("works without targets", function()
      local ds = data.TensorDataset(lunet.ones({ 5, 2 }))
      assert.are.equal(5, #ds)
      local xb, yb = ds:batch(1, 2)
      assert.are.same({ 2, 2 }, xb:shape())
      assert.is_nil(yb)
    end)

    it("refuses x and y of different lengths", function()
      h.assert_error_contains(function() data.TensorDataset(lunet.ones({ 4, 2 }), lunet.ones({ 3 })) end,
        "TensorDataset: x [4,2] and y [3] differ in their first (samples) dim")
      h.assert_error_contains(function() data.TensorDataset({ 1, 2 }) end, "TensorDataset: x must be a tensor")
    end)

    it("subsets a range as views and arbitrary rows as copies, keeping the class names", function()
      local range = train:subset(101, 50)
      assert.are.equal(50, #range)
      assert.is_true(range.x:shares_storage(train.x))
      assert.are.same(train.y:narrow(1, 101, 50):totable(), range.y:totable())
      assert.are.equal(train.classes, range.classes)
      local picked = train:subset(lunet.tensor({ 60000, 1 }, "i64"))
      assert.are.equal(2, #picked)
      assert.is_false(picked.x:shares_storage(train.x))
      h.assert_values(picked.x[1], train.x[60000])
      h.assert_values(picked.x[2], train.x[1])
    end)

    it("splits into disjoint parts of round(N * fraction) and the rest, reproducibly", function()
      local ds = id_dataset(1000)
      local a, b = data.split(ds, 0.9, 42)
      assert.are.equal(900, #a)
      assert.are.equal(100, #b)
      local ids = collect({ a.y, b.y })
      assert.is_true(is_permutation(ids, 1000))
      local a2 = ds:split(0.9, 42)
      assert.are.same(a.y:totable(), a2.y:totable())
      local a3 = ds:split(0.9, 43)
      assert.are_not.same(a.y:totable(), a3.y:totable())
      -- an unsorted, shuffled first part (not simply rows 1..900)
      assert.are_not.same(ds.y:narrow(1, 1, 900):totable(), a.y:totable())

      local odd_a, odd_b = id_dataset(7):split(0.5, 1)
      assert.are.equal(4, #odd_a) -- 3.5 rounds up
      assert.are.equal(3, #odd_b)
      local all, none = id_dataset(5):split(1, 1)
      assert.are.equal(5, #all)
      assert.are.equal(0, #none)
      h.assert_error_contains(function() ds:split(1.5) end, "split: fraction must be a number in [0, 1]")
    end)

    it("draws a seedless split from the default generator, so manual_seed fixes it", function()
      local ds = id_dataset(100)
      lunet.manual_seed(5)
      local a = ds:split(0.5)
      lunet.manual_seed(5)
      local again = ds:split(0.5)
      assert.are.same(a.y:totable(), again.y:totable())
    end)
  end)

  describe("DataLoader", function()
    it("counts batches with and without drop_last and yields a short last batch", function()
      local ds = id_dataset(1000)
      local loader = data.DataLoader(ds, { batch_size = 64 })
      assert.are.equal(16, #loader)
      assert.are.equal(15, #data.DataLoader(ds, { batch_size = 64, drop_last = true }))
      assert.are.equal(10, #data.DataLoader(ds, { batch_size = 100, drop_last = true }))
      assert.are.equal(0, #data.DataLoader(id_dataset(10), { batch_size = 64, drop_last = true }))
      local sizes, numbers = {}, {}
      for xb, _, number in loader:batches() do
        sizes[#sizes + 1] = #xb
        numbers[#numbers + 1] = number
      end
      assert.are.equal(16, #sizes)
      assert.are.equal(64, sizes[1])
      assert.are.equal(1000 - 15 * 64, sizes[16])
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }, numbers)
      local dropped = 0
      for xb in data.DataLoader(ds, { batch_size = 64, drop_last = true }):batches() do
        assert.are.equal(64, #xb)
        dropped = dropped + 1
      end
      assert.are.equal(15, dropped)
      assert.are.equal(32, #data.DataLoader(train:subset(1, 2048)))
    end)

    it("yields views of the dataset, in order, when not shuffling", function()
      local ds = train:subset(1, 300)
      local expected_first = 1
      for xb, yb, number in data.DataLoader(ds, { batch_size = 128 }):batches() do
        assert.is_true(xb:shares_storage(train.x) and yb:shares_storage(train.y))
        assert.are.same({ #yb, 1, 28, 28 }, xb:shape())
        assert.are.same(ds.y:narrow(1, expected_first, #yb):totable(), yb:totable())
        expected_first = expected_first + 128
        assert.are.equal(expected_first, number * 128 + 1)
      end
    end)

    it("shows every sample once per shuffled epoch, in a new order each epoch", function()
      local loader = data.DataLoader(id_dataset(1000), { batch_size = 64, shuffle = true, seed = 7 })
      local first, second = epoch_ids(loader), epoch_ids(loader)
      assert.is_true(is_permutation(first, 1000))
      assert.is_true(is_permutation(second, 1000))
      assert.are_not.same(first, second)
      local identity = {}
      for i = 1, 1000 do identity[i] = i end
      assert.are_not.same(identity, first)
    end)

    it("repeats its orders for the same seed and leaves the default generator alone", function()
      local ds = id_dataset(500)
      local state = lunet.get_rng_state()
      local a = data.DataLoader(ds, { batch_size = 50, shuffle = true, seed = 3 })
      local b = data.DataLoader(ds, { batch_size = 50, shuffle = true, seed = 3 })
      assert.are.same(epoch_ids(a), epoch_ids(b))
      assert.are.same(epoch_ids(a), epoch_ids(b))
      assert.are.same(state, lunet.get_rng_state())
      assert.are_not.same(epoch_ids(a), epoch_ids(data.DataLoader(ds, { batch_size = 50, shuffle = true, seed = 4 })))
    end)

    it("without a seed, draws one from the default generator once, at construction", function()
      local ds = id_dataset(200)
      lunet.manual_seed(11)
      local a = data.DataLoader(ds, { shuffle = true })
      local after_construction = lunet.get_rng_state()
      local order = epoch_ids(a)
      epoch_ids(a)
      assert.are.same(after_construction, lunet.get_rng_state())
      lunet.manual_seed(11)
      assert.are.same(order, epoch_ids(data.DataLoader(ds, { shuffle = true })))
    end)

    it("refuses bad options", function()
      local ds = id_dataset(10)
      h.assert_error_contains(function() data.DataLoader(ds, { batch_size = 0 }) end, "batch_size must be >= 1")
      h.assert_error_contains(function() data.DataLoader(ds, { batch_size = 1.5 }) end, "batch_size must be an integer")
      h.assert_error_contains(function() data.DataLoader(ds, { shuffle = "yes" }) end, "shuffle must be a boolean")
      h.assert_error_contains(function() data.DataLoader(lunet.ones({ 3 })) end, "dataset must offer size() and batch()")
    end)
  end)

  describe("mean_std and normalize", function()
    it("gives Fashion-MNIST's per-channel statistics and a normalized set with mean 0, std 1", function()
      local mean, std = data.mean_std(train.x)
      assert.are.same({ 1, 1, 1, 1 }, mean:shape())
      assert.are.same({ 1, 1, 1, 1 }, std:shape())
      assert.are.equal("f32", mean.dtype)
      -- the figures published with the dataset and used by torchvision examples
      assert.is_true(math.abs(mean:item() - 0.2860) < 1e-4, mean:item())
      assert.is_true(math.abs(std:item() - 0.3530) < 1e-4, std:item())
      local normalized = test:normalize(mean, std)
      assert.are.equal(test.y, normalized.y)
      local sample = normalized.x:narrow(1, 1, 2000):to("f64")
      local m = sample:mean():item()
      local s = ((sample - m) ^ 2):mean():sqrt():item()
      assert.is_true(math.abs(m) < 0.02 and math.abs(s - 1) < 0.02, m .. " " .. s) -- test stats differ a little
    end)

    it("normalizes its own statistics exactly, per channel for NCHW and per column for 2-d", function()
      lunet.manual_seed(2)
      local images = lunet.rand({ 50, 3, 4, 5 }, "f64") * lunet.tensor({ 1, 10, 100 }, "f64"):view({ 1, 3, 1, 1 })
      local normalized, mean, std = data.TensorDataset(images):normalize()
      assert.are.same({ 1, 3, 1, 1 }, mean:shape())
      assert.are.same({ 1, 3, 1, 1 }, std:shape())
      assert.is_true(std[1][3]:item() > 50 * std[1][1]:item()) -- the channels' scales differ 100-fold
      local per_channel = normalized.x:transpose(1, 2):reshape({ 3, 1000 })
      h.assert_values(per_channel:mean(2), { 0, 0, 0 }, 1e-12)
      h.assert_values((per_channel ^ 2):mean(2):sqrt(), { 1, 1, 1 }, 1e-12)

      local table_ = lunet.tensor({ { 1, 10, 5 }, { 3, 20, 5 }, { 5, 60, 5 } })
      local column_mean, column_std = data.mean_std(table_)
      assert.are.same({ 1, 3 }, column_mean:shape())
      h.assert_values(column_mean, { { 3, 30, 5 } }, 1e-6)
      -- population std; the constant column's std of 0 is reported as 1
      h.assert_values(column_std, { { math.sqrt(8 / 3), math.sqrt(1400 / 3), 1 } }, 1e-5)
      h.assert_values(data.normalize(table_, column_mean, column_std):narrow(2, 3, 1), { { 0 }, { 0 }, { 0 } })
    end)
  end)

  describe("files", function()
    local path

    before_each(function() path = os.tmpname() end)
    after_each(function() os.remove(path) end)

    local function write(text)
      local file = assert(io.open(path, "wb"))
      file:write(text)
      file:close()
    end

    it("reads a CSV file with a header into a tensor and column names", function()
      write("sepal length, \"sepal width\",class\r\n5.1,3.5,1\r\n\r\n4.9,3.0,2\r\n")
      local t, names = data.read_csv(path, { header = true })
      assert.are.same({ "sepal length", "sepal width", "class" }, names)
      assert.are.equal("f32", t.dtype)
      h.assert_values(t, { { 5.1, 3.5, 1 }, { 4.9, 3.0, 2 } }, 1e-6)
      local t64 = data.read_csv(path, { header = true, dtype = "f64" })
      h.assert_values(t64, { { 5.1, 3.5, 1 }, { 4.9, 3.0, 2 } }, 0)
    end)

    it("reads other delimiters and skips rows", function()
      write("# exported by a tool\na;b\n1;2\n3;4\n")
      local t, names = data.read_csv(path, { delimiter = ";", skip_rows = 1, header = true })
      assert.are.same({ "a", "b" }, names)
      h.assert_values(t, { { 1, 2 }, { 3, 4 } })
      local plain, none = data.read_csv(path, { delimiter = ";", skip_rows = 2 })
      assert.is_nil(none)
      h.assert_values(plain, { { 1, 2 }, { 3, 4 } })
    end)

    it("raises errors that name the file, the line and the column", function()
      write("a,b\n1,2\n3,x\n")
      h.assert_error_contains(function() data.read_csv(path, { header = true }) end,
        path, "line 3, column 2: \"x\" is not a number")
      write("1,2\n3\n")
      h.assert_error_contains(function() data.read_csv(path) end, path, "line 2 has 1 fields, but line 1 has 2")
      write("a,b,c\n1,2\n")
      h.assert_error_contains(function() data.read_csv(path, { header = true }) end,
        "the header names 3 columns but the rows have 2")
      h.assert_error_contains(function() data.read_csv("/nonexistent/x.csv") end,
        "/nonexistent/x.csv: No such file or directory")
      h.assert_error_contains(function() data.read_idx(path) end, "idx: " .. path, "not an IDX file")
    end)

    it("returns nil, message, code from the core readers for bad files", function()
      write("1,2\n")
      local t, message, code = core.idx_read(path)
      assert.is_nil(t)
      assert.are.equal("LUNET_ERR_FORMAT", code)
      assert.is_truthy(message:find(path, 1, true))
      t, message, code = core.csv_read("/nonexistent/x.csv")
      assert.is_nil(t)
      assert.are.equal("LUNET_ERR_IO", code)
      assert.are.equal("csv: /nonexistent/x.csv: No such file or directory", message)
      -- misuse still raises
      h.assert_error_contains(function() core.csv_read(path, { dtype = "i64" }) end, "dtype i64 is not supported")
      h.assert_error_contains(function() core.csv_read(path, { delimiter = ",," }) end, "one-character string")
    end)

    it("reads IDX labels equal to the dataset's", function()
      local labels = data.read_idx(FASHION_DIR .. "/t10k-labels-idx1-ubyte.gz")
      assert.are.same({ 10000 }, labels:shape())
      assert.are.equal("u8", labels.dtype)
      assert.are.equal(0, test.y:sub(1):ne(labels:to("i64")):to("i64"):sum():item())
    end)
  end)
end)
