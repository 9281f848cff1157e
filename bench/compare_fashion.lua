-- Runs bench/fashion.lua and ../shared/bench/torch_peer.py alternately with the same flags
-- and prints a Markdown table of the medians with lunet/PyTorch ratios.
--
--   lua5.4 bench/compare_fashion.lua [--models mlp,cnn] [--threads 1] [--epochs 1] [--rounds 3]
--
-- The machines are shared and noisy, so each measurement is repeated (rounds) alternating
-- the two sides, and the median of each side is compared.
local common = require("bench.common")

local opts = common.flags(arg, { models = "mlp,cnn", threads = "1", epochs = "1", rounds = "3", limit = "60000",
  seed = "0" })
local median = common.median

local function run(command) return common.json_lines(command)[1] end

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
