-- bench/serve.sh's table, in Markdown: the medians of its wrk runs over the rounds (errors and
-- non-2xx responses summed), and the ratios the serving issue's acceptance names.
--
--   lua5.4 bench/serve_report.lua RESULTS      -- from the repository root
--
-- RESULTS has one tab-separated line per wrk run: peer, body, batching, connections, round and
-- the RESULT line the wrk script printed ("RESULT missing" when it printed none).  Exits 1 when
-- a run had errors or non-2xx responses or printed no RESULT, so the caller fails.
local common = require("bench.common")

-- The runs in the order of the table.
local ROWS = {
  { peer = "flask", body = "json", batching = "-", connections = 32 },
  { peer = "lunet", body = "json", batching = "on", connections = 32 },
  { peer = "lunet", body = "binary", batching = "on", connections = 32 },
  { peer = "lunet", body = "json", batching = "on", connections = 64 },
  { peer = "lunet", body = "json", batching = "off", connections = 64 },
  { peer = "lunet", body = "json", batching = "on", connections = 1 },
  { peer = "lunet", body = "json", batching = "off", connections = 1 },
}

local function key(peer, body, batching, connections)
  return table.concat({ peer, body, batching, tostring(connections) }, " ")
end

local function label(row)
  local text = (row.peer == "flask" and "Flask peer" or "lunet") .. (row.body == "json" and " JSON" or " binary")
  if row.batching ~= "-" then text = text .. ", batching " .. row.batching end
  return text
end

-- runs[key] = {rps = {...}, p50 = {...}, p99 = {...}, errors = n, non2xx = n, missing = n}
local function read_results(path)
  local runs = {}
  for line in assert(io.open(path)):lines() do
    local peer, body, batching, connections, _, result =
      line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(%d+)\t(%d+)\t(.*)$")
    assert(peer, "serve_report: cannot read the line " .. line)
    local k = key(peer, body, batching, tonumber(connections))
    local run = runs[k] or { rps = {}, p50 = {}, p99 = {}, errors = 0, non2xx = 0, missing = 0 }
    runs[k] = run
    local rps, p50, p99, errors, non2xx =
      result:match("^RESULT rps=([%d.]+) p50_ms=([%d.]+) p99_ms=([%d.]+) errors=(%d+) non2xx=(%d+)")
    if rps then
      run.rps[#run.rps + 1], run.p50[#run.p50 + 1], run.p99[#run.p99 + 1] = tonumber(rps), tonumber(p50), tonumber(p99)
      run.errors, run.non2xx = run.errors + tonumber(errors), run.non2xx + tonumber(non2xx)
    else
      run.missing = run.missing + 1
    end
  end
  return runs
end

-- The median of a run's figure, or nil when the run was not made.
local function median(runs, row, figure)
  local run = runs[key(row.peer, row.body, row.batching, row.connections)]
  if not run or #run[figure] == 0 then return nil end
  return common.median({ table.unpack(run[figure]) })
end

local function print_runs(runs)
  print("| run | connections | rps | p50 ms | p99 ms | errors | non-2xx |")
  print("|---|---|---|---|---|---|---|")
  local failed = false
  for _, row in ipairs(ROWS) do
    local run = runs[key(row.peer, row.body, row.batching, row.connections)]
    if run then
      local rps, p50, p99 = median(runs, row, "rps"), median(runs, row, "p50"), median(runs, row, "p99")
      local function shown(v, fmt) return v and string.format(fmt, v) or "no result" end
      print(string.format("| %s | %d | %s | %s | %s | %d | %d |", label(row), row.connections, shown(rps, "%.1f"),
        shown(p50, "%.3f"), shown(p99, "%.3f"), run.errors, run.non2xx))
      failed = failed or run.errors > 0 or run.non2xx > 0 or run.missing > 0
    end
  end
  return failed
end

local function print_acceptance(runs)
  local function row(peer, body, batching, connections)
    return { peer = peer, body = body, batching = batching, connections = connections }
  end
  local function ratio(a, b) return a and b and a / b or nil end
  local flask_json = row("flask", "json", "-", 32)
  local json32, binary32 = row("lunet", "json", "on", 32), row("lunet", "binary", "on", 32)
  local on64, off64 = row("lunet", "json", "on", 64), row("lunet", "json", "off", 64)
  local on1, off1 = row("lunet", "json", "on", 1), row("lunet", "json", "off", 1)
  local checks = {
    { "lunet / Flask peer rps, JSON, 32 connections",
      ratio(median(runs, json32, "rps"), median(runs, flask_json, "rps")), ">= 30", function(v) return v >= 30 end },
    { "lunet p99 ms, JSON, 32 connections", median(runs, json32, "p99"), "< 5", function(v) return v < 5 end },
    { "lunet binary / JSON rps, 32 connections", ratio(median(runs, binary32, "rps"), median(runs, json32, "rps")),
      ">= 2", function(v) return v >= 2 end },
    { "lunet batching on / off rps, 64 connections", ratio(median(runs, on64, "rps"), median(runs, off64, "rps")),
      ">= 2", function(v) return v >= 2 end },
    { "lunet batching on / off p99, 1 connection", ratio(median(runs, on1, "p99"), median(runs, off1, "p99")),
      "<= 1 (no worse)", function(v) return v <= 1 end },
  }
  print("| acceptance | value | target | met |")
  print("|---|---|---|---|")
  for _, c in ipairs(checks) do
    local value = c[2]
    print(string.format("| %s | %s | %s | %s |", c[1], value and string.format("%.2f", value) or "n/a", c[3],
      value and (c[4](value) and "yes" or "no") or "n/a"))
  end
end

local path = arg[1]
if not path then
  io.stderr:write("usage: lua5.4 bench/serve_report.lua RESULTS\n")
  os.exit(2)
end
local runs = read_results(path)
local failed = print_runs(runs)
print()
print_acceptance(runs)
if failed then
  io.stderr:write("serve_report: a run had errors, non-2xx responses or no RESULT line\n")
  os.exit(1)
end
