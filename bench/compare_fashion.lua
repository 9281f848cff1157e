-- Runs bench/fashion.lua and ../shared/bench/torch_peer.py alternately with the same flags
-- and prints a Markdown table of the medians with lunet/PyTorch ratios.
--
--   lua5.4 bench/compare_fashion.lua [--models mlp,cnn] [--threads 1] [--epochs 1] [--rounds 3]
--
-- The machines are shared and noisy, so each measurement is repeated (rounds) alternating
-- the two sides, and the median of each side is compared.
local cjson = require("cjson")

local opts = { models = "mlp,cnn", threads = "1", epochs = "1", rounds = "3", limit = "60000", seed = "0" }
local i = 1
while i <= #arg do
  local flag = arg[i]:match("^%-%-([%w_]+)$")
  assert(flag and opts[flag], "unknown argument " .. tostring(arg[i]))
  opts[flag] = arg[i + 1]
  i = i + 2
end

local function run(command)
  local pipe = assert(io.popen(command .. " 2>/dev/null"))
  local lines = {}
  for line in pipe:lines() do
    if line:sub(1, 1) == "{" then lines[#lines + 1] = cjson.decode(line) end
  end
  pipe:close()
  return lines[1]
end

local function median(values)
  table.sort(values)
  local n = #values
  return n % 2 == 1 and values[(n + 1) // 2] or (values[n // 2] + values[n // 2 + 1]) / 2
end

local keys = { "train_samples_per_s", "test_accuracy", "infer_b1_us", "infer_b256_samples_per_s" }
print(string.format("| model | threads | metric | lunet | PyTorch %s | lunet / PyTorch |", "1.13"))
print("|---|---|---|---|---|---|")
for model in opts.models:gmatch("[^,]+") do
  local flags = string.format("--model %s --epochs %s --threads %s --limit %s --seed %s", model, opts.epochs,
    opts.threads, opts.limit, opts.seed)
  local samples = { lunet = {}, torch = {} }
  for _ = 1, tonumber(opts.rounds) do
    samples.lunet[#samples.lunet + 1] = run("lua5.4 bench/fashion.lua " .. flags)
    samples.torch[#samples.torch + 1] = run("/usr/bin/python3 ../shared/bench/torch_peer.py " .. flags)
  end
  for _, key in ipairs(keys) do
    local a, b = {}, {}
    for _, r in ipairs(samples.lunet) do a[#a + 1] = r[key] end
    for _, r in ipairs(samples.torch) do b[#b + 1] = r[key] end
    local ma, mb = median(a), median(b)
    print(string.format("| %s | %s | %s | %s | %s | %.2f |", model, opts.threads, key, tostring(ma), tostring(mb),
      ma / mb))
  end
end
