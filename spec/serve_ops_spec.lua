-- The server in operation (issue 7): a watched repository whose versions come, change, break
-- and go while clients are served, and bearer tokens that rotate without a restart.  Real
-- servers in child interpreters, asked with curl and raw sockets (spec/serve_harness.lua).
local cjson = require("cjson")
local lunet = require("lunet")
local harness = require("spec.serve_harness")

local nn = lunet.nn
local _, test_set = lunet.data.fashion_mnist()

local function mlp(seed)
  lunet.manual_seed(seed)
  return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)):eval()
end

local helpers = require("spec.helpers")
local scratch_dir, remove_dir = helpers.make_directory, helpers.remove_directory

-- A server on a free port with two event loops serving the repository, told to stop at once
-- on SIGTERM; `more` adds options (Lua source, after a comma).
local function start(repo, more)
  return harness.start(string.format("{host = '127.0.0.1', port = 0, threads = 2, models = %q, drain_delay_ms = 0, "
    .. "quiet = true, %s}", repo, more or ""))
end

-- Saves model as version `version` of `name` by writing it beside the repository and renaming
-- it in, as an operator rolling out a version would: the server never sees half a file.
local function roll_out(repo, name, version, model_or_bytes)
  local staging = scratch_dir()
  local file = staging .. "/model.safetensors"
  if type(model_or_bytes) == "string" then
    harness.write_file(file, model_or_bytes)
  else
    model_or_bytes:save(file, { input_shape = { 1, 28, 28 } })
  end
  assert(os.execute(string.format("mkdir -p %s/%s", repo, name)))
  local target = string.format("%s/%s/%d", repo, name, version)
  if io.open(target .. "/model.safetensors", "rb") then -- a new file for a version served
    assert(os.rename(file, target .. "/model.safetensors"))
    remove_dir(staging)
  else
    assert(os.rename(staging, target))
  end
end

local function pixels(i) return test_set.x:narrow(1, i, 1):reshape(-1):totable() end
local function expected(model, i)
  return lunet.compile(model, { 1, 28, 28 }):forward(test_set.x:narrow(1, i, 1)):reshape(-1):totable()
end
local function body(i)
  return cjson.encode({ inputs = { { name = "input", shape = { 1, 784 }, datatype = "FP32", data = pixels(i) } } })
end

