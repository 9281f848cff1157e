--- The lunet command: looks into model files and converts them.
--
--   lunet info FILE                      layers, output shapes, parameters, dtype, size (and for
--                                        an int8 model, how it was quantized and its size
--                                        against the f32 model's)
--   lunet export FILE --onnx OUT         a lunet model file to ONNX
--   lunet convert IN.onnx OUT.safetensors  an ONNX model to a lunet model file
--
-- From the repository, after `make`: lua5.4 lua/lunet/cli.lua info model.safetensors
-- (run from the repository root, where lunet/ links the modules).  The rock installs the same
-- as `lunet`.  Errors go to stderr with exit status 1; a usage mistake exits with 2.
local cli = {}

local USAGE = [[
usage: lunet info FILE
       lunet export FILE --onnx OUT [--batch N]
       lunet convert IN.onnx OUT.safetensors]]

local function usage_error(message)
  return { usage = true, message = message }
end

local function human_bytes(n)
  local units = { "B", "KiB", "MiB", "GiB" }
  local i = 1
  while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end

local thousands = require("lunet.format").group_digits

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

-- One line per layer: its place, its description and the shape it outputs for one sample.
local function layer_lines(lunet, model, input_shape)
  local lines, x = {}, nil
  if input_shape then
    local shape = { 1 }
    for _, n in ipairs(input_shape) do shape[#shape + 1] = n end
    x = lunet.zeros(shape)
  end
  local function walk(m, prefix)
    for i = 1, #m do
      local layer, name = m[i], prefix .. i
      if getmetatable(layer) == lunet.nn.Sequential then
        walk(layer, name .. ".")
      else
        local shape = "?"
        if x then
          x = lunet.no_grad(function() return layer(x) end)
          shape = "[" .. table.concat(x:shape(), ", ") .. "]"
        end
        local params = layer:parameter_count()
        local text = string.format("%s(%s)", layer.__name, layer:extra_repr())
        local line = string.format("  %-6s %-48s %-18s %s", name, text, shape, params > 0 and thousands(params) or "")
        lines[#lines + 1] = line:gsub("%s+$", "")
      end
    end
  end
  walk(model, "")
  return lines
end

-- How an int8 model was quantized and how its tensors compare with the f32 model's, from the
-- file's "lunet.quant"; files saved before fp32_tensor_bytes was recorded get no comparison.
local function quantization_lines(model, out)
  local q = model.quantization
  -- JSON numbers come back as floats: 7, not 7.0
  local function show(v) return tostring(math.tointeger(v) or v) end
  local how = string.format("int8: %s, %s-bit weights", show(q.mode), show(q.weight_bits))
  if q.calibration then
    how = how .. ", " .. show(q.calibration) .. (q.percentile and " (" .. show(q.percentile) .. ")" or "")
      .. " calibration"
    if q.calibration_samples then how = how .. " on " .. show(q.calibration_samples) .. " samples" end
  end
  out:write(how, "\n")
  local bytes, fp32 = require("lunet.model_file").tensor_bytes(model), tonumber(q.fp32_tensor_bytes)
  local size = "size: tensors " .. human_bytes(bytes)
  if fp32 and fp32 > 0 and bytes > 0 then
    size = size .. string.format(", fp32 model's %s (%.1f%%, %.1fx smaller)", human_bytes(fp32), 100 * bytes / fp32,
      fp32 / bytes)
  end
  out:write(size, "\n")
end

function cli.info(lunet, path, out)
  local model = lunet.load(path)
  local dtypes = {}
  for _, p in ipairs(model:parameters()) do dtypes[p.dtype] = true end
  local dtype_list = {}
  for d in pairs(dtypes) do dtype_list[#dtype_list + 1] = d end
  table.sort(dtype_list)
  local shape = model.input_shape
  out:write(string.format("%s: lunet model, %s\n", path, human_bytes(file_size(path) or 0)))
  out:write(string.format("input: %s\n", shape and ("[N, " .. table.concat(shape, ", ") .. "]") or "not recorded"))
  out:write(string.format("  %-6s %-48s %-18s %s\n", "layer", "", "output (N = 1)", "parameters"))
  for _, line in ipairs(layer_lines(lunet, model, shape)) do out:write(line, "\n") end
  out:write(string.format("parameters: %s (%s)\n", thousands(model:parameter_count()), table.concat(dtype_list, ", ")))
  if model.class_names then out:write("classes: ", table.concat(model.class_names, ", "), "\n") end
  if type(model.quantization) == "table" then quantization_lines(model, out) end
end

function cli.export(lunet, path, options, out)
  if not options.onnx then error(usage_error("export needs --onnx OUT")) end
  local model = lunet.load(path)
  local shape = model.input_shape
  if not shape then error(path .. ": the file records no input shape; export it from Lua with input_shape", 0) end
  local input_shape = { options.batch or 1 }
  for _, n in ipairs(shape) do input_shape[#input_shape + 1] = n end
  lunet.onnx.export(model, options.onnx, { input_shape = input_shape, dynamic_batch = options.batch == nil })
  out:write(string.format("wrote %s (%s)\n", options.onnx, human_bytes(file_size(options.onnx) or 0)))
end

function cli.convert(lunet, onnx_path, target, out)
  local model = lunet.onnx.load(onnx_path)
  model:save(target)
  out:write(string.format("wrote %s (%s)\n", target, human_bytes(file_size(target) or 0)))
end

-- Parses args into a command, its positional arguments and its --options.
local function parse(args)
  local positional, options = {}, {}
  local i = 1
  while i <= #args do
    local flag = args[i]:match("^%-%-([%w_]+)$")
    if flag then
      if flag ~= "onnx" and flag ~= "batch" then error(usage_error("unknown option --" .. flag)) end
      local value = args[i + 1]
      if value == nil then error(usage_error("--" .. flag .. " needs a value")) end
      if flag == "batch" then
        value = math.tointeger(tonumber(value))
        if not value or value < 1 then error(usage_error("--batch needs a positive integer")) end
      end
      options[flag] = value
      i = i + 2
    else
      positional[#positional + 1] = args[i]
      i = i + 1
    end
  end
  return table.remove(positional, 1), positional, options
end

--- Runs the command line args (a list of strings); returns the exit status.
function cli.main(args, out, err)
  out, err = out or io.stdout, err or io.stderr
  local ok, problem = pcall(function()
    local command, positional, options = parse(args)
    local lunet = require("lunet")
    if command == "info" and #positional == 1 then
      cli.info(lunet, positional[1], out)
    elseif command == "export" and #positional == 1 then
      cli.export(lunet, positional[1], options, out)
    elseif command == "convert" and #positional == 2 then
      cli.convert(lunet, positional[1], positional[2], out)
    elseif command == "help" or command == nil then
      out:write(USAGE, "\n")
    else
      error(usage_error("unknown command or wrong arguments: " .. table.concat(args, " ")))
    end
  end)
  if ok then return 0 end
  if type(problem) == "table" and problem.usage then
    err:write("lunet: ", problem.message, "\n", USAGE, "\n")
    return 2
  end
  err:write("lunet: ", tostring(problem), "\n")
  return 1
end

-- Run as a script (lua5.4 lua/lunet/cli.lua ...): `...` holds the arguments, not a module name.
if ... ~= "lunet.cli" then os.exit(cli.main({ ... })) end

return cli
