-- Storage outages during failover and relocate, on a real Ceph pair of this spec's own
-- (site a = source, b = DR, rbd-mirror both ways; issue 8). Destructive: monitors are
-- killed and frozen, a whole site is frozen (SIGSTOP of mon + OSD, NOTES-ceph "site
-- outage"), the DR OSD is frozen. So it never touches the suite's shared pair.
-- - DR monitor down (killed) or hung (frozen): failover ends within storage.ceph.timeout with
--   `unreachable` for every image (no hang), status reports the DR site unreachable per
--   image, Git is untouched; once the monitor is back, a re-run promotes.
-- - source site frozen: the graceful promote is refused (busy), the source does not answer
--   within storage.ceph.peer_timeout, so the driver forces, per image; a relocate (never
--   forced) finds the source unreachable in its check of both sites, names the image and
--   does nothing (not even stopping the VM); after the thaw a re-run of relocate finishes.
-- - DR OSD frozen: every promote ends with `timeout` after storage.ceph.timeout, per image;
--   after the thaw a re-run promotes.
-- No timing threshold is asserted: the bound shows in the error ("within 3 s"); the times
-- are printed for docs/reliability/fceph.md.
local h = require "support.helper"
local ceph = require "support.ceph"
local sim = require "support.sim"
local json = require "vmdr.json"
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"
local vm_yaml = require("support.monitor").vm_yaml

local TIMEOUT <const> = 3

describe("storage outages in failover and relocate (a Ceph pair of its own)", function()
    local tmp, s, p, a, b, run, head
    local images = {} -- claim -> image name
    local vms = {     -- VM, app-tier, claims
        { "m1", "mondown", { "m1-root" } },
        { "m2", "mondown", { "m2-root" } },
        { "h1", "monhung", { "h1-root", "h1-data" } },
        { "f1", "srcfrozen", { "f1-root", "f1-data" } },
        { "r1", "reloc", { "r1-root" } },
        { "o1", "osdfrozen", { "o1-root", "o1-data" } },
    }

    local function spec_of(claim) return "rbd/" .. images[claim] end
    local function primary(c, claim)
        local img = assert(c:image("rbd", images[claim]))
        local i = img:mirror_info()
        img:close()
        return i.primary
    end
    -- the failover report as JSON: image spec -> entry
    local function by_image(r)
        local doc = assert(json.decode(r.stdout), r.stdout .. r.stderr)
        local out = {}
        for _, e in ipairs(doc.images) do out[e.image] = e end
        return out, doc
    end
    -- waits until site s answers again (a fresh connection opens an image)
    local function answers(site, claim)
        ceph.eventually("site " .. site .. " answers", 90, function()
            local opts = p.site(site)
            opts.timeout = TIMEOUT
            local c, err = rbd.connect(opts)
            if not c then return false, err end
            local img, ierr = c:image("rbd", images[claim])
            if img then img:close() end
            c:close()
            return img ~= nil, ierr
        end)
    end

    setup(function()
        h.need("git"); h.need("kubectl")
        tmp = h.tmpdir("foutage")
        local t0 = time.monotonic()
        p = ceph.own_pair("foutage-pair")
        print(string.format("  (own pair up in %.1f s)", time.monotonic() - t0))
        t0 = time.monotonic()
        a, b = p.connect("a"), p.connect("b")
        local fx = tmp .. "/fixtures"
        for _, v in ipairs(vms) do
            ceph.disks(a, fx, "shop", "fo-", v[3], images)
            h.write(fx .. "/vm-" .. v[1] .. ".yaml", vm_yaml("shop", v[1],
                { ["app-tier"] = v[2], ["dr.demojam.com/enabled"] = "true" }, "1Gi", v[3]))
        end
        s = sim.start { fixtures = fx }
        local w = ceph.workspace(tmp, s, p.site("a"), p.site("b"), { author = "faults",
            top = { "relocate: { stop_timeout: 30, sync_timeout: 90 }" },
            ceph = { "timeout: " .. TIMEOUT, "peer_timeout: 2", "promote_retry: 1" } })
        run, head = w.run, w.head
        local r = run("reconcile")
        assert(r.code == 0, r.stdout .. r.stderr)
        -- every DR copy complete: a forced promote of a never-synced copy cannot work
        local n = 0
        for _, img in pairs(images) do
            n = n + 1
            ceph.synced(a, b, img, 60)
        end
        print(string.format("  (reconcile + first sync of %d images: %.1f s)", n,
            time.monotonic() - t0))
    end)

    teardown(function()
        if s then s.stop() end
        if p then p.down() end -- kills every daemon of the pair, frozen or not
    end)

    it("DR monitor down: failover fails per image with unreachable, Git untouched; a re-run "
        .. "after the monitor is back promotes", function()
        local before = head()
        p.kill("b", "mon.a")
        local r = run("failover", "-e", "vm_selector=app-tier=mondown", "-e", "force=true",
            "-e", "format=json")
        print(string.format("  (failover with the DR mon killed: exit %d after %.1f s, bound %d s)",
            r.code, r.seconds, TIMEOUT))
        assert.equals(1, r.code, r.stdout .. r.stderr)
        local rep, doc = by_image(r)
        assert.equals(2, doc.failed)
        for vm, claim in pairs { m1 = "m1-root", m2 = "m2-root" } do
            local e = rep[spec_of(claim)]
            assert.equals(vm, e.vm)
            assert.equals("FAILED", e.state)
            assert.matches("^unreachable: no monitor of cluster .* answered within " .. TIMEOUT
                .. " s", e.detail)
        end
        assert.matches("2 image%(s%) not promoted", r.stderr)
        -- status: the DR site is unreachable, per image; the source still answers
        r = run("status", "-e", "vm_selector=app-tier=mondown", "-e", "format=json")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        local st = assert(json.decode(r.stdout), r.stdout .. r.stderr)
        for _, v in ipairs(st.vms) do
            assert.is_true(v.flagged)
            for _, i in ipairs(v.images) do
                assert.equals("unreachable", i.dr)
                assert.matches("^enabled", i.source)
                assert.equals("source", i.primary_site)
            end
        end
        assert.equals(before, head())
        -- the monitor back (same data): the same command now finishes
        p.restart("b", "mon.a")
        answers("b", "m1-root")
        r = run("failover", "-e", "vm_selector=app-tier=mondown", "-e", "force=true")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.is_true(primary(b, "m1-root"))
        assert.is_true(primary(b, "m2-root"))
        assert.equals(before, head())
    end)

    it("DR monitor hung (frozen): the same, bounded by storage.ceph.timeout", function()
        p.freeze("b", "mon.a")
        local r = run("failover", "-e", "vm_selector=app-tier=monhung", "-e", "force=true")
        p.thaw("b", "mon.a")
        print(string.format("  (failover with the DR mon frozen: exit %d after %.1f s, bound %d s)",
            r.code, r.seconds, TIMEOUT))
        assert.equals(1, r.code, r.stdout .. r.stderr)
        for _, claim in ipairs { "h1-root", "h1-data" } do
            assert.truthy(r.stdout:find("h1%s+" .. spec_of(claim):gsub("%p", "%%%0")
                .. "%s+FAILED%s+unreachable: no monitor"), r.stdout)
        end
        answers("b", "h1-root")
        r = run("failover", "-e", "vm_selector=app-tier=monhung", "-e", "force=true")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("2 image%(s%) of 1 VM%(s%) are writable", r.stdout)
    end)

    it("source site frozen: graceful promote busy, peer unreachable, forced per image; relocate "
        .. "refuses at demote, and finishes after the thaw", function()
        p.freeze("a", { "mon.a", "osd.0" })
        local ok, err = pcall(function()
            -- failover without force: the driver decides to force, because the source is gone
            local r = run("failover", "-e", "vm_selector=app-tier=srcfrozen", "-e", "format=json")
            print(string.format("  (failover with the source site frozen: exit %d after %.1f s)",
                r.code, r.seconds))
            assert.equals(0, r.code, r.stdout .. r.stderr)
            local rep = by_image(r)
            for _, claim in ipairs { "f1-root", "f1-data" } do
                assert.equals("promoted (forced)", rep[spec_of(claim)].state, claim)
            end
            assert.matches("forcing promote", r.stderr)
            assert.matches("source site is unreachable", r.stderr)
            assert.is_true(primary(b, "f1-root"))
            -- relocate never forces: its check of both sites finds the source unreachable,
            -- and it does nothing (the source VM is not even stopped)
            r = run("relocate", "-e", "vm_selector=app-tier=reloc")
            print(string.format("  (relocate with the source site frozen: exit %d after %.1f s)",
                r.code, r.seconds))
            assert.equals(1, r.code, r.stdout .. r.stderr)
            assert.matches("nothing done, 1 image%(s%): " .. spec_of("r1-root"):gsub("%p", "%%%0")
                .. " %(VM shop/r1%): source site: unreachable: no monitor", r.stderr)
            assert.is_false(primary(b, "r1-root"))
            local vm = h.exec { "kubectl", "--kubeconfig", s.kubeconfig, "get", "vm", "-n", "shop",
                "r1", "-o", "jsonpath={.spec.runStrategy}" }
            assert.equals("Always", vm.stdout)
        end)
        p.thaw("a", { "mon.a", "osd.0" })
        -- a PG may stay laggy after a long freeze (NOTES-ceph): restart the OSD cleanly
        p.restart("a", "osd.0")
        assert(ok, err)
        local t0 = time.monotonic()
        answers("a", "r1-root")
        print(string.format("  (source site answers %.1f s after the thaw)", time.monotonic() - t0))
        local r = run("relocate", "-e", "vm_selector=app-tier=reloc")
        print(string.format("  (relocate re-run after the thaw: exit %d after %.1f s)", r.code,
            r.seconds))
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.is_true(primary(b, "r1-root"))
        assert.is_false(primary(a, "r1-root"))
    end)

    it("DR OSD frozen: every promote ends with timeout, per image; a re-run after the thaw "
        .. "promotes", function()
        p.freeze("b", "osd.0")
        local r = run("failover", "-e", "vm_selector=app-tier=osdfrozen", "-e", "force=true",
            "-e", "format=json")
        p.thaw("b", "osd.0")
        print(string.format("  (failover with the DR OSD frozen: exit %d after %.1f s, bound %d s)",
            r.code, r.seconds, TIMEOUT))
        local t0 = time.monotonic()
        p.restart("b", "osd.0")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        local rep, doc = by_image(r)
        assert.equals(2, doc.failed)
        for _, claim in ipairs { "o1-root", "o1-data" } do
            local e = rep[spec_of(claim)]
            assert.equals("o1", e.vm)
            assert.equals("FAILED", e.state)
            assert.matches("^timeout: ", e.detail)
        end
        answers("b", "o1-root")
        print(string.format("  (DR site answers %.1f s after the OSD restart)",
            time.monotonic() - t0))
        r = run("failover", "-e", "vm_selector=app-tier=osdfrozen", "-e", "force=true")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.is_true(primary(b, "o1-root"))
        assert.is_true(primary(b, "o1-data"))
    end)
end)
