--- Option handling shared by the pooling layers.
local pool_options = {}

--- "2" or "(2, 3)" for a size given as a number or a {height, width} pair.
function pool_options.show(v)
  if type(v) == "table" then return string.format("(%d, %d)", v[1], v[2]) end
  return tostring(v)
end

--- The options table for core.max_pool2d / core.avg_pool2d; stride defaults to the kernel.
function pool_options.make(kernel_size, opts, extra)
  opts = opts or {}
  local o = { kernel_size = kernel_size, stride = opts.stride or kernel_size, padding = opts.padding or 0,
    ceil_mode = opts.ceil_mode or false }
  for k, v in pairs(extra or {}) do
    if opts[k] ~= nil then o[k] = opts[k] else o[k] = v end
  end
  return o
end

return pool_options
