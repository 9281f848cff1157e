--- ONNX import: turns a decoded ONNX graph that is a chain of layers (each node taking the
-- previous node's output, plus constant weights) into a lunet architecture description and a
-- state dict, the two things architecture.build and load_state_dict take.
--
--   Gemm -> Linear (transA = 0; alpha, beta and transB folded into the weights)
--   MatMul with a constant (in, out) matrix [+ Add of a constant bias] -> Linear
--   Conv (2-D, symmetric pads) -> Conv2d          MaxPool, AveragePool -> MaxPool2d, AvgPool2d
--   GlobalAveragePool -> AdaptiveAvgPool2d(1)     BatchNormalization -> BatchNorm1d/2d
--   Flatten (axis 1), Reshape to [0, -1] or [-1, C] -> Flatten
--   Relu, LeakyRelu, Sigmoid, Tanh, Softmax, LogSoftmax -> the same layers
--   Identity, Dropout -> nothing; Constant -> a constant for the nodes after it
--
-- A Reshape to [-1, C] is read as a Flatten: both give (N, C) whenever the reshape keeps the
-- batch, and when it would not, the layer after it sees the wrong size and build/predict says so.
local model_reader = require("lunet.onnx.model_reader")

local import = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function node_label(node)
  return string.format("node %q (%s)", node.name, node.op_type)
end

-- Attribute readers with ONNX's defaults.  A scalar attribute's value is in field ("i" or "f").
local function scalar_attribute(node, name, default, field, what)
  local a = node.attributes[name]
  if not a then return default end
  if not a[field] then fail("%s: attribute %s should be %s", node_label(node), name, what) end
  return a[field]
end

local function int_attribute(node, name, default) return scalar_attribute(node, name, default, "i", "an integer") end
local function float_attribute(node, name, default) return scalar_attribute(node, name, default, "f", "a float") end

local function pair_attribute(node, name, default)
  local a = node.attributes[name]
  if not a then return default end
  if #a.ints ~= 2 then
    fail("%s: attribute %s should hold 2 integers (2-D), got %d", node_label(node), name, #a.ints)
  end
  return { a.ints[1], a.ints[2] }
end

local function string_attribute(node, name, default)
  local a = node.attributes[name]
  return a and a.s or default
end

-- ONNX pads are [top, left, bottom, right]; lunet pads both sides alike.
local function symmetric_pads(node)
  local a = node.attributes.pads
  if not a then return { 0, 0 } end
  local p = a.ints
  if #p ~= 4 then fail("%s: pads should hold 4 integers, got %d", node_label(node), #p) end
  if p[1] ~= p[3] or p[2] ~= p[4] then
    fail("%s: pads [%s] differ between the two sides, which lunet's layers do not do", node_label(node),
      table.concat(p, ","))
  end
  return { p[1], p[2] }
end

local function check_auto_pad(node)
  local auto_pad = string_attribute(node, "auto_pad", "NOTSET")
  if auto_pad ~= "NOTSET" and auto_pad ~= "VALID" then
    fail("%s: auto_pad %s is not supported (only explicit pads)", node_label(node), auto_pad)
  end
  if auto_pad == "VALID" then node.attributes.pads = nil end
end

-- One handler per operator: handler(node, chain) adds layers to the chain (or passes its input
-- through).  chain:constant(name, what) gives a constant input's tensor.
local handlers = {}

function handlers.Gemm(node, chain)
  if int_attribute(node, "transA", 0) ~= 0 then fail("%s: transA = 1 is not supported", node_label(node)) end
  local weight = chain:constant(node.inputs[2], node, "B")
  if weight:dim() ~= 2 then fail("%s: B should be a matrix, it has %d dims", node_label(node), weight:dim()) end
  if int_attribute(node, "transB", 0) == 0 then weight = weight:transpose(1, 2):contiguous() end
  local alpha, beta = float_attribute(node, "alpha", 1), float_attribute(node, "beta", 1)
  if alpha ~= 1 then weight = weight * alpha end
  local out_features, in_features = weight:size(1), weight:size(2)
  local tensors = { weight = weight }
  if node.inputs[3] and node.inputs[3] ~= "" then
    local bias = chain:constant(node.inputs[3], node, "C")
    if bias:numel() ~= out_features then
      fail("%s: C has %d values, expected %d (one per output)", node_label(node), bias:numel(), out_features)
    end
    tensors.bias = bias:reshape({ out_features }) * beta
  end
  chain:add_layer({ type = "Linear", in_features = in_features, out_features = out_features,
    bias = tensors.bias ~= nil }, tensors, 2)
end

function handlers.MatMul(node, chain)
  local data, constant = chain:data_and_constant(node)
  if data ~= 1 then fail("%s: only x times a constant matrix is supported", node_label(node)) end
  local matrix = chain:constant(node.inputs[constant], node, "B")
  if matrix:dim() ~= 2 then fail("%s: B should be a matrix, it has %d dims", node_label(node), matrix:dim()) end
  local weight = matrix:transpose(1, 2):contiguous()
  chain:add_layer({ type = "Linear", in_features = weight:size(2), out_features = weight:size(1), bias = false },
    { weight = weight }, chain.rank)
  chain.bias_pending = chain.layers[#chain.layers]
end

-- Add is read only as the bias of the MatMul just before it.
function handlers.Add(node, chain)
  local linear = chain.bias_pending
  local _, constant = chain:data_and_constant(node)
  if not linear or linear ~= chain.layers[#chain.layers] then
    fail("%s: Add is supported only as the bias of a MatMul by a constant matrix", node_label(node))
  end
  local bias = chain:constant(node.inputs[constant], node, "the bias")
  if bias:numel() ~= linear.desc.out_features then
    fail("%s: the bias has %d values, expected %d", node_label(node), bias:numel(), linear.desc.out_features)
  end
  linear.desc.bias = true
  linear.tensors.bias = bias:reshape({ linear.desc.out_features })
  chain.bias_pending = nil
  chain:pass_through(node)
end

function handlers.Conv(node, chain)
  check_auto_pad(node)
  local weight = chain:constant(node.inputs[2], node, "W")
  if weight:dim() ~= 4 then fail("%s: only 2-D convolutions are supported (W has %d dims)", node_label(node),
    weight:dim()) end
  local groups = int_attribute(node, "group", 1)
  local tensors = { weight = weight }
  if node.inputs[3] and node.inputs[3] ~= "" then tensors.bias = chain:constant(node.inputs[3], node, "B") end
  chain:add_layer({ type = "Conv2d", in_channels = weight:size(2) * groups, out_channels = weight:size(1),
    kernel_size = pair_attribute(node, "kernel_shape", { weight:size(3), weight:size(4) }),
    stride = pair_attribute(node, "strides", { 1, 1 }), padding = symmetric_pads(node),
    dilation = pair_attribute(node, "dilations", { 1, 1 }), groups = groups, bias = tensors.bias ~= nil }, tensors, 4)
end

local function required_pair(node, name)
  local p = pair_attribute(node, name, nil)
  if not p then fail("%s: attribute %s is missing", node_label(node), name) end
  return p
end

function handlers.MaxPool(node, chain)
  check_auto_pad(node)
  if node.outputs[2] and node.outputs[2] ~= "" then
    fail("%s: the Indices output is not supported", node_label(node))
  end
  chain:add_layer({ type = "MaxPool2d", kernel_size = required_pair(node, "kernel_shape"),
    stride = pair_attribute(node, "strides", { 1, 1 }), padding = symmetric_pads(node),
    dilation = pair_attribute(node, "dilations", { 1, 1 }), ceil_mode = int_attribute(node, "ceil_mode", 0) ~= 0 },
    nil, 4)
end

function handlers.AveragePool(node, chain)
  check_auto_pad(node)
  chain:add_layer({ type = "AvgPool2d", kernel_size = required_pair(node, "kernel_shape"),
    stride = pair_attribute(node, "strides", { 1, 1 }), padding = symmetric_pads(node),
    ceil_mode = int_attribute(node, "ceil_mode", 0) ~= 0,
    count_include_pad = int_attribute(node, "count_include_pad", 0) ~= 0 }, nil, 4)
end

function handlers.GlobalAveragePool(_, chain)
  chain:add_layer({ type = "AdaptiveAvgPool2d", output_size = { 1, 1 } }, nil, 4)
end

function handlers.BatchNormalization(node, chain)
  if int_attribute(node, "training_mode", 0) ~= 0 or #node.outputs > 1 then
    fail("%s: training-mode BatchNormalization is not supported", node_label(node))
  end
  local scale = chain:constant(node.inputs[2], node, "scale")
  local n = scale:numel()
  local tensors = { weight = scale:reshape({ n }), bias = chain:constant(node.inputs[3], node, "B"):reshape({ n }),
    running_mean = chain:constant(node.inputs[4], node, "mean"):reshape({ n }),
    running_var = chain:constant(node.inputs[5], node, "var"):reshape({ n }),
    num_batches_tracked = require("lunet.core").zeros({}, "i64") }
  local rank = chain.rank
  if rank ~= 2 and rank ~= 3 and rank ~= 4 then
    fail("%s: the rank of its input is not known (2 or 3 for BatchNorm1d, 4 for BatchNorm2d)", node_label(node))
  end
  chain:add_layer({ type = rank == 4 and "BatchNorm2d" or "BatchNorm1d", num_features = n,
    eps = float_attribute(node, "epsilon", 1e-5), momentum = 0.1, affine = true, track_running_stats = true },
    tensors, rank)
end

local function flatten(chain) chain:add_layer({ type = "Flatten", start_dim = 2, end_dim = -1 }, nil, 2) end

function handlers.Flatten(node, chain)
  local axis = int_attribute(node, "axis", 1)
  if axis ~= 1 then fail("%s: only axis = 1 (keep the batch) is supported, got %d", node_label(node), axis) end
  flatten(chain)
end

function handlers.Reshape(node, chain)
  local shape = chain:constant(node.inputs[2], node, "shape"):totable()
  if not (#shape == 2 and ((shape[1] == 0 and shape[2] == -1) or (shape[1] == -1 and shape[2] > 0))) then
    fail("%s: only reshapes that flatten to [0, -1] or [-1, C] are supported, got [%s]", node_label(node),
      table.concat(shape, ","))
  end
  flatten(chain)
end

local function simple(layer_type)
  return function(_, chain) chain:add_layer({ type = layer_type }) end
end
handlers.Relu, handlers.Sigmoid, handlers.Tanh = simple("ReLU"), simple("Sigmoid"), simple("Tanh")

function handlers.LeakyRelu(node, chain)
  chain:add_layer({ type = "LeakyReLU", negative_slope = float_attribute(node, "alpha", 0.01) })
end

local function softmax(layer_type)
  return function(node, chain)
    local axis = int_attribute(node, "axis", chain.opset >= 13 and -1 or 1)
    -- Before opset 13 the axis meant "flatten from here to 2-D"; that is lunet's Softmax only
    -- on 2-D inputs.
    if chain.opset < 13 and not (chain.rank == 2 and (axis == 1 or axis == -1)) then
      fail("%s: opset %d's softmax over a flattened axis %d is supported on 2-D inputs only", node_label(node),
        chain.opset, axis)
    end
    chain:add_layer({ type = layer_type, dim = axis >= 0 and axis + 1 or axis })
  end
end
handlers.Softmax, handlers.LogSoftmax = softmax("Softmax"), softmax("LogSoftmax")

function handlers.Identity(node, chain) chain:pass_through(node) end
function handlers.Dropout(node, chain) chain:pass_through(node) end

---------------------------------------------------------------------------------------------
-- The chain being built

local Chain = {}
Chain.__index = Chain

function Chain:constant(name, node, what)
  local value = name and self.constants[name]
  if not value then
    fail("%s: %s (%s) is not a constant (an initializer or a Constant node's output)", node_label(node), what,
      tostring(name))
  end
  if value.proto then
    value.tensor = model_reader.tensor_value(self.bytes, value.proto, string.format("tensor %q", name))
    value.proto = nil
  end
  return value.tensor
end

-- For a two-input node: which input is the running value and which the constant.
function Chain:data_and_constant(node)
  if node.inputs[1] == self.current and self.constants[node.inputs[2]] then return 1, 2 end
  if node.inputs[2] == self.current and self.constants[node.inputs[1]] then return 2, 1 end
  fail("%s: expected the previous node's output and a constant as inputs", node_label(node))
end

-- Adds a layer; rank is the number of dims its output has (nil: the same as its input).
function Chain:add_layer(desc, tensors, rank)
  self.layers[#self.layers + 1] = { desc = desc, tensors = tensors or {} }
  if rank then self.rank = rank end
  self.current = self.node.outputs[1]
end

function Chain:pass_through(node) self.current = node.outputs[1] end

local function graph_input(graph)
  local found
  for _, v in ipairs(graph.inputs) do
    if not graph.initializers[v.name] then
      if found then fail("the graph has more than one input (%q and %q); lunet models take one", found.name, v.name) end
      found = v
    end
  end
  if not found then fail("the graph has no input") end
  return found
end

local function check_supported(graph)
  local unsupported = {}
  for _, node in ipairs(graph.nodes) do
    local standard = node.domain == "" or node.domain == "ai.onnx"
    if not standard or not (handlers[node.op_type] or node.op_type == "Constant") then
      unsupported[#unsupported + 1] = string.format("%s%s (node %q)", standard and "" or node.domain .. ".",
        node.op_type, node.name)
    end
  end
  if #unsupported > 0 then
    fail("unsupported operators: %s", table.concat(unsupported, ", "))
  end
end

local function constant_node(node, constants)
  local value = node.attributes.value
  if not (value and value.t) then
    local names = {}
    for name in pairs(node.attributes) do names[#names + 1] = name end
    table.sort(names)
    fail("%s: only a tensor \"value\" is supported (it has %s)", node_label(node), table.concat(names, ", "))
  end
  constants[node.outputs[1]] = { proto = value.t }
end

--- The description, state dict and per-sample input shape of the decoded model.
function import.convert(model, bytes)
  local graph = model.graph
  check_supported(graph)
  local input = graph_input(graph)
  if #graph.outputs ~= 1 then fail("the graph has %d outputs; lunet models give one", #graph.outputs) end
  local constants = {}
  for name, t in pairs(graph.initializers) do constants[name] = { proto = t } end
  local chain = setmetatable({ bytes = bytes, constants = constants, layers = {}, current = input.name,
    rank = input.dims and #input.dims, opset = model.opset or 13 }, Chain)
  for _, node in ipairs(graph.nodes) do
    if node.op_type == "Constant" then
      constant_node(node, constants)
    else
      if node.inputs[1] ~= chain.current and node.inputs[2] ~= chain.current then
        fail("%s does not take the output of the layer before it (%q): lunet imports chains of layers only",
          node_label(node), chain.current)
      end
      chain.node = node
      handlers[node.op_type](node, chain)
    end
  end
  if chain.current ~= graph.outputs[1].name then
    fail("the graph's output %q is not the end of the chain of layers (%q)", graph.outputs[1].name, chain.current)
  end
  local desc = { type = "Sequential", layers = {} }
  local state = {}
  for i, layer in ipairs(chain.layers) do
    desc.layers[i] = layer.desc
    for name, t in pairs(layer.tensors) do state[i .. "." .. name] = t end
  end
  local sample_shape
  if input.dims and #input.dims >= 2 then
    sample_shape = {}
    for i = 2, #input.dims do
      if math.type(input.dims[i]) ~= "integer" or input.dims[i] < 1 then sample_shape = nil break end
      sample_shape[i - 1] = input.dims[i]
    end
  end
  return desc, state, sample_shape
end

return import
