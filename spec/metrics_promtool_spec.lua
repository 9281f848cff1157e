-- The server's /metrics text as Prometheus' own tool reads it: a real server (spec/serve_harness.lua)
-- is sent inferences, a bad body (400), an unknown path and an unknown model (404) and a wrong
-- method (405), and then `promtool check metrics` (Debian's prometheus package) must accept its
-- /metrics text without a word, and every histogram in it must be well-formed.
local cjson = require("cjson")
local lunet = require("lunet")
local harness = require("spec.serve_harness")
local helpers = require("spec.helpers")

local repo = os.tmpname()
os.remove(repo)
os.execute("mkdir -p " .. repo .. "/mlp/1")
lunet.manual_seed(3)
local model = lunet.nn.Sequential(lunet.nn.Flatten(), lunet.nn.Linear(784, 16), lunet.nn.ReLU(),
  lunet.nn.Linear(16, 10)):eval()
model:save(repo .. "/mlp/1/model.safetensors", { input_shape = { 1, 28, 28 } })

local function infer_body(seed)
  local data = {}
  for k = 1, 784 do data[k] = ((k * 31 + seed * 17) % 256) / 255 end
  return cjson.encode({ inputs = { { name = "input", shape = { 1, 784 }, datatype = "FP32", data = data } } })
end

-- promtool's verdict on a text: its exit status and all it printed.  It runs without the ASan
-- runtime that the sanitizer run preloads.
local function promtool_check(text)
  local file = os.tmpname()
  helpers.write_bytes(file, text)
  local pipe = assert(io.popen("env -u LD_PRELOAD promtool check metrics < " .. file .. " 2>&1"))
  local output = pipe:read("a")
  local _, _, status = pipe:close()
  os.remove(file)
  return status, output
end

local function le_value(text) return text == "+Inf" and math.huge or assert(tonumber(text), "le " .. text) end

-- Every histogram family of the text (by its # TYPE line), each series of it (its labels other
-- than le): buckets in the order written, _sum and _count.
local function histograms(text)
  local families, found = {}, {}
  for line in text:gmatch("[^\n]+") do
    local family = line:match("^# TYPE (%S+) histogram$")
    if family then families[family] = {} end
  end
  for line in text:gmatch("[^\n]+") do
    local name, labels, value = line:match("^([%w_:]+){(.*)} (%S+)$")
    if name then
      for family, series in pairs(families) do
        local suffix = name:sub(#family + 1)
        if name:sub(1, #family) == family and (suffix == "_bucket" or suffix == "_sum" or suffix == "_count") then
          local le = labels:match('le="([^"]*)"')
          local key = labels:gsub(',?le="[^"]*"', "")
          series[key] = series[key] or { buckets = {} }
          local s = series[key]
          if suffix == "_bucket" then
            s.buckets[#s.buckets + 1] = { le = le_value(assert(le, line)), count = assert(tonumber(value), line) }
          elseif suffix == "_sum" then
            s.sum = assert(tonumber(value), line)
          else
            s.count = assert(tonumber(value), line)
          end
          found[family] = true
        end
      end
    end
  end
  return families, found
end

describe("/metrics against promtool", function()
  local server
  setup(function()
    server = harness.start(string.format("{host = '127.0.0.1', port = 0, threads = 2, models = %q, quiet = true, "
      .. "drain_delay_ms = 0}", repo))
  end)
  teardown(function()
    if server then server:stop() end
    os.execute("rm -rf " .. repo)
  end)

  it("passes `promtool check metrics` after 200s, a 400, 404s and a 405, with well-formed histograms", function()
    local json = "-H 'Content-Type: application/json'"
    for i = 1, 6 do assert.are.equal(200, (server:post("/v2/models/mlp/infer", infer_body(i), json))) end
    -- concurrent ones, so that batches of more than one row may run
    local bodies = {}
    for i = 1, 8 do bodies[i] = infer_body(10 + i) end
    for _, answer in ipairs(server:post_parallel("/v2/models/mlp/infer", bodies)) do
      assert.truthy(cjson.decode(answer).outputs, answer)
    end
    assert.are.equal(400, (server:post("/v2/models/mlp/infer", "{\"inputs\": [", json)))
    assert.are.equal(404, (server:curl(server:url("/v3/nothing"))))
    assert.are.equal(404, (server:post("/v2/models/nothing/infer", infer_body(1), json)))
    assert.are.equal(405, (server:curl(server:url("/v2/models/mlp/infer"))))

    local status, text, headers = server:curl(server:url("/metrics"))
    assert.are.equal(200, status)
    assert.truthy(headers["content-type"]:find("text/plain; version=0.0.4", 1, true))
    assert.truthy(text:find('lunet_requests_total{model="mlp",code="400"} 1', 1, true), text)

    local exit, output = promtool_check(text)
    assert.are.equal(0, exit, "promtool check metrics exited " .. tostring(exit) .. ":\n" .. output)
    assert.are.equal("", output, "promtool check metrics complained:\n" .. output)

    local families, found = histograms(text)
    for _, family in ipairs({ "lunet_request_duration_seconds", "lunet_queue_duration_seconds",
      "lunet_compute_duration_seconds", "lunet_batch_size" }) do
      assert.truthy(found[family], family .. " has no series")
    end
    for family, series in pairs(families) do
      for key, s in pairs(series) do
        local where = family .. "{" .. key .. "}"
        assert.is_true(#s.buckets >= 2, where .. ": fewer than two buckets")
        for k = 2, #s.buckets do
          assert.is_true(s.buckets[k].le > s.buckets[k - 1].le, where .. ": le not increasing at bucket " .. k)
          assert.is_true(s.buckets[k].count >= s.buckets[k - 1].count,
            where .. ": cumulative count falls at le=" .. s.buckets[k].le)
        end
        assert.are.equal(math.huge, s.buckets[#s.buckets].le, where .. ": the last bucket is not +Inf")
        assert.are.equal(s.count, s.buckets[#s.buckets].count, where .. ": +Inf bucket against _count")
        assert.is_true(s.sum ~= nil and s.sum >= 0, where .. ": no _sum")
      end
    end
    -- the requests to mlp's infer path are in its series: 14 answered with 200, the 400, the 405
    assert.are.equal(16, families.lunet_request_duration_seconds['model="mlp"'].count)
    assert.truthy(text:find('lunet_requests_total{model="mlp",code="405"} 1', 1, true), text)
    assert.are.equal(14, families.lunet_batch_size['model="mlp"'].sum)
  end)
end)
