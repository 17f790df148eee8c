-- Source Kubernetes API faults (issue 8) in the middle of paginated lists, for the one-shot
-- workflows: reconcile, gc and event_sync run as real processes (vmdr-run) against
-- vmdr-sim with its fault endpoint (page size 5: the VM, PVC and PV lists of 12 VMs take 3
-- pages each), a real Git server (git http-backend behind lighttpd) and the exec storage
-- driver recording every storage call (spec/support/apifaults.lua). For each fault: the
-- workflow exits 1 naming the failure, the Git tree is as it was and no mirroring is
-- disabled; once the fault is cleared, the next run converges on the tree a clean
-- reconcile of the live state makes.
local af = require "support.apifaults"

local VMS, PVCS, SEL = af.VMS, af.PVCS, af.SEL

describe("source API faults mid-list: reconcile, gc, event_sync", function()
    local e, s
    setup(function()
        e = af.env { n = 12, page_size = 5 }
        s = e.s
    end)
    teardown(function() if e then e.stop() end end)
    after_each(function() if s then s.admin { clear = true } end end)

    it("baseline: reconcile syncs the 12 VMs through paged lists", function()
        local r = e.run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(12, #e.stored())
        assert.equals(12 + 3, e.calls("enable"))   -- a root disk each, a data disk every 4th
        assert.equals(0, e.calls("disable"))
        e.converged()
    end)

    it("500 from the VM list's second page on: every workflow fails, changes nothing", function()
        -- what the next good run must pick up: a label change and an unlabelled VM (an orphan)
        e.label("vm-00001", { fault = "mid-page" })
        e.label("vm-00002", { [SEL] = "false" })
        e.untouched(function()
            s.admin { fail = { after = 1, count = 1000, status = 500, verb = "GET",
                path_prefix = VMS } }
            e.failed(e.run("reconcile"), "listing VirtualMachines", "unavailable", "500")
            local f = s.state().faults.fail
            assert.equals(0, f.after)            -- the first page was served
            assert.equals(1000 - 5, f.count)     -- the second failed, with 4 retries
            s.admin { fail = { after = 1, count = 1000, status = 500, verb = "GET",
                path_prefix = VMS } }
            e.failed(e.run("gc", "-e", "force=true"), "nothing deleted", "500")
            assert.equals(0, s.state().faults.fail.after)
            -- event_sync's own GET of the unlabelled VM fails: it must not be removed
            s.admin { fail = { count = 1000, status = 500, path_prefix = af.vm_path("vm-00002") } }
            e.failed(e.event_sync("vm-00002"), "not synced", "500")
        end)
        s.admin { clear = true }
        assert.equals(0, e.run("reconcile").code)
        local r = e.run("gc")
        assert.equals(0, r.code, r.stderr)
        assert.equals(11, #e.stored())
        assert.equals(1, e.calls("disable"))   -- vm-00002's one disk, once the API answered
        e.converged()
    end)

    it("transient 500s, a 410 on a continue token: retried, restarted, complete", function()
        e.label("vm-00003", { fault = "transient" })
        s.admin { fail = { after = 1, count = 2, status = 500, verb = "GET", path_prefix = PVCS } }
        local r = e.run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(0, s.state().faults.fail.count)
        e.converged()
        -- the continue token expires once: the list starts again and is whole
        e.label("vm-00004", { fault = "gone-once" })
        s.admin { fail = { after = 1, count = 1, status = 410, verb = "GET", path_prefix = VMS } }
        r = e.run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(0, s.state().faults.fail.count)
        assert.equals(11, #e.stored())
        e.converged()
    end)

    it("410 on the continue token and again on the restart: fails, never a partial list", function()
        e.label("vm-00005", { fault = "gone-twice" })
        e.untouched(function()
            s.admin { fail = { after = 1, count = 2, status = 410, verb = "GET",
                path_prefix = VMS } }
            e.failed(e.run("reconcile"), "listing VirtualMachines", "gone")
            s.admin { fail = { after = 1, count = 2, status = 410, verb = "GET",
                path_prefix = VMS } }
            e.failed(e.run("gc", "-e", "force=true"), "nothing deleted", "gone")
        end)
        s.admin { clear = true }
        assert.equals(0, e.run("reconcile").code)
        e.converged()
    end)

    it("the PVC list failing after the VM list: no mirroring touched, nothing written", function()
        e.label("vm-00006", { fault = "pvc-503" })
        local enables = e.calls("enable")
        e.untouched(function()
            s.admin { fail = { after = 1, count = 1000, status = 503, verb = "GET",
                path_prefix = PVCS } }
            e.failed(e.run("reconcile"), "listing PersistentVolumeClaims", "unavailable", "503")
        end)
        assert.equals(enables, e.calls("enable"))
        s.admin { clear = true }
        assert.equals(0, e.run("reconcile").code)
        e.converged()
    end)

    it("no commit ever removed a VM that was still protected", function()
        assert.same({ "vm-00002" }, e.removed())
        assert.equals(1, e.calls("disable"))
    end)
end)
