--- Decodes an ONNX ModelProto into plain Lua tables: the opset, and the graph's nodes (with
-- their attributes), initializers, inputs and outputs.  Only what the importer uses is kept;
-- every other field is skipped after its length has been checked.  Tensors stay as byte ranges
-- until tensor_value turns one into a lunet tensor, after checking its size against its bytes.
local reader = require("lunet.onnx.protobuf_reader")
local schema = require("lunet.onnx.schema")
local tensor_bytes = require("lunet.onnx.tensor_bytes")

local model_reader = {}

local MAX_DIMS = 8

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function each_field(bytes, first, last, handlers)
  for _, field in ipairs(reader.fields(bytes, first, last)) do
    local handler = handlers[field.number]
    if handler then handler(field) end
  end
end

local function decode_tensor(bytes, first, last)
  local T = schema.Tensor
  local t = { dims = {}, data_type = 0, name = "", float_data = {}, int64_data = {}, int32_data = {} }
  each_field(bytes, first, last, {
    [T.dims] = function(f) reader.append_integers(bytes, f, t.dims) end,
    [T.data_type] = function(f) t.data_type = reader.integer(f) end,
    [T.float_data] = function(f) reader.append_floats(bytes, f, t.float_data) end,
    [T.int32_data] = function(f) reader.append_integers(bytes, f, t.int32_data) end,
    [T.int64_data] = function(f) reader.append_integers(bytes, f, t.int64_data) end,
    [T.name] = function(f) t.name = reader.bytes(bytes, f) end,
    [T.raw_data] = function(f)
      if f.wire ~= reader.LENGTH_DELIMITED then fail("a tensor's raw_data is not bytes") end
      t.raw_first, t.raw_last = f.first, f.last
    end,
    [T.data_location] = function(f) t.external = reader.integer(f) == 1 end,
  })
  return t
end

local function decode_attribute(bytes, first, last)
  local A = schema.Attribute
  local a = { name = "", ints = {}, floats = {} }
  each_field(bytes, first, last, {
    [A.name] = function(f) a.name = reader.bytes(bytes, f) end,
    [A.f] = function(f) a.f = reader.float(bytes, f) end,
    [A.i] = function(f) a.i = reader.integer(f) end,
    [A.s] = function(f) a.s = reader.bytes(bytes, f) end,
    [A.t] = function(f) a.t = decode_tensor(bytes, f.first, f.last) end,
    [A.g] = function() a.has_graph = true end,
    [A.floats] = function(f) reader.append_floats(bytes, f, a.floats) end,
    [A.ints] = function(f) reader.append_integers(bytes, f, a.ints) end,
    [A.type] = function(f) a.type = reader.integer(f) end,
  })
  return a
end

