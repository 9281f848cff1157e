-- The HTTP model server (core/src/serve) as clients see it: a real server on a free port in
-- a child interpreter, serving a repository of real models, asked with curl and raw sockets
-- (spec/serve_harness.lua).  Answers are checked against the same models run here.
local cjson = require("cjson")
local socket = require("socket")
local lunet = require("lunet")
local harness = require("spec.serve_harness")

local nn = lunet.nn
local _, test_set = lunet.data.fashion_mnist()

-- A repository: mlp versions 1 and 2 (different weights), mlp_int8 (static int8 of version 2)
-- "patient", which waits 300 ms for a batch to fill (for the deadline test), and "narrow", whose
-- batches wait a second and hold one request (for the queue-full test).
local repo = os.tmpname()
os.remove(repo)
local function save(model, name, version)
  os.execute(string.format("mkdir -p %s/%s/%d", repo, name, version))
  model:save(string.format("%s/%s/%d/model.safetensors", repo, name, version), { input_shape = { 1, 28, 28 } })
end
local function mlp(seed)
  lunet.manual_seed(seed)
  return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)):eval()
end
local models = { [1] = mlp(1), [2] = mlp(2) }
save(models[1], "mlp", 1)
save(models[2], "mlp", 2)
models.int8 = lunet.quantize(models[2], { calibration = test_set.x:narrow(1, 1, 256) })
save(models.int8, "mlp_int8", 1)
save(models[1], "patient", 1)
harness.write_file(repo .. "/patient/config.lua", "return {max_queue_delay_us = 300000}")
save(models[1], "narrow", 1)
harness.write_file(repo .. "/narrow/config.lua", "return {max_queue_delay_us = 1000000, max_queue_size = 1}")

-- Image i of the test set: its pixels as a flat list, and the graph's answer for it alone.
local function image(i) return test_set.x:narrow(1, i, 1) end
local function pixels(i) return image(i):reshape(-1):totable() end
local graphs = {}
local function expected(which, i)
  graphs[which] = graphs[which] or lunet.compile(models[which], { 1, 28, 28 })
  return graphs[which]:forward(image(i)):reshape(-1):totable()
end

