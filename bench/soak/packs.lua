-- How a repository's pack count slows vmdr.git: N transactions (open, fetch, reset, write,
-- commit, push over file://) on a copy of a clone and its bare remote, timed, with the
-- monitor process's own memory afterwards. Run it on the soak's clone as left, then after
-- `git repack -a -d` on both copies, to separate the pack count from everything else.
--   vmdr-run bench/soak/packs.lua -- CLONE_DIR REMOTE_DIR N
local git = require "vmdr.git"
local mem = require "vmdr.mem"
local t = require "vmdr.time"

local args = ...
local argv = type(args) == "table" and args.args or { ... }
local dir, remote, n = argv[1], argv[2], tonumber(argv[3] or "20")
assert(dir and remote, "usage: packs.lua -- CLONE_DIR REMOTE_DIR N")
local url = "file://" .. remote
local times = {}
for i = 1, n do
    local t0 = t.monotonic()
    local r <close> = assert(git.open(dir, { url = url, worktree = false }))
    assert(r:fetch())
    assert(r:reset_to_remote())
    assert(r:write("vms/packs-probe.txt", "round " .. i .. "\n"))
    assert(r:commit("packs probe " .. i, { author = { name = "probe", email = "p@localhost" } }))
    assert(r:push())
    r:close()
    times[#times + 1] = t.monotonic() - t0
end
table.sort(times)
collectgarbage("collect")
local packs = 0
for _ in io.popen("ls " .. dir .. "/objects/pack"):lines() do packs = packs + 1 end
io.stdout:write(string.format("%d files in objects/pack; %d transactions: median %.3f s, max %.3f s; "
    .. "RSS %.1f MB\n", packs, n, times[(n + 1) // 2], times[n], assert(mem.rss()) / 1048576))
return true
