-- lunet.safetensors: round trips, the atomic write, hostile files, and a reader and a writer that
-- share no code with lunet's (Python's json and struct modules).
local lunet = require("lunet")
local safetensors = require("lunet.safetensors")
local h = require("spec.helpers")

local PYTHON = "/usr/bin/python3"

-- An independent reader: the header through json, every tensor's bytes through struct.  One
-- line per tensor and per metadata entry, tab-separated; names, keys and values in hex so that
-- any byte survives the trip.
local PYTHON_READER = [==[
import json, struct, sys
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
header = json.loads(data[8:8 + n].decode('utf-8'))
formats = {'F32': 'f', 'F64': 'd', 'I64': 'q', 'I32': 'i', 'I8': 'b', 'U8': 'B'}
for key, value in (header.pop('__metadata__', None) or {}).items():
    print('meta', key.encode().hex(), value.encode().hex(), sep='\t')
for name, info in header.items():
    begin, end = info['data_offsets']
    fmt = formats[info['dtype']]
    values = struct.unpack('<%d%s' % ((end - begin) // struct.calcsize(fmt), fmt), data[8 + n + begin:8 + n + end])
    print('tensor', name.encode().hex(), info['dtype'], ','.join(map(str, info['shape'])), begin,
          ' '.join(map(repr, values)), sep='\t')
]==]

-- An independent writer: json.dumps escapes every non-ASCII character (\u00e9, surrogate pairs),
-- puts the entries in the opposite order to their data, and pads the header with spaces.
local PYTHON_WRITER = [==[
import json, struct, sys
tensors = [('second', 'I64', [2], struct.pack('<2q', -2**62 - 5, 2**62 + 7)),
           ('first \u00e9\U0001d11e', 'F64', [1, 2], struct.pack('<2d', 0.1, -1e300))]
header, data = {'__metadata__': {'w\u00e9': 'x\ny "\U0001d11e"'}}, b''
for name, dtype, shape, raw in reversed(tensors):
    header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(dict(reversed(list(header.items())))).encode()
text += b' ' * (-len(text) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(text)) + text + data)
]==]

local function hex_decode(s)
  return (s:gsub("..", function(byte) return string.char(tonumber(byte, 16)) end))
end

local function split_tabs(line)
  local fields, start = {}, 1
  while true do
    local at = line:find("\t", start, true)
    fields[#fields + 1] = line:sub(start, (at or 0) - 1)
    if not at then return fields end
    start = at + 1
  end
end

-- Runs a Python script on path; returns its output lines.
local function run_python(script, path)
  local script_path = os.tmpname()
  local file = assert(io.open(script_path, "w"))
  file:write(script)
  file:close()
  local pipe = assert(io.popen(string.format("%s %s %s 2>&1", PYTHON, script_path, path)))
  local lines = {}
  for line in pipe:lines() do lines[#lines + 1] = line end
  local ok = pipe:close()
  os.remove(script_path)
  assert(ok, "python failed: " .. table.concat(lines, "\n"))
  return lines
end

-- What the independent reader sees: tensors (name -> {dtype, shape, begin, values}) and metadata.
local function python_read(path)
  local tensors, metadata = {}, {}
  for _, line in ipairs(run_python(PYTHON_READER, path)) do
    local f = split_tabs(line)
    if f[1] == "meta" then
      metadata[hex_decode(f[2])] = hex_decode(f[3])
    else
      local shape, values = {}, {}
      for d in f[4]:gmatch("[^,]+") do shape[#shape + 1] = math.tointeger(tonumber(d)) end
      for v in f[6]:gmatch("%S+") do values[#values + 1] = tonumber(v) end
      tensors[hex_decode(f[2])] = { dtype = f[3], shape = shape, begin = tonumber(f[5]), values = values }
    end
  end
  return tensors, metadata
end

local read_bytes, write_bytes = h.read_bytes, h.write_bytes

local st_bytes = h.safetensors_bytes

-- The names in directory that contain text.
local function entries_with(directory, text)
  local found = {}
  local pipe = assert(io.popen("ls -a " .. directory))
  for name in pipe:lines() do
    if name:find(text, 1, true) then found[#found + 1] = name end
  end
  pipe:close()
  return found
end

describe("lunet.safetensors", function()
  local directory

  before_each(function() directory = h.make_directory() end)
  after_each(function() h.remove_directory(directory) end)

  local function path_of(name) return directory .. "/" .. name end

  describe("round trips", function()
    it("keeps every dtype's values, shapes and the metadata", function()
      local tensors = {
        f32 = lunet.tensor({ { 1.5, -0.0 }, { 3.4e38, 1e-45 } }),
        f64 = lunet.tensor({ 0.1, -2.5e300, 5e-324 }, "f64"),
        i64 = lunet.tensor({ math.mininteger, -1, math.maxinteger }, "i64"),
        i32 = lunet.tensor({ { -2147483648 }, { 2147483647 } }, "i32"),
        i8 = lunet.tensor({ -128, 127 }, "i8"),
        u8 = lunet.tensor({ 0, 255 }, "u8"),
        scalar = lunet.tensor(7.25, "f64"),
        empty = lunet.zeros({ 0, 3 }),
      }
      local metadata = { ["lunet.format"] = "1", note = "a \"quoted\"\nline\t\\ \u{e9}\u{1d11e}", [""] = "" }
      local path = path_of("all.safetensors")
      assert.is_true(safetensors.write(path, tensors, metadata))
      local back, meta, names = safetensors.read(path)
      assert.are.same(metadata, meta)
      assert.are.same({ "empty", "f32", "f64", "i32", "i64", "i8", "scalar", "u8" }, names) -- sorted
      for name, t in pairs(tensors) do
        assert.are.equal(t.dtype, back[name].dtype, name)
        assert.are.same(t:shape(), back[name]:shape(), name)
        h.assert_values(back[name], t, 0)
      end
      assert.are.equal(math.mininteger, back.i64:get(1))
      assert.are.equal(math.maxinteger, back.i64:get(3))
      assert.are.equal(7.25, back.scalar:item())
      assert.are.equal(0, back.empty:numel())
    end)

    it("keeps the order of a list of pairs, and a table's names in sorted order", function()
      local a, b, c = lunet.ones({ 2 }), lunet.zeros({ 3 }, "i32"), lunet.full({ 1 }, 5, "u8")
      local path = path_of("order.safetensors")
      safetensors.write(path, { { "zeta", a }, { "alpha", b }, { "mid", c } })
      local tensors, metadata, names = safetensors.read(path)
      assert.are.same({ "zeta", "alpha", "mid" }, names)
      assert.are.same({}, metadata)
      h.assert_values(tensors.mid, { 5 })
      -- The data follows the same order: zeta's 8 bytes come first.
      local independent = python_read(path)
      assert.are.same({ 0, 8, 20 }, { independent.zeta.begin, independent.alpha.begin, independent.mid.begin })

      -- The same tensors as a table give the same bytes every time.
      local first, second = path_of("first.safetensors"), path_of("second.safetensors")
      safetensors.write(first, { zeta = a, alpha = b, mid = c }, { k = "v", a = "b" })
      safetensors.write(second, { mid = c, alpha = b, zeta = a }, { a = "b", k = "v" })
      assert.are.equal(read_bytes(first), read_bytes(second))
      assert.are.same({ "alpha", "mid", "zeta" }, select(3, safetensors.read(first)))
    end)

    it("stores a transposed view contiguous, in its logical order", function()
      local base = lunet.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
      local transposed = base:transpose(1, 2)
      assert.is_false(transposed:is_contiguous())
      local path = path_of("view.safetensors")
      safetensors.write(path, { t = transposed, row = base:select(1, 2) })
      local back = safetensors.read(path)
      assert.is_true(back.t:is_contiguous())
      assert.are.same({ 3, 2 }, back.t:shape())
      h.assert_values(back.t, { { 1, 4 }, { 2, 5 }, { 3, 6 } })
      h.assert_values(back.row, { 4, 5, 6 })
      -- The tensors read are new: writing to one changes nothing else.
      back.t:fill(0)
      h.assert_values(base, { { 1, 2, 3 }, { 4, 5, 6 } })
    end)
  end)

  describe("an independent reader and writer agree with lunet", function()
    it("Python's json + struct read what lunet writes", function()
      local tensors = {
        ["layer.0.weight \u{e9}"] = lunet.tensor({ { 0.1, -0.2, 3.5 }, { 1e-30, 6e20, -7 } }),
        bias = lunet.tensor({ 1 / 3, -2 / 3 }, "f64"),
        steps = lunet.tensor({ 2 ^ 53 + 1, -5 }, "i64"),
        counts = lunet.tensor({ { 1, -2 }, { 3, -4 } }, "i32"),
        small = lunet.tensor({ -128, 5 }, "i8"),
        pixels = lunet.tensor({ 0, 200, 255 }, "u8"),
        scalar = lunet.tensor(2.5),
      }
      local metadata = { ["lunet.graph"] = "{\"layers\": [\"Linear\"]}", line = "a\nb\t\"c\"\\" }
      local path = path_of("cross.safetensors")
      safetensors.write(path, tensors, metadata)
      local independent, independent_meta = python_read(path)
      assert.are.same(metadata, independent_meta)
      local count = 0
      for name, t in pairs(tensors) do
        local other = assert(independent[name], name)
        assert.are.equal(t.dtype:upper(), other.dtype)
        assert.are.same(t:shape(), other.shape)
        h.assert_values(t, other.values, 0)
        count = count + 1
      end
      for _ in pairs(independent) do count = count - 1 end
      assert.are.equal(0, count)
      assert.are.equal(2 ^ 53 + 1, independent.steps.values[1])
    end)

    it("lunet reads what Python's json + struct write", function()
      local path = path_of("python.safetensors")
      run_python(PYTHON_WRITER, path)
      local tensors, metadata, names = safetensors.read(path)
      assert.are.same({ "second", "first \u{e9}\u{1d11e}" }, names) -- the header's order
      assert.are.same({ ["w\u{e9}"] = "x\ny \"\u{1d11e}\"" }, metadata)
      assert.are.equal("i64", tensors.second.dtype)
      assert.are.equal(-(1 << 62) - 5, tensors.second:get(1))
      assert.are.equal((1 << 62) + 7, tensors.second:get(2))
      h.assert_values(tensors["first \u{e9}\u{1d11e}"], { { 0.1, -1e300 } }, 0)
    end)
  end)

  describe("writes atomically", function()
    local old_tensors = { w = lunet.tensor({ 1, 2, 3 }) }

    it("leaves no temporary file behind", function()
      local path = path_of("model.safetensors")
      safetensors.write(path, old_tensors)
      safetensors.write(path, { w = lunet.tensor({ 4, 5 }) }, { v = "2" })
      assert.are.same({ "model.safetensors" }, entries_with(directory, "model"))
      h.assert_values(safetensors.read(path).w, { 4, 5 })
    end)

    it("fails without harm when the target is a directory", function()
      local target = path_of("taken")
      assert(os.execute("mkdir " .. target .. " && touch " .. target .. "/inside"))
      local ok, message, code = safetensors.try_write(target, old_tensors)
      assert.is_nil(ok)
      assert.are.equal("LUNET_ERR_IO", code)
      assert.truthy(message:find("safetensors: " .. target .. ": cannot rename", 1, true), message)
      assert.are.same({ "inside" }, entries_with(target, "inside"))
      assert.are.same({}, entries_with(directory, ".tmp."))
      h.assert_error_contains(function() safetensors.write(target, old_tensors) end, target, "cannot rename")
    end)

    it("leaves the old file intact when the directory is read-only", function()
      local path = path_of("model.safetensors")
      safetensors.write(path, old_tensors)
      local before = read_bytes(path)
      assert(os.execute("chmod 555 " .. directory))
      -- root ignores permission bits, so the write runs as an unprivileged user then.
      local id = assert(io.popen("id -u"))
      local uid = id:read("l")
      id:close()
      local prefix = uid == "0" and "setpriv --reuid=65534 --regid=65534 --clear-groups" or ""
      local output = h.run_lua_child(prefix, string.format([[
        local lunet, safetensors = require("lunet"), require("lunet.safetensors")
        print(safetensors.try_write(%q, {w = lunet.tensor({9, 9})}))
      ]], path))
      assert.truthy(output:find("nil\tsafetensors: " .. path .. ": cannot create the temporary file", 1, true), output)
      assert.truthy(output:find("Permission denied\tLUNET_ERR_IO", 1, true), output)
      assert.are.equal(before, read_bytes(path))
      assert.are.same({ "model.safetensors" }, entries_with(directory, "model"))
    end)

    it("leaves the old file intact when the write fails half-way", function()
      local path = path_of("model.safetensors")
      safetensors.write(path, old_tensors)
      local before = read_bytes(path)
      -- A file size limit of a few KB makes the data write fail with EFBIG (SIGXFSZ ignored).
      local output = h.run_lua_child("trap '' XFSZ; ulimit -f 8;", string.format([[
        local lunet, safetensors = require("lunet"), require("lunet.safetensors")
        print(safetensors.try_write(%q, {big = lunet.zeros({1000000})}))
      ]], path))
      assert.truthy(output:find("nil\tsafetensors: writing " .. path .. ".tmp.", 1, true), output)
      assert.truthy(output:find("File too large\tLUNET_ERR_IO", 1, true), output)
      assert.are.equal(before, read_bytes(path))
      assert.are.same({ "model.safetensors" }, entries_with(directory, "model"))
    end)
  end)

  describe("hostile and broken files", function()
    local function check_refused(name, bytes, ...)
      local path = path_of(name)
      write_bytes(path, bytes)
      local tensors, message, code = safetensors.try_read(path)
      assert.is_nil(tensors)
      assert.are.equal("LUNET_ERR_FORMAT", code)
      assert.is_nil(message:find("\n", 1, true), "one line")
      for _, fragment in ipairs({ "safetensors: " .. path .. ": ", ... }) do
        if not message:find(fragment, 1, true) then error(string.format("%q lacks %q", message, fragment), 2) end
      end
      h.assert_error_contains(function() safetensors.read(path) end, path, ...)
    end

    it("returns nil, message for each problem", function()
      local good = st_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', string.rep("\0", 8))
      check_refused("truncated_data", good:sub(1, -2), "run past the end of the data section", "truncated")
      check_refused("truncated_header", good:sub(1, 20), "runs past the end of the file")
      check_refused("truncated_length", good:sub(1, 4), "the file holds 4 bytes")
      check_refused("huge_header", string.pack("<I8", 1 << 40) .. "{}", "is above the limit of 100000000 bytes")
      check_refused("f16", st_bytes('{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', "abcd"),
        'tensor "w": dtype F16 is not supported')
      check_refused("size_mismatch", st_bytes('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', "12345678"),
        'tensor "w": data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12')
      check_refused("duplicate", st_bytes('{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},' ..
        '"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'), 'duplicate key "a"')
      check_refused("hole", st_bytes('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', "xy"),
        "bytes [0, 1) of the data section belong to no tensor")
      check_refused("bad_json", st_bytes('{"a":{"dtype":"U8",}}'), "header byte 19: expected a string key")
      check_refused("metadata", st_bytes('{"__metadata__":{"epoch":3}}'), '__metadata__ value of "epoch" is a number')
      check_refused("newline_name", st_bytes('{"a\\nb":1}'), 'tensor "a\\nb": the entry is a number')
    end)

    it("reports a missing file or a directory as an I/O failure", function()
      local missing = path_of("missing.safetensors")
      local tensors, message, code = safetensors.try_read(missing)
      assert.is_nil(tensors)
      assert.are.equal("LUNET_ERR_IO", code)
      assert.are.equal("safetensors: " .. missing .. ": No such file or directory", message)
      local _, dir_message = safetensors.try_read(directory)
      assert.are.equal("safetensors: " .. directory .. ": not a regular file", dir_message)
    end)
  end)

  describe("misuse raises", function()
    local t = lunet.ones({ 2 })

    it("for arguments of the wrong kind", function()
      local path = path_of("misuse.safetensors")
      h.assert_error_contains(function() safetensors.write(1, {}) end, "safetensors.write: path must be a string")
      h.assert_error_contains(function() safetensors.read(nil) end, "safetensors.read: path must be a string")
      h.assert_error_contains(function() safetensors.write(path, "t") end, "bad argument #2", "table expected")
      h.assert_error_contains(function() safetensors.write(path, { w = 1 }) end,
        'the value of "w" must be a lunet.Tensor, got number')
      h.assert_error_contains(function() safetensors.write(path, { { "w", "x" } }) end,
        'the value of "w" must be a lunet.Tensor, got string')
      h.assert_error_contains(function() safetensors.write(path, { t }) end,
        "entry 1 of the list must be a {name, tensor} pair, got lunet.Tensor")
      h.assert_error_contains(function() safetensors.write(path, { { 1, t } }) end, "a tensor name must be a string")
      h.assert_error_contains(function() safetensors.write(path, { { "a", t }, b = t }) end, "not a mix of both")
      h.assert_error_contains(function() safetensors.write(path, { ["a\0b"] = t }) end, "contains a NUL byte")
      h.assert_error_contains(function() safetensors.write(path, { w = t }, { epoch = 3 }) end,
        'metadata value of "epoch" must be a string, got number')
      h.assert_error_contains(function() safetensors.write(path, { w = t }, { [1] = "x" }) end,
        "a metadata key must be a string, got number")
      h.assert_error_contains(function() safetensors.try_write(path, { { "a", t }, { "a", t } }) end,
        'tensor name "a" is given twice (entries 1 and 2)')
      h.assert_error_contains(function() safetensors.write(path, { [""] = t }) end, "tensor 1 has an empty name")
      h.assert_error_contains(function() safetensors.write(path, { ["\255"] = t }) end, "is not valid UTF-8")
      h.assert_error_contains(function() safetensors.write(path, { __metadata__ = t }) end, "reserved")
      assert.are.same({}, entries_with(directory, "misuse"))
    end)
  end)
end)
