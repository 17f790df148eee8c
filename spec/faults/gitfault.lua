-- Shared by spec/faults/git*_spec.lua and bench/faults/git/kill9: a source cluster
-- (vmdr-sim with generated VMs), the real Git servers of spec/support/git-servers, a bare
-- manifests repository on them, a vmdr configuration, and the checks a Git fault ends
-- with: what the remote holds is the old commit or a complete new tree (every overlay
-- builds with kubectl kustomize and lists every VM), and the clone holds no lock or
-- temp file. Test code only.
local h = require "support.helper"
local sim = require "support.sim"
local gitsrv = require "support.gitsrv"
local yaml = require "vmdr.yaml"
local t = require "vmdr.time"

local M = {}

local function trim(s) return (tostring(s or ""):gsub("%s+$", "")) end
M.trim = trim

--- The PIDs below pid (its children, theirs, ...), from /proc.
function M.descendants(pid)
    local parent = {}
    local p = io.popen("ls /proc")
    for d in p:read("a"):gmatch("%d+") do
        local st = h.read("/proc/" .. d .. "/stat")
        local pp = st and st:match("^%d+ %b() %S+ (%d+)")
        if pp then parent[d] = pp end
    end
    p:close()
    local out, frontier = {}, { [tostring(pid)] = true }
    local grew = true
    while grew do
        grew = false
        for d, pp in pairs(parent) do
            if frontier[pp] and not frontier[d] then
                frontier[d] = true; out[#out + 1] = d; grew = true
            end
        end
    end
    return out
end

--- The command line of a process ("" when it is gone).
function M.cmdline(pid)
    return ((h.read("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " "))
end

--- Starts everything. opts: vms (64), transport ("http" | "ssh"), name, workdir,
--- worktree (false, the workflows' default).
function M.env(opts)
    opts = opts or {}
    for _, tool in ipairs { "git", "kubectl", "flock", "tar" } do h.need(tool) end
    local E = { vms = opts.vms or 64, transport = opts.transport or "http" }
    E.dir = h.tmpdir(opts.name or "fgit")
    E.srv = gitsrv.up()
    local ok, s = pcall(sim.start, { fixtures = false, generate = E.vms })
    if not ok then gitsrv.down(E.srv); error(s, 0) end
    E.sim = s
    E.workdir = opts.workdir or (E.dir .. "/clone")

    --- A bare repository NAME on the servers with one seed commit; returns its URL.
    function E.repo(name)
        local path = gitsrv.bare(E.srv, name, true)
        local url = gitsrv.urls(E.srv, name)[E.transport]
        return path, url
    end
    E.bare, E.url = E.repo("m")
    E.seed = trim(gitsrv.git(E.bare, "rev-parse main"))

    local auth
    if E.transport == "ssh" then
        auth = string.format("  ssh_key: %s\n  known_hosts: %s\n", E.srv.ssh_key, E.srv.known_hosts)
    else
        auth = string.format("  token_file: %s\n", E.srv.token_file)
    end
    E.cfg = h.write(E.dir .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
git:
  url: %s
  workdir: %s
%s  author: { name: vmdr-fault, email: fault@vmdr }
  worktree: %s
  max_attempts: 40
  backoff: 0.01
  lock_timeout: 120
storage: { driver: none }
argocd: { destination: dr-east }
]], E.sim.kubeconfig, E.url, E.workdir, auth, tostring(opts.worktree == true)))

    --- argv for vmdr-run: workflow, -c cfg, then the extra arguments.
    function E.argv(wf, extra)
        local a = { wf, "-c", E.cfg }
        for _, x in ipairs(extra or {}) do a[#a + 1] = x end
        return a
    end
    --- Runs a workflow to its end: {code=, stdout=, stderr=}.
    function E.run(wf, extra)
        return h.run(E.argv(wf, extra))
    end

    --- Starts a workflow in the background; returns {pid=, wait=fn -> code, out=fn -> text}.
    function E.spawn(wf, extra, tag)
        local d = h.tmpdir("spawn-" .. (tag or wf))
        local parts = { h.q(h.vmdr_run) }
        for _, a in ipairs(E.argv(wf, extra)) do parts[#parts + 1] = h.q(a) end
        local inner = table.concat(parts, " ") .. " >" .. h.q(d .. "/out") .. " 2>" .. h.q(d .. "/err")
            .. " </dev/null & echo $! >" .. h.q(d .. "/pid") .. "; wait $!; echo $? >" .. h.q(d .. "/rc")
        assert(h.sh("sh -c " .. h.q(inner) .. " >/dev/null 2>&1 &") == 0)
        local p = { dir = d }
        local deadline = t.monotonic() + 30
        while not (h.read(d .. "/pid") or ""):match("%d") do
            assert(t.monotonic() < deadline, "no pid for " .. wf)
            t.sleep(0.005)
        end
        p.pid = h.read(d .. "/pid"):match("%d+")
        function p.done() return (h.read(d .. "/rc") or ""):match("%d+") ~= nil end
        function p.wait(timeout)
            local dl = t.monotonic() + (timeout or 300)
            while not p.done() do
                if t.monotonic() > dl then
                    h.sh("kill -9 " .. p.pid .. " 2>/dev/null")
                    error(wf .. " did not finish: " .. (h.read(d .. "/err") or ""))
                end
                t.sleep(0.01)
            end
            return tonumber(h.read(d .. "/rc"):match("%d+"))
        end
        function p.out() return (h.read(d .. "/out") or "") .. (h.read(d .. "/err") or "") end
        function p.signal(sig) return h.sh("kill -" .. sig .. " " .. p.pid .. " 2>/dev/null") end
        return p
    end

    --- git (the CLI, an independent client) in the bare repository.
    function E.git(args) return gitsrv.git(E.bare, args) end
    function E.head() return trim(E.git("rev-parse main")) end

    --- Checks one commit of the remote as Argo CD would use it: its tree extracted, every
    --- overlay built with kubectl kustomize. Returns { vms = VM files in base, built =
    --- VirtualMachines the overlays produce, overlays = n } or nil, why.
    function E.verify(commit, root)
        root = root or "vms"
        local d = h.tmpdir("verify")
        local r = h.exec { "sh", "-c", "git -C " .. h.q(E.bare) .. " archive " .. h.q(commit)
            .. " | tar -x -C " .. h.q(d) }
        if r.code ~= 0 then return nil, "cannot extract " .. commit .. ": " .. r.stderr end
        local files = h.capture("cd " .. h.q(d) .. " && find . -type f | sort")
        local n = 0
        for _ in files:gmatch("/" .. root .. "/base/[^/\n]+/vm%-[^/\n]+%.yaml") do n = n + 1 end
        local res = { vms = n, built = 0, overlays = 0 }
        local odir = root .. "/overlays/dr-east"
        local list = h.exec { "ls", d .. "/" .. odir }
        -- One kubectl for every overlay (one per overlay was most of a spec's time): a
        -- kustomization at the top lists each overlay directory, which kustomize loads as
        -- its own kustomization with the default load restrictions, as Argo CD does; the
        -- build fails if any of them does not build.
        local top = { "resources:" }
        for ns in list.stdout:gmatch("[^\n]+") do
            if ns ~= "components" then
                res.overlays = res.overlays + 1
                top[#top + 1] = "- " .. odir .. "/" .. ns
            end
        end
        if res.overlays > 0 then
            h.write(d .. "/kustomization.yaml", table.concat(top, "\n") .. "\n")
            local b = h.exec { "kubectl", "kustomize", d }
            if b.code ~= 0 then
                h.sh("rm -rf " .. h.q(d))
                return nil, string.format("the overlays of %s do not build: %s", commit, b.stderr)
            end
            for _, doc in ipairs(assert(yaml.decode_all(b.stdout))) do
                if doc.kind == "VirtualMachine" then
                    res.built = res.built + 1
                    local rs = doc.spec and doc.spec.runStrategy
                    if rs ~= "Halted" then
                        h.sh("rm -rf " .. h.q(d))
                        return nil, "a VM is not powered off by its overlay: " .. tostring(rs)
                    end
                end
            end
        end
        h.sh("rm -rf " .. h.q(d))
        return res
    end

    --- Asserts the remote holds `old` (a commit id) or a complete tree of every VM, and
    --- returns "old" or "new".
    function E.old_or_complete(old, root)
        local head = E.head()
        if head == old then return "old" end
        local v, why = E.verify(head, root)
        assert(v, why)
        assert(v.vms == E.vms and v.built == E.vms, string.format(
            "remote %s is neither the old commit nor complete: %d VM files, %d built of %d",
            head, v.vms, v.built, E.vms))
        return "new"
    end

    --- Asserts the remote is complete (every VM, every overlay builds).
    function E.complete(root)
        local v, why = E.verify(E.head(), root)
        assert(v, why)
        assert(v.vms == E.vms and v.built == E.vms, string.format(
            "remote incomplete: %d VM files, %d built of %d", v.vms, v.built, E.vms))
        assert(E.git("rev-list --merges main") == "", "a merge commit on the remote")
        return v
    end

    --- The lock and temp files left in the clone (git's *.lock, vmdr.fs temp files,
    --- libgit2's temporary packs and indexes), as a list of paths.
    function E.leftovers(workdir)
        workdir = workdir or E.workdir
        local r = h.exec { "find", workdir, "(", "-name", "*.lock", "-o", "-name", "*.vmdr-tmp-*",
            "-o", "-name", "pack_git2_*", "-o", "-name", "tmp_*", "-o", "-name", "*.tmp",
            "-o", "-name", "incoming-*", ")", "-print" }
        local out = {}
        for l in r.stdout:gmatch("[^\n]+") do out[#out + 1] = l end
        -- the parent too: vmdr.fs writes its temp files next to the target
        local p = h.exec { "find", (workdir:gsub("/+$", ""):match("^(.*)/[^/]+$")), "-maxdepth", "1",
            "-name", "*.vmdr-tmp-*" }
        for l in p.stdout:gmatch("[^\n]+") do out[#out + 1] = l end
        return out
    end

    --- true when nobody holds the clone's lock (flock, as vmdr.git.lock takes it).
    function E.lock_free(workdir)
        local lock = (workdir or E.workdir):gsub("/+$", "") .. ".lock"
        if not h.read(lock) then return true end
        return h.sh("flock -n -E 75 " .. h.q(lock) .. " true") == 0
    end

    --- Moves the remote branch to `commit` on the server (a force push by someone else).
    function E.force_remote(commit)
        E.git("update-ref refs/heads/main " .. commit)
    end

    --- Force-pushes `ref` of the clone `co` (made with the git CLI) to the remote, as an
    --- operator with the right to rewrite history would (the server refuses it otherwise).
    function E.force_push(co, ref)
        E.git("config receive.denyNonFastForwards false")
        local ok, err = pcall(h.capture, "git -C " .. h.q(co) .. " push -q --force " .. h.q(E.bare)
            .. " " .. ref .. ":refs/heads/main 2>&1")
        E.git("config receive.denyNonFastForwards true")
        assert(ok, err)
    end

    --- Replaces the remote history by one new root commit holding the seed's files.
    function E.orphan(msg)
        local c = trim(E.git("-c user.name=op -c user.email=op@x commit-tree " .. E.seed .. "^{tree} -m " .. h.q(msg)))
        E.force_remote(c)
        return c
    end

    function E.stop()
        if E.sim then pcall(E.sim.stop) end
        gitsrv.down(E.srv)
    end
    return E
end

return M
