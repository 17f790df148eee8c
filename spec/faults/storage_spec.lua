-- Storage faults during failover, on the shared real Ceph pair (site a = source, b = DR, with
-- rbd-mirror; issue 8): among good VMs whose disks are mirrored RBD images, one VM's image is
-- missing on the DR site, one is already primary there, one DR copy has mirroring disabled.
-- `vmdr-run failover` (from Git) exits 1 naming each failed image with its VM and reason,
-- promotes the good ones, counts already-primary as done and changes nothing in Git; once the
-- causes are fixed a re-run finishes the rest and exits 0, and runs after that change nothing.
-- `vmdr-run status` reports each of them per image (absent, disabled, both primary) instead of
-- failing as a whole. Every state is cross-checked with librbd on each site.
-- The outage cases (a monitor down, a site frozen) need a pair of their own:
-- spec/faults/storage_outage_spec.lua.
-- needs: ceph
local h = require "support.helper"
local ceph = require "support.ceph"
local sim = require "support.sim"
local json = require "vmdr.json"
local vm_yaml = require("support.monitor").vm_yaml

describe("storage faults in failover (shared Ceph pair)", function()
    local tmp, s, a, b, run, head
    local images = {} -- claim -> image name
    local vms = {      -- VM -> its claims, app-tier
        { "good1", { "good1-root", "good1-data" } },
        { "good2", { "good2-root" } },
        { "lost", { "lost-root" } },         -- no image on the DR site
        { "early", { "early-root" } },       -- already primary on the DR site
        { "nomirror", { "nomirror-root" } }, -- DR copy with mirroring disabled
        { "rv1", { "rv1-root" }, "moving" }, -- the relocate group: one good,
        { "rv2", { "rv2-root" }, "moving" }, -- one DR copy unmirrored,
        { "rv3", { "rv3-root" }, "moving" }, -- one DR copy missing
    }

    local function spec_of(claim) return "rbd/" .. images[claim] end
    local function info(c, claim)
        local img = assert(c:image("rbd", images[claim]))
        local i = img:mirror_info()
        img:close()
        return i
    end
    -- a mirror snapshot on the source, completely copied to the DR site
    local function synced(claim) ceph.synced(a, b, images[claim], 60) end
    -- the failover report's lines for a JSON run: image spec -> entry
    local function by_image(stdout)
        local doc = assert(json.decode(stdout), stdout)
        local out = {}
        for _, e in ipairs(doc.images) do out[e.image] = e end
        return out, doc
    end

    setup(function()
        h.need("git")
        tmp = h.tmpdir("fstorage")
        a, b = ceph.connect("a"), ceph.connect("b")
        local fx = tmp .. "/fixtures"
        for _, v in ipairs(vms) do
            ceph.disks(a, fx, "shop", "fs-", v[2], images)
            h.write(fx .. "/vm-" .. v[1] .. ".yaml", vm_yaml("shop", v[1],
                { ["app-tier"] = v[3] or "database", ["dr.demojam.com/enabled"] = "true" }, "1Gi",
                v[2]))
        end
        s = sim.start { fixtures = fx }
        local w = ceph.workspace(tmp, s, ceph.site("a"), ceph.site("b"),
            { author = "faults", ceph = { "timeout: 20" } })
        run, head = w.run, w.head
        -- the VMs in Git, every disk mirrored, every DR copy complete
        local r = run("reconcile")
        assert(r.code == 0, r.stdout .. r.stderr)
        for claim in pairs(images) do synced(claim) end
        -- the faults
        for _, claim in ipairs { "lost-root", "rv3-root" } do
            local lost = assert(a:image("rbd", images[claim]))
            assert.equals("ok", lost:mirror_disable(false)) -- rbd-mirror deletes the DR copy
            lost:close()
            ceph.eventually("the DR copy of " .. claim .. " is deleted", 30, function()
                local img, err = b:image("rbd", images[claim])
                if img then img:close() end
                return err and err.code == "not_found", err
            end)
        end
        local early = assert(b:image("rbd", images["early-root"]))
        assert.equals("ok", early:promote(true))
        early:close()
        for _, claim in ipairs { "nomirror-root", "rv2-root" } do
            local nm = assert(b:image("rbd", images[claim]))
            assert.equals("ok", nm:mirror_disable(true))
            nm:close()
        end
    end)

    teardown(function()
        if s then s.stop() end
        ceph.drop(images, b, a)
    end)

    it("status reports each broken image per image (absent, disabled, both primary)", function()
        local r = run("status", "-e", "format=json", "-e", "vm_selector=app-tier=database")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        local doc = assert(json.decode(r.stdout), r.stdout .. r.stderr)
        local st = {}
        for _, v in ipairs(doc.vms) do
            for _, i in ipairs(v.images) do
                st[i.image] = { vm = v.name, img = i, flagged = v.flagged }
            end
        end
        local lost = st[spec_of("lost-root")]
        assert.equals("lost", lost.vm)
        assert.equals("absent", lost.img.dr)
        assert.matches("^disabled", lost.img.source)
        assert.is_true(lost.flagged)
        local nm = st[spec_of("nomirror-root")]
        assert.equals("nomirror", nm.vm)
        assert.matches("^disabled", nm.img.dr)
        assert.is_false(nm.img.healthy)
        assert.is_true(nm.flagged)
        local early = st[spec_of("early-root")]
        assert.equals("both", early.img.primary_site)
        assert.is_true(early.flagged)
        for _, claim in ipairs { "good1-root", "good1-data", "good2-root" } do
            local g = st[spec_of(claim)]
            assert.equals("source", g.img.primary_site, claim)
            assert.matches("^enabled", g.img.dr, claim)
        end
        -- the table names them too
        r = run("status", "-e", "vm_selector=app-tier=database")
        assert.equals(1, r.code)
        assert.truthy(r.stdout:find(spec_of("lost-root"):gsub("%p", "%%%0")
            .. "%s+none%s+disabled[^\n]*%s+absent%s"), r.stdout)
        assert.matches("%d VM%(s%) flagged", r.stderr)
    end)

    it("failover exits 1 naming each failed image and VM with its reason; the good ones are "
        .. "promoted",
        function()
            local before = head()
            local r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true")
            assert.equals(1, r.code, r.stdout .. r.stderr)
            local function row(vm, claim)
                for line in r.stdout:gmatch("[^\n]+") do
                    local fields = {}
                    for f in line:gmatch("%S+") do fields[#fields + 1] = f end
                    if fields[2] == vm and fields[3] == spec_of(claim) then return line end
                end
                error("no report line for " .. vm .. " " .. claim .. " in:\n" .. r.stdout)
            end
            assert.matches("FAILED%s+not_found: image " .. spec_of("lost-root"):gsub("%p", "%%%0")
                .. " does not exist", row("lost", "lost-root"))
            assert.matches("FAILED%s+not_mirrored: cannot promote "
                .. spec_of("nomirror-root"):gsub("%p", "%%%0") .. ": mirroring is disabled",
                row("nomirror", "nomirror-root"))
            assert.matches("already primary", row("early", "early-root"))
            for _, c in ipairs { { "good1", "good1-root" }, { "good1", "good1-data" },
                { "good2", "good2-root" } } do
                assert.matches("promoted %(forced%)", row(c[1], c[2]))
                assert.is_true(info(b, c[2]).primary, c[2])
            end
            assert.matches("2 image%(s%) or VM file%(s%) failed", r.stdout)
            assert.matches("2 image%(s%) not promoted", r.stderr)
            -- failover never writes to Git, and the failed images were left as they were
            assert.equals(before, head())
            assert.equals("disabled", info(b, "nomirror-root").state)
            local _, err = b:image("rbd", images["lost-root"])
            assert.equals("not_found", err.code)
            -- the same run again, as JSON: the good ones are now already primary, the same two fail
            r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true",
                "-e", "format=json")
            assert.equals(1, r.code, r.stdout .. r.stderr)
            local rep, doc = by_image(r.stdout)
            assert.equals(2, doc.failed)
            assert.equals("FAILED", rep[spec_of("lost-root")].state)
            assert.equals("lost", rep[spec_of("lost-root")].vm)
            assert.matches("^not_found", rep[spec_of("lost-root")].detail)
            assert.equals("FAILED", rep[spec_of("nomirror-root")].state)
            assert.matches("^not_mirrored", rep[spec_of("nomirror-root")].detail)
            for _, claim in ipairs { "good1-root", "good1-data", "good2-root", "early-root" } do
                assert.equals("already primary", rep[spec_of(claim)].state, claim)
            end
        end)

    it("after the causes are fixed, a re-run finishes the rest and exits 0; then it is a no-op",
        function()
            -- lost-root: mirrored again, so the DR site gets its copy
            local lost = assert(a:image("rbd", images["lost-root"]))
            assert.equals("ok", lost:mirror_enable("snapshot"))
            lost:close()
            synced("lost-root")
            -- nomirror-root: the stale unmirrored DR copy removed; rbd-mirror copies it afresh
            assert(b:remove_image("rbd", images["nomirror-root"]))
            synced("nomirror-root")
            assert.equals("enabled", info(b, "nomirror-root").state)
            local before = head()
            local r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true",
                "-e", "format=json")
            assert.equals(0, r.code, r.stdout .. r.stderr)
            local rep, doc = by_image(r.stdout)
            assert.equals(0, doc.failed)
            assert.equals("promoted (forced)", rep[spec_of("lost-root")].state)
            assert.equals("promoted (forced)", rep[spec_of("nomirror-root")].state)
            for _, claim in ipairs { "good1-root", "good1-data", "good2-root", "early-root" } do
                assert.equals("already primary", rep[spec_of(claim)].state, claim)
            end
            for _, v in ipairs(vms) do
                if not v[3] then assert.is_true(info(b, v[2][1]).primary, v[2][1]) end
            end
            -- idempotent: everything is already primary, nothing changes
            r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true")
            assert.equals(0, r.code, r.stdout .. r.stderr)
            local n = 0
            for _ in r.stdout:gmatch("already primary") do n = n + 1 end
            assert.equals(6, n)
            assert.matches("6 image%(s%) of 5 VM%(s%) are writable on the DR site", r.stdout)
            assert.equals(before, head())
        end)

    -- Regression: relocate used to stop the group's VMs and demote every image before
    -- finding that one DR copy could not take over (missing, unmirrored), then waited
    -- sync_timeout on it and named only the first failure: the group was left stopped with
    -- no primary anywhere. It now checks every image on both sites first.
    it("relocate with unmovable images names each of them and does nothing; after the fix it "
        .. "moves the group", function()
        h.need("kubectl")
        local function strategy(vm)
            local r = h.exec { "kubectl", "--kubeconfig", s.kubeconfig, "get", "vm", "-n", "shop",
                vm, "-o", "jsonpath={.spec.runStrategy}" }
            assert(r.code == 0, r.stderr)
            return r.stdout
        end
        local before = head()
        local r = run("relocate", "-e", "vm_selector=app-tier=moving")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("nothing done, 2 image%(s%)", r.stderr)
        assert.matches(spec_of("rv2-root"):gsub("%p", "%%%0") .. " %(VM shop/rv2%): dr site: "
            .. "mirroring disabled", r.stderr)
        assert.matches(spec_of("rv3-root"):gsub("%p", "%%%0") .. " %(VM shop/rv3%): source site: "
            .. "mirroring disabled, dr site: not_found", r.stderr)
        -- nothing was done: VMs still on, the mirrored images still primary on the source
        for _, vm in ipairs { "rv1", "rv2", "rv3" } do assert.equals("Always", strategy(vm), vm) end
        for _, claim in ipairs { "rv1-root", "rv2-root" } do
            assert.is_true(info(a, claim).primary, claim)
        end
        assert.equals("disabled", info(a, "rv3-root").state)
        -- the fix: rv2's stale DR copy removed and copied afresh, rv3 mirrored again
        assert(b:remove_image("rbd", images["rv2-root"]))
        synced("rv2-root")
        local img = assert(a:image("rbd", images["rv3-root"]))
        assert.equals("ok", img:mirror_enable("snapshot"))
        img:close()
        synced("rv3-root")
        r = run("relocate", "-e", "vm_selector=app-tier=moving")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        for _, claim in ipairs { "rv1-root", "rv2-root", "rv3-root" } do
            assert.is_true(info(b, claim).primary, claim)
            assert.is_false(info(a, claim).primary, claim) -- graceful: no split brain
        end
        for _, vm in ipairs { "rv1", "rv2", "rv3" } do assert.equals("Halted", strategy(vm), vm) end
        assert.equals(before, head())
    end)

    -- Regression: the ceph driver remembered a failed connection for the life of the
    -- process, so a long-running `vmdr-run monitor` (one driver for days) never reached a
    -- Ceph site again after one failed connect; now the failure expires after
    -- storage.ceph.reconnect_after.
    it("a failed connection is tried again after storage.ceph.reconnect_after", function()
        local driver = require "vmdr.storage.ceph"
        local src = ceph.site("a")
        local real = assert(h.read(src.conf))
        local conf = tmp .. "/flaky-a.conf"
        local vol = { pool = "rbd", image = images["good2-root"], spec = spec_of("good2-root"),
            pv = "pv-" .. images["good2-root"] }
        local function state(d) return d:status({ vol })[1].source.state end
        for _, case in ipairs { { after = 0, second = "enabled" },
                                { after = 3600, second = "unreachable" } } do
            -- the source's monitors are "down": nothing listens at their address
            h.write(conf, (real:gsub("mon host = [^\n]+", "mon host = 127.0.0.1:1")))
            local d <close> = assert(driver.new { config = { storage = { ceph = {
                source = { conf = conf, keyring = src.keyring, user = src.user },
                dr = ceph.site("b"), timeout = 2, reconnect_after = case.after } } } })
            assert.equals("unreachable", state(d))
            -- the monitors are back
            h.write(conf, real)
            assert.equals(case.second, state(d), "reconnect_after " .. case.after)
        end
    end)
end)
