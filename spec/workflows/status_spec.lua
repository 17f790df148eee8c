-- status without a storage step (storage.driver none): the VMs come from Git, the
-- selector filters them, every format is well formed. The RPO figures themselves are
-- checked against the real Ceph pair in status_ceph_spec.lua.
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local json = require "vmdr.json"

describe("status (no storage)", function()
    local s, env
    local function run(...)
        local argv = { "status", "-c", env.cfg }
        for _, a in ipairs { ... } do argv[#argv + 1] = a end
        return h.run(argv)
    end

    setup(function()
        h.need("kubectl"); h.need("git")
        s = sim.start { fixtures = false }
        assert.equals(0, s.kubectl { "create", "namespace", "shop" }.code)
        for _, v in ipairs { { "db1", "database" }, { "web1", "web" } } do
            local r = s.kubectl({ "apply", "-f", "-" }, mon.vm_yaml("shop", v[1],
                { ["dr.demojam.com/enabled"] = "true", ["app-tier"] = v[2] }))
            assert.equals(0, r.code, r.stderr)
        end
        env = mon.setup(s)
        local r = h.run { "reconcile", "-c", env.cfg }
        assert.equals(0, r.code, r.stderr)
    end)
    teardown(function() if s then s.stop() end end)

    it("lists every VM in Git as a table, exit 0 when nothing is flagged", function()
        local r = run()
        assert.equals(0, r.code, r.stderr)
        assert.matches("NAMESPACE%s+VM%s+IMAGE", r.stdout)
        assert.matches("shop%s+db1 .-no replicated disk", r.stdout)
        assert.matches("shop%s+web1 .-no replicated disk", r.stdout)
        assert.matches("2 VM%(s%), 0 flagged", r.stdout)
    end)

    it("format=json, filtered by vm_selector", function()
        local r = run("-e", "format=json", "-e", "vm_selector=app-tier=database")
        assert.equals(0, r.code, r.stderr)
        local doc = assert(json.decode(r.stdout))
        assert.equals("status", doc.workflow)
        assert.equals(1, #doc.vms)
        assert.equals("db1", doc.vms[1].name)
        assert.equals(0, #doc.vms[1].images)
        assert.is_false(doc.vms[1].flagged)
        assert.equals(3600, doc.max_rpo)
    end)

    it("format=prometheus: text exposition format", function()
        local r = run("-e", "format=prometheus", "-e", "status.max_rpo=120")
        assert.equals(0, r.code, r.stderr)
        assert.matches("# TYPE vmdr_rpo_seconds gauge\n", r.stdout)
        assert.matches("# TYPE vmdr_mirror_healthy gauge\n", r.stdout)
        assert.matches('vmdr_vm_flagged{namespace="shop",vm="db1"} 0\n', r.stdout, 1, true)
        assert.matches("vmdr_status_max_rpo_seconds 120\n", r.stdout, 1, true)
        -- every non-comment line is `name{labels} value` or `name value`
        for line in r.stdout:gmatch("[^\n]+") do
            if not line:match("^#") then
                assert.truthy(line:match("^[%a_:][%w_:]*{.-} [%d.NaN+-]+$") or line:match("^[%a_:][%w_:]* [%d.]+$"), line)
            end
        end
    end)

    it("a selector that matches nothing is an error, a malformed one a usage error", function()
        local r = run("-e", "vm_selector=app-tier=none")
        assert.equals(1, r.code)
        assert.matches("no VM in Git matches", r.stderr)
        r = run("-e", "vm_selector=app-tier in (")
        assert.equals(2, r.code)
    end)
end)
