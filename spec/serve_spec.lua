-- The HTTP server (core/src/serve) as a client sees it: a real server started on a free
-- port in a child interpreter, asked with curl.
local cjson = require("cjson")

local Server = {}
Server.__index = Server

-- Starts `lunet.serve(options)` in a child interpreter with this one's module paths; waits for
-- its "listening" line.
local function start(options)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(string.format("package.path = %q\npackage.cpath = %q\n", package.path, package.cpath))
  f:write("local opts = ", options, "\nrequire('lunet').serve(opts)\n")
  f:close()
  local out = os.tmpname()
  local pipe = assert(io.popen("sh -c 'lua5.4 " .. script .. " > " .. out .. " 2>&1 & echo $!'"))
  local pid = tonumber(pipe:read("l"))
  pipe:close()
  local port
  for _ = 1, 200 do
    local text = (io.open(out) or { read = function() return "" end, close = function() end })
    local s = text:read("a") or ""
    if text.close then text:close() end
    port = tonumber(s:match("listening on http://[%d%.]+:(%d+)"))
    if port then break end
    os.execute("sleep 0.05")
  end
  assert(port, "the server did not start")
  return setmetatable({ pid = pid, port = port, script = script, out = out }, Server)
end

function Server:url(path) return string.format("http://127.0.0.1:%d%s", self.port, path) end

-- curl with the given arguments; returns the (first) status, the body, the headers (lower-cased
-- names) and every status in a row (one per URL).
function Server:curl(args)
  local body, head = os.tmpname(), os.tmpname()
  -- curl without the ASan runtime the sanitizer run preloads: curl hangs under it
  local pipe = assert(io.popen(string.format("env -u LD_PRELOAD curl -s -m 30 -o %s -D %s -w '%%{http_code}' %s",
    body, head, args)))
  local codes = pipe:read("a")
  pipe:close()
  local f = assert(io.open(body, "rb"))
  local text = f:read("a")
  f:close()
  local headers = {}
  for line in io.lines(head) do
    local k, v = line:match("^([^:]+):%s*(.-)\r?$")
    if k then headers[k:lower()] = v end
  end
  os.remove(body)
  os.remove(head)
  return tonumber(codes:sub(1, 3)), text, headers, codes
end

function Server:log() local f = assert(io.open(self.out)); local s = f:read("a"); f:close(); return s end

-- SIGTERM; returns true when the server exited.
function Server:stop()
  os.execute("kill -TERM " .. self.pid)
  for _ = 1, 100 do
    if not os.execute("kill -0 " .. self.pid .. " 2>/dev/null") then
      os.remove(self.script)
      return true
    end
    os.execute("sleep 0.05")
  end
  os.execute("kill -KILL " .. self.pid)
  return false
end

describe("lunet.serve", function()
  local server
  setup(function() server = start("{host = '127.0.0.1', port = 0, max_header_bytes = 4096, max_body_bytes = 1000}") end)
  teardown(function() if server then server:stop() end end)

  it("answers the OIP v2 server metadata and health paths", function()
    local status, body, headers = server:curl(server:url("/v2"))
    assert.are.equal(200, status)
    assert.are.equal("application/json", headers["content-type"])
    local meta = cjson.decode(body)
    assert.are.equal("lunet", meta.name)
    assert.are.equal(require("lunet").version, meta.version)
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
    assert.falsy(body:find("live", 1, true)) -- curl -I writes the headers there, and nothing else came
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
  end)

  it("refuses a body over the limit from its Content-Length, before reading it (413)", function()
    local status, body, headers = server:curl("-X POST -H 'Expect: 100-continue' -H 'Content-Length: 5000000000' "
      .. server:url("/v2"))
    assert.are.equal(413, status)
    assert.truthy(cjson.decode(body).error:find("body is larger"))
    assert.are.equal("close", headers["connection"])
    status = server:curl("--data-binary @/dev/null " .. server:url("/v2/health/live"))
    assert.are.equal(405, status) -- the server goes on serving
  end)

  it("refuses headers over the limit (431) and a malformed request (400)", function()
    local status, body = server:curl("-H 'X-Big: " .. string.rep("a", 5000) .. "' " .. server:url("/v2"))
    assert.are.equal(431, status)
    assert.truthy(cjson.decode(body).error:find("headers are larger"))
    status, body = server:curl("-H 'Content-Length: 5' -H 'Transfer-Encoding: chunked' --data-binary 12345 "
      .. server:url("/v2"))
    assert.are.equal(400, status)
    assert.truthy(cjson.decode(body).error:find("malformed HTTP request"))
  end)

  it("keeps a connection alive across requests and logs each as a JSON line", function()
    -- two URLs in one curl call share one connection
    local _, body, _, codes = server:curl("-H 'X-Request-Id: abc-123' " .. server:url("/v2/health/live")
      .. " -o /dev/null " .. server:url("/v2/health/ready"))
    assert.are.equal("200200", codes)
    assert.are.equal('{"live":true}', body)
    local log = server:log()
    local found
    for line in log:gmatch("[^\n]+") do
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

  it("exits when sent SIGTERM", function()
    local other = start("{host = '127.0.0.1', port = 0, quiet = true}")
    assert.is_true(other:stop())
  end)
end)
