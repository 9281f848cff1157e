-- What bench/serve.sh sends and serves: request bodies made from one Fashion-MNIST test image,
-- and a model repository holding the reference MLP.
--
--   lua5.4 bench/serve_setup.lua DIR [IMAGE]      -- from the repository root
--
-- IMAGE is the 1-based index of a test image (default 1).  Writes, in DIR:
--   body.json                        the OIP v2 JSON request: the image as [1,784] FP32 in [0, 1]
--   binary_header.json               the JSON header of the binary-extension request
--   binary_tensor.bin                the same 784 values as little-endian float32 (3136 bytes)
--   models/mlp/1/model.safetensors   Flatten -> Linear(784, 128) -> ReLU -> Linear(128, 10),
--                                    random weights (seed 0): throughput does not depend on them
-- and prints one line per file with its size.  DIR/models/mlp/1 must exist.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local lunet = require("lunet")
local core = require("lunet.core")
local nn = lunet.nn

local SAMPLE = 784
local IMAGES = (os.getenv("FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist") .. "/t10k-images-idx3-ubyte.gz"

local dir, image = arg[1], math.tointeger(tonumber(arg[2] or "1"))
if not dir or not image then
  io.stderr:write("usage: lua5.4 bench/serve_setup.lua DIR [IMAGE]\n")
  os.exit(2)
end

local function write(name, bytes)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  assert(f:write(bytes))
  assert(f:close())
  print(string.format("%s %d bytes", path, #bytes))
end

-- The image's pixels as f32 in [0, 1] (x / 255 in f32, as lunet.data.fashion_mnist and
-- torchvision's ToTensor scale them), as a Lua list of the f32 values.
local function image_values()
  local images = assert(core.idx_read(IMAGES))
  if image < 1 or image > images:size(1) then
    error(string.format("IMAGE must be in 1..%d, got %d", images:size(1), image), 0)
  end
  local values = images[image]:div(255.0):reshape({ SAMPLE }):totable()
  images:release()
  return values
end

-- %.9g prints any f32 so that it reads back as the same f32; checked here all the same.
local function f32_text(v)
  local text = string.format("%.9g", v)
  assert(string.unpack("<f", string.pack("<f", tonumber(text))) == v, text .. " does not round-trip")
  return text
end

local function write_bodies(values)
  local texts, bytes = {}, {}
  for i, v in ipairs(values) do
    texts[i] = f32_text(v)
    bytes[i] = string.pack("<f", v)
  end
  write("body.json", string.format('{"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32","data":[%s]}]}',
    SAMPLE, table.concat(texts, ",")))
  local tensor = table.concat(bytes)
  write("binary_header.json", string.format('{"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32",'
    .. '"parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}',
    SAMPLE, #tensor))
  write("binary_tensor.bin", tensor)
end

local function write_model()
  lunet.manual_seed(0)
  local model = nn.Sequential(nn.Flatten(), nn.Linear(SAMPLE, 128), nn.ReLU(), nn.Linear(128, 10))
  local path = dir .. "/models/mlp/1/model.safetensors"
  model:save(path, { input_shape = { SAMPLE } })
  local f = assert(io.open(path, "rb"))
  print(string.format("%s %d bytes", path, f:seek("end")))
  f:close()
end

write_bodies(image_values())
write_model()
