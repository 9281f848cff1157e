--- What the bench scripts that run other scripts share: their --flag value arguments, the JSON
-- lines a peer prints, and medians.  Run from the repository root (require("bench.common")).
local cjson = require("cjson")

local common = {}

--- Reads "--name value" pairs from argv into a copy of defaults; a name not in defaults is an error.
function common.flags(argv, defaults)
  local opts = {}
  for k, v in pairs(defaults) do opts[k] = v end
  local i = 1
  while i <= #argv do
    local flag = argv[i]:match("^%-%-([%w_]+)$")
    assert(flag and opts[flag], "unknown argument " .. tostring(argv[i]))
    opts[flag] = argv[i + 1]
    i = i + 2
  end
  return opts
end

--- The JSON lines (decoded) that command prints on stdout; other lines and stderr are ignored.
function common.json_lines(command)
  local pipe = assert(io.popen(command .. " 2>/dev/null"))
  local lines = {}
  for line in pipe:lines() do
    if line:sub(1, 1) == "{" then lines[#lines + 1] = cjson.decode(line) end
  end
  pipe:close()
  return lines
end

function common.median(values)
  table.sort(values)
  local n = #values
  return n % 2 == 1 and values[(n + 1) // 2] or (values[n // 2] + values[n // 2 + 1]) / 2
end

return common
