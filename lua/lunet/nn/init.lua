--- lunet.nn: layers, losses, initialisation and the functional forms (nn.functional).
local nn = {}

for _, name in ipairs({
  "Module", "Sequential", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool2d",
  "Flatten", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax", "Dropout",
  "BatchNorm1d", "BatchNorm2d", "Identity",
  "Quantize", "Dequantize", "QuantizedLinear", "QuantizedConv2d", "DynamicQuantizedLinear",
  "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCEWithLogitsLoss",
}) do
  nn[name] = require("lunet.nn." .. name)
end

-- The layers whose forward keeps no Lua reference to its input or output: Sequential may
-- release the activations passed between two of them as soon as both have run (see
-- Sequential:forward).  A user's module is not on the list, so what it keeps stays usable.
for _, name in ipairs({
  "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool2d", "Flatten", "ReLU",
  "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax", "Dropout", "BatchNorm1d", "BatchNorm2d",
  "Identity", "Quantize", "Dequantize", "QuantizedLinear", "QuantizedConv2d", "DynamicQuantizedLinear",
}) do
  nn[name].holds_no_activations = true
end

nn.init = require("lunet.nn.init_weights")
nn.functional = require("lunet.nn.functional")

return nn
