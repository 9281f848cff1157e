--- lunet: deep learning for Lua 5.4 with a C core.
--
--     local lunet = require("lunet")
--     local x = lunet.tensor({{1, 2}, {3, 4}}, {requires_grad = true})
--     local loss = (x * x):sum()
--     loss:backward()
--     print(x.grad)          -- 2 * x
--
-- The tensor type, its ops and autograd are C (lunet.core); this file adds the Lua-side
-- conveniences and gathers the public table.  See ../shared/DESIGN.md for the whole API.
local core = require("lunet.core")
local format = require("lunet.format")
local grad_mode = require("lunet.grad_mode")

local lunet = {}

-- The module-level functions of the C core that are public as lunet.*; the rest of the core
-- (the nn ops, the optimizer steps, the file readers) is reached through lunet.nn,
-- lunet.optim, lunet.data and lunet.safetensors.
for _, name in ipairs({
  "tensor", "zeros", "ones", "empty", "full", "rand", "randn", "zeros_like", "ones_like", "rand_like", "randn_like",
  "arange", "linspace", "eye", "is_tensor", "manual_seed", "get_rng_state", "set_rng_state", "Generator", "randperm",
  "cat", "stack", "set_num_threads", "get_num_threads", "blas_name", "is_grad_enabled", "set_grad_enabled",
  "alloc_stats", "alloc_trim", "clock", "isatty",
}) do
  lunet[name] = assert(core[name], name)
end

lunet.version = core.version
--- The methods every tensor has; add to it to extend tensors.
lunet.Tensor = core.methods

-- Function forms of the tensor ops: lunet.add(a, b) is a:add(b), lunet.exp(t) is t:exp().
for _, name in ipairs({
  "add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt", "ge", "matmul",
  "neg", "abs", "relu", "exp", "log", "sqrt", "sigmoid", "tanh", "clamp",
  "sum", "mean", "max", "min", "argmax", "argmin",
  "reshape", "view", "transpose", "permute", "narrow", "slice", "select", "squeeze", "unsqueeze",
  "flatten", "expand", "clone", "detach", "index_select", "bincount",
}) do
  lunet[name] = core.methods[name]
end

core.Tensor.__tostring = format.tensor

--- Runs fn(...) with autograd recording off and returns its results; grad mode is restored
-- even when fn raises.
function lunet.no_grad(fn, ...) return grad_mode.run(false, fn, ...) end

--- Runs fn(...) with autograd recording on (inside a no_grad block, say).
function lunet.enable_grad(fn, ...) return grad_mode.run(true, fn, ...) end

--- Zeroes the gradients of a list of tensors (what an optimizer's zero_grad does).
function lunet.zero_grad(tensors)
  for _, t in ipairs(tensors) do t:zero_grad() end
end

lunet.gradcheck = require("lunet.gradcheck")
lunet.nn = require("lunet.nn")
lunet.optim = require("lunet.optim")
lunet.data = require("lunet.data")
lunet.metrics = require("lunet.metrics")
lunet.plot = require("lunet.plot")
lunet.callbacks = require("lunet.callbacks")
lunet.History = require("lunet.History")
require("lunet.train").install(lunet.nn.Module)
lunet.safetensors = require("lunet.safetensors")
lunet.architecture = require("lunet.architecture")
lunet.onnx = require("lunet.onnx")
lunet.checkpoint = require("lunet.checkpoint")
--- Rebuilds a model saved with model:save (lunet.model_file.load).
lunet.load = require("lunet.model_file").load
lunet.compile = require("lunet.compile").compile
--- The int8 version of a trained model (lunet.quantize: static or dynamic).
lunet.quantize = require("lunet.quantize").quantize
lunet.serve = require("lunet.serve").serve

return lunet
