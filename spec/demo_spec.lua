-- The serving half of `make demo` (examples/demo_serve.lua), run as a real process on a
-- repository of small untrained models: what it prints, its exit status, and that it never
-- leaves its server running.
local lunet = require("lunet")
local h = require("spec.helpers")
local nn = lunet.nn

local _, test_set = lunet.data.fashion_mnist()

-- Runs demo_serve.lua on dir; returns its output (stdout and stderr) and exit status.
local function demo_serve(dir, image)
  local pipe = assert(io.popen(string.format("lua5.4 examples/demo_serve.lua '%s' %d 2>&1", dir, image)))
  local output = pipe:read("a")
  local _, _, status = pipe:close()
  return output, status
end

local function save(model, dir, name)
  assert(os.execute(string.format("mkdir -p '%s/models/%s/1'", dir, name)))
  model:save(string.format("%s/models/%s/1/model.safetensors", dir, name), { input_shape = { 1, 28, 28 } })
end

-- The class the model gives test image i, by the model itself.
local function class_of(model, i)
  local logits = model:predict(test_set.x:narrow(1, i, 1)):reshape({ -1 }):totable()
  local best = 1
  for k = 2, #logits do
    if logits[k] > logits[best] then best = k end
  end
  return test_set.classes[best]
end

-- Whether a server of the repository still runs ("serve[.]lua" so that pgrep's own shell, whose
-- command line holds the pattern, does not match).
local function server_running(dir)
  -- pgrep runs without the ASan runtime the sanitizer run preloads (it hangs under it).
  return os.execute("env -u LD_PRELOAD pgrep -f 'serve[.]lua --models " .. dir .. "/models' > /dev/null") == true
end

describe("examples/demo_serve.lua", function()
  local dir
  before_each(function() dir = h.make_directory() end)
  after_each(function() h.remove_directory(dir) end)

  it("asks each model about a test image over HTTP, prints its class beside the label, and sees exit 0", function()
    lunet.manual_seed(3)
    local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)):eval()
    local int8 = lunet.quantize(model, { calibration = test_set.x:narrow(1, 1, 256) })
    save(model, dir, "tiny")
    save(int8, dir, "tiny_int8")
    local image = 7
    local output, status = demo_serve(dir, image)
    assert.are.equal(0, status, output)
    local truth = test_set.classes[test_set.y[image]]
    local answers = {}
    for name, version, predicted, label in output:gmatch(
        "/infer %-> 200 in [%d.]+ ms, (%S+) version (%d+)\n  predicted: (.-) +%(probability [%d.]+%)   true label: ([^\n]+)") do
      answers[#answers + 1] = { name, version, predicted, label }
    end
    assert.are.same({ { "tiny", "1", class_of(model, image), truth }, { "tiny_int8", "1", class_of(int8, image), truth } },
      answers, output)
    assert.is_truthy(output:find("server exited with status 0, ", 1, true), output)
    assert.is_falsy(server_running(dir))
  end)

  it("exits 1 with the server stopped when a model does not answer with ten classes", function()
    save(nn.Sequential(nn.Flatten(), nn.Linear(784, 5)):eval(), dir, "five")
    local output, status = demo_serve(dir, 1)
    assert.are.equal(1, status, output)
    assert.is_truthy(output:find("demo_serve.lua: POST http://127.0.0.1:%d+/v2/models/five/infer: HTTP 200: "), output)
    assert.is_falsy(server_running(dir))
  end)
end)
