--- An ONNX graph under construction, and its encoding as a ModelProto: the exporter adds nodes
-- and initializers in order, then asks for the bytes.  Nodes stay Lua tables until encode, so
-- the exporter can still rename the last node's output to "output".
local pb = require("lunet.onnx.protobuf_writer")
local schema = require("lunet.onnx.schema")
local tensor_bytes = require("lunet.onnx.tensor_bytes")

local GraphWriter = {}
GraphWriter.__index = GraphWriter

function GraphWriter.new()
  return setmetatable({ nodes = {}, initializers = {}, used_names = {} }, GraphWriter)
end

--- A value name not used before, from a readable base ("3.Conv2d" -> "3.Conv2d", "3.Conv2d_1", ...).
function GraphWriter:fresh_name(base)
  local name, n = base, 0
  while self.used_names[name] do
    n = n + 1
    name = base .. "_" .. n
  end
  self.used_names[name] = true
  return name
end

-- Adds an initializer of raw little-endian bytes under a fresh name; returns the name.
function GraphWriter:add_initializer(base_name, dims, data_type, raw)
  local name = self:fresh_name(base_name)
  self.initializers[#self.initializers + 1] = { name = name, dims = dims, data_type = data_type, raw = raw }
  return name
end

--- Adds a float32 initializer holding tensor t (any float dtype; stored as float32); returns its name.
function GraphWriter:add_tensor(base_name, t)
  return self:add_initializer(base_name, t:shape(), schema.DataType.FLOAT, tensor_bytes.encode(t, "f32"))
end

-- The ONNX element type of each lunet dtype an exported int8 model stores.
local DATA_TYPES = { f32 = schema.DataType.FLOAT, u8 = schema.DataType.UINT8, i8 = schema.DataType.INT8,
  i32 = schema.DataType.INT32 }

--- Adds an initializer holding tensor t as dtype ("f32", "u8", "i8" or "i32"; a quantized
-- layer's weights, scales, zero points and bias); returns its name.
function GraphWriter:add_typed(base_name, t, dtype)
  return self:add_initializer(base_name, t:shape(), DATA_TYPES[dtype], tensor_bytes.encode(t, dtype))
end

--- Adds an int64 initializer holding a list of integers (a Reshape's shape); returns its name.
function GraphWriter:add_int64_list(base_name, values)
  return self:add_initializer(base_name, { #values }, schema.DataType.INT64,
    string.pack("<" .. string.rep("i8", #values), table.unpack(values)))
end

--- Adds a float32 scalar initializer (the constants of a decomposed GELU); returns its name.
function GraphWriter:add_scalar(base_name, x)
  return self:add_initializer(base_name, {}, schema.DataType.FLOAT, string.pack("<f", x))
end

--- Adds a node; attributes is a list of {name, kind, value} with kind "int", "float" or
-- "ints".  Returns the name of its (single) output, made from output_base.
function GraphWriter:add_node(op_type, inputs, output_base, attributes)
  local output, n = self:fresh_name(output_base), #self.nodes + 1
  self.nodes[n] = { op_type = op_type, inputs = inputs, output = output, name = string.format("%s_%d", op_type, n),
    attributes = attributes or {} }
  return output
end

--- Renames the value the last node produces (the graph's result must be called "output").
function GraphWriter:rename_last_output(name)
  self.nodes[#self.nodes].output = name
end

local function encode_attribute(a)
  local name, kind, value = a[1], a[2], a[3]
  local A, T = schema.Attribute, schema.AttributeType
  local body
  if kind == "int" then
    body = pb.message(pb.varint_field(A.i, value), pb.varint_field(A.type, T.INT))
  elseif kind == "float" then
    body = pb.message(pb.float_field(A.f, value), pb.varint_field(A.type, T.FLOAT))
  elseif kind == "ints" then
    body = pb.message(pb.varint_fields(A.ints, value), pb.varint_field(A.type, T.INTS))
  else
    error("onnx: unknown attribute kind " .. tostring(kind))
  end
  return pb.message(pb.bytes_field(A.name, name), body)
end

local function encode_node(node)
  local N = schema.Node
  local parts = {}
  for _, input in ipairs(node.inputs) do parts[#parts + 1] = pb.bytes_field(N.input, input) end
  parts[#parts + 1] = pb.bytes_field(N.output, node.output)
  parts[#parts + 1] = pb.bytes_field(N.name, node.name)
  parts[#parts + 1] = pb.bytes_field(N.op_type, node.op_type)
  for _, a in ipairs(node.attributes) do parts[#parts + 1] = pb.bytes_field(N.attribute, encode_attribute(a)) end
  return table.concat(parts)
end

local function encode_initializer(t)
  local T = schema.Tensor
  return pb.message(pb.varint_fields(T.dims, t.dims), pb.varint_field(T.data_type, t.data_type),
    pb.bytes_field(T.name, t.name), pb.bytes_field(T.raw_data, t.raw))
end

-- A float32 tensor value with its shape; a string entry in dims is a symbolic dimension ("batch").
local function encode_value_info(name, dims)
  local D = schema.Dimension
  local dim_parts = {}
  for i, d in ipairs(dims) do
    local dim = type(d) == "string" and pb.bytes_field(D.dim_param, d) or pb.varint_field(D.dim_value, d)
    dim_parts[i] = pb.bytes_field(schema.TensorShape.dim, dim)
  end
  local tensor_type = pb.message(pb.varint_field(schema.TypeTensor.elem_type, schema.DataType.FLOAT),
    pb.bytes_field(schema.TypeTensor.shape, table.concat(dim_parts)))
  local type_proto = pb.bytes_field(schema.Type.tensor_type, tensor_type)
  return pb.message(pb.bytes_field(schema.ValueInfo.name, name), pb.bytes_field(schema.ValueInfo.type, type_proto))
end

--- The ModelProto bytes: the graph with one input and one output of the given shapes.
function GraphWriter:encode(input, output, producer_version)
  local G = schema.Graph
  local parts = {}
  for _, node in ipairs(self.nodes) do parts[#parts + 1] = pb.bytes_field(G.node, encode_node(node)) end
  parts[#parts + 1] = pb.bytes_field(G.name, "lunet")
  for _, t in ipairs(self.initializers) do parts[#parts + 1] = pb.bytes_field(G.initializer, encode_initializer(t)) end
  parts[#parts + 1] = pb.bytes_field(G.input, encode_value_info(input.name, input.dims))
  parts[#parts + 1] = pb.bytes_field(G.output, encode_value_info(output.name, output.dims))
  local M = schema.Model
  local opset = pb.message(pb.bytes_field(schema.OperatorSetId.domain, ""),
    pb.varint_field(schema.OperatorSetId.version, schema.OPSET_VERSION))
  return pb.message(pb.varint_field(M.ir_version, schema.IR_VERSION), pb.bytes_field(M.producer_name, "lunet"),
    pb.bytes_field(M.producer_version, producer_version), pb.bytes_field(M.graph, table.concat(parts)),
    pb.bytes_field(M.opset_import, opset))
end

return GraphWriter
