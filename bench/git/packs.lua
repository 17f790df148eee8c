-- The clone's pack count, two ways (same script for main and a branch):
--
-- txn: 10-file transactions on a clone whose packs pile up: repo.transaction (open, fetch,
-- reset, 10 writes, commit, push over file://, and on builds that have it the pack merge
-- over git.max_packs) N times after a 1,000-file first commit. Prints the median, 90th
-- percentile and maximum of the whole transaction and of its commit + push part (from the
-- end of fn to the transaction's return: commit, push, merge, close), the clone's pack
-- count and the process RSS at the end.
--
-- rss: what a clone's pack count costs one open repository and what repo:maintain gives
-- back: N one-file commits (one pack each, no merging) after a 1,000-file first commit;
-- open, read every file (every pack's index mapped, its file opened), RSS / RssAnon /
-- RssFile / open pack files; then maintain{max_packs = M} and the same again.
--
--   vmdr-run bench/git/packs.lua -- txn|rss WORKDIR N [M]      (M: max_packs, 10)
local git = require "vmdr.git"
local repo = require "vmdr.repo"
local mem = require "vmdr.mem"
local t = require "vmdr.time"

local args = ...
local argv = type(args) == "table" and args.args or { ... }
local mode, dir, n, max_packs = argv[1], argv[2], tonumber(argv[3] or "200"), tonumber(argv[4] or "10")
assert((mode == "txn" or mode == "rss") and dir, "usage: packs.lua -- txn|rss WORKDIR N [M]")
assert(os.execute("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "' && git init -q --bare -b main '"
  .. dir .. "/r.git'"))

local function bench_txn()
  local ctx = { config = { git = { url = "file://" .. dir .. "/r.git", workdir = dir .. "/clone",
    max_packs = max_packs, author = { name = "bench", email = "b@localhost" } } } }

  local function yaml(ns, i, round)
    return string.format("apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n"
      .. "  name: vm-%03d\n  namespace: ns-%02d\n  labels: {round: \"%d\"}\nspec:\n"
      .. "  running: true\n  template:\n    spec:\n      domain:\n        memory: {guest: %dMi}\n",
      i, ns, round, 1024 + round % 7 * 256)
  end

  assert(repo.transaction(ctx, function(tx)
    for ns = 1, 20 do for i = 1, 50 do assert(tx:write(string.format("vms/ns-%02d/vm-%03d.yaml", ns, i), yaml(ns, i, 0))) end end
  end))

  local whole, cp = {}, {}
  for round = 1, n do
    local t0, t1 = t.monotonic(), nil
    assert(repo.transaction(ctx, function(tx)
      for k = 1, 10 do
        local v = (round * 10 + k) % 1000
        local ns, i = v // 50 + 1, v % 50 + 1
        assert(tx:write(string.format("vms/ns-%02d/vm-%03d.yaml", ns, i), yaml(ns, i, round)))
      end
      t1 = t.monotonic()
    end))
    local t2 = t.monotonic()
    whole[#whole + 1], cp[#cp + 1] = t2 - t0, t2 - t1
  end
  local function stats(v)
    table.sort(v)
    return string.format("median %.1f ms, p90 %.1f ms, max %.1f ms", v[(#v + 1) // 2] * 1000,
      v[math.ceil(#v * 0.9)] * 1000, v[#v] * 1000)
  end
  local packs = 0
  for f in io.popen("ls '" .. dir .. "/clone/.git/objects/pack'"):lines() do
    if f:match("%.idx$") then packs = packs + 1 end
  end
  collectgarbage("collect")
  io.stdout:write(string.format("%d transactions of 10 files: whole %s; commit+push %s; %d packs in the clone; RSS %.1f MB\n",
    n, stats(whole), stats(cp), packs, assert(mem.rss()) / 1048576))
end

local function bench_rss()
  local url, clone = "file://" .. dir .. "/r.git", dir .. "/clone"
  local author = { author = { name = "bench", email = "b@localhost" } }
  local paths = {}
  do
    local r <close> = assert(git.clone(url, clone, { worktree = false }))
    for i = 1, 1000 do
      paths[#paths + 1] = string.format("base/ns-%02d/vm-%04d.yaml", i % 20, i)
      assert(r:write(paths[#paths], "vm " .. i .. "\n"))
    end
    assert(r:commit("base", author))
    assert(r:push())
    for i = 1, n do
      local p = string.format("small/%05d.yaml", i)
      paths[#paths + 1] = p
      assert(r:write(p, "small " .. i .. "\n"))
      assert(r:commit("small " .. i, author))
    end
    assert(r:push())
  end

  local pid
  do
    local f = assert(io.open("/proc/self/stat"))
    pid = f:read("l"):match("^(%d+)")
    f:close()
  end
  local function status()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("a")
    f:close()
    local fds, packs = 0, 0
    for l in io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"):lines() do
      fds = fds + 1
      if l:find("objects/pack/pack-", 1, true) then packs = packs + 1 end
    end
    return string.format("RSS %.1f MB (anon %.1f, file %.1f), %d open pack files",
      tonumber(s:match("VmRSS:%s*(%d+)")) / 1024, tonumber(s:match("RssAnon:%s*(%d+)")) / 1024,
      tonumber(s:match("RssFile:%s*(%d+)")) / 1024, packs)
  end
  local function read_all(r)
    local t0 = t.monotonic()
    for _, p in ipairs(paths) do assert(r:read(p)) end
    return t.monotonic() - t0
  end

  collectgarbage("collect"); mem.trim()
  print("before opening: " .. status())
  local r <close> = assert(git.open(clone, { url = url, worktree = false }))
  local packs = r:pack_count()
  local took = read_all(r)
  print(string.format("%d packs, every file read (%.3f s): %s", packs, took, status()))
  local st = assert(r:maintain({ max_packs = max_packs }))
  collectgarbage("collect")
  print(string.format("maintain: %d -> %d packs, %d merged, %d objects, %.3f s: %s", st.packs_before,
    st.packs_after, st.packs_merged, st.objects_merged, st.seconds, status()))
  took = read_all(r)
  print(string.format("every file read again (%.3f s): %s", took, status()))
  mem.trim()
  print("after mem.trim: " .. status())
end

if mode == "txn" then bench_txn() else bench_rss() end
return true
