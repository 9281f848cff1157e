-- Resident memory of a long autograd loop, with no collectgarbage() calls.
--
--   lua5.4 bench/memory_flat.lua [iterations]
--
-- Runs (matmul, add, relu, sum, backward) on 64x64 tensors and prints the resident set size
-- (VmRSS) and its peak (VmHWM) after iteration 10,000 and after the last one.  Memory is flat
-- when the final peak is within 10% of the RSS at 10,000.
local lunet = require("lunet")

local function status_kb(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+) kB")
    if v then return tonumber(v) end
  end
end

local iterations = tonumber(arg[1]) or 100000
lunet.manual_seed(0)
lunet.set_num_threads(1)
local w = lunet.randn({ 64, 64 }, { requires_grad = true })
local b = lunet.randn({ 64 }, { requires_grad = true })
local x = lunet.randn({ 64, 64 })
local at_10k
local started = os.clock()
for i = 1, iterations do
  local loss = x:matmul(w):add(b):relu():sum()
  loss:backward()
  if i == 10000 then at_10k = status_kb("VmRSS") end
end
local seconds = os.clock() - started
local rss, peak = status_kb("VmRSS"), status_kb("VmHWM")
at_10k = at_10k or rss
local growth = (peak - at_10k) / at_10k * 100
print(string.format(
  "iterations %d  rss@10k %d kB  rss@end %d kB  peak %d kB  peak vs rss@10k %+.1f%%  (%s)  %.1f us/iteration",
  iterations, at_10k, rss, peak, growth, growth <= 10 and "flat" or "NOT flat", seconds / iterations * 1e6))
