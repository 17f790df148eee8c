-- Test support for the source-API fault specs (spec/faults/api_*_spec.lua; M.files, M.count
-- and M.label also serve monitor_api_spec, lease_loss_spec and bench/faults/api_storm.lua):
-- a vmdr-sim with N generated VMs and token auth, a kubeconfig whose user reads the token from a
-- file (in-cluster style: a rotation is a file write), a real Git server (git
-- http-backend behind lighttpd, basic auth) holding the manifests repository, and the
-- exec storage driver logging every call. `converged()` compares the repository with what
-- a clean reconcile of the live state makes in a fresh reference repository. Test code only.
local h = require "support.helper"
local sim = require "support.sim"
local gitsrv = require "support.gitsrv"

local M = {}

M.NS = "dr-app-000"
M.VMS = "/apis/kubevirt.io/v1/virtualmachines"
M.PVCS = "/api/v1/persistentvolumeclaims"
M.SEL = "dr.demojam.com/enabled"

--- The API path of VM name in M.NS.
function M.vm_path(name)
    return "/apis/kubevirt.io/v1/namespaces/" .. M.NS .. "/virtualmachines/" .. name
end

--- Counts the calls of op in a storage log (the exec driver's script writes one line a call,
--- "op args...").
function M.count(log, op)
    local n = 0
    for l in (h.read(log) or ""):gmatch("[^\n]+") do
        if l:match("^" .. op .. " ") then n = n + 1 end
    end
    return n
end

--- Patches the labels of VM name in M.NS with curl through sim s (an independent client;
--- follows a token rotation).
function M.label(s, name, labels)
    local r = s.curl { method = "PATCH", path = M.vm_path(name),
        content_type = "application/merge-patch+json",
        body = { metadata = { labels = labels } } }
    assert(r.code == 200, "PATCH " .. name .. ": " .. r.code .. " " .. r.body)
end

