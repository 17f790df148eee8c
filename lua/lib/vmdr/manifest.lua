--- vmdr.manifest: turns live VirtualMachine, PVC and PV objects into the DR
--- copies stored in Git (DOMAIN.md 3.1), and fingerprints the result.
---
--- The removals are DATA (`M.rules`, one list per kind plus `common`), applied
--- by the native `vmdr.yaml.clean`; a site adds its own through
--- `ctx.hooks.clean_rules`. What depends on values (the source run state and
--- generation, adoption annotations, PV Retain, sync waves) is Lua below, in
--- the order: record -> clean -> rewrite -> site rewrite hook.
---
--- Every function cleans IN PLACE and returns the object; pass a copy if you
--- still need the original. The same input always gives the same bytes
--- (`M.encode`), so an unchanged VM writes nothing.
local yaml = require "vmdr.yaml"

local M = {}

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }

local function fail(code, fmt, ...)
    return nil, setmetatable({ code = code, message = string.format(fmt, ...) }, err_mt)
end

--- Annotation and label names this module reads or writes.
M.ANN = {
    source_generation = "dr.demojam.com/source-generation",
    source_run_strategy = "dr.demojam.com/source-run-strategy",
    sync_wave = "argocd.argoproj.io/sync-wave",
    allow_claim_adoption = "cdi.kubevirt.io/allowClaimAdoption",
    populated_for = "cdi.kubevirt.io/storage.populatedFor",
}

--- Argo CD sync waves: storage before the VM, so CDI finds the replicated PVC
--- and adopts it instead of importing the golden image again (DOMAIN 3.1 rule 6).
M.WAVE = { VirtualMachine = "0", PersistentVolumeClaim = "-1", PersistentVolume = "-1" }

-- metadata: keep name, namespace, labels, annotations; everything the API
-- server or a controller owns goes (Velero resetMetadataAndStatus).
local METADATA_RUNTIME = {
    "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "generation", "managedFields", "ownerReferences",
    "finalizers", "selfLink", "generateName",
}

--- The cleaning rules, by kind (`common` applies to all three). Each rule is a
--- table for `vmdr.yaml.clean` (see docs/yaml-clean.md in the codecs branch).
M.rules = {
    common = {
        { remove = "status" },
        { remove_keys = "metadata", names = METADATA_RUNTIME },
        { remove_keys = "metadata.annotations",
          names = { "kubectl.kubernetes.io/last-applied-configuration" } },
    },
    VirtualMachine = {
        -- power-neutral: the overlay's patches own spec.runStrategy (rule 4)
        { remove = "spec.running" },
        { remove = "spec.runStrategy" },
        -- ControllerRevisions are cluster-local (rule 7)
        { remove = "spec.instancetype.revisionName" },
        { remove = "spec.preference.revisionName" },
        -- webhook and controller bookkeeping (rule 5); MAC and firmware stay
        { remove_keys = "metadata.annotations", names = {
            "kubemacpool.io/transaction-timestamp",
            "kubevirt.io/latest-observed-api-version",
            "kubevirt.io/storage-observed-api-version",
        } },
        -- embedded metadata: the same runtime fields (creationTimestamp: null is typical)
        { remove_keys = "spec.template.metadata", names = METADATA_RUNTIME, prune_empty = true },
        { remove_keys = "spec.dataVolumeTemplates[*].metadata", names = METADATA_RUNTIME },
        { remove = "spec.dataVolumeTemplates[*].status" },
    },
    PersistentVolumeClaim = {
        -- populators and snapshots that do not exist on DR would block binding (rule 3)
        { remove = "spec.dataSource" },
        { remove = "spec.dataSourceRef" },
        -- bind and provisioning state of the source cluster (Velero, Ramen)
        { remove_keys = "metadata.annotations", prefix = "pv.kubernetes.io/" },
        { remove_keys = "metadata.annotations", prefix = "volume.kubernetes.io/" },
        { remove_keys = "metadata.annotations", names = {
            "volume.beta.kubernetes.io/storage-provisioner",
            "cdi.kubevirt.io/storage.createdForDataVolume",
        } },
        -- CDI runtime state: importer pods, conditions, import endpoints
        { remove_keys = "metadata.annotations", prefix = "cdi.kubevirt.io/storage.pod." },
        { remove_keys = "metadata.annotations", prefix = "cdi.kubevirt.io/storage.condition." },
        { remove_keys = "metadata.annotations", prefix = "cdi.kubevirt.io/storage.import." },
        -- replication controllers' bookkeeping (Ramen cleanupPVCForRestore)
        { remove_keys = "metadata.annotations", prefix = "replication.storage.openshift.io/" },
        { remove_keys = "metadata.annotations",
          prefix = "volumereplicationgroups.ramendr.openshift.io/" },
        { remove_keys = "metadata.annotations", prefix = "volsync.backube/" },
        -- the uid of the source VM
        { remove_keys = "metadata.labels", names = { "kubevirt.io/created-by" }, prune_empty = true },
    },
    PersistentVolume = {
        -- "it is now statically provisioned" (Velero); bind state of the source
        { remove_keys = "metadata.annotations", names = {
            "pv.kubernetes.io/provisioned-by",
            "pv.kubernetes.io/bound-by-controller",
        } },
        -- the DR copy is not for the provisioner to delete (Retain below)
        { remove_keys = "metadata.annotations",
          prefix = "volume.kubernetes.io/provisioner-deletion-secret-" },
        -- pre-bound by name: the claim's uid differs on DR (rule 2)
        { remove_keys = "spec.claimRef", names = { "uid", "resourceVersion", "apiVersion", "fieldPath" } },
    },
}

