-- status against the real Ceph pair (site a = source, b = DR, rbd-mirror both ways): a VM
-- exported by reconcile (mirroring enabled), a mirror snapshot taken and replicated; the
-- report shows the image primary on the source, healthy, with the RPO measured from the
-- newest snapshot on the DR side; status.max_rpo flags it (exit 1) once exceeded.
-- Cross-checked with the rbd CLI.
-- needs: ceph
local h = require "support.helper"
local ceph = require "support.ceph"
local sim = require "support.sim"
local mon = require "support.monitor"
local json = require "vmdr.json"
local t = require "vmdr.time"
local pvc_pv_yaml = require("support.objects").pvc_pv_yaml

describe("status on the Ceph pair", function()
    local s, env, a, img, cfg_extra
    local function run(...)
        local argv = { "status", "-c", env.cfg }
        for _, x in ipairs { ... } do argv[#argv + 1] = x end
        return h.run(argv)
    end

    setup(function()
        h.need("kubectl"); h.need("git")
        a = ceph.connect("a")
        img = ceph.name("status")
        assert(a:create_image("rbd", img, 8 * 1024 * 1024, { features = "layering,exclusive-lock" }))
        local fx = h.tmpdir("status-fx")
        h.write(fx .. "/vm.yaml", mon.vm_yaml("shop", "db1", { ["dr.demojam.com/enabled"] = "true" },
            "1Gi", { "db1-root" }))
        h.write(fx .. "/disk.yaml", pvc_pv_yaml("shop", "db1-root", "pv-" .. img, img))
        s = sim.start { fixtures = fx }
        cfg_extra = ceph.storage_yaml(ceph.site("a"), ceph.site("b"))
        env = mon.setup(s, "")
        -- the config's storage section replaces the "none" one
        h.write(env.cfg, (h.read(env.cfg):gsub("storage: { driver: none }\n", cfg_extra)))
        local r = h.run { "reconcile", "-c", env.cfg }
        assert.equals(0, r.code, r.stdout .. r.stderr)
        -- a mirror snapshot, replicated to b
        local i = assert(a:image("rbd", img))
        assert(i:mirror_snapshot())
        i:close()
        ceph.eventually("the snapshot reaches site b", 120, function()
            local r2 = run("-e", "format=json")
            local doc = json.decode(r2.stdout)
            local im = doc and doc.vms[1] and doc.vms[1].images[1]
            return im and im.rpo_seconds ~= json.null and im.healthy, r2.stdout .. r2.stderr
        end)
    end)
    teardown(function()
        if s then s.stop() end
        if a and img then
            local i = a:image("rbd", img)
            if i then i:mirror_disable(true); i:close() end
        end
    end)

    it("json: primary on the source, healthy, RPO from the newest snapshot on the DR side", function()
        local r = run("-e", "format=json")
        assert.equals(0, r.code, r.stderr)
        local doc = assert(json.decode(r.stdout))
        local im = doc.vms[1].images[1]
        assert.equals("rbd/" .. img, im.image)
        assert.equals("source", im.primary_site)
        assert.is_true(im.healthy)
        assert.is_true(im.rpo_seconds >= 0)
        assert.matches("^enabled", im.source)
        assert.matches("^enabled", im.dr)
        -- the rbd CLI agrees: primary on a, non-primary on b
        assert.matches("primary: true", ceph.rbd_cli("a", "info rbd/" .. img))
        assert.matches("primary: false", ceph.rbd_cli("b", "info rbd/" .. img))
    end)

    it("prometheus: the image's gauges", function()
        local r = run("-e", "format=prometheus")
        assert.equals(0, r.code, r.stderr)
        local lbl = string.format('namespace="shop",vm="db1",image="rbd/%s"', img)
        assert.truthy(r.stdout:find("vmdr_mirror_healthy{" .. lbl .. "} 1\n", 1, true), r.stdout)
        assert.truthy(r.stdout:match("vmdr_rpo_seconds{" .. lbl:gsub("%p", "%%%0") .. "} %d+\n"), r.stdout)
        assert.truthy(r.stdout:find('vmdr_mirror_primary{' .. lbl .. ',site="source"} 1', 1, true))
    end)

    it("an RPO above status.max_rpo is flagged and exits 1", function()
        t.sleep(1.1)   -- the snapshot is now at least 1 s old
        local r = run("-e", "status.max_rpo=0")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("FLAGGED", r.stdout)
        assert.matches("1 VM%(s%) flagged", r.stderr)
    end)
end)
