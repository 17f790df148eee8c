--- vmdr.sync: the write phase shared by reconcile, event_sync, gc and monitor.
---
--- `render` turns joined bundles (vmdr.inventory) into the bytes of their files;
--- `write` puts them in a repository transaction, writing only files whose
--- bytes changed, removing a VM's claim and volume files it no longer uses,
--- regenerating the kustomization.yaml of every namespace it touched and
--- creating the layout (ApplicationSet, failover-control component) when
--- missing. `remove` takes a VM out the way gc does. Everything here reads and
--- writes through `tx` (vmdr.repo), so a rejected push simply runs it again.
local inventory = require "vmdr.inventory"
local kustomize = require "vmdr.kustomize"
local manifest = require "vmdr.manifest"
local yaml = require "vmdr.yaml"

local M = {}

local function basename(p) return p:match("[^/]+$") end

--- Renders bundles into files. A VM whose claims or volumes cannot be resolved
--- completely, or whose names cannot become paths, is not written (a partial DR
--- copy would fail over without its disks): it is returned as failed with why.
---@param ctx table
---@param lay table vmdr.layout
---@param bundles table[] from vmdr.inventory
---@return table rendered { vms = { {ns=, name=, files={path=bytes}, hash=} }, failed = { {ns=, name=, err=} } }
function M.render(ctx, lay, bundles)
    local out = { vms = {}, failed = {} }
    local progress = #bundles >= 200 and ctx.log and ctx.log.progress
    for i, b in ipairs(bundles) do
        if progress and (i % 100 == 0 or i == #bundles) then progress("cleaning VMs", i, #bundles) end
        local function fail(msg) out.failed[#out.failed + 1] = { ns = b.ns, name = b.name, err = msg } end
        if #b.problems > 0 then
            fail(table.concat(b.problems, "; "))
        else
            local enc, err = manifest.bundle(ctx, b.vm, b.pvcs, b.pvs)
            if not enc then
                fail(tostring(err))
            else
                local files = {}
                local p, perr = lay:vm(b.ns, b.name)
                if p then files[p] = enc.vm end
                for _, part in ipairs { { enc.pvcs, lay.pvc }, { enc.pvs, lay.pv } } do
                    for name, bytes in pairs(part[1]) do
                        if not perr then
                            p, perr = part[2](lay, b.ns, name)
                            if p then files[p] = bytes end
                        end
                    end
                end
                if perr then
                    fail(tostring(perr))
                else
                    out.vms[#out.vms + 1] = { ns = b.ns, name = b.name, files = files, hash = enc.hash,
                        bundle = b }
                end
            end
        end
    end
    return out
end

--- The files of a namespace's base directory that the VM files there refer to
--- (their claims and the claims' volumes), as a set of file names.
local function referenced(tx, lay, ns)
    local dir = lay:base_dir(ns)
    local names = tx:list(dir) or {}
    local keep = {}
    for _, n in ipairs(names) do
        if n:match("^vm%-.*%.yaml$") then
            keep[n] = true
            local vm = yaml.decode(tx:read(dir .. "/" .. n) or "")
            if type(vm) == "table" then
                for _, claim in ipairs(inventory.vm_claims(vm)) do
                    local pvcp = lay:pvc(ns, claim)
                    if pvcp then
                        keep[basename(pvcp)] = true
                        local pvc = yaml.decode(tx:read(pvcp) or "")
                        local vname = type(pvc) == "table" and pvc.spec and pvc.spec.volumeName
                        local pvp = type(vname) == "string" and lay:pv(ns, vname)
                        if pvp then keep[basename(pvp)] = true end
                    end
                end
            end
        end
    end
    return keep, names
end

--- Regenerates the base and overlay kustomization.yaml of a namespace, removing
--- claim/volume files no VM refers to any more; an empty namespace loses both
--- directories (the ApplicationSet's directory generator then drops its
--- Application, whose resources are preserved: DOMAIN.md §3.5).
local function settle_namespace(tx, lay, ns, stats)
    local dir = lay:base_dir(ns)
    local keep, names = referenced(tx, lay, ns)
    local resources = {}
    for _, n in ipairs(names) do
        if n:match("^pvc%-.*%.yaml$") or n:match("^pv%-.*%.yaml$") then
            if not keep[n] then
                tx:remove(dir .. "/" .. n)
                stats.removed = stats.removed + 1
            else
                resources[#resources + 1] = n
            end
        elseif n:match("^vm%-.*%.yaml$") then
            resources[#resources + 1] = n
        end
    end
    local base_k = lay:base_kustomization(ns)
    local over_k = lay:overlay_kustomization(ns)
    local has_vm = false
    for _, n in ipairs(resources) do if n:match("^vm%-") then has_vm = true end end
    if not has_vm then
        for _, n in ipairs(resources) do tx:remove(dir .. "/" .. n) end
        tx:remove(base_k)
        tx:remove(over_k)
        return
    end
    tx:write(base_k, kustomize.base_kustomization(resources))
    tx:write(over_k, assert(kustomize.overlay_kustomization(lay, ns)))
end

--- Creates the repository layout where it is missing: the ApplicationSet is
--- regenerated (it is derived from the configuration), the failover-control
--- component and its patches only created, never overwritten.
function M.init_layout(ctx, tx, lay)
    local a = ctx.config.argocd or {}
    local files = assert(kustomize.layout_files(lay, {
        namespace = a.namespace, project = a.project, destination = a.destination,
        repo_url = ctx.config.git and ctx.config.git.url, revision = ctx.config.git and ctx.config.git.branch,
    }))
    local created = 0
    for _, f in ipairs(files) do
        local cur = tx:read(f.path)
        if cur == nil or (f.overwrite and cur ~= f.bytes) then
            tx:write(f.path, f.bytes)
            created = created + 1
        end
    end
    return created
end

--- Writes rendered VMs into tx. Returns stats {written=, unchanged=, removed=,
--- namespaces=}. `opts.prune_claims` (default true) removes claim/volume files no
--- VM refers to any more in the namespaces touched.
function M.write(ctx, tx, lay, rendered)
    local stats = { written = 0, unchanged = 0, removed = 0, files = 0, changed_vms = {} }
    M.init_layout(ctx, tx, lay)
    local dirty = {}
    for _, v in ipairs(rendered.vms) do
        local paths = {}
        for p in pairs(v.files) do paths[#paths + 1] = p end
        table.sort(paths)
        local changed = false
        for _, p in ipairs(paths) do
            -- false: the file already holds these bytes (compared by object id, cheaply)
            local wrote, err = tx:write(p, v.files[p])
            if wrote == nil then return nil, err end
            if wrote then
                stats.files = stats.files + 1
                changed = true
            end
        end
        -- a VM whose disk list shrank leaves claim files behind: settle its namespace
        -- also when only the VM file changed
        if changed then
            stats.written = stats.written + 1
            stats.changed_vms[#stats.changed_vms + 1] = v.ns .. "/" .. v.name
            dirty[v.ns] = true
        else
            stats.unchanged = stats.unchanged + 1
            -- a namespace whose kustomization is missing (first run, hand edit) is settled too
            if tx:read(lay:base_kustomization(v.ns)) == nil or tx:read(lay:overlay_kustomization(v.ns)) == nil then
                dirty[v.ns] = true
            end
        end
    end
    local nss = {}
    for ns in pairs(dirty) do nss[#nss + 1] = ns end
    table.sort(nss)
    for _, ns in ipairs(nss) do settle_namespace(tx, lay, ns, stats) end
    stats.namespaces = #nss
    return stats
end

--- The VMs stored in the repository: { {ns=, name=, path=, vm=obj|nil, err=} },
--- sorted. A file whose content does not parse, or names another VM than its file
--- name says, is reported with err (never treated as absent or as an orphan).
function M.stored_vms(tx, lay, opts)
    opts = opts or {}
    local out = {}
    local nsdirs = tx:list(lay:base_root()) or {}
    for _, d in ipairs(nsdirs) do
        local ns = d:match("^(.-)/$")
        if ns and (not opts.namespace or opts.namespace == ns) then
            local dir = lay:base_dir(ns)
            if dir then
                for _, n in ipairs(tx:list(dir) or {}) do
                    local name = n:match("^vm%-(.*)%.yaml$")
                    if name then
                        local e = { ns = ns, name = name, path = dir .. "/" .. n }
                        local bytes = tx:read(e.path)
                        local vm, derr = yaml.decode(bytes or "")
                        if type(vm) ~= "table" then
                            e.err = "cannot parse " .. e.path .. ": " .. tostring(derr)
                        elseif not vm.metadata or vm.metadata.name ~= name or vm.metadata.namespace ~= ns then
                            e.err = string.format("%s holds VirtualMachine %s/%s, not %s/%s", e.path,
                                tostring(vm.metadata and vm.metadata.namespace),
                                tostring(vm.metadata and vm.metadata.name), ns, name)
                        else
                            e.vm = vm
                        end
                        out[#out + 1] = e
                    end
                end
            end
        end
    end
    return out
end

--- The claims and volumes a stored VM uses, read from the repository:
--- { pvcs = {obj...}, pvs = {obj...} } (missing files are skipped).
function M.stored_bundle(tx, lay, entry)
    local b = { ns = entry.ns, name = entry.name, vm = entry.vm, pvcs = {}, pvs = {}, problems = {} }
    for _, claim in ipairs(inventory.vm_claims(entry.vm)) do
        local p = lay:pvc(entry.ns, claim)
        local pvc = p and yaml.decode(tx:read(p) or "")
        if type(pvc) == "table" then
            b.pvcs[#b.pvcs + 1] = pvc
            local vname = pvc.spec and pvc.spec.volumeName
            local pp = type(vname) == "string" and lay:pv(entry.ns, vname)
            local pv = pp and yaml.decode(tx:read(pp) or "")
            if type(pv) == "table" then
                b.pvs[#b.pvs + 1] = pv
            else
                b.problems[#b.problems + 1] = "no PV file for claim " .. claim
            end
        else
            b.problems[#b.problems + 1] = "no PVC file for claim " .. claim
        end
    end
    return b
end

--- Removes stored VMs (entries from stored_vms) and settles their namespaces.
function M.remove(ctx, tx, lay, entries)
    local stats = { written = 0, unchanged = 0, removed = 0, files = 0 }
    local dirty = {}
    for _, e in ipairs(entries) do
        if tx:remove(e.path) then stats.removed = stats.removed + 1 end
        dirty[e.ns] = true
    end
    local nss = {}
    for ns in pairs(dirty) do nss[#nss + 1] = ns end
    table.sort(nss)
    for _, ns in ipairs(nss) do settle_namespace(tx, lay, ns, stats) end
    return stats
end

--- The volumes (storage driver `volume(pv)`) of bundles: vols (unique by image),
--- by_vm { ["ns/name"] = {vol...} }, problems { {vm=, err=} }. A PV the driver does
--- not protect (err.code "not_rbd") is not a problem: it is simply not replicated.
function M.images(driver, bundles)
    local vols, seen, by_vm, problems = {}, {}, {}, {}
    for _, b in ipairs(bundles) do
        local key = b.ns .. "/" .. b.name
        by_vm[key] = {}
        for _, pv in ipairs(b.pvs) do
            local vol, err = driver:volume(pv)
            if vol then
                by_vm[key][#by_vm[key] + 1] = vol
                if not seen[vol.spec] then
                    seen[vol.spec] = true
                    vols[#vols + 1] = vol
                end
            elseif err and err.code ~= "not_rbd" then
                problems[#problems + 1] = { vm = key, err = tostring(err) }
            end
        end
    end
    return vols, by_vm, problems
end

return M