local function decode_node(bytes, first, last)
  local N = schema.Node
  local node = { inputs = {}, outputs = {}, name = "", op_type = "", domain = "", attributes = {} }
  each_field(bytes, first, last, {
    [N.input] = function(f) node.inputs[#node.inputs + 1] = reader.bytes(bytes, f) end,
    [N.output] = function(f) node.outputs[#node.outputs + 1] = reader.bytes(bytes, f) end,
    [N.name] = function(f) node.name = reader.bytes(bytes, f) end,
    [N.op_type] = function(f) node.op_type = reader.bytes(bytes, f) end,
    [N.domain] = function(f) node.domain = reader.bytes(bytes, f) end,
    [N.attribute] = function(f)
      local a = decode_attribute(bytes, f.first, f.last)
      node.attributes[a.name] = a
    end,
  })
  return node
end

-- A ValueInfoProto: its name and, when declared, its dims (integers, or strings for symbolic ones).
local function decode_value_info(bytes, first, last)
  local v = { name = "" }
  each_field(bytes, first, last, {
    [schema.ValueInfo.name] = function(f) v.name = reader.bytes(bytes, f) end,
    [schema.ValueInfo.type] = function(type_field)
      each_field(bytes, type_field.first, type_field.last, { [schema.Type.tensor_type] = function(tensor_field)
        each_field(bytes, tensor_field.first, tensor_field.last, {
          [schema.TypeTensor.elem_type] = function(f) v.elem_type = reader.integer(f) end,
          [schema.TypeTensor.shape] = function(shape_field)
            v.dims = {}
            each_field(bytes, shape_field.first, shape_field.last, { [schema.TensorShape.dim] = function(dim_field)
              local dim = "?"
              each_field(bytes, dim_field.first, dim_field.last, {
                [schema.Dimension.dim_value] = function(f) dim = reader.integer(f) end,
                [schema.Dimension.dim_param] = function(f) dim = reader.bytes(bytes, f) end,
              })
              v.dims[#v.dims + 1] = dim
            end })
          end,
        })
      end })
    end,
  })
  return v
end

local function decode_graph(bytes, first, last)
  local G = schema.Graph
  local graph = { nodes = {}, initializers = {}, inputs = {}, outputs = {} }
  each_field(bytes, first, last, {
    [G.node] = function(f) graph.nodes[#graph.nodes + 1] = decode_node(bytes, f.first, f.last) end,
    [G.initializer] = function(f)
      local t = decode_tensor(bytes, f.first, f.last)
      graph.initializers[t.name] = t
    end,
    [G.input] = function(f) graph.inputs[#graph.inputs + 1] = decode_value_info(bytes, f.first, f.last) end,
    [G.output] = function(f) graph.outputs[#graph.outputs + 1] = decode_value_info(bytes, f.first, f.last) end,
  })
  return graph
end

--- Decodes the whole file's bytes: {ir_version =, opset = <default domain's version>, graph = ...}.
-- Raises a string (decoding problems) or a protobuf_reader error table.
function model_reader.decode(bytes)
  local M = schema.Model
  local model = {}
  each_field(bytes, 1, #bytes, {
    [M.ir_version] = function(f) model.ir_version = reader.integer(f) end,
    [M.graph] = function(f) model.graph = decode_graph(bytes, f.first, f.last) end,
    [M.opset_import] = function(f)
      local domain, version = "", nil
      each_field(bytes, f.first, f.last, {
        [schema.OperatorSetId.domain] = function(d) domain = reader.bytes(bytes, d) end,
        [schema.OperatorSetId.version] = function(v) version = reader.integer(v) end,
      })
      if domain == "" or domain == "ai.onnx" then model.opset = version end
    end,
  })
  if not model.graph then fail("no graph (is this an ONNX model file?)") end
  return model
end

local ELEMENT = {
  [schema.DataType.FLOAT] = { dtype = "f32", width = 4, list = "float_data" },
  [schema.DataType.DOUBLE] = { dtype = "f64", width = 8 },
  [schema.DataType.INT64] = { dtype = "i64", width = 8, list = "int64_data" },
  [schema.DataType.INT32] = { dtype = "i32", width = 4, list = "int32_data" },
}

--- The lunet tensor a decoded TensorProto holds, after checking its dims against its data: the
-- element count is bounded by the bytes actually present before anything is allocated.
function model_reader.tensor_value(bytes, t, what)
  if t.external then fail("%s keeps its data in an external file, which lunet does not read", what) end
  local element = ELEMENT[t.data_type]
  if not element then fail("%s has element type %d; lunet reads float, double, int32 and int64", what, t.data_type) end
  if #t.dims > MAX_DIMS then fail("%s has %d dims (at most %d)", what, #t.dims, MAX_DIMS) end
  local available
  if t.raw_first then
    available = (t.raw_last - t.raw_first + 1) // element.width
  else
    available = element.list and #t[element.list] or 0
  end
  local count = 1
  for i, d in ipairs(t.dims) do
    if d < 0 then fail("%s: dim %d is negative", what, i) end
    -- Checked before multiplying: count * d must stay at most `available`.
    if d > 0 and count > available // d then
      fail("%s: dims [%s] need more values than the %d it holds", what, table.concat(t.dims, ","), available)
    end
    count = count * d
  end
  if t.raw_first and count * element.width ~= t.raw_last - t.raw_first + 1 then
    fail("%s: dims [%s] need %d bytes of data, it holds %d", what, table.concat(t.dims, ","),
      count * element.width, t.raw_last - t.raw_first + 1)
  end
  if not t.raw_first and count ~= available then
    fail("%s: dims [%s] need %d values, it holds %d", what, table.concat(t.dims, ","), count, available)
  end
  local values = t.raw_first and tensor_bytes.decode_values(bytes, t.raw_first, count, element.dtype)
    or t[element.list]
  if count == 0 then return require("lunet.core").zeros(t.dims, element.dtype) end
  return tensor_bytes.tensor(values, t.dims, element.dtype)
end

return model_reader
