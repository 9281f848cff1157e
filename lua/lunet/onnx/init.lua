--- ONNX files: export a model of built-in layers, and load a model from a file another tool
-- (PyTorch's torch.onnx.export, say) wrote, as long as it uses the same operators.
--
--   local onnx = require("lunet.onnx")           -- also lunet.onnx
--   onnx.export(model, "fashion.onnx", {input_shape = {1, 1, 28, 28}, dynamic_batch = true})
--   local again = onnx.load("fashion.onnx")      -- a lunet model: predict, save, serve
--
-- Files are opset 13, IR version 7, float32; the graph's input is "input" and its output
-- "output", with a symbolic batch dimension "batch" unless dynamic_batch = false.  See
-- export.lua and import.lua for the operators each side handles.
local architecture = require("lunet.architecture")
local lunet_core = require("lunet.core")
local export = require("lunet.onnx.export")
local import = require("lunet.onnx.import")
local model_reader = require("lunet.onnx.model_reader")
local reader = require("lunet.onnx.protobuf_reader")

local onnx = {}

--- Writes model as an ONNX file at path (atomically: a temporary file beside it, then a rename).
-- @param model a Sequential of built-in layers
-- @param path the file to write
-- @param opts input_shape (required: the input's shape, batch first), dynamic_batch (default true)
-- @return path and the file's size in bytes
function onnx.export(model, path, opts)
  if type(path) ~= "string" or path == "" then error("onnx.export: path must be a non-empty string", 2) end
  opts = opts or {}
  local bytes = export.encode(model, path, opts)
  -- a temporary file beside path, fsync'd and renamed: the old file or the whole new one
  local written, err = pcall(lunet_core.write_file_atomic, path, bytes)
  if not written then error("onnx.export: " .. tostring(err), 0) end
  return path, #bytes
end

local function read_whole_file(path)
  local f, err = io.open(path, "rb")
  if not f then error(string.format("onnx.load: %s", err), 0) end
  local bytes, read_err = f:read("a")
  f:close()
  if not bytes then error(string.format("onnx.load: %s: cannot read it: %s", path, tostring(read_err)), 0) end
  return bytes
end

--- Loads an ONNX file (a chain of supported operators: see import.lua) as a lunet model with
-- its weights, ready to predict, save and serve.  Unsupported operators, hostile or truncated
-- files raise an error naming the file and the problem.
-- @return the model (with input_shape, one sample's shape, when the file declares it)
function onnx.load(path)
  if type(path) ~= "string" then error("onnx.load: path must be a string", 2) end
  local bytes = read_whole_file(path)
  local ok, model = pcall(function()
    local decoded = model_reader.decode(bytes)
    local desc, state, sample_shape = import.convert(decoded, bytes)
    local built = architecture.build(desc)
    built:load_state_dict(state)
    built.input_shape = sample_shape
    return built:eval()
  end)
  if not ok then
    local message = reader.error_message(model)
    if message then message = "not a valid ONNX file: " .. message end
    error(string.format("onnx.load: %s: %s", path, message or tostring(model)), 0)
  end
  return model
end

return onnx
