-- Commit + push of 10,000 small YAML files in 500 folders to a local bare repository:
-- vmdr.git (treebuilder over an in-memory odb, one pack) side by side with the git CLI
-- (`git add -A && git commit && git push`, gc.auto=0) on the same tree, then an
-- incremental change of 10 files, RUNS times in one run; prints medians.
--   vmdr-run bench/git/bench.lua -- WORKDIR [RUNS]
local git = require "vmdr.git"
local time = require "vmdr.time"
local _, args = ...
local root = assert(args[1], "usage: bench.lua -- WORKDIR [RUNS]")
local runs = tonumber(args[2] or "5")
local DIRS, PER = 500, 20

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("failed: " .. cmd) end
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- About 3 KB of VirtualMachine YAML, like the manifests vmdr writes.
local function vm_yaml(d, f, gen)
  local t = { "apiVersion: kubevirt.io/v1", "kind: VirtualMachine", "metadata:",
    string.format("  name: vm-%03d-%02d", d, f), string.format("  namespace: ns-%03d", d),
    "  annotations:", string.format("    dr.demojam.com/source-generation: \"%d\"", gen),
    "  labels:", "    app: demo", "    dr.demojam.com/enabled: \"true\"", "spec:", "  template:",
    "    spec:", "      domain:", "        cpu: {cores: 2}", "        devices:", "          disks:" }
  for i = 1, 30 do
    t[#t + 1] = string.format("          - name: disk-%02d-%03d-%02d\n            disk: {bus: virtio}", i, d, f)
  end
  t[#t + 1] = "      volumes:"
  for i = 1, 12 do
    t[#t + 1] = string.format("      - name: disk-%02d\n        persistentVolumeClaim: {claimName: pvc-%03d-%02d-%02d}", i, d, f, i)
  end
  return table.concat(t, "\n") .. "\n"
end

local function path_of(d, f) return string.format("vms/base/ns-%03d/vm-%03d-%02d.yaml", d, d, f) end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local GIT = "git -c gc.auto=0 -c user.name=bench -c user.email=b@b -c core.hooksPath=/dev/null"
local res = { cli_write = {}, cli_commit = {}, cli_push = {}, cli_inc = {}, vmdr_commit = {}, vmdr_push = {},
  vmdr_inc = {}, nowt_commit = {}, nowt_push = {}, nowt_inc = {} }
local total_bytes = 0

for run = 1, runs do
  local dir = string.format("%s/run%d", root, run)
  sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir))
  sh("git init -q --bare -b main " .. q(dir .. "/cli.git") .. " && git init -q --bare -b main " .. q(dir .. "/vmdr.git"))

  -- git CLI: the files are on disk first (not timed), as a work tree would have them
  local wt = dir .. "/cli"
  sh("git init -q -b main " .. q(wt))
  total_bytes = 0
  local tw = time.monotonic()
  local mk = {}
  for d = 1, DIRS do mk[d] = q(wt .. "/vms/base/" .. string.format("ns-%03d", d)) end
  sh("mkdir -p " .. table.concat(mk, " "))
  for d = 1, DIRS do
    for f = 1, PER do
      local s = vm_yaml(d, f, 1)
      total_bytes = total_bytes + #s
      local fh = assert(io.open(wt .. "/" .. path_of(d, f), "wb")); fh:write(s); fh:close()
    end
  end
  res.cli_write[run] = time.monotonic() - tw
  sh("sync")
  local t0 = time.monotonic()
  sh("cd " .. q(wt) .. " && " .. GIT .. " add -A && " .. GIT .. " commit -q -m full")
  local t1 = time.monotonic()
  sh("cd " .. q(wt) .. " && " .. GIT .. " push -q " .. q(dir .. "/cli.git") .. " main")
  local t2 = time.monotonic()
  res.cli_commit[run], res.cli_push[run] = t1 - t0, t2 - t1
  for i = 1, 10 do
    local fh = assert(io.open(wt .. "/" .. path_of(i * 37, i), "wb")); fh:write(vm_yaml(i * 37, i, 2)); fh:close()
  end
  t0 = time.monotonic()
  sh("cd " .. q(wt) .. " && " .. GIT .. " add -A && " .. GIT .. " commit -q -m inc && " .. GIT ..
    " push -q " .. q(dir .. "/cli.git") .. " main")
  res.cli_inc[run] = time.monotonic() - t0

  -- vmdr.git: writes (blob, and the work-tree file when there is one) and commit, then push
  local contents = {}
  for d = 1, DIRS do for f = 1, PER do contents[#contents + 1] = { path_of(d, f), vm_yaml(d, f, 1) } end end
  for _, mode in ipairs { "vmdr", "nowt" } do
    if mode == "nowt" then
      sh("git init -q --bare -b main " .. q(dir .. "/nowt.git"))
    end
    local r = assert(git.clone(dir .. "/" .. (mode == "vmdr" and "vmdr" or "nowt") .. ".git",
      dir .. "/" .. mode, { worktree = mode == "vmdr" }))
    sh("sync")
    t0 = time.monotonic()
    for _, c in ipairs(contents) do assert(r:write(c[1], c[2])) end
    assert(r:commit("full"))
    t1 = time.monotonic()
    assert(r:push())
    t2 = time.monotonic()
    res[mode .. "_commit"][run], res[mode .. "_push"][run] = t1 - t0, t2 - t1
    local inc = {}
    for i = 1, 10 do inc[i] = { path_of(i * 37, i), vm_yaml(i * 37, i, 2) } end
    t0 = time.monotonic()
    for _, c in ipairs(inc) do assert(r:write(c[1], c[2])) end
    assert(r:commit("inc"))
    assert(r:push())
    res[mode .. "_inc"][run] = time.monotonic() - t0
    r:close()
  end
  io.stderr:write(string.format("run %d: cli %.2f+%.2f s, inc %.0f ms | vmdr %.2f+%.2f s, inc %.0f ms" ..
    " | no work tree %.2f+%.2f s, inc %.0f ms\n", run,
    res.cli_commit[run], res.cli_push[run], res.cli_inc[run] * 1000,
    res.vmdr_commit[run], res.vmdr_push[run], res.vmdr_inc[run] * 1000,
    res.nowt_commit[run], res.nowt_push[run], res.nowt_inc[run] * 1000))
  sh("rm -rf " .. q(dir))
end

local function ms(t) return string.format("%.0f ms", median(t) * 1000) end
local function s(t) return string.format("%.2f s", median(t)) end
local function sum(a, b) local t = {} for i = 1, runs do t[i] = a[i] + b[i] end return t end
print(string.format("%d files in %d folders, %.1f MB; median of %d runs", DIRS * PER, DIRS, total_bytes / 1e6, runs))
print("| step | git CLI | vmdr.git (work tree) | vmdr.git (worktree=false) |")
print("|---|---:|---:|---:|")
print(string.format("| write the 10,000 files (CLI: plain Lua io, not in its total) | %s | (in next row) | (in next row) |",
  s(res.cli_write)))
print(string.format("| full tree: CLI add -A + commit / vmdr write x10000 + commit | %s | %s | %s |",
  s(res.cli_commit), s(res.vmdr_commit), s(res.nowt_commit)))
print(string.format("| full tree: push to a local bare repo | %s | %s | %s |", s(res.cli_push), s(res.vmdr_push),
  s(res.nowt_push)))
print(string.format("| full tree: commit + push | %s | %s | %s |", s(sum(res.cli_commit, res.cli_push)),
  s(sum(res.vmdr_commit, res.vmdr_push)), s(sum(res.nowt_commit, res.nowt_push))))
print(string.format("| 10 files changed: commit + push | %s | %s | %s |", ms(res.cli_inc), ms(res.vmdr_inc),
  ms(res.nowt_inc)))
