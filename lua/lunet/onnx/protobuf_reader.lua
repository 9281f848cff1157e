--- The protobuf wire format, reading side, for bytes nobody vouches for: every length, varint
-- and fixed-width value is checked against the bytes that remain in its enclosing message before
-- it is read, and a problem raises a message saying what and at which byte offset.  Nothing is
-- allocated from a length in the file; length-delimited fields are kept as (first, last) byte
-- ranges of the one file string, and only copied out when asked for.
--
--   local reader = require("lunet.onnx.protobuf_reader")
--   for _, f in ipairs(reader.fields(bytes, 1, #bytes)) do ... f.number, f.wire, f.value or f.first..f.last end
local reader = {}

reader.VARINT, reader.FIXED64, reader.LENGTH_DELIMITED, reader.FIXED32 = 0, 1, 2, 5

-- Errors carry a marker so the importer can add the file's name in front.
local function fail(fmt, ...) error({ protobuf = string.format(fmt, ...) }, 0) end

--- Reads a varint at pos (no further than last); returns its value (a 64-bit integer, wrapped
-- as Lua's integers are) and the position after it.
function reader.varint(bytes, pos, last)
  local value, shift = 0, 0
  while true do
    if pos > last then fail("a number runs past the end of its message at byte %d", pos - 1) end
    local b = bytes:byte(pos)
    pos = pos + 1
    value = value | ((b & 0x7f) << shift)
    if b < 0x80 then return value, pos end
    shift = shift + 7
    if shift >= 70 then fail("a number longer than 10 bytes at byte %d", pos - 1) end
  end
end

--- The fields of the message in bytes[first..last], in order: each {number =, wire =, value =}
-- for numbers (varint, fixed32 as raw bytes' integer, fixed64) or {number =, wire =, first =,
-- last =} for length-delimited fields.  Groups (wire types 3 and 4) are refused: onnx.proto
-- has none.
function reader.fields(bytes, first, last)
  local out = {}
  local pos = first
  while pos <= last do
    local start = pos
    local key
    key, pos = reader.varint(bytes, pos, last)
    local number, wire = key >> 3, key & 7
    if number < 1 or number > 0x1fffffff then fail("a field number of %d at byte %d", number, start - 1) end
    local field = { number = number, wire = wire }
    if wire == reader.VARINT then
      field.value, pos = reader.varint(bytes, pos, last)
    elseif wire == reader.FIXED32 or wire == reader.FIXED64 then
      local width = wire == reader.FIXED32 and 4 or 8
      if last - pos + 1 < width then
        fail("a %d-byte value runs past the end of its message at byte %d", width, pos - 1)
      end
      field.first, field.last = pos, pos + width - 1
      pos = pos + width
    elseif wire == reader.LENGTH_DELIMITED then
      local length
      length, pos = reader.varint(bytes, pos, last)
      -- Compared as unsigned: a length of 2^63 or more wraps to a negative Lua integer.
      if math.ult(last - pos + 1, length) then
        fail("field %d at byte %d claims %s bytes but its message has %d left", number, start - 1,
          math.ult(length, 1 << 53) and string.format("%d", length) or "more than 2^53", last - pos + 1)
      end
      field.first, field.last = pos, pos + length - 1
      pos = pos + length
    else
      fail("field %d at byte %d has wire type %d, which onnx.proto does not use", number, start - 1, wire)
    end
    out[#out + 1] = field
  end
  return out
end

--- The bytes of a length-delimited field as a string.
function reader.bytes(bytes, field)
  if field.wire ~= reader.LENGTH_DELIMITED then fail("field %d should hold bytes (wire type 2)", field.number) end
  return bytes:sub(field.first, field.last)
end

--- The integer of a varint field.
function reader.integer(field)
  if field.wire ~= reader.VARINT then fail("field %d should hold an integer (wire type 0)", field.number) end
  return field.value
end

--- The float of a fixed32 field.
function reader.float(bytes, field)
  if field.wire ~= reader.FIXED32 then fail("field %d should hold a float (wire type 5)", field.number) end
  return (string.unpack("<f", bytes, field.first))
end

--- The integers of a repeated integer field, packed (one length-delimited run) or not.
function reader.append_integers(bytes, field, out)
  if field.wire == reader.VARINT then
    out[#out + 1] = field.value
  elseif field.wire == reader.LENGTH_DELIMITED then
    local pos = field.first
    while pos <= field.last do
      out[#out + 1], pos = reader.varint(bytes, pos, field.last)
    end
  else
    fail("field %d should hold integers", field.number)
  end
  return out
end

--- The floats of a repeated float field, packed or not.
function reader.append_floats(bytes, field, out)
  if field.wire == reader.FIXED32 then
    out[#out + 1] = reader.float(bytes, field)
  elseif field.wire == reader.LENGTH_DELIMITED then
    local length = field.last - field.first + 1
    if length % 4 ~= 0 then fail("packed floats of %d bytes (not a multiple of 4)", length) end
    for pos = field.first, field.last, 4 do out[#out + 1] = (string.unpack("<f", bytes, pos)) end
  else
    fail("field %d should hold floats", field.number)
  end
  return out
end

--- The message a protobuf error raised by this module carries, or nil for other errors.
function reader.error_message(err)
  return type(err) == "table" and err.protobuf or nil
end

return reader
