-- deploy/: the Kubernetes manifests for the monitor (Deployment, 2 replicas, Lease RBAC,
-- in-cluster auth) and the reconcile/gc CronJobs. vmdr-sim serves only VMs, PVCs, PVs,
-- namespaces and leases, so: the kustomization is built with kubectl kustomize (as
-- `kubectl apply -k` would), the objects are checked for what vmdr needs at run time,
-- the embedded config against vmdr's config schema, and what vmdr-sim does serve (the
-- Namespace) goes through `kubectl apply --dry-run=server`.
local h = require "support.helper"
local sim = require "support.sim"
local config = require "vmdr.config"
local yaml = require "vmdr.yaml"

describe("deploy/ manifests", function()
    local docs, by = nil, {}
    setup(function()
        h.need("kubectl")
        local r = h.exec { "kubectl", "kustomize", h.source_dir .. "/deploy" }
        assert.equals(0, r.code, r.stderr)
        docs = assert(yaml.decode_all(r.stdout))
        for _, d in ipairs(docs) do by[d.kind .. "/" .. d.metadata.name] = d end
    end)

    it("a Deployment of 2 monitors under the vmdr service account, in-cluster", function()
        local d = by["Deployment/vmdr-monitor"]
        assert.equals(2, d.spec.replicas)
        assert.equals("vmdr", d.metadata.namespace)
        local pod = d.spec.template.spec
        assert.equals("vmdr", pod.serviceAccountName)
        assert.equals("monitor", pod.containers[1].args[1])
        assert.is_true(pod.terminationGracePeriodSeconds >= 30)
        for _, e in ipairs(pod.containers[1].env) do
            assert.are_not.equal("KUBECONFIG", e.name)   -- in-cluster auth
            assert.is_nil(e.value and e.value:match("ghp_"))
        end
    end)

    it("RBAC: read VMs/PVCs/PVs cluster-wide, and the Lease the monitor elects with", function()
        local function allows(rules, group, res, verb, name)
            for _, r in ipairs(rules) do
                local g, rs, v, n = false, false, false, r.resourceNames == nil
                for _, x in ipairs(r.apiGroups) do if x == group then g = true end end
                for _, x in ipairs(r.resources) do if x == res then rs = true end end
                for _, x in ipairs(r.verbs) do if x == verb then v = true end end
                for _, x in ipairs(r.resourceNames or {}) do if x == name then n = true end end
                if g and rs and v and n then return true end
            end
            return false
        end
        local cr = by["ClusterRole/vmdr-reader"].rules
        for _, verb in ipairs { "get", "list", "watch" } do
            assert.is_true(allows(cr, "kubevirt.io", "virtualmachines", verb))
            assert.is_true(allows(cr, "", "persistentvolumeclaims", verb))
            assert.is_true(allows(cr, "", "persistentvolumes", verb))
        end
        assert.is_false(allows(cr, "kubevirt.io", "virtualmachines", "update"))
        local cfg = yaml.decode(by["ConfigMap/vmdr-config"].data["vmdr.yaml"])
        local role = by["Role/vmdr-leader-election"]
        assert.equals(cfg.monitor.lease_namespace, role.metadata.namespace)
        for _, verb in ipairs { "get", "update", "create" } do
            assert.is_true(allows(role.rules, "coordination.k8s.io", "leases", verb, cfg.monitor.lease_name), verb)
        end
        local rb = by["RoleBinding/vmdr-leader-election"]
        assert.equals("vmdr", rb.subjects[1].name)
        assert.equals("vmdr", by["ClusterRoleBinding/vmdr-reader"].subjects[1].namespace)
    end)

    it("reconcile and gc as CronJobs that never overlap", function()
        for _, name in ipairs { "reconcile", "gc" } do
            local cj = by["CronJob/vmdr-" .. name]
            assert.equals("Forbid", cj.spec.concurrencyPolicy)
            local pod = cj.spec.jobTemplate.spec.template.spec
            assert.equals(name, pod.containers[1].args[1])
            assert.equals("Never", pod.restartPolicy)
            assert.equals("vmdr", pod.serviceAccountName)
        end
    end)

    it("the embedded vmdr.yaml uses only keys of vmdr's config schema", function()
        local cfg = yaml.decode(by["ConfigMap/vmdr-config"].data["vmdr.yaml"])
        local function walk(t, prefix)
            for k, v in pairs(t) do
                local key = prefix and (prefix .. "." .. k) or k
                assert.is_not_nil(config.schema[key], "unknown config key " .. key)
                if type(v) == "table" and config.schema[key].type == "map" then walk(v, key) end
            end
        end
        walk(cfg)
        assert.is_nil(cfg.source)   -- in-cluster
    end)

    it("the Namespace passes kubectl apply --dry-run=server against vmdr-sim", function()
        local s = sim.start { fixtures = false }
        local r = s.kubectl({ "apply", "--dry-run=server", "-f", "-" }, yaml.encode(by["Namespace/vmdr"]))
        s.stop()
        assert.equals(0, r.code, r.stderr)
        assert.matches("namespace/vmdr created %(server dry run%)", r.stdout)
    end)
end)
