-- Regression (issue 8, found by bench/soak/monitor): vmdr.git opened, fetched and pushed
-- through git_remote_lookup, which matches config entries against regular expressions;
-- libgit2 1.5 does not free the PCRE2 match data of a non-match (with PCRE2 >= 10.41 it
-- carries ~20 KiB of frames), so the monitor — one open, fetch, commit and push per batch —
-- grew ~450 KiB a commit. A child vmdr-run does 200 such transactions on a file:// remote:
-- in the sanitizer build under LeakSanitizer (no report allowed), in the normal build its
-- RSS after the 200 (heap trimmed) must stay within 2 MiB of the RSS after 10 warm-up ones
-- (the leak made it grow by more than 8 MiB).
local h = require "support.helper"
local mem = require "vmdr.mem"

describe("vmdr.git transactions do not leak", function()
    it("200 open/fetch/write/commit/push rounds", function()
        h.need("git")
        local tmp = h.tmpdir("gitleak")
        local bare = tmp .. "/r.git"
        h.capture("git init -q --bare -b main " .. h.q(bare))
        local script = h.write(tmp .. "/rounds.lua", string.format([[
local git = require "vmdr.git"
local mem = require "vmdr.mem"
local url, dir = %q, %q
assert(git.clone(url, dir)):close()
local function round(i)
    local r <close> = assert(git.open(dir, { url = url }))
    assert(r:fetch())
    assert(r:reset_to_remote())
    assert(r:write("f" .. (i %% 20) .. ".txt", "round " .. i .. "\n"))
    assert(r:commit("round " .. i, { author = { name = "t", email = "t@t" } }))
    assert(r:push())
end
for i = 1, 10 do round(i) end
collectgarbage("collect"); mem.trim()
local before = assert(mem.rss())
for i = 11, 210 do round(i) end
collectgarbage("collect"); mem.trim()
io.stdout:write(string.format("growth %%d\n", assert(mem.rss()) - before))
]], "file://" .. bare, tmp .. "/clone"))
        local env = nil
        if not mem.can_trim then   -- the sanitizer build
            env = { ASAN_OPTIONS = "detect_leaks=1:abort_on_error=0" }
        end
        local r = h.run({ script }, env)
        assert.equals(0, r.code, r.stderr)
        assert.is_nil(r.stderr:find("LeakSanitizer", 1, true), r.stderr)
        local growth = tonumber(r.stdout:match("growth (%-?%d+)"))
        assert.is_number(growth)
        if mem.can_trim then
            assert.is_true(growth < 2 * 1024 * 1024, "RSS grew by " .. growth .. " bytes")
        end
        assert.equals("210", h.capture("git --git-dir " .. h.q(bare) .. " rev-list --count main"):match("%d+"))
    end)
end)
