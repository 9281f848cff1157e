--- Fashion-MNIST (Zalando's 28x28 greyscale clothing images, 60000 to train and 10000 to
-- test) from its four IDX files, as shipped by the Debian package dataset-fashion-mnist.
local core = require("lunet.core")
local TensorDataset = require("lunet.data.TensorDataset")

local DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

local CLASSES = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
  "Ankle boot" }

local FILES = {
  { images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz" },
  { images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz" },
}

local function read(dir, name)
  local path = dir .. "/" .. name
  local t, message, code = core.idx_read(path)
  if t then return t end
  message = message:gsub("^idx: ", "")
  if code == "LUNET_ERR_IO" then
    error("fashion_mnist: " .. message .. "; install the Debian package dataset-fashion-mnist "
      .. "(apt-get install dataset-fashion-mnist), or set FASHION_MNIST_DIR (or the dir option) to a directory "
      .. "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
      .. "t10k-labels-idx1-ubyte.gz", 0)
  end
  error("fashion_mnist: " .. message, 0)
end

local function shape_text(t) return t.dtype .. " [" .. table.concat(t:shape(), ",") .. "]" end

-- u8 pixels as f32 in [0, 1], the way torchvision's ToTensor scales them (x / 255 in f32).
-- Converting a few thousand images at a time keeps the temporaries small and reused: one
-- division of the whole set would allocate a second 188 MB f32 array for the converted input.
local function to_unit_range(images)
  local n, rows = images:size(1), 4096
  local out = core.empty(images:shape())
  for first = 1, n, rows do
    local length = math.min(rows, n - first + 1)
    out:narrow(1, first, length):copy(images:narrow(1, first, length):div(255.0))
  end
  return out
end

local function load(dir, names)
  local images, labels = read(dir, names.images), read(dir, names.labels)
  local n = labels:dim() == 1 and labels:size(1) or -1
  if images.dtype ~= "u8" or images:dim() ~= 3 or images:size(2) ~= 28 or images:size(3) ~= 28 then
    error(string.format("fashion_mnist: %s/%s: expected u8 images of shape [N,28,28], got %s", dir, names.images,
      shape_text(images)), 0)
  end
  if labels.dtype ~= "u8" or n ~= images:size(1) then
    error(string.format("fashion_mnist: %s/%s: expected %d u8 labels, got %s", dir, names.labels, images:size(1),
      shape_text(labels)), 0)
  end
  if n > 0 and labels:max():item() > 9 then
    error(string.format("fashion_mnist: %s/%s: a label is above 9", dir, names.labels), 0)
  end
  local x = to_unit_range(images):view({ n, 1, 28, 28 })
  local y = labels:to("i64") + 1 -- class indices are 1-based in Lua
  images:release()
  labels:release()
  local dataset = TensorDataset(x, y)
  dataset.classes = { table.unpack(CLASSES) }
  return dataset
end

--- Loads Fashion-MNIST.
-- @param[opt] options dir: the directory of the four .gz files (default: $FASHION_MNIST_DIR,
--   else /usr/share/datasets/fashion-mnist)
-- @return train, test: TensorDatasets with x (N, 1, 28, 28) f32 in [0, 1], y (N) i64 class
--   indices 1..10, and classes, the ten class names in index order
local function fashion_mnist(options)
  options = options or {}
  local dir = options.dir or os.getenv("FASHION_MNIST_DIR") or DEFAULT_DIR
  if type(dir) ~= "string" then error("fashion_mnist: dir must be a string, got " .. type(dir), 2) end
  return load(dir, FILES[1]), load(dir, FILES[2])
end

return fashion_mnist
