-- Source Kubernetes API faults (issue 8) for the one-shot workflows: reconcile, gc and
-- event_sync run as real processes (vmdr-run) against vmdr-sim with its fault endpoint,
-- a real Git server (git http-backend behind lighttpd, basic auth) and the exec storage
-- driver recording every storage call. For each fault: 12 VMs are synced, the fault is
-- injected, each workflow must exit 1 naming the failure, leave the Git tree as it was
-- and disable no mirroring; once the fault is cleared, the next run converges on the tree
-- a clean reconcile of the same live state produces (into a second, reference repository).
-- Regression for: a 404 that does not name the VM (the API group not served) was taken
-- as "the VM is gone" by event_sync, gc and the monitor, which then removed it from Git
-- and disabled its mirroring (fixed in vmdr.dr.confirmed_gone).
local h = require "support.helper"
local sim = require "support.sim"
local gitsrv = require "support.gitsrv"

local N <const> = 12
local NS <const> = "dr-app-000"
local VMS <const> = "/apis/kubevirt.io/v1/virtualmachines"
local PVCS <const> = "/api/v1/persistentvolumeclaims"
local SEL <const> = "dr.demojam.com/enabled"

local function vm_path(name) return "/apis/kubevirt.io/v1/namespaces/" .. NS .. "/virtualmachines/" .. name end

