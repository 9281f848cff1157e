-- The second half of `make demo`: serves the model repository that examples/demo.lua wrote,
-- asks each of its models about a Fashion-MNIST test image over HTTP (OIP v2 JSON), prints
-- the predicted class beside the true label, then stops the server with SIGTERM and checks
-- that it exits 0.
--
--   lua5.4 examples/demo_serve.lua [dir=build/demo] [image=1]
--
-- The server is examples/serve.lua, a child process on 127.0.0.1 and a free port, serving
-- dir/models; its output goes to dir/server.log.  When anything goes wrong it stops the
-- server (SIGKILL if SIGTERM does not end it within 10 s) and exits 1.
local lunet = require("lunet")
local json = require("lunet.json")
local lfs = require("lfs")
local http = require("socket.http")
local ltn12 = require("ltn12")

local dir = arg[1] or "build/demo"
local image = math.tointeger(tonumber(arg[2] or "1"))
local repository, log_path, status_path = dir .. "/models", dir .. "/server.log", dir .. "/server.status"
local lua = arg[-1] or "lua5.4"
local serve_script = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/serve.lua"
http.TIMEOUT = 10

local function quoted(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end
local function sleep(seconds) os.execute("sleep " .. seconds) end

-- The server as a child of a shell that records its exit status in status_path, so that the
-- status can be waited for with a time limit.
local server = {}

function server.start(args)
  os.remove(log_path)
  os.remove(status_path)
  local command = string.format("%s %s %s > %s 2>&1 & echo $!; wait $!; echo $? > %s", quoted(lua),
    quoted(serve_script), args, quoted(log_path), quoted(status_path))
  print("$ " .. lua .. " " .. serve_script .. " " .. args)
  server.shell = assert(io.popen(command, "r"))
  server.pid = math.tointeger(tonumber(server.shell:read("l")))
  if not server.pid then error("could not start the server", 0) end
  -- Model loading and graph compilation come before the listening line; 60 s is ample.
  for _ = 1, 1200 do
    local log = read_file(log_path) or ""
    local host, port = log:match("lunet: listening on http://([%d%.]+):(%d+) %(%d+ event loops%)")
    if port then return log, host, tonumber(port) end
    if read_file(status_path) then break end -- it exited before listening
    sleep(0.05)
  end
  error("the server did not start listening; its output:\n" .. (read_file(log_path) or ""), 0)
end

-- The server's exit status once it has exited, waiting at most `seconds`; nil if it is still running.
function server.wait(seconds)
  for _ = 1, seconds * 20 do
    local status = math.tointeger(tonumber(read_file(status_path) or ""))
    if status then return status end
    sleep(0.05)
  end
end

-- SIGTERM and its exit status (nil when it had to be killed), then the shell reaped; safe to call twice.
function server.stop()
  if not server.shell then return nil end
  os.execute("kill -TERM " .. server.pid .. " 2>/dev/null")
  local status = server.wait(10)
  if not status then
    os.execute("kill -KILL " .. server.pid .. " 2>/dev/null")
    server.wait(5)
  end
  server.shell:close()
  server.shell = nil
  os.remove(status_path)
  return status
end

-- POSTs a JSON document; returns the HTTP status, the decoded answer (or the raw text) and the seconds taken.
local function post_json(url, document)
  local body, chunks = json.encode(document), {}
  local started = lunet.clock()
  local ok, status = http.request({
    url = url, method = "POST", source = ltn12.source.string(body), sink = ltn12.sink.table(chunks),
    headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#body) },
  })
  local seconds = lunet.clock() - started
  if not ok then error("POST " .. url .. ": " .. tostring(status), 0) end
  local text = table.concat(chunks)
  return status, json.decode(text) or text, seconds
end

-- The index and softmax probability of the largest of the logits.
local function best_class(logits)
  local best = 1
  for k = 2, #logits do
    if logits[k] > logits[best] then best = k end
  end
  local total = 0
  for k = 1, #logits do total = total + math.exp(logits[k] - logits[best]) end
  return best, 1 / total
end

local function main()
  if lfs.attributes(repository, "mode") ~= "directory" then
    error("no model repository at " .. repository .. ": run examples/demo.lua first", 0)
  end
  local names = {}
  for name in lfs.dir(repository) do
    if name:sub(1, 1) ~= "." and lfs.attributes(repository .. "/" .. name, "mode") == "directory" then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  if #names == 0 then error("no models in " .. repository .. ": run examples/demo.lua first", 0) end

  local _, test = lunet.data.fashion_mnist()
  if not image or image < 1 or image > test:size() then
    error(string.format("the image must be a test image number, 1 to %d", test:size()), 0)
  end
  local pixels = test.x:narrow(1, image, 1):reshape({ -1 }):totable()
  local truth = test.classes[test.y[image]]

  print("\n-- serving " .. repository .. " over HTTP (server output in " .. log_path .. ")")
  local log, host, port = server.start(string.format("--models %s --host 127.0.0.1 --port 0 --drain-delay-ms 0 "
    .. "--shutdown-timeout-ms 5000", quoted(repository)))
  io.write(log)

  print(string.format("\n-- asking each model about test image %d of %d (OIP v2 JSON, shape [1,1,28,28])", image,
    test:size()))
  local request = { inputs = { { name = "input", shape = { 1, 1, 28, 28 }, datatype = "FP32", data = pixels } } }
  for _, name in ipairs(names) do
    local url = string.format("http://%s:%d/v2/models/%s/infer", host, port, name)
    local status, answer, seconds = post_json(url, request)
    local output = type(answer) == "table" and answer.outputs and answer.outputs[1]
    if status ~= 200 or not output or #output.data ~= #test.classes then
      error(string.format("POST %s: HTTP %s: %s", url, tostring(status), type(answer) == "table"
        and json.encode(answer) or tostring(answer)), 0)
    end
    local class, probability = best_class(output.data)
    print(string.format("POST %s -> %d in %.1f ms, %s version %s", url, status, seconds * 1000, answer.model_name,
      answer.model_version))
    print(string.format("  predicted: %-11s (probability %.3f)   true label: %s", test.classes[class], probability,
      truth))
  end

  print("\n-- stopping the server (SIGTERM)")
  local started = lunet.clock()
  local status = server.stop()
  if status == nil then error("the server did not exit within 10 s of SIGTERM; killed", 0) end
  local milliseconds = (lunet.clock() - started) * 1000
  io.write((read_file(log_path) or ""):sub(#log + 1)) -- the access log and the drain, from the server
  print(string.format("server exited with status %d, %.0f ms after SIGTERM", status, milliseconds))
  if status ~= 0 then error("the server's exit status is " .. status .. "; its output is in " .. log_path, 0) end
end

local ok, problem = pcall(main)
server.stop() -- no server left behind, whatever happened
if not ok then
  io.stderr:write("demo_serve.lua: ", tostring(problem), "\n")
  os.exit(1)
end
