-- Site customisation without forking (DESIGN.md "Layers"): a site directory's
-- hooks.lua (extra cleaning rules, a PV rewrite for the DR side, a commit-message
-- format, its own storage driver), the exec storage driver running site commands as
-- argv, and a whole workflow overridden by a copy in the site's workflows/.
-- Real components: vmdr-sim, a bare Git repository, kubectl kustomize.
local h = require "support.helper"
local sim = require "support.sim"
local yaml = require "vmdr.yaml"

local VM = [[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: app1
  namespace: team1
  labels: {dr.demojam.com/enabled: "true", app-tier: app, site.example/internal: cost-123}
spec:
  runStrategy: Always
  template:
    spec:
      domain: {devices: {disks: [{name: root, disk: {bus: virtio}}]}}
      volumes: [{name: root, persistentVolumeClaim: {claimName: app1-root}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: app1-root, namespace: team1}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  volumeName: pvc-app1
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pvc-app1}
spec:
  accessModes: [ReadWriteOnce]
  capacity: {storage: 1Gi}
  claimRef: {kind: PersistentVolumeClaim, name: app1-root, namespace: team1, uid: 1234}
  csi:
    driver: openshift-storage.rbd.csi.ceph.com
    volumeHandle: 0001-0011-openshift-storage-0000000000000001-b0285c97-a0ce-11eb-8c66-0242ac110002
    volumeAttributes: {clusterID: openshift-storage, pool: ocs-storagecluster-cephblockpool, imageName: csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002}
  persistentVolumeReclaimPolicy: Delete
]]

local HOOKS = [[
local manifest = require "vmdr.manifest"
local ctx = ...
local log_file = ctx.config.site_test_log
local function record(line)
    local f = assert(io.open(log_file, "a")); f:write(line, "\n"); f:close()
end
return {
    -- an extra cleaning rule: this site's internal cost label never reaches the DR copy
    clean_rules = { VirtualMachine = { { remove_keys = "metadata.labels", prefix = "site.example/" } } },
    -- the DR Ceph cluster has another clusterID and pool id (Rook's csi mapping, by hand)
    rewrite_pv = manifest.ceph_id_map { cluster_ids = { ["openshift-storage"] = "openshift-storage-dr" },
        pool_ids = { [1] = 7 } },
    commit_message = function(msg) return "[DR-1234] " .. msg end,
    -- a storage driver of the site's own, in Lua
    storage_driver = function()
        local d = {}
        function d:volume(pv)
            local a = pv.spec.csi.volumeAttributes
            return { pool = a.pool, image = a.imageName, spec = a.pool .. "/" .. a.imageName, pv = pv.metadata.name }
        end
        function d:enable(vols)
            local rep = { summary = { ok = #vols } }
            for i, v in ipairs(vols) do record("enable " .. v.spec); rep[i] = { image = v.spec, result = "ok" } end
            return rep
        end
        function d:close() end
        return d
    end,
}
]]

describe("site customisation", function()
    local tmp, s, bare, site, cfg

    local function git(args) return h.capture("git -C " .. h.q(bare) .. " " .. args .. " 2>&1") end
    local function run(argv, env)
        local full = { argv[1], "-c", cfg }
        for i = 2, #argv do full[#full + 1] = argv[i] end
        return h.run(full, env)
    end

    setup(function()
        tmp = h.tmpdir("site")
        h.write(tmp .. "/fx/app1.yaml", VM)
        s = sim.start { fixtures = tmp .. "/fx" }
        bare = tmp .. "/m.git"
        h.capture("git init -q --bare -b main " .. h.q(bare))
        site = tmp .. "/site"
        h.write(site .. "/hooks.lua", HOOKS)
        cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-west
site_dir: %s
site_test_log: %s/storage.log
source: { kubeconfig: %s }
git: { url: "file://%s", workdir: %s/clone }
]], site, tmp, s.kubeconfig, bare, tmp))
    end)
    teardown(function() if s then s.stop() end end)

    it("hooks clean, rewrite, format the commit and drive the storage", function()
        local r = run { "reconcile" }
        assert.equals(0, r.code, r.stdout .. r.stderr)
        local vm = yaml.decode(git("show main:vms/base/team1/vm-app1.yaml"))
        assert.is_nil(vm.metadata.labels["site.example/internal"])
        assert.equals("app", vm.metadata.labels["app-tier"])
        local pv = yaml.decode(git("show main:vms/base/team1/pv-pvc-app1.yaml"))
        assert.equals("openshift-storage-dr", pv.spec.csi.volumeAttributes.clusterID)
        assert.equals("0001-0014-openshift-storage-dr-0000000000000007-b0285c97-a0ce-11eb-8c66-0242ac110002",
            pv.spec.csi.volumeHandle)
        assert.matches("^%[DR%-1234%] vmdr reconcile", git("log -1 --format=%s main"))
        assert.equals("enable ocs-storagecluster-cephblockpool/csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002\n",
            h.read(tmp .. "/storage.log"))
        -- and what the hooks produced still builds
        local co = tmp .. "/co"
        h.capture("git clone -q " .. h.q(bare) .. " " .. h.q(co) .. " 2>&1")
        local k = h.exec { "kubectl", "kustomize", co .. "/vms/overlays/dr-west/team1" }
        assert.equals(0, k.code, k.stderr)
    end)

    it("a broken hooks.lua is a configuration error naming the file", function()
        local bad = tmp .. "/badsite"
        h.write(bad .. "/hooks.lua", "return 42")
        local r = run { "reconcile", "-e", "site_dir=" .. bad }
        assert.equals(2, r.code)
        assert.matches("hooks%.lua must return a table", r.stderr)
    end)

    it("the exec driver runs the site's commands with argv, never a shell", function()
        local script = h.write(tmp .. "/mirror-tool", "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done >> "
            .. h.q(tmp .. "/exec.log") .. "\necho >> " .. h.q(tmp .. "/exec.log") .. "\n")
        h.sh("chmod +x " .. h.q(script))
        local r = run { "reconcile", "-e", "site_dir=", "-e", "storage.driver=exec",
            "-e", "@" .. h.write(tmp .. "/exec.yaml", string.format(
                "storage:\n  exec:\n    enable: [%q, enable, '{pool}', '{image}', '{pv}', '$(id); echo x']\n", script)) }
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.equals("[enable][ocs-storagecluster-cephblockpool][csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002]"
            .. "[pvc-app1][$(id); echo x]\n", h.read(tmp .. "/exec.log"))
    end)

    it("a workflow copied into the site's workflows/ replaces the installed one", function()
        h.write(site .. "/workflows/reconcile.lua", [[
local ctx, args = ...
io.stdout:write("site reconcile: before\n")
local ok, err = assert(loadfile(ctx.lua_dir .. "/workflows/reconcile.lua"))(ctx, args)
io.stdout:write("site reconcile: after\n")
return ok, err
]])
        local r = run { "reconcile" }
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("site reconcile: before\n.*site reconcile: after\n", r.stdout)
    end)
end)
