--- Option checking shared by the loss modules.
local losses = {}

--- Fails with a message naming the loss when opts holds a key not in allowed (catches typos
-- such as label_smothing).
function losses.check_options(name, opts, allowed)
  for key in pairs(opts) do
    local ok = false
    for _, a in ipairs(allowed) do ok = ok or a == key end
    if not ok then
      error(string.format("%s: unknown option %s (known: %s)", name, tostring(key), table.concat(allowed, ", ")), 3)
    end
  end
  return opts
end

return losses