local KINDS = { VirtualMachine = true, PersistentVolumeClaim = true, PersistentVolume = true }

local function is_map(v) return type(v) == "table" and getmetatable(v) ~= yaml.array_mt end
local function is_list(v) return type(v) == "table" end

-- metadata.annotations as a writable map (a null or missing one becomes {}).
local function annotations(obj)
    local md = obj.metadata
    if not is_map(md) then md = {}; obj.metadata = md end
    if not is_map(md.annotations) then md.annotations = {} end
    return md.annotations
end

local function append(dst, src, where)
    if src == nil then return end
    if type(src) ~= "table" then error(where .. " must be a list of rules", 0) end
    for _, r in ipairs(src) do dst[#dst + 1] = r end
end

--- The rules for one kind: common, the kind's, then the site's
--- (`ctx.hooks.clean_rules`: a table keyed by kind and/or "*", or a function
--- `(kind, ctx) -> rules`).
---@param ctx table|nil
---@param kind string
---@return table[] rules
function M.rules_for(ctx, kind)
    local out = {}
    append(out, M.rules.common, "rules.common")
    append(out, M.rules[kind], "rules." .. kind)
    local extra = ctx and ctx.hooks and ctx.hooks.clean_rules
    if type(extra) == "function" then
        append(out, extra(kind, ctx), "hooks.clean_rules(" .. kind .. ")")
    elseif type(extra) == "table" then
        append(out, extra["*"], "hooks.clean_rules['*']")
        append(out, extra[kind], "hooks.clean_rules." .. kind)
    elseif extra ~= nil then
        error("hooks.clean_rules must be a table or a function", 0)
    end
    return out
end

local function run_hook(ctx, name, obj)
    local hook = ctx and ctx.hooks and ctx.hooks[name]
    if hook == nil then return obj end
    local ok, res, err = pcall(hook, obj, ctx)
    if not ok then return fail("hook", "hooks.%s raised: %s", name, tostring(res)) end
    if res == nil and err ~= nil then return nil, err end
    if res == nil or res == true then return obj end
    if type(res) ~= "table" then return fail("hook", "hooks.%s returned a %s", name, type(res)) end
    return res
end

-- The source run state as a runStrategy name (spec.running is the deprecated
-- boolean form: true = Always, false = Halted).
local function source_run_strategy(spec)
    if type(spec) ~= "table" then return nil end
    if type(spec.runStrategy) == "string" then return spec.runStrategy end
    if spec.running == true then return "Always" end
    if spec.running == false then return "Halted" end
    return nil
end

local function clean_with_rules(ctx, obj)
    -- a site's clean_rules hook is site code: its failure is reported, not raised
    local got, rules = pcall(M.rules_for, ctx, obj.kind)
    if not got then return fail("hook", "clean rules for %s: %s", obj.kind, tostring(rules)) end
    local ok, err = pcall(yaml.clean, obj, rules)
    if not ok then return fail("invalid", "cleaning rules for %s: %s", obj.kind, tostring(err)) end
    return obj
end

local function check(obj)
    if not is_map(obj) then error("manifest.clean: expected an object table", 3) end
    if not KINDS[obj.kind] then
        return fail("invalid", "manifest: cannot clean kind %q (VirtualMachine,"
            .. " PersistentVolumeClaim or PersistentVolume)", tostring(obj.kind))
    end
    return obj
end

--- Cleans a VirtualMachine: power-neutral (no spec.running / spec.runStrategy;
--- the source state recorded in `dr.demojam.com/source-run-strategy`), the
--- source generation kept as `dr.demojam.com/source-generation`, every
--- dataVolumeTemplate marked for claim adoption, sync wave 0.
---@param ctx table|nil
---@param vm table
---@return table? vm
---@return table? err
function M.clean_vm(ctx, vm)
    local ok, err = check(vm)
    if not ok then return nil, err end
    local md = is_map(vm.metadata) and vm.metadata or {}
    local gen = math.tointeger(md.generation)
    local run = source_run_strategy(vm.spec)
    ok, err = clean_with_rules(ctx, vm)
    if not ok then return nil, err end
    local ann = annotations(vm)
    if gen then ann[M.ANN.source_generation] = tostring(gen) end
    if run then ann[M.ANN.source_run_strategy] = run end
    ann[M.ANN.sync_wave] = M.WAVE.VirtualMachine
    local dvts = is_map(vm.spec) and vm.spec.dataVolumeTemplates
    if is_list(dvts) then
        for _, t in ipairs(dvts) do
            if is_map(t) then
                if not is_map(t.metadata) then t.metadata = {} end
                annotations(t)[M.ANN.allow_claim_adoption] = "true"
            end
        end
    end
    return run_hook(ctx, "rewrite_vm", vm)
end

--- Cleans a PVC: pre-bound to its PV by spec.volumeName, no populator source,
--- no bind or CDI runtime annotations, `cdi.kubevirt.io/storage.populatedFor`
--- set when the claim backs a DataVolume, sync wave -1.
---@param ctx table|nil
---@param pvc table
---@param opts? {data_volume?: string}  the DataVolume (template) this claim belongs to
---@return table? pvc
---@return table? err
function M.clean_pvc(ctx, pvc, opts)
    local ok, err = check(pvc)
    if not ok then return nil, err end
    opts = opts or {}
    local dv = opts.data_volume
    if dv == nil and is_map(pvc.metadata) and is_list(pvc.metadata.ownerReferences) then
        for _, o in ipairs(pvc.metadata.ownerReferences) do
            if is_map(o) and o.kind == "DataVolume" and type(o.name) == "string" then dv = o.name end
        end
    end
    ok, err = clean_with_rules(ctx, pvc)
    if not ok then return nil, err end
    local ann = annotations(pvc)
    if type(dv) == "string" then ann[M.ANN.populated_for] = dv end
    ann[M.ANN.sync_wave] = M.WAVE.PersistentVolumeClaim
    return run_hook(ctx, "rewrite_pvc", pvc)
end

--- Cleans a PV: reclaim policy Retain (a Delete policy plus an Argo prune would
--- delete the replicated image), claimRef kept by namespace/name only, no
--- provisioning annotations, sync wave -1; then `ctx.hooks.rewrite_pv(pv, ctx)`
--- (e.g. `M.ceph_id_map`) adapts it to the DR storage.
---@param ctx table|nil
---@param pv table
---@return table? pv
---@return table? err
function M.clean_pv(ctx, pv)
    local ok, err = check(pv)
    if not ok then return nil, err end
    ok, err = clean_with_rules(ctx, pv)
    if not ok then return nil, err end
    if not is_map(pv.spec) then pv.spec = {} end
    pv.spec.persistentVolumeReclaimPolicy = "Retain"
    annotations(pv)[M.ANN.sync_wave] = M.WAVE.PersistentVolume
    return run_hook(ctx, "rewrite_pv", pv)
end

--- Cleans any of the three kinds.
---@param ctx table|nil
---@param obj table
---@param opts? table  passed to clean_pvc
---@return table? obj
---@return table? err
function M.clean(ctx, obj, opts)
    local ok, err = check(obj)
    if not ok then return nil, err end
    if obj.kind == "VirtualMachine" then return M.clean_vm(ctx, obj) end
    if obj.kind == "PersistentVolumeClaim" then return M.clean_pvc(ctx, obj, opts) end
    return M.clean_pv(ctx, obj)
end

--- The bytes written to Git for a cleaned object.
---@param obj table
---@return string bytes
function M.encode(obj)
    return yaml.encode(obj)
end

--- The names of the DataVolumes a VM refers to (its dataVolumeTemplates and
--- its dataVolume volumes): the PVCs of these names get populatedFor.
---@param vm table
---@return table<string,boolean>
function M.data_volume_names(vm)
    local names = {}
    local spec = is_map(vm) and is_map(vm.spec) and vm.spec or {}
    for _, t in ipairs(is_list(spec.dataVolumeTemplates) and spec.dataVolumeTemplates or {}) do
        if is_map(t) and is_map(t.metadata) and type(t.metadata.name) == "string" then
            names[t.metadata.name] = true
        end
    end
    local tspec = is_map(spec.template) and is_map(spec.template.spec) and spec.template.spec or {}
    for _, v in ipairs(is_list(tspec.volumes) and tspec.volumes or {}) do
        if is_map(v) and is_map(v.dataVolume) and type(v.dataVolume.name) == "string" then
            names[v.dataVolume.name] = true
        end
    end
    return names
end

--- The claims a VM's disks live on, sorted: `persistentVolumeClaim.claimName`
--- and `dataVolume.name` volumes (a DataVolume's PVC has its name) and every
--- dataVolumeTemplate (even one no volume uses yet).
---@param vm table
---@return string[]
function M.claim_names(vm)
    local set = M.data_volume_names(vm)
    local spec = is_map(vm) and is_map(vm.spec) and vm.spec or {}
    local tspec = is_map(spec.template) and is_map(spec.template.spec) and spec.template.spec or {}
    for _, v in ipairs(is_list(tspec.volumes) and tspec.volumes or {}) do
        local c = is_map(v) and v.persistentVolumeClaim
        if is_map(c) and type(c.claimName) == "string" then set[c.claimName] = true end
    end
    local out = {}
    for name in pairs(set) do out[#out + 1] = name end
    table.sort(out)
    return out
end

-- A 64-bit hash of a string, 8 bytes at a time (multiply-xorshift), for
-- change detection and short fingerprints; not cryptographic.
local P1 <const> = 0x9E3779B97F4A7C15
local P2 <const> = 0xC2B2AE3D27D4EB4F
local function hash64(s, h)
    local n = #s
    h = (h or 0x243F6A8885A308D3) ~ n
    local i = 1
    local unpack = string.unpack
    while i + 31 <= n do
        local a, b, c, d = unpack("<i8i8i8i8", s, i)
        h = ((h ~ a) * P1); h = h ~ (h >> 31)
        h = ((h ~ b) * P2); h = h ~ (h >> 29)
        h = ((h ~ c) * P1); h = h ~ (h >> 31)
        h = ((h ~ d) * P2); h = h ~ (h >> 29)
        i = i + 32
    end
    while i <= n do
        h = ((h ~ s:byte(i)) * P1); h = h ~ (h >> 31)
        i = i + 1
    end
    h = (h ~ (h >> 33)) * P2
    return h ~ (h >> 29)
end

--- Fingerprint of a bundle: the cleaned bytes of a VM, its PVCs and PVs, in
--- the order given (callers sort by path). 16 hex digits.
---@param bytes_list string[]
---@return string
function M.bundle_hash(bytes_list)
    local h = 0
    for _, b in ipairs(bytes_list) do h = hash64(b, h) end
    return string.format("%016x", h)
end

--- Cleans one VM with its claims and volumes and encodes them:
--- `{ vm = bytes, pvcs = { [name] = bytes }, pvs = { [name] = bytes }, hash = hex }`.
--- PVCs that back one of the VM's DataVolumes get populatedFor.
---@param ctx table|nil
---@param vm table
---@param pvcs table[]
---@param pvs table[]
---@param opts? {hash?: boolean}  hash = false: skip the fingerprint (callers comparing bytes)
---@return table? bundle
---@return table? err
function M.bundle(ctx, vm, pvcs, pvs, opts)
    local dvs = M.data_volume_names(vm)
    local out = { pvcs = {}, pvs = {} }
    local parts = {}
    local cvm, err = M.clean_vm(ctx, vm)
    if not cvm then return nil, err end
    out.vm = M.encode(cvm)
    parts[#parts + 1] = out.vm
    local function add(list, cleaner, into)
        local sorted = {}
        for _, o in ipairs(list or {}) do sorted[#sorted + 1] = o end
        table.sort(sorted, function(a, b) return tostring(a.metadata.name) < tostring(b.metadata.name) end)
        for _, o in ipairs(sorted) do
            local name = o.metadata.name
            local c, e = cleaner(o)
            if not c then return nil, e end
            into[name] = M.encode(c)
            parts[#parts + 1] = into[name]
        end
        return true
    end
    local ok
    ok, err = add(pvcs, function(o)
        local name = o.metadata.name
        return M.clean_pvc(ctx, o, { data_volume = dvs[name] and name or nil })
    end, out.pvcs)
    if not ok then return nil, err end
    ok, err = add(pvs, function(o) return M.clean_pv(ctx, o) end, out.pvs)
    if not ok then return nil, err end
    if not (opts and opts.hash == false) then out.hash = M.bundle_hash(parts) end
    return out
end

--- A rewrite_pv hook for ceph-csi RBD volumes moving to a DR Ceph cluster whose
--- clusterID and pool IDs differ (DOMAIN 3.2; what Rook's csi mapping does):
--- `volumeAttributes.clusterID` and the clusterID and pool-ID fields inside
--- `spec.csi.volumeHandle` are mapped. Unmapped values stay as they are.
---@param map {cluster_ids?: table<string,string>, pool_ids?: table<integer,integer>,
---            drivers?: string[]}
---@return fun(pv: table, ctx: table): table?, table?
function M.ceph_id_map(map)
    local cluster_ids = map.cluster_ids or {}
    local pool_ids = map.pool_ids or {}
    local drivers = map.drivers or { ".rbd.csi.ceph.com", "rbd.csi.ceph.com" }
    return function(pv)
        local csi = is_map(pv.spec) and pv.spec.csi
        if not is_map(csi) or type(csi.driver) ~= "string" then return pv end
        local ours = false
        for _, suffix in ipairs(drivers) do
            if csi.driver:sub(-#suffix) == suffix then ours = true end
        end
        if not ours then return pv end
        local attrs = is_map(csi.volumeAttributes) and csi.volumeAttributes or nil
        if attrs and type(attrs.clusterID) == "string" and cluster_ids[attrs.clusterID] then
            attrs.clusterID = cluster_ids[attrs.clusterID]
        end
        local h = csi.volumeHandle
        if type(h) ~= "string" then return pv end
        -- <version 4 hex>-<len(clusterID) 4 hex>-<clusterID>-<poolID 16 hex>-<uuid 36>
        local ver, lenhex, rest = h:match("^(%x%x%x%x)%-(%x%x%x%x)%-(.*)$")
        if not ver then return pv end
        local len = tonumber(lenhex, 16)
        local cid = rest:sub(1, len)
        local pool, uuid = rest:sub(len + 1):match("^%-(%x+)%-(.+)$")
        if #cid ~= len or not pool or #pool ~= 16 or #uuid ~= 36 then
            return fail("invalid", "PV %s: volumeHandle %q is not a ceph-csi handle",
                tostring(pv.metadata and pv.metadata.name), h)
        end
        local ncid = cluster_ids[cid] or cid
        local pid = math.tointeger(tonumber(pool, 16))
        local npid = pool_ids[pid] or pool_ids[tostring(pid)]
        local npool = npid and string.format("%016x", math.tointeger(tonumber(npid))) or pool
        csi.volumeHandle = string.format("%s-%04x-%s-%s-%s", ver, #ncid, ncid, npool, uuid)
        return pv
    end
end

return M
