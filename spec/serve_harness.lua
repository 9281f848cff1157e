--- A real lunet server for the specs: started in a child interpreter on a free port, asked
-- with curl (a real HTTP client) or a raw TCP socket (lua-socket) where curl cannot send what
-- a test needs (pipelined requests, a slow client, hand-made bytes).
local cjson = require("cjson")
local socket = require("socket")

local harness = {}

local Server = {}
Server.__index = Server

local helpers = require("spec.helpers")

-- The file's bytes, or nil while it does not exist.
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  f:close()
  return helpers.read_bytes(path)
end
local write_file = helpers.write_bytes
harness.write_file = write_file
harness.read_file = read_file

--- Starts `lunet.serve(options)` (options: Lua source of a table) in a child interpreter with
-- this one's module paths; waits for its "listening" line.
function harness.start(options)
  local script = os.tmpname()
  write_file(script, string.format("package.path = %q\npackage.cpath = %q\nlocal opts = %s\nrequire('lunet').serve(opts)\n"
    .. "io.stdout:write('lunet.serve returned\\n')\n",
    package.path, package.cpath, options))
  local out = os.tmpname()
  local pipe = assert(io.popen("sh -c 'lua5.4 " .. script .. " > " .. out .. " 2>&1 & echo $!'"))
  local pid = tonumber(pipe:read("l"))
  pipe:close()
  local port
  for _ = 1, 400 do
    port = tonumber((read_file(out) or ""):match("listening on http://[%d%.]+:(%d+)"))
    if port then break end
    os.execute("sleep 0.05")
  end
  if not port then error("the server did not start:\n" .. (read_file(out) or ""), 2) end
  return setmetatable({ pid = pid, port = port, script = script, out = out }, Server)
end

function Server:url(path) return string.format("http://127.0.0.1:%d%s", self.port, path) end

--- curl with the given arguments; returns the (first) status, the body, the headers (lower-cased
-- names) and every status in a row (one per URL).  curl runs without the ASan runtime that the
-- sanitizer run preloads (curl hangs under it), and gives up after 30 s.
function Server:curl(args)
  local body, head = os.tmpname(), os.tmpname()
  local pipe = assert(io.popen(string.format("env -u LD_PRELOAD curl -s -m 30 -o %s -D %s -w '%%{http_code}' %s",
    body, head, args)))
  local codes = pipe:read("a")
  pipe:close()
  local text = read_file(body) or ""
  local headers = {}
  for line in (read_file(head) or ""):gmatch("[^\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)\r?$")
    if k then headers[k:lower()] = v end
  end
  os.remove(body)
  os.remove(head)
  return tonumber(codes:sub(1, 3)), text, headers, codes
end

--- POSTs body (a string) to path; returns status, body, headers.  extra: more curl arguments.
function Server:post(path, body, extra)
  local file = os.tmpname()
  write_file(file, body)
  local status, text, headers = self:curl(string.format("-X POST --data-binary @%s %s %s", file, extra or "",
    self:url(path)))
  os.remove(file)
  return status, text, headers
end

--- POSTs a JSON request (a table) and decodes the JSON answer.
function Server:post_json(path, request)
  local status, text, headers = self:post(path, cjson.encode(request), "-H 'Content-Type: application/json'")
  local ok, decoded = pcall(cjson.decode, text)
  return status, ok and decoded or text, headers
end

--- POSTs every body of `bodies` to path at once (curl --parallel, one connection each) and
-- returns their decoded answers in order.
function Server:post_parallel(path, bodies)
  local config, files = {}, {}
  for i, body in ipairs(bodies) do
    local input, output = os.tmpname(), os.tmpname()
    write_file(input, body)
    files[i] = { input, output }
    config[#config + 1] = string.format('%surl = "%s"\ndata-binary = "@%s"\noutput = "%s"\nsilent\n',
      i > 1 and "next\n" or "", self:url(path), input, output)
  end
  local cfg = os.tmpname()
  write_file(cfg, table.concat(config))
  os.execute(string.format("env -u LD_PRELOAD curl -s -m 60 --parallel --parallel-max %d -K %s 2>/dev/null", #bodies, cfg))
  os.remove(cfg)
  local answers = {}
  for i, f in ipairs(files) do
    answers[i] = read_file(f[2])
    os.remove(f[1])
    os.remove(f[2])
  end
  return answers
end

--- A raw connection: send bytes, read what comes back.
function Server:connect()
  local c = assert(socket.tcp())
  c:settimeout(10)
  assert(c:connect("127.0.0.1", self.port))
  return c
end

--- Reads one HTTP response from a raw connection: status, headers, body.
function harness.read_response(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local headers = {}
  while true do
    local h = assert(c:receive("*l"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  local body = assert(c:receive(tonumber(headers["content-length"] or "0")))
  return status, headers, body
end

function Server:log() return read_file(self.out) or "" end

--- The value of one series in /metrics (0 when it is not there).
function Server:metric(series)
  local _, text = self:curl(self:url("/metrics"))
  for line in text:gmatch("[^\n]+") do
    local name, value = line:match("^(%S+) (%S+)$")
    if name == series then return tonumber(value) end
  end
  return 0
end

--- SIGTERM; returns true when the server exited.
function Server:stop()
  os.execute("kill -TERM " .. self.pid)
  for _ = 1, 200 do
    if not os.execute("kill -0 " .. self.pid .. " 2>/dev/null") then
      os.remove(self.script)
      return true
    end
    os.execute("sleep 0.05")
  end
  os.execute("kill -KILL " .. self.pid)
  return false
end

return harness