--- The files of a run against sim s (with a token) in directory tmp: tmp/token and a
--- kubeconfig whose user reads it (in-cluster style: a rotation is a file write), the exec
--- driver's tmp/storage.sh logging every call to tmp/storage.sh.log, tmp/vmdr.yaml for the
--- repository at url, and tmp/ref.yaml for a reference repository tmp/ref.git whose storage
--- calls go nowhere. o (optional): page_size (5), timeout (source.timeout), token_file (Git
--- basic auth as user git), monitor (the entries of the monitor section).
--- Returns f: f.tokfile, f.storage_log, f.cfg, f.refcfg, f.calls(op),
--- f.reference() (makes tmp/ref.git afresh by a clean reconcile of the live state; returns
--- the reconcile's result) and f.differs(bare) (the first of vms/base, vms/overlays/dr-east
--- in which main of bare is not the reference's, or nil).
function M.files(tmp, s, url, o)
    o = o or {}
    local f = {}
    f.tokfile = h.write(tmp .. "/token", s.token .. "\n")
    local kubeconfig = h.write(tmp .. "/kubeconfig", string.format([[
apiVersion: v1
kind: Config
clusters: [{name: sim, cluster: {server: "%s"}}]
users: [{name: sa, user: {tokenFile: "%s"}}]
contexts: [{name: sim, context: {cluster: sim, user: sa}}]
current-context: sim
]], s.url, f.tokfile))
    f.storage_log = tmp .. "/storage.sh.log"
    local script = h.write(tmp .. "/storage.sh", "#!/bin/sh\necho \"$*\" >> \"$0.log\"\n")
    local refscript = h.write(tmp .. "/ref-storage.sh", "#!/bin/sh\nexit 0\n")
    h.capture("chmod +x " .. h.q(script) .. " " .. h.q(refscript))
    local source = "kubeconfig: " .. kubeconfig .. ", page_size: " .. (o.page_size or 5)
        .. (o.timeout and (", timeout: " .. o.timeout) or "")
    local auth = o.token_file and (", user: git, token_file: " .. o.token_file) or ""
    local monitor = o.monitor and ("monitor: { " .. o.monitor .. " }\n") or ""
    local function config(repo, workdir, sh)
        return string.format([[
cluster_name: dr-east
source: { %s }
git: { url: "%s", workdir: %s%s }
argocd: { destination: dr-east }
storage:
  driver: exec
  exec: { enable: [%s, enable, "{spec}"], disable: [%s, disable, "{spec}"] }
%s]], source, repo, workdir, auth, sh, sh, monitor)
    end
    f.cfg = h.write(tmp .. "/vmdr.yaml", config(url, tmp .. "/clone", script))
    local ref = tmp .. "/ref.git"
    f.refcfg = h.write(tmp .. "/ref.yaml", config("file://" .. ref, tmp .. "/ref-clone", refscript))

    function f.calls(op) return M.count(f.storage_log, op) end
    function f.reference()
        h.capture("rm -rf " .. h.q(ref) .. " " .. h.q(tmp .. "/ref-clone")
            .. " && git init -q --bare -b main " .. h.q(ref))
        return h.run { "reconcile", "-c", f.refcfg }
    end
    function f.differs(bare)
        for _, sub in ipairs { "vms/base", "vms/overlays/dr-east" } do
            local want = h.capture("git --git-dir " .. h.q(ref) .. " rev-parse main:" .. sub
                .. " 2>&1")
            local got = h.exec { "git", "--git-dir", bare, "rev-parse", "main:" .. sub }.stdout
            if want ~= got then return sub end
        end
        return nil
    end
    return f
end

--- Starts everything; opts.n VMs (12), opts.page_size (5). Returns the environment e:
--- e.s (the sim), e.run(wf, ...), e.event_sync(name, ...), e.label(name, labels), e.tree(),
--- e.stored(), e.calls(op), e.converged(), e.untouched(fn), e.failed(r, pat...), e.tokfile,
--- e.removed() (VM names removed by some commit), e.stop().
function M.env(opts)
    opts = opts or {}
    h.need("git")
    local e = { n = opts.n or 12 }
    local tmp = h.tmpdir("fapi")
    local srv = gitsrv.up()
    gitsrv.bare(srv, "manifests")
    local bare = gitsrv.urls(srv, "manifests").path
    local s = sim.start { fixtures = false, generate = e.n, token = true }
    e.s = s
    local f = M.files(tmp, s, gitsrv.urls(srv, "manifests").http,
        { page_size = opts.page_size, token_file = srv.token_file })
    e.tokfile, e.calls = f.tokfile, f.calls
    local cfg = f.cfg

    local function git(dir, args)
        return h.capture("git --git-dir " .. h.q(dir) .. " " .. args .. " 2>&1")
    end
    function e.tree() return git(bare, "rev-parse main^{tree}"):match("%x+") end
    function e.stored()
        local out = {}
        for p in git(bare, "ls-tree -r --name-only main"):gmatch("[^\n]+") do
            local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
            if ns then out[#out + 1] = ns .. "/" .. name end
        end
        table.sort(out)
        return out
    end
    function e.removed()
        local out = {}
        for p in git(bare, "log --diff-filter=D --name-only --format= main"):gmatch("[^\n]+") do
            local name = p:match("^vms/base/[^/]+/vm%-(.+)%.yaml$")
            if name then out[#out + 1] = name end
        end
        table.sort(out)
        return out
    end
    function e.run(wf, ...)
        local argv = { wf, "-c", cfg }
        for _, a in ipairs { ... } do argv[#argv + 1] = a end
        return h.run(argv)
    end
    function e.event_sync(name, ...)
        return e.run("event_sync", "-e", "namespace=" .. M.NS, "-e", "name=" .. name, ...)
    end
    function e.label(name, labels) M.label(s, name, labels) end
    --- The repository holds the base and overlay trees a clean reconcile makes now.
    function e.converged()
        local r = f.reference()
        assert(r.code == 0, "reference reconcile: " .. r.stderr)
        local sub = f.differs(bare)
        assert(sub == nil, tostring(sub) .. " differs from a clean reconcile's")
    end
    --- Runs fn with a fault in force; asserts the tree and the disables were not touched.
    function e.untouched(fn)
        local before, disables = e.tree(), e.calls("disable")
        fn()
        assert(before == e.tree(), "the repository changed under the fault")
        assert(disables == e.calls("disable"), "mirroring was disabled under the fault")
    end
    --- Asserts a run exited 1 and its stderr matches every pattern.
    function e.failed(r, ...)
        assert(r.code == 1, "exit " .. tostring(r.code) .. ", expected 1: " .. r.stdout .. r.stderr)
        for _, pat in ipairs { ... } do
            assert(r.stderr:find(pat), "stderr lacks " .. pat .. ": " .. r.stderr)
        end
    end
    function e.stop()
        s.stop()
        gitsrv.down(srv)
    end
    return e
end

return M
