--- The protobuf wire format, writing side: each function returns the bytes of one field, and a
-- message is the concatenation of its fields' bytes (protobuf has no message header), so nested
-- messages are built inside out as plain strings.
--
-- Why our own writer and not Debian's protobuf-c: an ONNX file needs five wire-format primitives
-- (varint, 32-bit float, length-delimited bytes and their key), which fit on one page of Lua with
-- nothing to generate from onnx.proto, no new C dependency for the rock, and no C to keep safe.
-- The files we write are a few megabytes at most, well within what Lua strings handle.
--
--   local pb = require("lunet.onnx.protobuf_writer")
--   local dim = pb.message(pb.varint_field(1, 28))          -- a Dimension with dim_value 28
local writer = {}

local WIRE_VARINT, WIRE_LENGTH_DELIMITED, WIRE_FIXED32 = 0, 2, 5

--- The varint encoding of an integer: 7 bits a byte, lowest first, the high bit saying "more".
-- A negative int64 is written as its 64-bit two's complement (ten bytes), as protobuf requires.
function writer.varint(n)
  assert(math.type(n) == "integer", "protobuf varint: an integer is required")
  local bytes = {}
  -- math.ult compares as unsigned, so a negative n (a large unsigned value) keeps looping and
  -- >> (a logical shift in Lua 5.4) brings it down to zero after ten bytes.
  while math.ult(0x7f, n) do
    bytes[#bytes + 1] = (n & 0x7f) | 0x80
    n = n >> 7
  end
  bytes[#bytes + 1] = n
  return string.char(table.unpack(bytes))
end

local function key(field, wire_type) return writer.varint((field << 3) | wire_type) end

--- An integer field (int64, int32, enum or bool).
function writer.varint_field(field, n) return key(field, WIRE_VARINT) .. writer.varint(n) end

--- A float field (32-bit little-endian).
function writer.float_field(field, x) return key(field, WIRE_FIXED32) .. string.pack("<f", x) end

--- A bytes, string or embedded-message field.
function writer.bytes_field(field, bytes)
  return key(field, WIRE_LENGTH_DELIMITED) .. writer.varint(#bytes) .. bytes
end

--- A repeated integer field, one entry per value: onnx.proto is proto2, whose repeated scalars
-- are unpacked unless declared packed (readers accept both).
function writer.varint_fields(field, values)
  local parts = {}
  for i, v in ipairs(values) do parts[i] = writer.varint_field(field, v) end
  return table.concat(parts)
end

--- Joins field bytes (and nils, which are left out: absent optional fields) into one message.
function writer.message(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local part = select(i, ...)
    if part then parts[#parts + 1] = part end
  end
  return table.concat(parts)
end

return writer
