--- Reading and writing safetensors files (Hugging Face's format): an 8-byte header length, a
-- JSON header naming each tensor's dtype, shape and byte range, then the raw little-endian data.
-- Any safetensors reader can read what write produces, and read accepts files written by others
-- as long as their dtypes are lunet's (F32, F64, I64, I32, I8, U8).
--
-- Two forms of each function:
--   read, write          raise an error naming the file and the problem (the usual choice);
--   try_read, try_write  return nil, message, code instead when the file or the filesystem is at
--                        fault (code "LUNET_ERR_IO" or "LUNET_ERR_FORMAT"), for callers that carry
--                        on, like a server keeping its old model when a new file is bad.
-- Both forms raise for misuse: wrong argument types, empty or duplicate names, names with NUL
-- bytes or invalid UTF-8, metadata that is not strings.
--
--   local safetensors = require("lunet.safetensors")
--   safetensors.write("model.safetensors", {["fc.weight"] = w, ["fc.bias"] = b}, {epoch = "3"})
--   local tensors, metadata, names = safetensors.read("model.safetensors")
local core = require("lunet.core")

local safetensors = {}

local function check_path(path, fname)
  if type(path) ~= "string" then error(fname .. ": path must be a string, got " .. type(path), 3) end
end

--- Writes tensors and metadata to path, atomically: the file is written under a temporary name
-- in the same directory, synced and renamed over path, so a crash leaves the old file or the new
-- one, never a mix; a failed write leaves no temporary file behind.
-- @param path the file to write
-- @param tensors a table name -> tensor (stored in sorted name order, so the same tensors always
--   give the same bytes) or a list of {name, tensor} pairs (stored in the list's order); tensors
--   of any strides are stored contiguous
-- @param[opt] metadata a table of string keys and string values (the header's __metadata__)
-- @return true, or nil, message, code
function safetensors.try_write(path, tensors, metadata)
  check_path(path, "safetensors.try_write")
  return core.safetensors_write(path, tensors, metadata)
end

--- Like try_write, but raises on failure.
-- @return true
function safetensors.write(path, tensors, metadata)
  check_path(path, "safetensors.write")
  local ok, message = core.safetensors_write(path, tensors, metadata)
  if not ok then error(message, 2) end
  return true
end

--- Reads a whole file after checking its header against the file: every size, offset and dtype.
-- @param path the file to read
-- @return tensors (a table name -> new contiguous tensor), metadata (a table key -> string value,
--   empty when the file has none) and names (the tensor names in the header's order); or nil,
--   message, code
function safetensors.try_read(path)
  check_path(path, "safetensors.try_read")
  return core.safetensors_read(path)
end

--- Like try_read, but raises on failure.
-- @return tensors, metadata, names
function safetensors.read(path)
  check_path(path, "safetensors.read")
  local tensors, metadata, names = core.safetensors_read(path)
  if not tensors then error(metadata, 2) end
  return tensors, metadata, names
end

return safetensors
