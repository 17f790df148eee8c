--- vmdr.inventory: which objects make up one protected VM, from the live API or
--- from the manifests repository, joined in memory.
---
--- A bundle is `{ ns=, name=, vm=, pvcs = {obj...}, pvs = {obj...}, problems = {msg...} }`
--- with PVCs and PVs sorted by name. A VM's claims are its persistentVolumeClaim
--- volumes, its dataVolume volumes and its dataVolumeTemplates (a DataVolume owns
--- a PVC of the same name); a claim's PV is `spec.volumeName`.
local M = {}

local function sorted_keys(t)
    local ks = {}
    for k in pairs(t) do ks[#ks + 1] = k end
    table.sort(ks)
    return ks
end

--- The claim names a VM uses, sorted and unique.
---@param vm table
---@return string[]
function M.vm_claims(vm)
    local seen = {}
    -- the object may come from a hand-edited file: any level may be of any type
    local function tab(v) return type(v) == "table" and v or {} end
    local spec = tab(tab(vm).spec)
    local tspec = tab(tab(spec.template).spec)
    for _, v in ipairs(tab(tspec.volumes)) do
        if type(v) == "table" then
            if type(v.persistentVolumeClaim) == "table" and v.persistentVolumeClaim.claimName then
                seen[v.persistentVolumeClaim.claimName] = true
            elseif type(v.dataVolume) == "table" and v.dataVolume.name then
                seen[v.dataVolume.name] = true
            end
        end
    end
    for _, t in ipairs(tab(spec.dataVolumeTemplates)) do
        if type(t) == "table" and type(t.metadata) == "table" and t.metadata.name then
            seen[t.metadata.name] = true
        end
    end
    local out = {}
    for _, k in ipairs(sorted_keys(seen)) do
        if type(k) == "string" then out[#out + 1] = k end
    end
    return out
end

-- A list response's items carry no kind or apiVersion (the API server leaves them
-- out; kubectl adds them back): the cleaners and Git files need them.
local function items_of(list, kind, api_version)
    if type(list) ~= "table" then return {} end
    local items = list.items or list
    for _, it in ipairs(items) do
        if type(it) == "table" then
            if it.kind == nil then it.kind = kind end
            if it.apiVersion == nil then it.apiVersion = api_version end
        end
    end
    return items
end

--- Indexes PVCs by "ns/name" and PVs by name.
function M.index(pvcs, pvs)
    local pvc_by, pv_by = {}, {}
    for _, c in ipairs(items_of(pvcs, "PersistentVolumeClaim", "v1")) do
        local md = c.metadata or {}
        if md.namespace and md.name then pvc_by[md.namespace .. "/" .. md.name] = c end
    end
    for _, v in ipairs(items_of(pvs, "PersistentVolume", "v1")) do
        local md = v.metadata or {}
        if md.name then pv_by[md.name] = v end
    end
    return pvc_by, pv_by
end

--- Joins one VM with its PVCs and PVs. Missing pieces are recorded as problems:
--- a claim that does not exist (yet), a PVC not bound, a PV whose claimRef names
--- another claim (never follow a volumeName into someone else's volume).
---@return table bundle
function M.bundle(vm, pvc_by, pv_by)
    local md = vm.metadata or {}
    local b = { ns = md.namespace, name = md.name, vm = vm, pvcs = {}, pvs = {}, problems = {} }
    for _, claim in ipairs(M.vm_claims(vm)) do
        local pvc = pvc_by[(md.namespace or "") .. "/" .. claim]
        if not pvc then
            b.problems[#b.problems + 1] = string.format("claim %s/%s not found", md.namespace, claim)
        else
            b.pvcs[#b.pvcs + 1] = pvc
            local vname = pvc.spec and pvc.spec.volumeName
            local pv = vname and pv_by[vname]
            if not vname or vname == "" then
                b.problems[#b.problems + 1] = string.format("claim %s/%s is not bound", md.namespace, claim)
            elseif not pv then
                b.problems[#b.problems + 1] = string.format("PV %s of claim %s/%s not found", vname,
                    md.namespace, claim)
            else
                local ref = pv.spec and pv.spec.claimRef
                if type(ref) == "table" and ref.name and (ref.name ~= claim or ref.namespace ~= md.namespace) then
                    b.problems[#b.problems + 1] = string.format(
                        "PV %s is claimed by %s/%s, not by %s/%s: not exported", vname,
                        tostring(ref.namespace), tostring(ref.name), md.namespace, claim)
                else
                    b.pvs[#b.pvs + 1] = pv
                end
            end
        end
    end
    return b
end

--- Bundles for a list of VMs, sorted by namespace and name.
function M.bundles(vms, pvcs, pvs)
    local pvc_by, pv_by = M.index(pvcs, pvs)
    local out = {}
    for _, vm in ipairs(items_of(vms, "VirtualMachine", "kubevirt.io/v1")) do
        out[#out + 1] = M.bundle(vm, pvc_by, pv_by)
    end
    table.sort(out, function(a, b)
        if a.ns ~= b.ns then return tostring(a.ns) < tostring(b.ns) end
        return tostring(a.name) < tostring(b.name)
    end)
    return out
end

return M
