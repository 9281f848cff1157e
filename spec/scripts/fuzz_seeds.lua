-- Writes the seed corpora for `make fuzz`, one directory per libFuzzer target under the
-- directory given as the first argument:
--   safetensors/  a few valid safetensors files of different shapes, dtypes and metadata
--   infer/        inference bodies for core/tests/fuzz_infer.c: three bytes of settings (flags,
--                 then the JSON part's length, little endian) and the body
--   http/         requests for core/tests/fuzz_http.c, as a client sends them
-- and, for the last two, dictionaries of their words (infer.dict, http.dict).
local lunet = require("lunet")
local safetensors = require("lunet.safetensors")
local lfs = require("lfs")

local root = assert(arg[1], "usage: lua5.4 spec/scripts/fuzz_seeds.lua DIR")

local function directory(name)
  local path = root .. "/" .. name
  for _, dir in ipairs({ root, path }) do
    if lfs.attributes(dir, "mode") ~= "directory" then assert(lfs.mkdir(dir)) end
  end
  return path
end

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  assert(f:write(bytes))
  f:close()
end

-- ---- safetensors ----------------------------------------------------------------------------

local dir = directory("safetensors")
lunet.manual_seed(0)
safetensors.write(dir .. "/small.safetensors", { w = lunet.randn({ 2, 3 }), b = lunet.zeros({ 3 }) })
safetensors.write(dir .. "/dtypes.safetensors", {
  f64 = lunet.ones({ 2 }, "f64"), i64 = lunet.arange(4, "i64"), i32 = lunet.ones({ 1, 1 }, "i32"),
  i8 = lunet.full({ 3 }, -2, "i8"), u8 = lunet.full({ 2, 2 }, 7, "u8"),
}, { ["lunet.format"] = "1", note = "quotes \" and \\ and \n" })
safetensors.write(dir .. "/empty.safetensors", { scalar = lunet.tensor(1.5), none = lunet.zeros({ 0, 4 }) })

-- ---- inference bodies -----------------------------------------------------------------------

-- The settings byte of fuzz_infer.c.
local TF, F64, MNIST, BINARY = 1, 2, 4, 8

local function infer_seed(name, flags, json, binary)
  local header = string.char(flags) .. string.pack("<I2", binary and #json or 0)
  write(directory("infer") .. "/" .. name, header .. json .. (binary or ""))
end

-- An OIP request of one input; data is the JSON text of its values, or nil for binary data
-- of binary_size bytes.
local function oip(shape, datatype, data, extra, binary_size)
  local input = string.format('{"name":"input","shape":[%s],"datatype":"%s",', shape, datatype)
  if data then
    input = input .. '"data":' .. data .. "}"
  else
    input = input .. string.format('"parameters":{"binary_data_size":%d}}', binary_size)
  end
  return "{" .. (extra or "") .. '"inputs":[' .. input .. "]}"
end

local function repeated(value, n)
  local t = {}
  for i = 1, n do t[i] = value end
  return table.concat(t, ",")
end

infer_seed("oip_nested", 0, oip("2,4", "FP32", "[[1,2.5,-3,4e-3],[5,6,7,8]]",
  '"id":"r\\"1\\u00e9","outputs":[{"name":"output"}],'))
infer_seed("oip_flat_f64", F64, oip("1,4", "FP64", "[1e300,-0.0,0.1,2]", '"parameters":{"timeout_ms":50},'))
infer_seed("oip_ints", 0, oip("3,4", "INT8", "[-128,127,0,1,2,3,4,5,6,7,8,9]"))
infer_seed("oip_uint8", F64, oip("1,2,2", "UINT8", "[[0,255],[7,8]]"))
infer_seed("oip_int64", 0, oip("1,4", "INT64", "[-9223372036854775808,9223372036854775807,0,-1]",
  '"parameters":{"binary_data_output":true},'))
infer_seed("oip_outputs_binary", F64, oip("1,4", "INT32", "[1,2,3,4]",
  '"outputs":[{"name":"output","parameters":{"binary_data":true}}],'))
infer_seed("oip_no_outputs", 0, oip("1,4", "FP32", "[1,2,3,4]", '"outputs":[],'))
infer_seed("oip_binary_f32", BINARY, oip("2,4", "FP32", nil, nil, 32), string.pack("<" .. string.rep("f", 8),
  1, 2, 3, 4, 5, 6, 7, 8))
infer_seed("oip_binary_int64", BINARY | F64, oip("1,4", "INT64", nil, nil, 32), string.pack("<i8i8i8i8", 1, -1, 2, -2))
infer_seed("oip_binary_uint8", BINARY, oip("1,4", "UINT8", nil, nil, 4), "\0\1\127\255")
infer_seed("oip_mnist", MNIST, oip("1,1,28,28", "FP32", "[" .. repeated("0", 784) .. "]"))
infer_seed("oip_mnist_binary", MNIST | BINARY, oip("1,784", "UINT8", nil, nil, 784), string.rep("\7", 784))
infer_seed("tf_instances", TF, '{"instances":[[1,2,3,4],{"input":[5,6,7,8]}]}')
infer_seed("tf_inputs", TF | F64, '{"inputs":{"input":[[1,2,3,4],[0.5,0.25,0,-1]]}}')
infer_seed("tf_inputs_flat", TF, '{"inputs":[[1,2,3,4]]}')
infer_seed("tf_mnist", TF | MNIST, '{"instances":[[' .. repeated("1", 784) .. "]]}")

-- ---- HTTP requests --------------------------------------------------------------------------

local function http_seed(name, text)
  write(directory("http") .. "/" .. name, text)
end

local function post(path, body, headers)
  return string.format("POST %s HTTP/1.1\r\nHost: fuzz\r\n%sContent-Length: %d\r\n\r\n%s", path, headers or "",
    #body, body)
end

local infer_json = oip("1,4", "FP32", "[1,2,3,4]", '"id":"seed",')
local binary_json = oip("1,4", "FP32", nil, nil, 16)

http_seed("get_v2", "GET /v2 HTTP/1.1\r\nHost: fuzz\r\n\r\n")
http_seed("head_metadata", "HEAD /v2/models/m/versions/1 HTTP/1.1\r\nHost: fuzz\r\nX-Request-Id: abc\r\n\r\n")
http_seed("get_http10", "GET /v2/models/m/ready?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
http_seed("get_tf_status", "GET /v1/models/m/versions/1 HTTP/1.1\r\nHost: fuzz\r\n\r\n")
http_seed("get_metrics", "GET /metrics HTTP/1.1\r\nHost: fuzz\r\n\r\n")
http_seed("post_infer", post("/v2/models/m/infer", infer_json, "Content-Type: application/json\r\n"))
http_seed("post_predict", post("/v1/models/m:predict", '{"instances":[[1,2,3,4],[5,6,7,8]]}'))
http_seed("pipelined", "GET /v2/health/ready HTTP/1.1\r\nHost: fuzz\r\n\r\n"
  .. post("/v2/models/m/versions/1/infer", infer_json)
  .. "HEAD /v2 HTTP/1.1\r\nHost: fuzz\r\n\r\n"
  .. "DELETE /v2/models/m HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
http_seed("chunked", "POST /v2/models/m/infer HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n"
  .. string.format("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, infer_json:sub(1, 10), #infer_json - 10,
    infer_json:sub(11)))
http_seed("expect_continue", post("/v2/models/m/infer", infer_json, "Expect: 100-continue\r\n"))
http_seed("binary", post("/v2/models/m/infer", binary_json .. string.pack("<ffff", 1, 2, 3, 4),
  "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: " .. #binary_json .. "\r\n"))
http_seed("unknown_model", post("/v2/models/nope/infer", "{}"))
-- With tokens on (fuzz_http.c turns them on and off), and a wrong one.
local bearer = "Authorization: Bearer fuzz-token-0123456789\r\n"
http_seed("bearer_infer", post("/v2/models/m/infer", infer_json, bearer))
http_seed("bearer_metrics", "GET /metrics HTTP/1.1\r\nHost: fuzz\r\n" .. bearer .. "\r\n")
http_seed("bearer_wrong", post("/v1/models/m/labels/stable:predict", '{"instances":[[1,2,3,4]]}',
  "Authorization: Bearer fuzz-token-0123456788\r\n"))
http_seed("repository_index", post("/v2/repository/index", "{}", bearer))

-- ---- dictionaries ---------------------------------------------------------------------------

-- Words of the inputs for libFuzzer's -dict (root/<target>.dict), which mutations splice in:
-- they find a route, a header or a member name much sooner than byte by byte.
local function dictionary(name, words)
  local lines = {}
  for i, word in ipairs(words) do
    lines[i] = '"' .. word:gsub("[%c\\\"\128-\255]", function(c) return string.format("\\x%02x", c:byte()) end) .. '"'
  end
  write(root .. "/" .. name .. ".dict", table.concat(lines, "\n") .. "\n")
end

local json_words = { '"inputs"', '"outputs"', '"instances"', '"name"', '"input"', '"output"', '"shape"',
  '"datatype"', '"data"', '"id"', '"parameters"', '"binary_data_size"', '"binary_data_output"',
  '"binary_data"', '"timeout_ms"', '"FP32"', '"FP64"', '"INT8"', '"INT32"', '"INT64"', '"UINT8"',
  "true", "false", "null", "[[", "]]", "1e308", "-0", "9223372036854775807", "18446744073709551616", "\\u0000" }
dictionary("infer", json_words)
local http_words = { "GET ", "POST ", "HEAD ", "PUT ", "DELETE ", " HTTP/1.1\r\n", " HTTP/1.0\r\n", "\r\n\r\n",
  "Host: ", "Content-Length: ", "Transfer-Encoding: chunked\r\n", "Connection: close\r\n",
  "Connection: keep-alive\r\n", "Expect: 100-continue\r\n", "Inference-Header-Content-Length: ",
  "X-Request-Id: ", "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/", "/v1/models/", "/versions/",
  "/ready", "/infer", ":predict", "/metrics", "?q=1", "0\r\n\r\n", "Authorization: Bearer ",
  "fuzz-token-0123456789", "/labels/", "/v2/repository/index" }
for _, word in ipairs(json_words) do http_words[#http_words + 1] = word end
dictionary("http", http_words)

print("fuzz seeds written to " .. root .. "/{safetensors,infer,http}, dictionaries to " .. root .. "/{infer,http}.dict")
