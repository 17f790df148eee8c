-- The monitor's safety nets on vmdr-sim + a bare repository: the periodic resync picks up
-- a change no VM event reports (a PVC resize), and a converge on a list that would remove
-- every VM (the API shows none: deleted while no monitor ran, or a selector problem) is
-- refused, as gc refuses it, and needs gc.force.
-- Also the regression spec of "monitor, boot: the shutdown after SIGTERM runs in one hold"
-- (its m.stop() got exit 130 whenever the instruction count put a hook mark after the loop).
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"

local SEL = "dr.demojam.com/enabled"

local function disk_yaml(ns, claim, pv, size)
    return string.format([[
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: %s}}
  volumeName: %s
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  accessModes: [ReadWriteOnce]
  capacity: {storage: %s}
  claimRef: {apiVersion: v1, kind: PersistentVolumeClaim, name: %s, namespace: %s}
  hostPath: {path: /tmp/%s}
]], claim, ns, size, pv, pv, size, claim, ns, pv)
end

describe("monitor safety nets", function()
    local s, env, m
    local function kubectl(args, stdin)
        local r = s.kubectl(args, stdin)
        assert.equals(0, r.code, table.concat(args, " ") .. ": " .. r.stderr)
        return r.stdout
    end
    setup(function()
        h.need("kubectl"); h.need("git")
        s = sim.start { fixtures = false, bookmark_interval = 1 }
        kubectl { "create", "namespace", "shop" }
        kubectl({ "apply", "-f", "-" }, disk_yaml("shop", "db1-root", "pv-db1", "1Gi"))
        kubectl({ "apply", "-f", "-" }, mon.vm_yaml("shop", "db1", { [SEL] = "true" }, "1Gi", { "db1-root" }))
        kubectl({ "apply", "-f", "-" }, mon.vm_yaml("shop", "web1", { [SEL] = "true" }, "1Gi"))
        env = mon.setup(s, "monitor: { debounce: 0.2, resync_interval: 2, lease_namespace: default, "
            .. "lease_duration: 4 }")
    end)
    teardown(function()
        if m then m.stop() end
        if s then s.stop() end
    end)

    it("the periodic resync picks up a PVC resize, which no VM event reports", function()
        m = env.start()
        mon.eventually(function()
            local vms = env.vms()
            return vms["shop/db1"] and vms["shop/web1"]
        end, 60, "initial export")
        assert.matches("1Gi", env.git("show main:vms/base/shop/pvc-db1-root.yaml"))
        kubectl { "patch", "pvc", "-n", "shop", "db1-root", "--type", "merge", "-p",
            '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}' }
        mon.eventually(function()
            return env.git("show main:vms/base/shop/pvc-db1-root.yaml"):find("2Gi") ~= nil
        end, 60, "the resize never reached Git")
        assert.matches("periodic resync", env.git("log -1 --format=%s main"))
        assert.equals(0, m.stop())
        m = nil
    end)

    it("refuses to remove every VM when the live list is empty; gc.force overrides", function()
        kubectl { "delete", "vm", "-n", "shop", "db1", "web1" }
        m = env.start()
        mon.eventually(function()
            return m.log():find("the live list is empty but Git holds VMs: nothing removed", 1, true)
        end, 60, "no refusal logged")
        local vms = env.vms()
        assert.is_not_nil(vms["shop/db1"])
        assert.is_not_nil(vms["shop/web1"])
        assert.equals(0, m.stop())
        m = env.start { "-e", "gc.force=true" }
        mon.eventually(function() return next(env.vms()) == nil end, 60, "forced removal did not happen")
        assert.equals(0, m.stop())
        m = nil
    end)

    it("gives freed memory back between batches, at most every monitor.trim_interval", function()
        local e2 = mon.setup(s, "monitor: { debounce: 0.1, resync_interval: 3600, lease_namespace: default, "
            .. "lease_duration: 4, trim_interval: 0.3 }")
        kubectl({ "apply", "-f", "-" }, mon.vm_yaml("shop", "trim1", { [SEL] = "true" }, "1Gi"))
        m = e2.start { "-v" }
        m.wait_log("batch synced", 60)
        for i = 1, 3 do
            h.sh("sleep 0.4")
            kubectl { "label", "vm", "-n", "shop", "trim1", "--overwrite", "round=r" .. i }
            mon.eventually(function()
                return (e2.vms()["shop/trim1"] or ""):find("round: r" .. i, 1, true) ~= nil
            end, 60, "label r" .. i .. " never reached Git")
        end
        assert.equals(0, m.stop())
        local log = m.log()
        m = nil
        local _, trims = log:gsub("memory given back", "")
        local _, batches = log:gsub("batch synced", "")
        assert.is_true(trims >= 1, "no trim after " .. batches .. " batches:\n" .. log:sub(-1500))
        assert.is_true(trims <= batches, trims .. " trims for " .. batches .. " batches")
    end)
end)
