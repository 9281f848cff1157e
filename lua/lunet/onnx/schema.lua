--- The parts of onnx.proto (ONNX IR version 7) that lunet writes and reads: field numbers,
-- tensor element types and attribute types.  Checked against python3-onnx's own descriptors
-- (onnx.ModelProto.DESCRIPTOR.fields_by_name and so on).
local schema = {}

schema.IR_VERSION = 7
schema.OPSET_VERSION = 13

schema.Model = { ir_version = 1, producer_name = 2, producer_version = 3, graph = 7, opset_import = 8 }
schema.OperatorSetId = { domain = 1, version = 2 }
schema.Graph = { node = 1, name = 2, initializer = 5, input = 11, output = 12 }
schema.Node = { input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7 }
schema.Attribute = { name = 1, f = 2, i = 3, s = 4, t = 5, g = 6, floats = 7, ints = 8, type = 20 }
schema.Tensor = { dims = 1, data_type = 2, float_data = 4, int32_data = 5, int64_data = 7, name = 8, raw_data = 9,
  data_location = 14 }
schema.ValueInfo = { name = 1, type = 2 }
schema.Type = { tensor_type = 1 }
schema.TypeTensor = { elem_type = 1, shape = 2 }
schema.TensorShape = { dim = 1 }
schema.Dimension = { dim_value = 1, dim_param = 2 }

--- TensorProto.DataType values.
schema.DataType = { FLOAT = 1, UINT8 = 2, INT8 = 3, INT32 = 6, INT64 = 7, DOUBLE = 11 }

--- AttributeProto.AttributeType values.
schema.AttributeType = { FLOAT = 1, INT = 2, STRING = 3, TENSOR = 4, GRAPH = 5, FLOATS = 6, INTS = 7 }

return schema
