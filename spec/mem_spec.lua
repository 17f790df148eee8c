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
end)
