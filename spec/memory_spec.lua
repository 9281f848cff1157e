local lunet = require("lunet")

describe("memory", function()
  it("releases a tensor when its <close> variable goes out of scope", function()
    local outer
    do
      local t <close> = lunet.ones({ 4 })
      outer = t
      assert.is_false(t:is_released())
    end
    assert.is_true(outer:is_released())
  end)

  it("lets Lua's collector see tensor memory, so loops stay bounded without collectgarbage()", function()
    collectgarbage("collect")
    local base = lunet.alloc_stats().live_bytes
    local w = lunet.randn({ 64, 64 }, { requires_grad = true })
    local peak = 0
    for _ = 1, 5000 do
      local x = lunet.randn({ 64, 64 })
      local loss = x:matmul(w):add(1):relu():sum()
      loss:backward()
      peak = math.max(peak, lunet.alloc_stats().live_bytes - base)
    end
    -- each step makes about 66 KB of tensors; 5000 unreclaimed steps would hold 330 MB
    assert.is_true(peak < 32 * 1024 * 1024, string.format("peak %.1f MB", peak / 2 ^ 20))
  end)

  it("keeps freed blocks for reuse and returns them to the system on request", function()
    local t = lunet.zeros({ 1024, 1024 })
    t:release()
    local stats = lunet.alloc_stats()
    -- sanitizer builds (and LUNET_ALLOC_CACHE=0) hand every block straight back
    assert.are.equal(stats.cache_enabled, stats.cached_bytes >= 4 * 1024 * 1024)
    lunet.alloc_trim()
    assert.are.equal(0, lunet.alloc_stats().cached_bytes)
  end)
end)