local function assert_close(want, got)
  assert.are.equal(#want, #got)
  for k = 1, #want do
    assert.is_true(math.abs(want[k] - got[k]) <= 1e-5 * (1 + math.abs(want[k])),
      string.format("value %d: %.9g, expected %.9g", k, got[k], want[k]))
  end
end

-- Asks until check(...) holds, for at most `seconds`; returns whether it did.
local function eventually(seconds, check)
  for _ = 1, seconds * 20 do
    if check() then return true end
    os.execute("sleep 0.05")
  end
  return false
end

describe("a watched model repository", function()
  local repo, server
  local models = { mlp(11), mlp(12), mlp(13) }
  setup(function()
    repo = scratch_dir()
    roll_out(repo, "hot", 1, models[1])
    -- poll_ms is a minute: whatever the server picks up within seconds, it saw through the
    -- file-system watch.
    server = start(repo, "poll_ms = 60000")
  end)
  teardown(function()
    if server then server:stop() end
    remove_dir(repo)
  end)

  local function infer(path, i)
    local status, text = server:post(path, body(i or 1), "-H 'Content-Type: application/json'")
    local ok, answer = pcall(cjson.decode, text)
    return status, ok and answer or text
  end

  it("swaps in a version renamed into it while requests are in flight, failing none", function()
    local status, answer = infer("/v2/models/hot/infer")
    assert.are.equal(200, status)
    assert.are.equal("1", answer.model_version)
    -- Rounds of 40 requests, 8 at a time on their own connections, from before version 2 rolls
    -- out until after it answers: every one must be a whole 200 from version 1 or 2.
    local work = scratch_dir()
    harness.write_file(work .. "/request", body(3))
    local config = {}
    for k = 1, 40 do
      config[#config + 1] = string.format('%surl = "%s"\ndata-binary = "@%s/request"\noutput = "o%d"\nsilent\n'
        .. 'write-out = "%%{http_code}\\n"\n', k > 1 and "next\n" or "", server:url("/v2/models/hot/infer"), work, k)
    end
    harness.write_file(work .. "/config", table.concat(config))
    os.execute(string.format("(cd %s && i=0 && while [ ! -e stop ]; do i=$((i+1)); mkdir r$i; "
      .. "(cd r$i && env -u LD_PRELOAD curl -s -m 60 --parallel --parallel-max 8 -K ../config > codes 2>/dev/null); "
      .. "done; touch done) &", work))
    os.execute("sleep 0.3")
    roll_out(repo, "hot", 2, models[2])
    assert.is_true(eventually(10, function()
      local s, a = infer("/v2/models/hot/infer")
      return s == 200 and a.model_version == "2"
    end), "version 2 did not take over")
    os.execute("sleep 0.3")
    harness.write_file(work .. "/stop", "")
    assert.is_true(eventually(60, function() return io.open(work .. "/done") ~= nil end))
    local want = { ["1"] = expected(models[1], 3), ["2"] = expected(models[2], 3) }
    local seen, last = { ["1"] = 0, ["2"] = 0 }, nil
    for round = 1, math.huge do
      local codes = io.open(string.format("%s/r%d/codes", work, round))
      if not codes then break end
      last = round
      for line in codes:lines() do assert.are.equal("200", line) end
      codes:close()
      for k = 1, 40 do
        local a = cjson.decode(harness.read_file(string.format("%s/r%d/o%d", work, round, k)))
        assert.is_truthy(want[a.model_version], "answered by version " .. tostring(a.model_version))
        assert_close(want[a.model_version], a.outputs[1].data)
        seen[a.model_version] = seen[a.model_version] + 1
      end
    end
    remove_dir(work)
    assert.is_true(seen["1"] > 0 and seen["2"] > 0,
      string.format("the load saw versions 1 and 2: %d and %d answers in %d rounds", seen["1"], seen["2"], last or 0))
    local _, meta = server:curl(server:url("/v2/models/hot"))
    assert.are.same({ "1", "2" }, cjson.decode(meta).versions)
    assert.are.equal(2, server:metric('lunet_model_loads_total{model="hot",result="ok"}'))
  end)

  it("keeps serving, and ready, when a newer version is corrupt; counts the failure", function()
    local errors = server:metric('lunet_model_loads_total{model="hot",result="error"}')
    roll_out(repo, "hot", 3, "this is not a safetensors file")
    local ready_codes = {}
    assert.is_true(eventually(10, function()
      ready_codes[#ready_codes + 1] = server:curl(server:url("/v2/health/ready"))
      return server:metric('lunet_model_loads_total{model="hot",result="error"}') == errors + 1
    end), "the failed load was not counted")
    for _, code in ipairs(ready_codes) do assert.are.equal(200, code) end
    local status, answer = infer("/v2/models/hot/infer", 2)
    assert.are.equal(200, status)
    assert.are.equal("2", answer.model_version)
    assert_close(expected(models[2], 2), answer.outputs[1].data)
    assert.are.equal(404, (infer("/v2/models/hot/versions/3/infer")))
    -- Not tried again until the file changes.
    os.execute("sleep 0.5")
    assert.are.equal(errors + 1, server:metric('lunet_model_loads_total{model="hot",result="error"}'))
    os.execute("rm -rf " .. repo .. "/hot/3")
  end)

  it("reloads a version whose file was replaced", function()
    roll_out(repo, "hot", 1, models[3])
    assert.is_true(eventually(10, function()
      local status, answer = infer("/v2/models/hot/versions/1/infer", 4)
      if status ~= 200 then return false end
      local diff = 0
      for k, v in ipairs(expected(models[3], 4)) do diff = math.max(diff, math.abs(v - answer.outputs[1].data[k])) end
      return diff < 1e-4
    end), "version 1 still answers with its old weights")
  end)

  it("applies config.lua: labels, and a version policy that unloads what it leaves out", function()
    harness.write_file(repo .. "/hot/config.lua.new", "return {labels = {stable = 1, canary = 2}}")
    os.rename(repo .. "/hot/config.lua.new", repo .. "/hot/config.lua")
    assert.is_true(eventually(10, function()
      local status, answer = infer("/v2/models/hot/versions/stable/infer")
      return status == 200 and answer.model_version == "1"
    end), "the label stable did not come to name version 1")
    local status, answer = server:post_json("/v1/models/hot/labels/canary:predict",
      { instances = { pixels(1) } })
    assert.are.equal(200, status)
    assert_close(expected(models[2], 1), answer.predictions[1])
    assert.are.equal(404, (infer("/v2/models/hot/versions/nightly/infer")))

    harness.write_file(repo .. "/hot/config.lua.new", "return {version_policy = {latest = 1}}")
    os.rename(repo .. "/hot/config.lua.new", repo .. "/hot/config.lua")
    assert.is_true(eventually(10, function()
      local _, meta = server:curl(server:url("/v2/models/hot"))
      return #cjson.decode(meta).versions == 1
    end), "version 1 was not unloaded")
    local _, meta = server:curl(server:url("/v2/models/hot"))
    assert.are.same({ "2" }, cjson.decode(meta).versions)
    assert.are.equal(404, (infer("/v2/models/hot/versions/1/infer")))
    assert.are.equal(200, (infer("/v2/models/hot/infer")))
  end)

  it("keeps the served config when config.lua breaks, and says why", function()
    harness.write_file(repo .. "/hot/config.lua.new", "return {version_policy = {newest = 2}}")
    os.rename(repo .. "/hot/config.lua.new", repo .. "/hot/config.lua")
    assert.is_true(eventually(10, function()
      return server:log():find("version_policy.newest is not a policy", 1, true) ~= nil
    end))
    assert.are.equal(200, (infer("/v2/models/hot/infer")))
    assert.are.equal(200, server:curl(server:url("/v2/health/ready")))
  end)

  it("serves a new model directory, and unloads a model whose directory is gone", function()
    roll_out(repo, "fresh", 1, models[1])
    assert.is_true(eventually(10, function() return infer("/v2/models/fresh/infer") == 200 end))
    os.execute("rm -rf " .. repo .. "/fresh")
    assert.is_true(eventually(10, function() return infer("/v2/models/fresh/infer") == 404 end))
    local _, index = server:post("/v2/repository/index", "")
    assert.are.same({ { name = "hot", version = "2", state = "READY" } }, cjson.decode(index))
  end)
end)

describe("a repository the system cannot watch", function()
  it("is kept in step by polling", function()
    local repo = scratch_dir()
    local models = { mlp(41), mlp(42) }
    roll_out(repo, "polled", 1, models[1])
    local server = start(repo, "poll_ms = 200, watch = false")
    roll_out(repo, "polled", 2, models[2])
    local switched = eventually(10, function()
      local status, text = server:post("/v2/models/polled/infer", body(6))
      return status == 200 and cjson.decode(text).model_version == "2"
    end)
    server:stop()
    remove_dir(repo)
    assert.is_true(switched, "polling did not find version 2")
  end)
end)

describe("a version removed while a request waits in its batch", function()
  local repo, server
  local models = { mlp(31), mlp(32) }
  setup(function()
    repo = scratch_dir()
    roll_out(repo, "slow", 1, models[1])
    -- Batches wait 1.5 s for company, so the request below is still waiting when its version goes.
    harness.write_file(repo .. "/slow/config.lua", "return {max_queue_delay_us = 1500000}")
    server = start(repo, "poll_ms = 60000")
  end)
  teardown(function()
    if server then server:stop() end
    remove_dir(repo)
  end)

  it("is answered by that version, which is freed afterwards", function()
    local work = scratch_dir()
    harness.write_file(work .. "/request", body(5))
    os.execute(string.format("(env -u LD_PRELOAD curl -s -m 30 -o %s/answer -w '%%{http_code}' --data-binary @%s/request "
      .. "%s > %s/code; touch %s/done) &", work, work, server:url("/v2/models/slow/versions/1/infer"), work, work))
    os.execute("sleep 0.3")
    roll_out(repo, "slow", 2, models[2])
    os.execute("rm -rf " .. repo .. "/slow/1")
    assert.is_true(eventually(10, function()
      local _, meta = server:curl(server:url("/v2/models/slow"))
      local ok, decoded = pcall(cjson.decode, meta)
      return ok and #decoded.versions == 1 and decoded.versions[1] == "2"
    end), "version 1 was not unloaded")
    assert.is_nil(io.open(work .. "/done"), "the request was answered before its version was unloaded")
    assert.is_true(eventually(10, function() return io.open(work .. "/done") ~= nil end))
    assert.are.equal("200", harness.read_file(work .. "/code"))
    local answer = cjson.decode(harness.read_file(work .. "/answer"))
    assert.are.equal("1", answer.model_version)
    assert_close(expected(models[1], 5), answer.outputs[1].data)
    remove_dir(work)
    assert.are.equal(404, (server:post("/v2/models/slow/versions/1/infer", body(5))))
  end)
end)

describe("bearer tokens", function()
  local repo, tokens, server
  local model = mlp(21)
  local function token_line(token, scopes) return token .. " " .. scopes .. "\n" end
  local function write_tokens(text)
    harness.write_file(tokens .. ".new", text)
    assert(os.rename(tokens .. ".new", tokens))
  end
  setup(function()
    repo = scratch_dir()
    roll_out(repo, "m", 1, model)
    tokens = scratch_dir() .. "/tokens"
    write_tokens("# who may do what\n" .. token_line("infer-token-0123456789", "infer")
      .. token_line("metrics-token-0123456789", "metrics") .. token_line("admin-token-0123456789", "admin")
      .. token_line("both-token-0123456789", "infer,metrics"))
    server = start(repo, string.format("poll_ms = 60000, token_file = %q", tokens))
  end)
  teardown(function()
    if server then server:stop() end
    remove_dir(repo)
    remove_dir(tokens:match("^(.*)/"))
  end)

  local function ask(path, token, post)
    local auth = token and string.format("-H 'Authorization: Bearer %s' ", token) or ""
    if post then return server:post(path, body(1), auth) end
    return server:curl(auth .. server:url(path))
  end

  it("leaves the health paths open", function()
    assert.are.equal(200, (ask("/v2/health/ready")))
    assert.are.equal(200, (ask("/v2/health/live")))
  end)

  it("answers 401 with WWW-Authenticate without a valid token", function()
    local status, text, headers = ask("/v2/models/m/infer", nil, true)
    assert.are.equal(401, status)
    assert.are.equal('Bearer realm="lunet"', headers["www-authenticate"])
    assert.truthy(cjson.decode(text).error:find("Bearer", 1, true))
    status, _, headers = ask("/v2/models/m/infer", "infer-token-0123456780", true)
    assert.are.equal(401, status)
    assert.are.equal('Bearer realm="lunet", error="invalid_token"', headers["www-authenticate"])
    status = server:post("/v2/models/m/infer", body(1), "-H 'Authorization: Basic dXNlcjpwYXNz'")
    assert.are.equal(401, status)
    assert.are.equal(401, (ask("/v2/models/unknown", nil)))
    -- A token longer than any allowed, and one that is a valid token's prefix.
    assert.are.equal(401, (ask("/v2/models/m/infer", string.rep("x", 400), true)))
    assert.are.equal(401, (ask("/v2/models/m/infer", "infer-token-012345678", true)))
    assert.are.equal(200, (ask("/v2/health/live")))
  end)

  it("answers 403 for a token without the route's scope, 200 with it", function()
    assert.are.equal(403, (ask("/v2/models/m/infer", "metrics-token-0123456789", true)))
    assert.are.equal(403, (ask("/metrics", "infer-token-0123456789")))
    assert.are.equal(403, (ask("/v2/repository/index", "infer-token-0123456789", true)))
    assert.are.equal(200, (ask("/v2/models/m/infer", "infer-token-0123456789", true)))
    assert.are.equal(200, (ask("/metrics", "metrics-token-0123456789")))
    assert.are.equal(200, (ask("/metrics", "both-token-0123456789")))
    assert.are.equal(200, (ask("/v2/models/m/infer", "both-token-0123456789", true)))
    assert.are.equal(200, (ask("/v2/repository/index", "admin-token-0123456789", true)))
    assert.are.equal(200, (ask("/v2/models/m/infer", "admin-token-0123456789", true)))
    local _, text = ask("/metrics", "metrics-token-0123456789")
    assert.truthy(text:find('lunet_requests_total{model="",code="401"}', 1, true))
  end)

  it("takes a rotated token file without a restart", function()
    local pid = server.pid
    write_tokens(token_line("rotated-token-0123456789", "infer") .. token_line("metrics-token-0123456789", "metrics"))
    assert.is_true(eventually(10, function()
      return ask("/v2/models/m/infer", "rotated-token-0123456789", true) == 200
    end), "the new token was not taken")
    assert.are.equal(401, (ask("/v2/models/m/infer", "infer-token-0123456789", true)))
    assert.are.equal(pid, server.pid)
    assert.is_true(os.execute("kill -0 " .. pid))
  end)

  it("keeps its tokens when the file breaks, and reads it again on SIGHUP", function()
    write_tokens("short infer\n")
    assert.is_true(eventually(10, function()
      return server:log():find("a token is 16 to 256 visible ASCII characters", 1, true) ~= nil
    end))
    assert.are.equal(200, (ask("/v2/models/m/infer", "rotated-token-0123456789", true)))
    -- Written in place, then SIGHUP: read again even if the change went unseen.
    harness.write_file(tokens, token_line("hangup-token-0123456789", "infer"))
    os.execute("kill -HUP " .. server.pid)
    assert.is_true(eventually(10, function()
      return ask("/v2/models/m/infer", "hangup-token-0123456789", true) == 200
    end))
    assert.are.equal(401, (ask("/v2/models/m/infer", "rotated-token-0123456789", true)))
  end)
end)

describe("pipelined requests, some broken, from a client that keeps its side open", function()
  -- spec/data/http_pipelined_stall.bin is what the HTTP fuzzer sent when it found this: infer
  -- requests among HEADs and broken requests, enough answers to fill the 4 KiB write queue.
  -- Parsing then waits for writes, and goes on in a finished write's callback, which libuv runs
  -- in the next pass's pending phase, before the poll.  An inference parsed there waited for
  -- the poll to see another event before its batch ran: with the client waiting and its side
  -- open, never (each of 4 tries timed out at 3 s).
  it("are all answered, and the connection closes", function()
    local repo = scratch_dir()
    os.execute("mkdir -p " .. repo .. "/m/1")
    nn.Sequential(nn.Linear(4, 2)):save(repo .. "/m/1/model.safetensors", { input_shape = { 4 } })
    local server = start(repo, "max_write_queue_bytes = 4096, max_header_bytes = 1024, max_body_bytes = 65536, "
      .. "header_timeout_ms = 100, body_timeout_ms = 100, idle_timeout_ms = 100, max_batch_size = 4")
    local bytes = harness.read_file("spec/data/http_pipelined_stall.bin")
    local outcomes = {}
    for try = 1, 4 do
      local c = server:connect()
      c:settimeout(3)
      c:send(bytes)
      local got = {}
      repeat
        local chunk, err, partial = c:receive(4096)
        got[#got + 1] = chunk or partial
      until err
      local _, err = c:receive(1)
      c:close()
      local answered = select(2, table.concat(got):gsub("HTTP/1%.1 %d%d%d ", ""))
      outcomes[try] = string.format("%s after %d answers", err, answered)
    end
    server:stop()
    remove_dir(repo)
    for try = 1, 4 do assert.truthy(outcomes[try]:match("^closed"), "try " .. try .. ": " .. outcomes[try]) end
  end)
end)

describe("lunet.serve failing after its server started", function()
  it("stops the server, frees the port and raises the error", function()
    local socket = require("socket")
    local port, model = nil, mlp(51)
    model.input_shape = { 1, 28, 28 }
    local ok, problem = pcall(lunet.serve, {
      host = "127.0.0.1", port = 0, threads = 2, quiet = true, models = { m = { [1] = model } },
      on_listen = function(p)
        port = p
        error("on_listen failed", 0)
      end,
    })
    assert.is_false(ok)
    assert.are.equal("on_listen failed", problem)
    assert.is_number(port)
    local c = socket.tcp()
    c:settimeout(2)
    assert.is_nil(c:connect("127.0.0.1", port), "the port still accepts connections")
    c:close()
  end)
end)
