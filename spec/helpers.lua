--- Shared helpers for the lunet specs.
local lunet = require("lunet")
local assert = require("luassert")

local helpers = {}

--- The two Fashion-MNIST models of bench/fashion.lua (without the CNN's Dropout), fresh.
function helpers.fashion_mlp()
  local nn = lunet.nn
  return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
end

function helpers.fashion_cnn()
  local nn = lunet.nn
  return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
    nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
end

--- Flattens a nested table of numbers (or a tensor's totable()) into a list.
function helpers.flatten(t, out)
  out = out or {}
  if type(t) ~= "table" then
    out[#out + 1] = t
    return out
  end
  for _, v in ipairs(t) do helpers.flatten(v, out) end
  return out
end

--- Asserts that a tensor's values equal a nested table (or another tensor) within tol.
function helpers.assert_values(t, expected, tol)
  tol = tol or 0
  local got = helpers.flatten(t:totable())
  local want = helpers.flatten(lunet.is_tensor(expected) and expected:totable() or expected)
  assert.are.equal(#want, #got, "element count")
  for i = 1, #want do
    local ok = math.abs(got[i] - want[i]) <= tol or (got[i] ~= got[i] and want[i] ~= want[i])
    if not ok then
      error(string.format("element %d: got %.10g, expected %.10g (tolerance %g)", i, got[i], want[i], tol), 2)
    end
  end
end

--- Asserts that fn raises an error whose message contains every given fragment (plain text).
function helpers.assert_error_contains(fn, ...)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  err = tostring(err)
  for _, fragment in ipairs({ ... }) do
    if not err:find(fragment, 1, true) then
      error(string.format("error %q does not mention %q", err, fragment), 2)
    end
  end
  return err
end

--- A float64 tensor of the given shape that requires grad, with values kept away from the
-- kinks of relu/abs/max (|x| >= 0.1) unless positive = true asks for values in [0.5, 2.5).
function helpers.param(shape, positive)
  local t = lunet.randn(shape, "f64")
  local v
  if positive then
    v = t:abs():clamp(nil, 2) + 0.5
  else
    v = t + (t:gt(0):to("f64") * 2 - 1) * 0.1
  end
  return lunet.tensor(v, { dtype = "f64", requires_grad = true })
end

--- Asserts that lunet.gradcheck passes for fn on fresh param()s of the given shapes (a shape
-- table may carry positive = true).
function helpers.assert_gradcheck_shapes(fn, shapes, name)
  local inputs = {}
  for i, shape in ipairs(shapes) do inputs[i] = helpers.param(shape, shape.positive) end
  local ok, message = lunet.gradcheck(fn, inputs)
  if not ok then error((name and (name .. ": ") or "") .. message, 2) end
end

--- Asserts that lunet.gradcheck passes for fn on the inputs.
function helpers.assert_gradcheck(fn, inputs, name)
  local ok, message = lunet.gradcheck(fn, inputs)
  if not ok then error((name and (name .. ": ") or "") .. message, 2) end
end

--- A whole file's bytes.
function helpers.read_bytes(path)
  local file = assert(io.open(path, "rb"))
  local bytes = file:read("a")
  file:close()
  return bytes
end

--- Writes bytes as the whole of a file.
function helpers.write_bytes(path, bytes)
  local file = assert(io.open(path, "wb"))
  file:write(bytes)
  file:close()
end

--- A new empty directory for a spec's files (mode 755); remove it with remove_directory.
function helpers.make_directory()
  local directory = os.tmpname()
  os.remove(directory)
  assert(os.execute("mkdir -m 755 '" .. directory .. "'"))
  return directory
end

--- Removes a directory from make_directory and everything in it, read-only parts included.
function helpers.remove_directory(directory)
  if directory then os.execute("chmod -R u+w '" .. directory .. "' && rm -rf '" .. directory .. "'") end
end

--- The bytes of a safetensors file: the header (a table, JSON-encoded here, or text) after its
-- true length, then data.
function helpers.safetensors_bytes(header, data)
  if type(header) == "table" then header = require("lunet.json").encode(header) end
  return string.pack("<I8", #header) .. header .. (data or "")
end

--- Runs a Lua script in a child interpreter with this one's module paths, prefixed by prefix
-- (a shell fragment: limits, another user, ""); returns its output (stdout and stderr).
function helpers.run_lua_child(prefix, code)
  local script_path = os.tmpname()
  local file = assert(io.open(script_path, "w"))
  file:write(string.format("package.path = %q\npackage.cpath = %q\n", package.path, package.cpath), code)
  file:close()
  os.execute("chmod 644 " .. script_path)
  local pipe = assert(io.popen(prefix .. " lua5.4 " .. script_path .. " 2>&1"))
  local output = pipe:read("a")
  pipe:close()
  os.remove(script_path)
  return output
end

return helpers