local function as_f32(x) return (string.unpack("<f", string.pack("<f", x))) end
local function assert_f32_equal(want, got)
  assert.are.equal(#want, #got)
  for k = 1, #want do assert.are.equal(as_f32(want[k]), as_f32(got[k]), "value " .. k) end
end
-- A row run in a batch of another size may differ from its run alone in the last bits: oneDNN
-- picks its f32 GEMM kernel by the number of rows, and kernels sum in different orders.
local function assert_close(want, got)
  assert.are.equal(#want, #got)
  for k = 1, #want do
    local tol = 1e-5 * (1 + math.abs(want[k]))
    assert.is_true(math.abs(want[k] - got[k]) <= tol, string.format("value %d: %.9g, expected %.9g", k, got[k],
      want[k]))
  end
end

local function infer_request(i, extra)
  local r = { inputs = { { name = "input", shape = { 1, 784 }, datatype = "FP32", data = pixels(i) } } }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- A binary tensor request body: JSON header, then the raw little-endian tensor bytes.
local function binary_body(header, values, fmt)
  local json = cjson.encode(header)
  local parts = {}
  for k, v in ipairs(values) do parts[k] = string.pack(fmt, v) end
  return json, json .. table.concat(parts)
end

describe("lunet.serve", function()
  local server
  setup(function()
    server = harness.start(string.format("{host = '127.0.0.1', port = 0, threads = 2, models = %q, "
      .. "max_header_bytes = 4096, max_body_bytes = 4000000, header_timeout_ms = 1500, drain_delay_ms = 0}", repo))
  end)
  teardown(function()
    if server then server:stop() end
    os.execute("rm -rf " .. repo)
  end)

  describe("server routes", function()
    it("answers the OIP v2 server metadata and health paths", function()
      local status, body, headers = server:curl(server:url("/v2"))
      assert.are.equal(200, status)
      assert.are.equal("application/json", headers["content-type"])
      local meta = cjson.decode(body)
      assert.are.equal("lunet", meta.name)
      assert.are.equal(lunet.version, meta.version)
      assert.are.same({ "binary_tensor_data" }, meta.extensions)
      status, body = server:curl(server:url("/v2/health/live"))
      assert.are.equal(200, status)
      assert.are.same({ live = true }, cjson.decode(body))
      status, body = server:curl(server:url("/v2/health/ready"))
      assert.are.equal(200, status)
      assert.are.same({ ready = true }, cjson.decode(body))
    end)

    it("answers HEAD with GET's headers and no body", function()
      local status, body, headers = server:curl("-I " .. server:url("/v2/health/live"))
      assert.are.equal(200, status)
      assert.falsy(body:find("live", 1, true))
      assert.are.equal("13", headers["content-length"])
    end)

    it("says 404 for an unknown path and 405 with Allow for a wrong method, as JSON errors", function()
      local status, body = server:curl(server:url("/v3/nothing"))
      assert.are.equal(404, status)
      assert.are.equal("no such route", cjson.decode(body).error)
      local headers
      status, body, headers = server:curl("-X POST " .. server:url("/v2/health/live"))
      assert.are.equal(405, status)
      assert.truthy(cjson.decode(body).error:find("POST is not allowed"))
      assert.are.equal("GET, HEAD", headers["allow"])
      status, body, headers = server:curl(server:url("/v2/models/mlp/infer"))
      assert.are.equal(405, status)
      assert.are.equal("GET is not allowed here; use POST", cjson.decode(body).error)
      assert.are.equal("POST", headers["allow"])
    end)

    it("keeps a connection alive across requests and logs each as a JSON line", function()
      local _, body, _, codes = server:curl("-H 'X-Request-Id: abc-123' " .. server:url("/v2/health/live")
        .. " -o /dev/null " .. server:url("/v2/health/ready"))
      assert.are.equal("200200", codes)
      assert.are.equal('{"live":true}', body)
      local found
      for line in server:log():gmatch("[^\n]+") do
        if line:sub(1, 1) == "{" then
          local entry = cjson.decode(line)
          if entry.request_id == "abc-123" then found = entry end
        end
      end
      assert.truthy(found)
      assert.are.equal("GET", found.method)
      assert.are.equal(200, found.status)
      assert.is_number(found.duration_ms)
    end)

    it("echoes X-Request-Id or makes one up, and says in Server-Timing where an inference's time went", function()
      local _, _, echoed = server:curl("-H 'X-Request-Id: trace-42' " .. server:url("/v2/health/live"))
      assert.are.equal("trace-42", echoed["x-request-id"])
      local _, _, first = server:curl(server:url("/v2/health/live"))
      local _, _, second = server:curl("-H 'X-Request-Id: has space' " .. server:url("/v2/health/live"))
      assert.truthy(first["x-request-id"]:match("^%x+%-%x+%-%x+$"), first["x-request-id"])
      assert.truthy(second["x-request-id"]:match("^%x+%-%x+%-%x+$"), second["x-request-id"])
      assert.are_not.equal(first["x-request-id"], second["x-request-id"])
      assert.truthy(server:log():find('"request_id":"' .. first["x-request-id"] .. '"', 1, true))
      local status, _, headers = server:post_json("/v2/models/mlp/infer", infer_request(1))
      assert.are.equal(200, status)
      local queue, compute = headers["server-timing"]:match("^queue;dur=([%d.]+), compute;dur=([%d.]+)$")
      assert.truthy(queue and compute, headers["server-timing"])
      assert.is_true(tonumber(queue) >= 0 and tonumber(compute) > 0)
    end)

    it("counts and names a malformed request on its own, not as the request before it", function()
      local mlp_400 = 'lunet_requests_total{model="mlp",code="400"}'
      local other_400 = 'lunet_requests_total{model="",code="400"}'
      local mlp_before, other_before = server:metric(mlp_400), server:metric(other_400)
      local c = server:connect()
      local body = cjson.encode(infer_request(2))
      c:send("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
      local s1, h1 = harness.read_response(c)
      c:send("\1 nonsense\r\n\r\n") -- not even a method: the parser never starts a request
      local s2, h2 = harness.read_response(c)
      c:close()
      assert.are.same({ 200, 400 }, { s1, s2 })
      assert.are_not.equal(h1["x-request-id"], h2["x-request-id"])
      assert.are.equal(mlp_before, server:metric(mlp_400))
      assert.are.equal(other_before + 1, server:metric(other_400))
    end)

    it("answers pipelined requests in order on one connection", function()
      local c = server:connect()
      c:send("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
      local s1, _, b1 = harness.read_response(c)
      local s2 = harness.read_response(c)
      local s3, _, b3 = harness.read_response(c)
      c:close()
      assert.are.same({ 200, 404, 200 }, { s1, s2, s3 })
      assert.are.equal('{"live":true}', b1)
      assert.are.equal('{"ready":true}', b3)
    end)

    it("answers every request sent before the client closed its side, then closes", function()
      -- inference requests too: they wait in patient's batch (300 ms) while the end of the
      -- stream is read
      local c = server:connect()
      local body = cjson.encode(infer_request(3))
      local infer = "POST /v2/models/patient/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
      c:send(infer .. "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" .. infer)
      c:shutdown("send")
      local s1, _, b1 = harness.read_response(c)
      local s2 = harness.read_response(c)
      local s3, _, b3 = harness.read_response(c)
      local s4, err = harness.read_response(c)
      c:close()
      assert.are.same({ 200, 200, 200 }, { s1, s2, s3 })
      assert.are.equal(b1, b3)
      assert_close(expected(1, 3), cjson.decode(b1).outputs[1].data)
      assert.is_nil(s4)
      assert.are.equal("closed", err)
    end)

    it("answers nothing after a response that closes the connection", function()
      -- bytes that are no request after a good one: one 400, then the connection closes
      local c = server:connect()
      c:send("GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n{}")
      local s1 = harness.read_response(c)
      local s2, h2 = harness.read_response(c)
      local s3 = harness.read_response(c)
      c:close()
      assert.are.same({ 200, 400, "close" }, { s1, s2, h2 and h2.connection })
      assert.is_nil(s3)
      -- a request pipelined after "Connection: close" is not answered (RFC 9112 9.6)
      c = server:connect()
      c:send("GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
      s1 = harness.read_response(c)
      s2 = harness.read_response(c)
      c:close()
      assert.are.equal(200, s1)
      assert.is_nil(s2)
    end)
  end)

  describe("models", function()
    it("describes a model (newest version by default) and says it is ready", function()
      local status, body = server:curl(server:url("/v2/models/mlp"))
      assert.are.equal(200, status)
      assert.are.same({
        name = "mlp", versions = { "1", "2" }, platform = "lunet",
        inputs = { { name = "input", datatype = "FP32", shape = { -1, 1, 28, 28 } } },
        outputs = { { name = "output", datatype = "FP32", shape = { -1, 10 } } },
      }, cjson.decode(body))
      status = server:curl(server:url("/v2/models/mlp/versions/1"))
      assert.are.equal(200, status)
      status, body = server:curl(server:url("/v2/models/mlp_int8/ready"))
      assert.are.equal(200, status)
      assert.are.same({ name = "mlp_int8", ready = true }, cjson.decode(body))
      status, body = server:curl(server:url("/v1/models/mlp"))
      assert.are.equal(200, status)
      local versions = cjson.decode(body).model_version_status
      assert.are.equal(2, #versions)
      assert.are.same({ version = "1", state = "AVAILABLE", status = { error_code = "OK", error_message = "" } },
        versions[1])
    end)

    it("says 404 for an unknown model or version", function()
      local status, body = server:curl(server:url("/v2/models/nope"))
      assert.are.equal(404, status)
      assert.are.equal('unknown model "nope"', cjson.decode(body).error)
      status, body = server:curl(server:url("/v2/models/mlp/versions/9"))
      assert.are.equal(404, status)
      assert.are.equal('model "mlp" has no version "9"', cjson.decode(body).error)
      status = server:post_json("/v2/models/mlp/versions/x/infer", infer_request(1))
      assert.are.equal(404, status)
      status = server:post_json("/v1/models/nope:predict", { instances = { pixels(1) } })
      assert.are.equal(404, status)
    end)
  end)

  describe("inference", function()
    it("answers OIP v2 infer with the model's outputs, the id echoed and the version that ran", function()
      local status, answer = server:post_json("/v2/models/mlp/infer", infer_request(1, { id = "req-7" }))
      assert.are.equal(200, status)
      assert.are.equal("mlp", answer.model_name)
      assert.are.equal("2", answer.model_version)
      assert.are.equal("req-7", answer.id)
      local out = answer.outputs[1]
      assert.are.same({ "output", "FP32", { 1, 10 } }, { out.name, out.datatype, out.shape })
      assert_f32_equal(expected(2, 1), out.data)
      status, answer = server:post_json("/v2/models/mlp/versions/1/infer", infer_request(1))
      assert.are.equal(200, status)
      assert.are.equal("1", answer.model_version)
      assert.is_nil(answer.id)
      assert_f32_equal(expected(1, 1), answer.outputs[1].data)
    end)

    it("serves an int8 model", function()
      local status, answer = server:post_json("/v2/models/mlp_int8/infer", infer_request(3))
      assert.are.equal(200, status)
      assert_f32_equal(expected("int8", 3), answer.outputs[1].data)
    end)

    it("gives identical outputs for nested and flat data, and for a batch and its rows", function()
      local a, b = pixels(4), pixels(5)
      local nested = { {}, {} }
      for r = 1, 28 do
        nested[1][r], nested[2][r] = {}, {}
        for c = 1, 28 do nested[1][r][c], nested[2][r][c] = a[(r - 1) * 28 + c], b[(r - 1) * 28 + c] end
      end
      local flat = {}
      for k = 1, 784 do flat[k], flat[784 + k] = a[k], b[k] end
      local s1, one = server:post_json("/v2/models/mlp/infer",
        { inputs = { { name = "input", shape = { 2, 1, 28, 28 }, datatype = "FP32", data = nested } } })
      local s2, two = server:post_json("/v2/models/mlp/infer",
        { inputs = { { name = "input", shape = { 2, 784 }, datatype = "FP32", data = flat } } })
      assert.are.same({ 200, 200 }, { s1, s2 })
      assert.are.same({ 2, 10 }, one.outputs[1].shape)
      assert.are.same(one.outputs[1].data, two.outputs[1].data)
      local rows = {}
      for k = 1, 10 do rows[k] = expected(2, 4)[k] end
      for k = 1, 10 do rows[10 + k] = expected(2, 5)[k] end
      assert_close(rows, one.outputs[1].data)
    end)

    it("gives bit-identical outputs for JSON and binary tensor data", function()
      local _, json_answer = server:post_json("/v2/models/mlp/infer", infer_request(6))
      local header, body = binary_body({
        inputs = { { name = "input", shape = { 1, 784 }, datatype = "FP32", parameters = { binary_data_size = 3136 } } },
        outputs = { { name = "output", parameters = { binary_data = true } } },
      }, pixels(6), "<f")
      local status, text, headers = server:post("/v2/models/mlp/infer", body,
        "-H 'Inference-Header-Content-Length: " .. #header .. "'")
      assert.are.equal(200, status)
      assert.are.equal("application/octet-stream", headers["content-type"])
      local json_len = tonumber(headers["inference-header-content-length"])
      local answer = cjson.decode(text:sub(1, json_len))
      assert.are.same({ binary_data_size = 40 }, answer.outputs[1].parameters)
      assert.is_nil(answer.outputs[1].data)
      local raw = text:sub(json_len + 1)
      assert.are.equal(40, #raw)
      for k = 1, 10 do
        assert.are.equal(as_f32(json_answer.outputs[1].data[k]), (string.unpack("<f", raw, (k - 1) * 4 + 1)))
      end
    end)

    it("converts FP64, INT8, INT32, INT64 and UINT8 inputs to what the model takes", function()
      local bytes = {}
      for k, v in ipairs(pixels(7)) do bytes[k] = math.floor(v * 255 + 0.5) end
      local answers = {}
      for _, datatype in ipairs({ "FP32", "FP64", "INT32", "INT64", "UINT8" }) do
        local status, answer = server:post_json("/v2/models/mlp/infer",
          { inputs = { { name = "input", shape = { 1, 784 }, datatype = datatype, data = bytes } } })
        assert.are.equal(200, status, datatype)
        answers[#answers + 1] = answer.outputs[1].data
      end
      for k = 2, #answers do assert.are.same(answers[1], answers[k]) end
      local header, body = binary_body({ inputs = { { name = "input", shape = { 1, 784 }, datatype = "UINT8",
        parameters = { binary_data_size = 784 } } } }, bytes, "B")
      local status, text = server:post("/v2/models/mlp/infer", body, "-H 'Inference-Header-Content-Length: "
        .. #header .. "'")
      assert.are.equal(200, status)
      assert.are.same(answers[1], cjson.decode(text).outputs[1].data)
      local signed = {}
      for k, v in ipairs(bytes) do signed[k] = v - 128 end
      status = server:post_json("/v2/models/mlp/infer",
        { inputs = { { name = "input", shape = { 1, 784 }, datatype = "INT8", data = signed } } })
      assert.are.equal(200, status)
    end)

    it("sends only the outputs asked for", function()
      local body = cjson.encode(infer_request(1)):gsub("}$", ',"outputs":[]}')
      local status, text = server:post("/v2/models/mlp/infer", body)
      assert.are.equal(200, status)
      assert.truthy(text:find('"outputs":[]', 1, true))
      local answer
      status, answer = server:post_json("/v2/models/mlp/infer", infer_request(1, { outputs = { { name = "probs" } } }))
      assert.are.equal(400, status)
      assert.are.equal('outputs[0].name "probs" is not an output of the model; its output is "output"', answer.error)
    end)

    it("answers TF Serving predict in row and column formats", function()
      local status, answer = server:post_json("/v1/models/mlp:predict", { instances = { pixels(1), pixels(2) } })
      assert.are.equal(200, status)
      assert.are.equal(2, #answer.predictions)
      assert_close(expected(2, 2), answer.predictions[2])
      status, answer = server:post_json("/v1/models/mlp/versions/1:predict", { inputs = { input = { pixels(1) } } })
      assert.are.equal(200, status)
      assert_f32_equal(expected(1, 1), answer.outputs[1])
      status, answer = server:post_json("/v1/models/mlp:predict", { instances = { { input = pixels(3) } } })
      assert.are.equal(200, status)
      assert_f32_equal(expected(2, 3), answer.predictions[1])
    end)

    it("batches 64 concurrent distinct requests, each answered as if alone", function()
      local bodies = {}
      for i = 1, 64 do bodies[i] = cjson.encode(infer_request(100 + i, { id = tostring(i) })) end
      for _, case in ipairs({ { "mlp", 2 }, { "patient", 1 } }) do
        local batches = 'lunet_batches_total{model="' .. case[1] .. '"}'
        local before = server:metric(batches)
        local answers = server:post_parallel("/v2/models/" .. case[1] .. "/infer", bodies)
        for i = 1, 64 do
          local answer = cjson.decode(answers[i])
          assert.are.equal(tostring(i), answer.id, answers[i])
          assert_close(expected(case[2], 100 + i), answer.outputs[1].data)
        end
        local ran = server:metric(batches) - before
        -- patient waits 300 ms for a batch to fill: the 64 arrive well within that
        assert.is_true(ran >= 1 and ran <= (case[1] == "patient" and 8 or 64), case[1] .. " ran " .. ran .. " batches")
      end
    end)

    it("answers 504 to a request whose timeout_ms passes before its batch runs", function()
      local status, answer = server:post_json("/v2/models/patient/infer",
        infer_request(1, { parameters = { timeout_ms = 50 } }))
      assert.are.equal(504, status)
      assert.truthy(answer.error:find("longer than its timeout_ms of 50", 1, true))
      status = server:post_json("/v2/models/patient/infer", infer_request(1, { parameters = { timeout_ms = 10000 } }))
      assert.are.equal(200, status)
    end)

    it("answers 503 with Retry-After when a model's queue is full, and serves the rest", function()
      -- Three connections over the server's two loops: two share a loop, whose batch (held a
      -- second for more rows) already holds the one request it may.
      local rejected = 'lunet_rejected_requests_total{model="narrow",reason="queue_full"}'
      local before = server:metric(rejected)
      local conns, body = {}, cjson.encode(infer_request(7))
      for i = 1, 3 do conns[i] = server:connect() end
      for i = 1, 3 do
        assert(conns[i]:send("POST /v2/models/narrow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          .. "Content-Length: " .. #body .. "\r\n\r\n" .. body))
      end
      local full = 0
      for i = 1, 3 do
        local status, headers, answer = harness.read_response(conns[i])
        conns[i]:close()
        if status == 503 then
          full = full + 1
          assert.are.equal("1", headers["retry-after"])
          assert.truthy(cjson.decode(answer).error:find("the queue of model narrow is full (1 requests)", 1, true))
        else
          assert.are.equal(200, status, answer)
          assert_close(expected(1, 7), cjson.decode(answer).outputs[1].data)
        end
      end
      assert.is_true(full >= 1 and full <= 2, full .. " requests were refused")
      assert.are.equal(before + full, server:metric(rejected))
    end)

    it("counts in /metrics exactly the requests sent", function()
      local series = 'lunet_requests_total{model="mlp_int8",code="200"}'
      local before = server:metric(series)
      local bad_before = server:metric('lunet_requests_total{model="mlp_int8",code="400"}')
      for i = 1, 5 do server:post_json("/v2/models/mlp_int8/infer", infer_request(i)) end
      server:post("/v2/models/mlp_int8/infer", "{")
      assert.are.equal(before + 5, server:metric(series))
      assert.are.equal(bad_before + 1, server:metric('lunet_requests_total{model="mlp_int8",code="400"}'))
      local _, text, headers = server:curl(server:url("/metrics"))
      assert.truthy(headers["content-type"]:find("text/plain; version=0.0.4", 1, true))
      for _, name in ipairs({ "lunet_request_duration_seconds_bucket", "lunet_queue_duration_seconds_bucket",
        "lunet_compute_duration_seconds_bucket", "lunet_batch_size_bucket", "lunet_inferences_total",
        "lunet_requests_in_flight", "lunet_queue_size", "lunet_rejected_requests_total" }) do
        assert.truthy(text:find(name, 1, true), name)
      end
      assert.truthy(server:metric('lunet_requests_total{model="_unknown",code="404"}') >= 1)
    end)
  end)

  describe("bad input", function()
    -- Each answer is a status and {"error": ...}; the server keeps serving after each.
    local function assert_error(status, pattern, got_status, body)
      assert.are.equal(status, got_status)
      local message = type(body) == "table" and body.error or cjson.decode(body).error
      assert.truthy(message:find(pattern), message)
      assert.are.equal(200, (server:curl(server:url("/v2/health/live"))))
    end

    local function infer_raw(body, extra) return server:post("/v2/models/mlp/infer", body, extra) end

    it("malformed, truncated, deeply nested JSON and NaN tokens are 400", function()
      local status, body = infer_raw("{\"inputs\": [")
      assert_error(400, "request body byte 12: expected a value, found the end of the text", status, body)
      status, body = infer_raw(cjson.encode(infer_request(1)):sub(1, 500))
      assert_error(400, "request body byte 500", status, body)
      status, body = infer_raw(string.rep("[", 100000) .. string.rep("]", 100000))
      assert_error(400, "nested more than 16 deep", status, body)
      status, body = infer_raw('{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":[NaN]}]}')
      assert_error(400, "expected a value, found 'N'", status, body)
      status, body = infer_raw("[1, 2]")
      assert_error(400, "the request body is an array; it must be a JSON object", status, body)
    end)

    it("shapes that disagree with the data or the model, overflow, or go negative are 400", function()
      local r = infer_request(1)
      r.inputs[1].shape = { 2, 784 }
      local status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, "inputs%[0%]%.data has 784 values; its shape needs 1568", status, body)
      r.inputs[1].shape = { 1, 783 }
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, "the model's input is %[batch, 1, 28, 28%] %(784 values%)", status, body)
      r.inputs[1].shape = { 1, 4294967296, 4294967296, 784 }
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, "more than 2%^63", status, body)
      r.inputs[1].shape = { 1000000000000, 784 }
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, "declares 1000000000000 samples of 784 values, more than its", status, body)
      status, body = server:post_json("/v1/models/mlp:predict", { instances = { 0, 0, 0, 0, 0, 0, 0, 0 } })
      assert_error(400, "declares 8 samples of 784 values", status, body)
      r.inputs[1].shape = { 1, -784 }
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, "inputs%[0%]%.shape%[1%] is %-784; dims must not be negative", status, body)
      r.inputs[1].shape = { 1, 784 }
      r.inputs[1].datatype = "FP16"
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, 'datatype "FP16" is not one of', status, body)
      r.inputs[1].datatype = "UINT8"
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, "which is not UINT8", status, body)
      r.inputs[1].datatype, r.inputs[1].name = "FP32", "x"
      status, body = server:post_json("/v2/models/mlp/infer", r)
      assert_error(400, 'inputs%[0%]%.name "x" is not the model\'s input', status, body)
    end)

    it("binary_data_size that disagrees with the header length or the shape is 400", function()
      local header, body = binary_body({ inputs = { { name = "input", shape = { 1, 784 }, datatype = "FP32",
        parameters = { binary_data_size = 3000 } } } }, pixels(1), "<f")
      local status, text = infer_raw(body, "-H 'Inference-Header-Content-Length: " .. #header .. "'")
      assert_error(400, "binary_data_size is 3000, but the body has 3136 bytes after its JSON header", status, text)
      header, body = binary_body({ inputs = { { name = "input", shape = { 2, 784 }, datatype = "FP32",
        parameters = { binary_data_size = 3136 } } } }, pixels(1), "<f")
      status, text = infer_raw(body, "-H 'Inference-Header-Content-Length: " .. #header .. "'")
      assert_error(400, "need 6272 bytes", status, text)
      status, text = infer_raw(body, "-H 'Inference-Header-Content-Length: 99999'")
      assert_error(400, "Inference%-Header%-Content%-Length is 99999, more than the body's", status, text)
      status, text = infer_raw(body, "-H 'Inference-Header-Content-Length: 12abc'")
      assert_error(400, "Inference%-Header%-Content%-Length must be a byte count", status, text)
    end)

    it("a huge Content-Length is 413 before the body is read", function()
      local status, body, headers = server:curl("-X POST -H 'Expect: 100-continue' -H 'Content-Length: 5000000000' "
        .. server:url("/v2/models/mlp/infer"))
      assert.are.equal("close", headers["connection"])
      assert_error(413, "body is larger", status, body)
    end)

    it("Content-Length with Transfer-Encoding is 400, headers over the limit 431", function()
      local status, body = server:curl("-H 'Content-Length: 5' -H 'Transfer-Encoding: chunked' --data-binary 12345 "
        .. server:url("/v2/models/mlp/infer"))
      assert_error(400, "malformed HTTP request", status, body)
      status, body = server:curl("-H 'X-Big: " .. string.rep("a", 5000) .. "' " .. server:url("/v2"))
      assert_error(431, "headers are larger", status, body)
    end)

    it("a client sending its headers a byte at a time too slowly gets 408", function()
      local c = server:connect()
      local request = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
      local started = socket.gettime()
      local status, body
      for k = 1, #request do
        if not c:send(request:sub(k, k)) then break end
        c:settimeout(0.4)
        local line = c:receive("*l")
        c:settimeout(10)
        if line then
          status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
          local _, rest = pcall(function()
            local headers = {}
            while true do
              local h = c:receive("*l")
              if not h or h == "" then break end
              local k2, v = h:match("^([^:]+):%s*(.*)$")
              headers[k2:lower()] = v
            end
            return c:receive(tonumber(headers["content-length"]))
          end)
          body = rest
          break
        end
      end
      c:close()
      assert.is_true(socket.gettime() - started < 5)
      assert_error(408, "headers took too long", status, body)
    end)
  end)

  it("drains on SIGTERM: readiness 503 at once, serves on, closes the listener, finishes, returns", function()
    local other = harness.start(string.format("{host = '127.0.0.1', port = 0, models = %q, quiet = true, "
      .. "drain_delay_ms = 800, shutdown_timeout_ms = 5000}", repo))
    local waiting, probe = other:connect(), other:connect()
    -- a request that waits 300 ms in patient's batch, across the signal
    local body = cjson.encode(infer_request(5))
    assert(waiting:send("POST /v2/models/patient/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body
      .. "\r\n\r\n" .. body))
    -- The signal reaches the server's loop a moment after kill returns: readiness is asked
    -- until it says 503, which must be within 100 ms.
    os.execute("kill -TERM " .. other.pid)
    local signalled = socket.gettime()
    local ready_status, ready_after
    repeat
      assert(probe:send("GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"))
      ready_status = harness.read_response(probe)
      ready_after = socket.gettime() - signalled
    until ready_status ~= 200 or ready_after > 0.1
    assert.are.equal(503, ready_status)
    assert.is_true(ready_after < 0.1, "readiness said 503 after " .. ready_after .. " s")
    -- during the drain delay new connections are still served
    assert.are.equal(200, (other:curl(other:url("/v2/health/live"))))
    local status, _, answer = harness.read_response(waiting)
    assert.are.equal(200, status, answer)
    assert_close(expected(1, 5), cjson.decode(answer).outputs[1].data)
    -- after it, a request on an open connection is answered with Connection: close, and the
    -- listener is gone
    os.execute("sleep 0.6")
    assert(probe:send("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"))
    local headers
    status, headers = harness.read_response(probe)
    assert.are.same({ 200, "close" }, { status, headers.connection })
    assert.is_nil(socket.connect("127.0.0.1", other.port))
    waiting:close()
    probe:close()
    local exited = false
    for _ = 1, 100 do
      if not os.execute("kill -0 " .. other.pid .. " 2>/dev/null") then exited = true break end
      os.execute("sleep 0.05")
    end
    assert.is_true(exited, "the server had not exited 5 s after its connections closed")
    assert.truthy(other:log():find("lunet.serve returned", 1, true), other:log())
  end)
end)
