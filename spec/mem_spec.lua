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
