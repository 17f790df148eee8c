-- vmdr.mem: rss() reads the resident set; trim() gives freed heap pages back, so a
-- long-running process's RSS falls after a peak (what the monitor relies on).
local mem = require "vmdr.mem"

describe("vmdr.mem", function()
    it("rss() is the resident set in bytes", function()
        local r = assert(mem.rss())
        assert.is_true(math.type(r) == "integer" and r > 1024 * 1024)
    end)

    it("after a peak of small allocations, collect + trim lowers the RSS again", function()
        collectgarbage("collect"); mem.trim()
        local base = assert(mem.rss())
        do
            local t = {}
            for i = 1, 400000 do t[i] = { i, tostring(i) .. "-padding-to-make-it-larger" } end
            assert.is_true(assert(mem.rss()) > base + 32 * 1024 * 1024)
        end
        collectgarbage("collect"); collectgarbage("collect")
        assert.equals(mem.can_trim, mem.trim())
        -- a sanitizer build's allocator keeps its pages (can_trim is false there, by build)
        if mem.can_trim then
            assert.is_true(assert(mem.rss()) < base + 16 * 1024 * 1024)
        end
    end)

    it("stats() tells the Lua heap, the pool and malloc apart", function()
        collectgarbage("collect")
        local before_count = collectgarbage("count") * 1024
        local a = mem.stats()
        local after_count = collectgarbage("count") * 1024
        -- the state's own count, taken between the two readings of collectgarbage
        assert.is_true(a.lua >= before_count and a.lua <= after_count, a.lua .. " vs " .. before_count)
        -- the pool serves vmdr-run's state unless a sanitizer build or VMDR_LUA_ALLOC=malloc
        local pooled = mem.can_trim and os.getenv("VMDR_LUA_ALLOC") ~= "malloc"
        assert.equals(pooled, a.pool ~= nil)
        assert.equals(mem.can_trim, a.malloc ~= nil)
        local keep = {}
        for i = 1, 50000 do keep[i] = { i } end           -- small blocks: the pool's
        keep.big = string.rep("y", 100 * 1024)            -- over 512 bytes: malloc's
        local b = mem.stats()
        assert.is_true(b.lua >= a.lua + 50000 * 40, "lua " .. a.lua .. " -> " .. b.lua)
        if pooled then
            assert.is_true(b.pool.blocks >= a.pool.blocks + 50000)
            assert.is_true(b.pool.chunks_used > a.pool.chunks_used)
            assert.is_true(b.pool.regions >= 1)
        end
        if mem.can_trim then
            assert.is_true(b.malloc.in_use + b.malloc.mapped >= a.malloc.in_use + a.malloc.mapped + 100 * 1024)
        end
        keep = nil
        collectgarbage("collect")
        local c = mem.stats()
        assert.is_true(c.lua < b.lua - 50000 * 40)
        if pooled then assert.is_true(c.pool.blocks <= b.pool.blocks - 50000) end
    end)

    it("prefault(bytes) has regions made on another CPU; prefault(0) gives back the unused", function()
        local h = require "support.helper"
        local t = require "vmdr.time"
        local MiB = 1024 * 1024
        local pooled = mem.can_trim and os.getenv("VMDR_LUA_ALLOC") ~= "malloc"
        assert.has_error(function() mem.prefault(-1) end)
        if not pooled then
            assert.is_false(mem.prefault(64 * MiB))
            assert.is_false(mem.prefault(0))
            assert.is_nil(mem.stats().pool)
            return
        end
        local cpus = tonumber((h.capture("nproc"):gsub("%s+$", "")))
        collectgarbage("collect"); mem.trim()
        local a = mem.stats().pool
        local rss0 = assert(mem.rss())
        assert.is_true(mem.prefault(64 * MiB))
        local want = mem.stats().pool.asked - a.asked
        if cpus < 2 then
            assert.equals(0, want) -- one CPU: nothing to overlap with
            return
        end
        -- 64 MiB less the pool's free room (its trimmed chunks), in 2 MiB regions
        assert.is_true(want >= 1 and want <= 32, "asked " .. want)
        -- asking again for what is already coming asks for nothing more
        assert.is_true(mem.prefault(64 * MiB))
        assert.equals(a.asked + want, mem.stats().pool.asked)
        -- the thread makes them, or stops after two that came fast (then the Lua thread
        -- does better faulting its own): a deadline only against a hang, no timing asserted
        local deadline = t.monotonic() + 60
        while mem.stats().pool.pending > 0 do
            assert(t.monotonic() < deadline, "the prefault thread is still at " .. mem.stats().pool.ready)
            t.sleep(0.01)
        end
        local made = mem.stats().pool
        assert.is_true(made.ready >= math.min(2, want) and made.ready <= want, "made " .. made.ready .. " of " .. want)
        if made.ready < want then
            assert.equals(a.fast + 1, made.fast) -- stopped early: the pages came fast
        end
        local rss1 = assert(mem.rss())
        assert.is_true(rss1 - rss0 >= (made.ready - 1) * 2 * MiB,
            "resident +" .. (rss1 - rss0) // 1024 .. " KiB for " .. made.ready .. " regions")
        -- allocations take them once the pool's free room is used up, before mapping their
        -- own (about 120 bytes a row: 500,000 rows would need some 30 regions)
        local keep, n = {}, 0
        repeat
            for i = n + 1, n + 10000 do keep[i] = { i, i + 1, i + 2, tostring(i) .. "-x" } end
            n = n + 10000
        until mem.stats().pool.prefaulted > a.prefaulted or n >= 500000
        local b = mem.stats().pool
        local taken = b.prefaulted - a.prefaulted
        assert.is_true(taken >= 1, "taken " .. taken .. " after " .. n .. " rows")
        assert.equals(made.ready - taken, b.ready)
        -- done: what is left goes back to the kernel
        local rss_b = assert(mem.rss())
        assert.is_true(mem.prefault(0))
        local rss_c = assert(mem.rss())
        local c = mem.stats().pool
        assert.equals(0, c.ready)
        assert.equals(b.regions, c.regions)
        assert.is_true(rss_c <= rss_b - (b.ready - 1) * 2 * MiB,
            "resident " .. rss_b // 1024 .. " -> " .. rss_c // 1024 .. " KiB, " .. b.ready .. " regions unmapped")
        -- the pool still works after: the objects read back, and collect + trim frees them
        assert.equals("59999-x", keep[59999][4])
        keep = nil
        collectgarbage("collect"); collectgarbage("collect")
        mem.trim()
        assert.is_true(mem.stats().pool.blocks < b.blocks - n * 3)
    end)

    -- Each in a fresh process: the thresholds are the process's. A 4 MiB string, then a
    -- 3 MiB one: with glibc's defaults the first free raises the thresholds to 4 MiB, so the
    -- second comes from the heap and its pages stay; long_running() maps both on their own.
    it("long_running() gives big freed blocks back at once and turns off huge pages", function()
        local h = require "support.helper"
        local script = h.tmpdir("mem") .. "/big.lua"
        h.write(script, [[
local mem = require "vmdr.mem"
local ctx = ...
if ctx.args[1] == "long" then assert(mem.long_running() == mem.can_trim) end
collectgarbage("collect")
local base = mem.rss()
for _, mib in ipairs { 4, 3 } do
  local s = string.rep("x", mib * 1024 * 1024)
  s = nil
  collectgarbage("collect")
end
local thp = "none"
for l in io.lines("/proc/self/status") do thp = l:match("^THP_enabled:%s*(%d)") or thp end
print(math.floor((mem.rss() - base) / 1024), thp)
]])
        local function grown(mode)
            local r = h.run({ script, "--", mode })
            assert.equals(0, r.code, r.stderr)
            local kb, thp = r.stdout:match("(-?%d+)%s+(%S+)")
            return assert(tonumber(kb), r.stdout), thp
        end
        local default, thp_default = grown("default")
        local long, thp_long = grown("long")
        if mem.can_trim then
            -- the premise: with glibc's defaults the second block's pages stay
            assert.is_true(default >= 2 * 1024, "default: +" .. default .. " KiB")
            assert.is_true(long < 1024, "long_running: +" .. long .. " KiB")
            -- and no transparent huge pages for it (the kernel's flag, where it reports one)
            if thp_default ~= "none" then
                assert.equals("1", thp_default)
                assert.equals("0", thp_long)
            end
        else
            assert.is_false(mem.long_running())
        end
    end)
end)