describe("source API faults: reconcile, gc, event_sync", function()
    local tmp, s, srv, bare, cfg, refcfg, tokfile, storage_log

    local function git(dir, args) return h.capture("git --git-dir " .. h.q(dir) .. " " .. args .. " 2>&1") end
    local function tree() return git(bare, "rev-parse main^{tree}"):match("%x+") end
    local function stored()
        local out = {}
        for p in git(bare, "ls-tree -r --name-only main"):gmatch("[^\n]+") do
            local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
            if ns then out[#out + 1] = ns .. "/" .. name end
        end
        table.sort(out)
        return out
    end
    local function calls(op)
        local n = 0
        for l in (h.read(storage_log) or ""):gmatch("[^\n]+") do
            if l:match("^" .. op .. " ") then n = n + 1 end
        end
        return n
    end
    local function run(wf, ...)
        local argv = { wf, "-c", cfg }
        for _, a in ipairs { ... } do argv[#argv + 1] = a end
        return h.run(argv)
    end
    local function event_sync(name, ...) return run("event_sync", "-e", "namespace=" .. NS, "-e", "name=" .. name, ...) end
    --- Patches a VM's labels with curl (an independent client; follows a token rotation).
    local function label(name, labels)
        local r = s.curl { method = "PATCH", path = vm_path(name), content_type = "application/merge-patch+json",
            body = { metadata = { labels = labels } } }
        assert.equals(200, r.code, r.body)
    end
    --- The DR copy a clean reconcile makes of the live state now, in a fresh repository;
    --- the faulted repository must hold exactly the same base and overlay trees.
    local function converged()
        local ref = tmp .. "/ref.git"
        h.capture("rm -rf " .. h.q(ref) .. " " .. h.q(tmp .. "/ref-clone") .. " && git init -q --bare -b main " .. h.q(ref))
        local r = h.run { "reconcile", "-c", refcfg }
        assert.equals(0, r.code, r.stderr)
        for _, sub in ipairs { "vms/base", "vms/overlays/dr-east" } do
            assert.equals(git(ref, "rev-parse main:" .. sub), git(bare, "rev-parse main:" .. sub), sub .. " differs")
        end
    end
    --- Runs fn with the fault in force; asserts the tree and the storage were not touched.
    local function untouched(fn)
        local before, enables, disables = tree(), calls("enable"), calls("disable")
        fn()
        assert.equals(before, tree())
        assert.equals(disables, calls("disable"))
        return enables
    end
    local function failed(r, ...)
        assert.equals(1, r.code, r.stdout .. r.stderr)
        for _, pat in ipairs { ... } do assert.matches(pat, r.stderr) end
    end

    setup(function()
        h.need("git")
        tmp = h.tmpdir("fapi")
        srv = gitsrv.up()
        gitsrv.bare(srv, "manifests")
        bare = gitsrv.urls(srv, "manifests").path
        s = sim.start { fixtures = false, generate = N, token = true }
        -- in-cluster style: the client reads its token from a file, so a rotation is a write
        tokfile = h.write(tmp .. "/token", s.token .. "\n")
        local kubeconfig = h.write(tmp .. "/kubeconfig", string.format([[
apiVersion: v1
kind: Config
clusters: [{name: sim, cluster: {server: "%s"}}]
users: [{name: sa, user: {tokenFile: "%s"}}]
contexts: [{name: sim, context: {cluster: sim, user: sa}}]
current-context: sim
]], s.url, tokfile))
        storage_log = tmp .. "/storage.sh.log"
        local script = h.write(tmp .. "/storage.sh", "#!/bin/sh\necho \"$*\" >> \"$0.log\"\n")
        -- the reference runs' storage calls go nowhere
        local refscript = h.write(tmp .. "/ref-storage.sh", "#!/bin/sh\nexit 0\n")
        h.capture("chmod +x " .. h.q(script) .. " " .. h.q(refscript))
        local function config(url, workdir, sh)
            return string.format([[
cluster_name: dr-east
source: { kubeconfig: %s, page_size: 5 }
git: { url: "%s", workdir: %s, user: git, token_file: %s }
argocd: { destination: dr-east }
storage:
  driver: exec
  exec:
    enable: [%s, enable, "{spec}"]
    disable: [%s, disable, "{spec}"]
]], kubeconfig, url, workdir, srv.token_file, sh, sh)
        end
        cfg = h.write(tmp .. "/vmdr.yaml", config(gitsrv.urls(srv, "manifests").http, tmp .. "/clone", script))
        refcfg = h.write(tmp .. "/ref.yaml", config("file://" .. tmp .. "/ref.git", tmp .. "/ref-clone", refscript))
    end)
    teardown(function()
        if s then s.stop() end
        gitsrv.down(srv)
    end)
    after_each(function() if s then s.admin { clear = true } end end)

    it("baseline: reconcile syncs the 12 VMs through paged lists (page size 5)", function()
        local r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(N, #stored())
        assert.equals(N + N / 4, calls("enable"))   -- a root disk each, a data disk every 4th
        assert.equals(0, calls("disable"))
        converged()
    end)

    it("500 from the second page of the VM list on: every workflow fails and changes nothing", function()
        -- what the next good run must pick up: a label change and an unlabelled VM (an orphan)
        label("vm-00001", { fault = "mid-page" })
        label("vm-00002", { [SEL] = "false" })
        untouched(function()
            s.admin { fail = { after = 1, count = 1000, status = 500, verb = "GET", path_prefix = VMS } }
            failed(run("reconcile"), "listing VirtualMachines", "unavailable", "500")
            local f = s.state().faults.fail
            assert.equals(0, f.after)            -- the first page was served
            assert.equals(1000 - 5, f.count)     -- the second failed, with 4 retries
            s.admin { fail = { after = 1, count = 1000, status = 500, verb = "GET", path_prefix = VMS } }
            failed(run("gc", "-e", "force=true"), "nothing deleted", "500")
            assert.equals(0, s.state().faults.fail.after)
            -- event_sync's own GET of the unlabelled VM fails: it must not be removed
            s.admin { fail = { count = 1000, status = 500, path_prefix = vm_path("vm-00002") } }
            failed(event_sync("vm-00002"), "not synced", "500")
        end)
        s.admin { clear = true }
        assert.equals(0, run("reconcile").code)
        local r = run("gc")
        assert.equals(0, r.code, r.stderr)
        assert.equals(N - 1, #stored())
        assert.equals(1, calls("disable"))      -- vm-00002's one disk, once the API answered
        converged()
    end)

    it("transient 500s and a 410 on a continue token mid-list: retried, restarted, complete", function()
        label("vm-00003", { fault = "transient" })
        s.admin { fail = { after = 1, count = 2, status = 500, verb = "GET", path_prefix = PVCS } }
        local r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(0, s.state().faults.fail.count)
        converged()
        -- the continue token expires once: the list starts again and is whole
        label("vm-00004", { fault = "gone-once" })
        s.admin { fail = { after = 1, count = 1, status = 410, verb = "GET", path_prefix = VMS } }
        r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(0, s.state().faults.fail.count)
        assert.equals(N - 1, #stored())
        converged()
    end)

    it("410 on the continue token and again on the restart: fails, never a partial list", function()
        label("vm-00005", { fault = "gone-twice" })
        untouched(function()
            s.admin { fail = { after = 1, count = 2, status = 410, verb = "GET", path_prefix = VMS } }
            failed(run("reconcile"), "listing VirtualMachines", "gone")
            s.admin { fail = { after = 1, count = 2, status = 410, verb = "GET", path_prefix = VMS } }
            failed(run("gc", "-e", "force=true"), "nothing deleted", "gone")
        end)
        s.admin { clear = true }
        assert.equals(0, run("reconcile").code)
        converged()
    end)

    it("the PVC list failing after the VM list: no mirroring touched, nothing written", function()
        label("vm-00006", { fault = "pvc-503" })
        local enables = calls("enable")
        untouched(function()
            s.admin { fail = { after = 1, count = 1000, status = 503, verb = "GET", path_prefix = PVCS } }
            failed(run("reconcile"), "listing PersistentVolumeClaims", "unavailable", "503")
        end)
        assert.equals(enables, calls("enable"))
        s.admin { clear = true }
        assert.equals(0, run("reconcile").code)
        converged()
    end)

    it("the API down (listener closed): every workflow fails as unreachable, then converges", function()
        label("vm-00007", { fault = "down" })
        label("vm-00008", { [SEL] = "false" })
        local log0 = #(h.read(s.stderr_file) or "")
        s.admin { restart = 6 }
        -- down for sure before the runs (the sim logs it)
        local t = require "vmdr.time"
        local dl = t.monotonic() + 30
        while not (h.read(s.stderr_file) or ""):find("listener closed", log0, true) do
            assert(t.monotonic() < dl, "the sim never closed its listener")
            t.sleep(0.02)
        end
        untouched(function()
            -- one retry: the three runs fit well inside the outage
            failed(run("reconcile", "-e", "source.retries=1"), "unreachable")
            failed(run("gc", "-e", "force=true", "-e", "source.retries=1"), "nothing deleted", "unreachable")
            failed(event_sync("vm-00008", "-e", "source.retries=1"), "unreachable")
        end)
        dl = t.monotonic() + 60
        while s.curl { path = "/version", args = { "--max-time", "2" } }.code ~= 200 do
            assert(t.monotonic() < dl, "the sim never came back")
            t.sleep(0.1)
        end
        assert.equals(0, run("reconcile").code)
        assert.equals(0, event_sync("vm-00008").code)
        assert.equals(N - 2, #stored())
        converged()
    end)

    it("responses slower than the client timeout: every workflow fails as timeout, then converges", function()
        label("vm-00009", { fault = "slow" })
        untouched(function()
            s.admin { delay_ms = 2000 }
            local slow = { "-e", "source.timeout=0.3", "-e", "source.retries=1" }
            failed(run("reconcile", table.unpack(slow)), "timeout")
            failed(run("gc", "-e", "force=true", table.unpack(slow)), "nothing deleted", "timeout")
            failed(event_sync("vm-00009", table.unpack(slow)), "timeout")
        end)
        s.admin { clear = true }
        assert.equals(0, run("reconcile").code)
        converged()
    end)

    it("a 404 that does not name the VM (API group not served) is not 'gone': nothing removed", function()
        -- vm-00010 unlabelled: a GET answering "the server could not find the requested
        -- resource" must not pass for its confirmation
        label("vm-00010", { [SEL] = "false" })
        untouched(function()
            s.admin { fail = { count = 1000, status = 404, path_prefix = vm_path("vm-00010") } }
            failed(event_sync("vm-00010"), "not synced", "not_found")
            s.admin { fail = { count = 1000, status = 404, path_prefix = vm_path("vm-00010") } }
            failed(run("gc"), "nothing removed", "not_found")
        end)
        s.admin { clear = true }
        assert.equals(0, event_sync("vm-00010").code)
        assert.equals(N - 3, #stored())
        converged()
    end)

    it("401 after a token rotation, with the stale token file: fails cleanly, then recovers", function()
        label("vm-00011", { fault = "rotated" })
        local new = s.token .. "-rotated"
        untouched(function()
            s.admin { token = new }
            for _, r in ipairs { run("reconcile"), run("gc", "-e", "force=true"), event_sync("vm-00011") } do
                failed(r, "unauthorized", "Unauthorized")
                assert.is_nil((r.stdout .. r.stderr):find(new, 1, true))
            end
        end)
        -- the file is rotated too (as the kubelet does): the next run works
        h.write(tokfile, new .. "\n")
        assert.equals(0, run("reconcile").code)
        assert.equals(0, run("gc").code)
        converged()
    end)

    it("no commit ever removed a VM that was still protected", function()
        local out = git(bare, "log --diff-filter=D --name-only --format= main")
        local removed = {}
        for p in out:gmatch("[^\n]+") do
            local name = p:match("^vms/base/[^/]+/vm%-(.+)%.yaml$")
            if name then removed[#removed + 1] = name end
        end
        table.sort(removed)
        assert.same({ "vm-00002", "vm-00008", "vm-00010" }, removed)
        assert.equals(1 + 2 + 1, calls("disable"))   -- their disks: vm-00008 has a data disk too
    end)
end)
