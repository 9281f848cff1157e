--- Tensors to and from little-endian bytes, the form ONNX's TensorProto.raw_data holds.
--
-- These run once per exported or imported weight, not per step, and go through Lua numbers in
-- blocks (string.pack/unpack of BLOCK values at a time); the reference models' 100k-1M weights
-- take milliseconds.
local lunet_core = require("lunet.core")

local tensor_bytes = {}

-- Values per string.pack/unpack call: large enough to be fast, small enough for Lua's stack.
local BLOCK = 4096

local FORMATS = { f32 = { "f", 4 }, f64 = { "d", 8 }, i64 = { "i8", 8 }, i32 = { "i4", 4 }, i8 = { "b", 1 },
  u8 = { "B", 1 } }

local function format_of(dtype)
  local f = FORMATS[dtype]
  if not f then error("onnx: tensors of dtype " .. tostring(dtype) .. " have no ONNX byte form here", 3) end
  return f
end

--- The bytes of t's values in row-major order, as dtype (default t's own dtype).
function tensor_bytes.encode(t, dtype)
  dtype = dtype or t.dtype
  local code = format_of(dtype)[1]
  local values = t:contiguous():reshape({ t:numel() }):totable()
  local parts = {}
  for first = 1, #values, BLOCK do
    local last = math.min(first + BLOCK - 1, #values)
    parts[#parts + 1] = string.pack("<" .. string.rep(code, last - first + 1), table.unpack(values, first, last))
  end
  return table.concat(parts)
end

--- Reads count values of dtype from bytes starting at byte `first` into a list of numbers.
-- The caller has checked that the bytes are there.
function tensor_bytes.decode_values(bytes, first, count, dtype)
  local code, width = table.unpack(format_of(dtype))
  local values = {}
  for start = 1, count, BLOCK do
    local n = math.min(BLOCK, count - start + 1)
    local block = { string.unpack("<" .. string.rep(code, n), bytes, first + (start - 1) * width) }
    table.move(block, 1, n, start, values)
  end
  return values
end

--- A tensor of the given shape and dtype from a list of numbers.
function tensor_bytes.tensor(values, shape, dtype)
  if #shape == 0 then return lunet_core.tensor(values[1], { dtype = dtype }) end
  return lunet_core.tensor(values, { dtype = dtype }):reshape(shape)
end

return tensor_bytes
