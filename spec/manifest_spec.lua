-- vmdr.manifest over EVERY VM, PVC and PV fixture in ../shared/fixtures: the cleaned
-- output keeps what DOMAIN.md 3.1 says to keep, drops what it says to drop, and is
-- byte-identical when cleaned again from the same source.
local h = require "support.helper"
local yaml = require "vmdr.yaml"
local json = require "vmdr.json"
local manifest = require "vmdr.manifest"

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deepcopy(x) end
  return setmetatable(c, getmetatable(v))
end

local function is_map(v) return type(v) == "table" and getmetatable(v) ~= yaml.array_mt end

local function files(dir)
  local out = {}
  local p = io.popen("find " .. h.q(dir) .. " -type f \\( -name '*.yaml' -o -name '*.json' \\) | sort")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  assert(#out > 0, "no fixtures under " .. dir)
  return out
end

-- Every object of a kind in a fixture file: plain objects, Template objects[],
-- and the one bare spec.csi fragment (wrapped as the PV it is cut from).
local function load(path, kind)
  local text = assert(h.read(path))
  local docs
  if path:match("%.json$") then docs = { assert(json.decode(text)) }
  else docs = assert(yaml.decode_all(text)) end
  local out = {}
  for _, d in ipairs(docs) do
    if is_map(d) and d.kind == kind then out[#out + 1] = d end
    if is_map(d) and d.kind == "Template" then
      for _, o in ipairs(d.objects) do
        if o.kind == kind then out[#out + 1] = o end
      end
    end
    if kind == "PersistentVolume" and is_map(d) and d.kind == nil and is_map(d.csi) then
      out[#out + 1] = { apiVersion = "v1", kind = "PersistentVolume",
        metadata = { name = "fragment" }, spec = d }
    end
  end
  return out
end

-- DOMAIN 3.1, restated here independently of the module's rule tables.
local DROP_META = { "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation",
  "managedFields", "ownerReferences", "finalizers", "selfLink", "deletionGracePeriodSeconds", "generateName" }
local DROP_ANN = {
  common = { "kubectl.kubernetes.io/last-applied-configuration" },
  VirtualMachine = { "kubemacpool.io/transaction-timestamp", "kubevirt.io/latest-observed-api-version",
    "kubevirt.io/storage-observed-api-version" },
  PersistentVolumeClaim = { "pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node", "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner", "cdi.kubevirt.io/storage.createdForDataVolume" },
  PersistentVolume = { "pv.kubernetes.io/provisioned-by", "pv.kubernetes.io/bound-by-controller" },
}
local DROP_ANN_PREFIX = {
  PersistentVolumeClaim = { "cdi.kubevirt.io/storage.pod.", "cdi.kubevirt.io/storage.condition.",
    "cdi.kubevirt.io/storage.import." },
  PersistentVolume = { "volume.kubernetes.io/provisioner-deletion-secret-" },
}
local ADDED = { [manifest.ANN.sync_wave] = true, [manifest.ANN.source_generation] = true,
  [manifest.ANN.source_run_strategy] = true, [manifest.ANN.populated_for] = true }

local function dropped(kind, key)
  for _, list in ipairs { DROP_ANN.common, DROP_ANN[kind] } do
    for _, k in ipairs(list) do if k == key then return true end end
  end
  for _, p in ipairs(DROP_ANN_PREFIX[kind] or {}) do
    if key:sub(1, #p) == p then return true end
  end
  return false
end

local function check_common(src, out, kind)
  assert.is_nil(out.status, "status kept")
  for k in pairs(out.metadata) do
    assert.truthy(({ name = 1, namespace = 1, labels = 1, annotations = 1 })[k], "metadata." .. k .. " kept")
  end
  for _, k in ipairs(DROP_META) do assert.is_nil(out.metadata[k]) end
  assert.equals(src.metadata.name, out.metadata.name)
  assert.equals(src.metadata.namespace, out.metadata.namespace)
  assert.equals(src.apiVersion, out.apiVersion)
  assert.equals(src.kind, out.kind)
  local sann = is_map(src.metadata.annotations) and src.metadata.annotations or {}
  local oann = out.metadata.annotations
  for k, v in pairs(sann) do
    if dropped(kind, k) then
      assert.is_nil(oann[k], "annotation " .. k .. " kept")
    elseif not ADDED[k] then
      assert.equals(v, oann[k], "annotation " .. k .. " lost")
    end
  end
  for k in pairs(oann) do
    assert.truthy(sann[k] ~= nil or ADDED[k], "annotation " .. k .. " appeared")
  end
  assert.equals(manifest.WAVE[kind], oann[manifest.ANN.sync_wave])
  local slab = is_map(src.metadata.labels) and src.metadata.labels or {}
  for k, v in pairs(slab) do
    if kind == "PersistentVolumeClaim" and k == "kubevirt.io/created-by" then
      assert.is_nil(out.metadata.labels[k])
    else
      assert.equals(v, out.metadata.labels[k], "label " .. k)
    end
  end
end

local function strip_meta(m)
  if not is_map(m) then return m end
  m = deepcopy(m)
  for _, k in ipairs(DROP_META) do m[k] = nil end
  return m
end

local checks = {
  VirtualMachine = function(src, out)
    local ss, os_ = src.spec, out.spec
    assert.is_nil(os_.running, "spec.running kept: base must be power-neutral")
    assert.is_nil(os_.runStrategy, "spec.runStrategy kept: base must be power-neutral")
    local want = type(ss.runStrategy) == "string" and ss.runStrategy
      or (ss.running == true and "Always") or (ss.running == false and "Halted") or nil
    assert.equals(want, out.metadata.annotations[manifest.ANN.source_run_strategy])
    local gen = math.tointeger(src.metadata.generation)
    assert.equals(gen and tostring(gen) or nil, out.metadata.annotations[manifest.ANN.source_generation])
    for _, f in ipairs { "instancetype", "preference" } do
      if is_map(ss[f]) then
        assert.is_nil(os_[f].revisionName, f .. ".revisionName kept")
        local e = deepcopy(ss[f]); e.revisionName = nil
        assert.same(e, os_[f])
      else
        assert.same(ss[f], os_[f])
      end
    end
    -- the guest's identity (MAC, firmware uuid/serial) and the whole template spec stay
    assert.same(ss.template.spec, os_.template.spec)
    local tm = strip_meta(ss.template.metadata)
    if is_map(tm) and next(tm) == nil then tm = nil end
    if is_map(os_.template.metadata) and next(os_.template.metadata) == nil then
      os_.template.metadata = nil
    end
    assert.same(tm, os_.template.metadata)
    -- dataVolumeTemplates: kept, adoptable
    if ss.dataVolumeTemplates then
      assert.equals(#ss.dataVolumeTemplates, #os_.dataVolumeTemplates)
      for i, t in ipairs(ss.dataVolumeTemplates) do
        local o = os_.dataVolumeTemplates[i]
        assert.equals("true", o.metadata.annotations[manifest.ANN.allow_claim_adoption])
        assert.same(t.spec, o.spec)
        assert.equals(t.metadata.name, o.metadata.name)
        assert.is_nil(o.metadata.creationTimestamp)
        assert.is_nil(o.status)
      end
    end
    -- everything else in spec is untouched
    for k, v in pairs(ss) do
      if not ({ running = 1, runStrategy = 1, instancetype = 1, preference = 1, template = 1,
        dataVolumeTemplates = 1 })[k] then
        assert.same(v, os_[k], "spec." .. k)
      end
    end
  end,
  PersistentVolumeClaim = function(src, out)
    assert.is_nil(out.spec.dataSource)
    assert.is_nil(out.spec.dataSourceRef)
    for _, k in ipairs { "volumeName", "accessModes", "resources", "storageClassName", "volumeMode",
      "selector" } do
      assert.same(src.spec[k], out.spec[k], "spec." .. k)
    end
  end,
  PersistentVolume = function(src, out)
    assert.equals("Retain", out.spec.persistentVolumeReclaimPolicy)
    for _, k in ipairs { "csi", "capacity", "accessModes", "volumeMode", "storageClassName",
      "mountOptions", "hostPath", "nodeAffinity" } do
      assert.same(src.spec[k], out.spec[k], "spec." .. k)
    end
    if src.spec.claimRef then
      local c = out.spec.claimRef
      for k in pairs(c) do
        assert.truthy(({ kind = 1, namespace = 1, name = 1 })[k], "claimRef." .. k .. " kept")
      end
      assert.equals(src.spec.claimRef.name, c.name)
      assert.equals(src.spec.claimRef.namespace, c.namespace)
      assert.equals(src.spec.claimRef.kind, c.kind)
    end
  end,
}

local sets = {
  { "VirtualMachine", h.fixtures .. "/vms" },
  { "PersistentVolumeClaim", h.fixtures .. "/storage/pvc" },
  { "PersistentVolume", h.fixtures .. "/storage/pv" },
}

describe("vmdr.manifest cleaning of every fixture", function()
  local total = 0
  for _, s in ipairs(sets) do
    local kind, dir = s[1], s[2]
    for _, path in ipairs(files(dir)) do
      for i, src in ipairs(load(path, kind)) do
        total = total + 1
        it(kind .. " " .. path:match("[^/]+$") .. (i > 1 and ("#" .. i) or ""), function()
          local out = assert(manifest.clean(nil, deepcopy(src)))
          check_common(src, out, kind)
          checks[kind](src, out)
          local bytes = manifest.encode(out)
          -- same bytes from a second, independent run over the same source
          assert.equals(bytes, manifest.encode(assert(manifest.clean(nil, deepcopy(src)))))
          -- and they read back to the same value
          assert.same(out, yaml.decode(bytes))
        end)
      end
    end
  end
  it("found objects of every kind in the fixtures", function()
    assert.truthy(total >= 30, "only " .. total .. " objects")
  end)
end)

describe("vmdr.manifest", function()
  local function fixture(rel, kind) return load(h.fixtures .. "/" .. rel, kind)[1] end

  it("records the source state and generation of a running VM", function()
    local vm = assert(manifest.clean_vm(nil, fixture("vms/argocd--vm-api-healthy-ready.yaml", "VirtualMachine")))
    assert.equals("Always", vm.metadata.annotations[manifest.ANN.source_run_strategy])
    local v2 = assert(manifest.clean_vm(nil, fixture("vms/oadp--cirros-test-cont-1.yaml", "VirtualMachine")))
    assert.is_string(v2.metadata.annotations[manifest.ANN.source_generation])
    assert.matches("^%d+$", v2.metadata.annotations[manifest.ANN.source_generation])
  end)

  it("strips instancetype and preference revision names but keeps the references", function()
    local src = fixture("vms/kubevirt-apitesting-release-1.8--fuzzed-vm.yaml", "VirtualMachine")
    assert.is_string(src.spec.instancetype.revisionName)
    local vm = assert(manifest.clean_vm(nil, deepcopy(src)))
    assert.is_nil(vm.spec.instancetype.revisionName)
    assert.is_nil(vm.spec.preference.revisionName)
    assert.equals(src.spec.instancetype.name, vm.spec.instancetype.name)
    -- the runtime metadata of dataVolumeTemplates goes too
    assert.is_nil(vm.spec.dataVolumeTemplates[1].metadata.managedFields)
    assert.is_nil(vm.spec.dataVolumeTemplates[1].metadata.ownerReferences)
  end)

  it("marks the claim behind a DataVolume and bundles VM + PVC + PV deterministically", function()
    local vm = fixture("vms/kubevirt-examples--vm-alpine-datavolume.yaml", "VirtualMachine")
    local dvname = vm.spec.dataVolumeTemplates[1].metadata.name
    local pvc = fixture("storage/pvc/deckhouse--pvc-ceph-csi-rbd-bound.yaml", "PersistentVolumeClaim")
    pvc.metadata.name = dvname
    local pv = fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml", "PersistentVolume")
    local b1 = assert(manifest.bundle(nil, deepcopy(vm), { deepcopy(pvc) }, { deepcopy(pv) }))
    local b2 = assert(manifest.bundle(nil, deepcopy(vm), { deepcopy(pvc) }, { deepcopy(pv) }))
    assert.same(b1, b2)
    assert.matches("^%x+$", b1.hash)
    assert.equals(16, #b1.hash)
    local cpvc = yaml.decode(b1.pvcs[dvname])
    assert.equals(dvname, cpvc.metadata.annotations[manifest.ANN.populated_for])
    assert.equals("-1", cpvc.metadata.annotations[manifest.ANN.sync_wave])
    -- a label edit (no generation bump) changes the bundle
    local vm2 = deepcopy(vm)
    vm2.metadata.labels = { ["app-tier"] = "database" }
    local b3 = assert(manifest.bundle(nil, vm2, { deepcopy(pvc) }, { deepcopy(pv) }))
    assert.not_equals(b1.hash, b3.hash)
    -- and so does a PVC resize
    local pvc2 = deepcopy(pvc)
    pvc2.spec.resources.requests.storage = "2Gi"
    local b4 = assert(manifest.bundle(nil, deepcopy(vm), { pvc2 }, { deepcopy(pv) }))
    assert.not_equals(b1.hash, b4.hash)
    assert.equals(b1.vm, b4.vm)
    -- status-only changes do not
    local vm3 = deepcopy(vm)
    vm3.status = { printableStatus = "Running" }
    vm3.metadata.resourceVersion = "999"
    assert.equals(b1.hash, assert(manifest.bundle(nil, vm3, { deepcopy(pvc) }, { deepcopy(pv) })).hash)
  end)

  it("drops the source VM's uid label from a PVC and leaves no empty maps behind", function()
    local pvc = fixture("storage/pvc/ceph-csi-examples--rbd-pvc.yaml", "PersistentVolumeClaim")
    pvc.metadata.labels = { ["kubevirt.io/created-by"] = "6200ce15-b6f2-45af-94d0-828913e850d0" }
    local out = assert(manifest.clean_pvc(nil, pvc))
    assert.is_nil(out.metadata.labels)
    local vm = fixture("vms/kubevirt-examples--vm-alpine-multipvc.yaml", "VirtualMachine")
    vm.spec.template.metadata = { creationTimestamp = yaml.null }
    out = assert(manifest.clean_vm(nil, vm))
    assert.is_nil(out.spec.template.metadata)
    assert.not_matches("\n    metadata: {}", manifest.encode(out), 1, true)
  end)

  it("names the claims behind a VM's disks", function()
    -- the ramen sample's persistentVolumeClaim volume points at its dataVolumeTemplate
    local cases = {
      ["vms/kubevirt-examples--vm-alpine-multipvc.yaml"] = { "disk-alpine", "disk-custom" },
      ["vms/kubevirt-examples--vm-alpine-datavolume.yaml"] = { "alpine-dv" },
      ["vms/ramen-samples--vm-dvt.yaml"] = { "root-disk" },
      ["vms/user-guide--hotplug-disk-testvm.yaml"] = { "hotplug-disk" },
      ["vms/kubevirt-examples--vm-cirros-halted.yaml"] = {},
    }
    for rel, want in pairs(cases) do
      assert.same(want, manifest.claim_names(fixture(rel, "VirtualMachine")), rel)
    end
  end)

  it("refuses kinds it does not know and raises on misuse", function()
    local r, err = manifest.clean(nil, { kind = "Secret", metadata = { name = "x" } })
    assert.is_nil(r)
    assert.equals("invalid", err.code)
    assert.has_error(function() manifest.clean(nil, "vm") end)
  end)

  it("applies a site's extra clean rules, by kind and for all kinds", function()
    local ctx = { hooks = { clean_rules = {
      ["*"] = { { remove_keys = "metadata.labels", names = { "team" } } },
      VirtualMachine = { { remove = "spec.template.spec.domain.devices.interfaces" } },
    } } }
    local vm = fixture("vms/kubevirt-examples--vm-alpine-multipvc.yaml", "VirtualMachine")
    vm.metadata.labels = { team = "a", keep = "b" }
    local out = assert(manifest.clean_vm(ctx, deepcopy(vm)))
    assert.is_nil(out.metadata.labels.team)
    assert.equals("b", out.metadata.labels.keep)
    assert.is_nil(out.spec.template.spec.domain.devices.interfaces)
    -- the function form
    ctx.hooks.clean_rules = function(kind)
      if kind == "PersistentVolume" then return { { remove = "spec.mountOptions" } } end
    end
    local pv = assert(manifest.clean_pv(ctx, fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml",
      "PersistentVolume")))
    assert.is_nil(pv.spec.mountOptions)
  end)

  it("reports a broken site rule or clean_rules hook and leaves the object untouched", function()
    local src = fixture("vms/kubevirt-examples--vm-alpine-multipvc.yaml", "VirtualMachine")
    local vm = deepcopy(src)
    local r, err = manifest.clean_vm({ hooks = { clean_rules = { VirtualMachine = { { remvoe = "spec" } } } } }, vm)
    assert.is_nil(r)
    assert.equals("invalid", err.code)
    assert.matches("rule", err.message)
    assert.same(src, vm)
    r, err = manifest.clean_vm({ hooks = { clean_rules = function() error("site bug") end } }, deepcopy(src))
    assert.is_nil(r)
    assert.equals("hook", err.code)
    assert.matches("site bug", err.message)
    r, err = manifest.clean_vm({ hooks = { clean_rules = "remove status" } }, deepcopy(src))
    assert.is_nil(r)
    assert.equals("hook", err.code)
  end)

  it("maps Ceph clusterID and pool ID for the DR side with the rewrite_pv hook", function()
    local ctx = { hooks = { rewrite_pv = manifest.ceph_id_map {
      cluster_ids = { ["rook-ceph"] = "rook-ceph-dr" }, pool_ids = { [2] = 7 } } } }
    local src = fixture("storage/pv/ceph-csi-rbd-mirror-design--pv-spec-csi-fragment.yaml", "PersistentVolume")
    local pv = assert(manifest.clean_pv(ctx, deepcopy(src)))
    assert.equals("rook-ceph-dr", pv.spec.csi.volumeAttributes.clusterID)
    assert.equals("0001-000c-rook-ceph-dr-0000000000000007-0c23de1c-18fb-11eb-a903-0242ac110005",
      pv.spec.csi.volumeHandle)
    -- an unmapped cluster keeps its handle
    local other = fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml", "PersistentVolume")
    local before = other.spec.csi.volumeHandle
    assert.equals(before, assert(manifest.clean_pv(ctx, other)).spec.csi.volumeHandle)
  end)

  it("reports a failing hook as an error, not a crash", function()
    local ctx = { hooks = { rewrite_pv = function() error("no map for this cluster") end } }
    local r, err = manifest.clean_pv(ctx, fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml",
      "PersistentVolume"))
    assert.is_nil(r)
    assert.equals("hook", err.code)
    assert.matches("no map for this cluster", err.message)
    ctx.hooks.rewrite_pv = function() return nil, { code = "invalid", message = "bad handle" } end
    r, err = manifest.clean_pv(ctx, fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml",
      "PersistentVolume"))
    assert.is_nil(r)
    assert.equals("bad handle", err.message)
  end)
end)
