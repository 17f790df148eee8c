--- vmdr.sync: the write phase shared by reconcile, event_sync, gc and monitor.
---
--- `render` turns joined bundles (vmdr.inventory) into the bytes of their files;
--- `write` puts them in a repository transaction, writing only files whose
--- bytes changed, removing a VM's claim and volume files it no longer uses,
--- regenerating the kustomization.yaml of every namespace it touched and
--- creating the layout (ApplicationSet, failover-control component) when
--- missing. `remove` takes a VM out the way gc does. Everything here reads and
--- writes through `tx` (vmdr.repo), so a rejected push simply runs it again.
local dr = require "vmdr.dr"
local inventory = require "vmdr.inventory"
local kustomize = require "vmdr.kustomize"
local manifest = require "vmdr.manifest"
local rendercache = require "vmdr.rendercache"
local repo = require "vmdr.repo"
local yaml = require "vmdr.yaml"

local M = {}

local function basename(p) return p:match("[^/]+$") end

-- The files of one bundle: { [path] = bytes }, or nil and why. Cleans the bundle's
-- objects in place.
local function render_one(ctx, lay, b)
    -- the repository compares the bytes themselves: no fingerprint needed
    local enc, err = manifest.bundle(ctx, b.vm, b.pvcs, b.pvs, { hash = false })
    if not enc then return nil, tostring(err) end
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
    if perr then return nil, tostring(perr) end
    return files
end

--- Renders bundles into files. A VM whose claims or volumes cannot be resolved
--- completely, or whose names cannot become paths, is not written (a partial DR
--- copy would fail over without its disks): it is returned as failed with why.
--- With opts.cache (vmdr.rendercache), a VM whose inputs are the ones the cache
--- recorded is not rendered: its entry carries `cached` = { [path] = blob id } and
--- its bundle instead of `files`, and `write` checks the ids against the repository
--- (rendering it there when they differ). Every entry then carries `inputs`.
---@param ctx table
---@param lay table vmdr.layout
---@param bundles table[] from vmdr.inventory
---@param opts? {release?: boolean, cache?: table}  release: drop each bundle's objects once
---  rendered
---@return table rendered { vms = { {ns=, name=, files={path=bytes}|nil, cached=|nil, inputs=,
---  bundle=} }, failed = { {ns=, name=, err=} } }
function M.render(ctx, lay, bundles, opts)
    local release = opts and opts.release
    local cache = opts and opts.cache
    local out = { vms = {}, failed = {} }
    local progress = #bundles >= 200 and ctx.log and ctx.log.progress
    for i, b in ipairs(bundles) do
        if progress and (i % 100 == 0 or i == #bundles) then progress("cleaning VMs", i, #bundles) end
        local keep = false
        if #b.problems > 0 then
            out.failed[#out.failed + 1] = { ns = b.ns, name = b.name,
                err = table.concat(b.problems, "; ") }
        else
            -- taken before rendering: cleaning removes uid and resourceVersion
            local inputs = cache and cache.on and rendercache.inputs(b)
            local hit = cache and cache:lookup(b.ns, b.name, inputs)
            if hit then
                -- kept whole: write renders it after all if the repository disagrees
                keep = true
                out.vms[#out.vms + 1] = { ns = b.ns, name = b.name, cached = hit, inputs = inputs,
                    bundle = b }
            else
                local files, err = render_one(ctx, lay, b)
                if not files then
                    out.failed[#out.failed + 1] = { ns = b.ns, name = b.name, err = err }
                else
                    -- fields only when set: a constructor naming five keys sizes the
                    -- hash part for eight, for each of 10,000 VMs
                    local v = { ns = b.ns, name = b.name, files = files }
                    if inputs then v.inputs = inputs end
                    if not release then v.bundle = b end
                    out.vms[#out.vms + 1] = v
                end
            end
        end
        if release and not keep then
            -- the caller keeps only the bytes: drop this VM's objects now
            b.vm, b.pvcs, b.pvs = nil, nil, nil
        end
    end
    return out
end

--- The files of a namespace's base directory that the VM files there refer to
--- (their claims and the claims' volumes), as a set of file names. `known` maps the
--- path of a VM file written in this run to the file names it uses, sparing a decode.
local function referenced(tx, lay, ns, known)
    local dir = lay:base_dir(ns)
    local names = tx:list(dir) or {}
    local keep = {}
    for _, n in ipairs(names) do
        if n:match("^vm%-.*%.yaml$") then
            keep[n] = true
            local uses = known and known[dir .. "/" .. n]
            if uses then
                for f in pairs(uses) do keep[f] = true end
            else
                local vm = yaml.decode(tx:read(dir .. "/" .. n) or "")
                if type(vm) ~= "table" then
                    -- a VM file that does not parse (a hand edit) may use any claim here:
                    -- keep them all rather than delete a disk definition it needs
                    for _, m in ipairs(names) do
                        if m:match("^pvc%-.*%.yaml$") or m:match("^pv%-.*%.yaml$") then
                            keep[m] = true
                        end
                    end
                else
                    for _, claim in ipairs(inventory.vm_claims(vm)) do
                        local pvcp = lay:pvc(ns, claim)
                        if pvcp then
                            keep[basename(pvcp)] = true
                            local pvc = yaml.decode(tx:read(pvcp) or "")
                            local vname = type(pvc) == "table" and type(pvc.spec) == "table"
                                and pvc.spec.volumeName
                            local pvp = type(vname) == "string" and lay:pv(ns, vname)
                            if pvp then keep[basename(pvp)] = true end
                        end
                    end
                end
            end
        end
    end
    return keep, names
end

--- What settling a namespace takes: regenerate its base and overlay kustomization.yaml,
--- remove claim/volume files no VM refers to any more; an empty namespace loses both
--- directories (the ApplicationSet's directory generator then drops its Application,
--- whose resources are preserved: DOMAIN.md §3.5). Only reads: the writes are applied
--- after every namespace was planned, because listing a directory after a write makes
--- the repository rebuild its whole tree (once per namespace was minutes at 10,000 VMs).
local function plan_namespace(tx, lay, ns, known)
    local dir = lay:base_dir(ns)
    local keep, names = referenced(tx, lay, ns, known)
    local plan = { remove = {}, write = {} }
    local resources = {}
    for _, n in ipairs(names) do
        if n:match("^pvc%-.*%.yaml$") or n:match("^pv%-.*%.yaml$") then
            if not keep[n] then
                plan.remove[#plan.remove + 1] = dir .. "/" .. n
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
        for _, n in ipairs(resources) do plan.remove[#plan.remove + 1] = dir .. "/" .. n end
        plan.remove[#plan.remove + 1] = base_k
        plan.remove[#plan.remove + 1] = over_k
    else
        plan.write[base_k] = kustomize.base_kustomization(resources)
        plan.write[over_k] = assert(kustomize.overlay_kustomization(lay, ns))
    end
    return plan
end

--- Settles the namespaces (sorted names): plans them all, then writes and removes.
local function settle_namespaces(tx, lay, nss, stats, known)
    local plans = {}
    for i, ns in ipairs(nss) do plans[i] = plan_namespace(tx, lay, ns, known) end
    for _, plan in ipairs(plans) do
        for _, path in ipairs(plan.remove) do
            if tx:remove(path) and not path:match("kustomization%.yaml$") then
                stats.removed = stats.removed + 1
            end
        end
        local paths = {}
        for path in pairs(plan.write) do paths[#paths + 1] = path end
        table.sort(paths)
        for _, path in ipairs(paths) do tx:write(path, plan.write[path]) end
    end
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

-- A VM from the render cache: current when every file has the blob id recorded for
-- its inputs (then rendering would give these very bytes). Otherwise it is rendered
-- now, from the bundle the cache kept whole, and written as any other. Returns
-- "current" | "rendered" | "failed", or nil, err (repository).
local function settle_cached(ctx, tx, lay, rendered, v)
    for p, id in pairs(v.cached) do
        local cur, err = tx:blob_id(p)
        if cur == nil then return nil, err end
        if cur ~= id then
            -- edited, removed or replaced in Git since: repair it
            local files, rerr = render_one(ctx, lay, v.bundle)
            v.cached, v.bundle = nil, nil
            if not files then
                v.failed = rerr
                rendered.failed[#rendered.failed + 1] = { ns = v.ns, name = v.name, err = rerr }
                if ctx.log then
                    ctx.log.error("VM not exported", { vm = v.ns .. "/" .. v.name, reason = rerr })
                end
                return "failed"
            end
            v.files = files
            return "rendered"
        end
    end
    return "current"
end

-- The render-cache entries of what the tree now holds: { ["ns/name"] = {in=, files=} }
-- for every VM that carries inputs (rendered with a cache).
local function cache_entries(tx, rendered, verified)
    local out = {}
    for _, v in ipairs(rendered.vms) do
        if v.inputs and not v.failed then
            local ids = verified[v]
            if not ids then
                ids = {}
                for p in pairs(v.files) do
                    local id = tx:blob_id(p)
                    if not id then ids = nil; break end
                    ids[p] = id
                end
            end
            if ids then out[v.ns .. "/" .. v.name] = { ["in"] = v.inputs, files = ids } end
        end
    end
    return out
end

--- Writes rendered VMs into tx. Returns stats {written=, unchanged=, removed=,
--- namespaces=, cache = { ["ns/name"] = {in=, files=} } (for vmdr.rendercache, when
--- rendered with one)}. Claim/volume files no VM refers to any more are removed in the
--- namespaces whose set of files changed. A cached VM (see render) whose files in the
--- repository are not the recorded ones is rendered here; if that fails it is added to
--- rendered.failed.
function M.write(ctx, tx, lay, rendered)
    local stats = { written = 0, unchanged = 0, removed = 0, files = 0, changed_vms = {} }
    M.init_layout(ctx, tx, lay)
    local dirty, checked, verified = {}, {}, {}
    for _, v in ipairs(rendered.vms) do
        local state = "rendered"
        if v.cached then
            local err
            state, err = settle_cached(ctx, tx, lay, rendered, v)
            if not state then return nil, err end
            if state == "current" then verified[v] = v.cached end
        end
        local changed, reshaped = false, false
        if state == "rendered" and not v.failed then
            local paths = {}
            for p in pairs(v.files) do paths[#paths + 1] = p end
            table.sort(paths)
            local vm_path = lay:vm(v.ns, v.name)
            for _, p in ipairs(paths) do
                local bytes = v.files[p]
                -- false: the file already holds these bytes (compared by object id, cheaply)
                local wrote, created = tx:write(p, bytes)
                if wrote == nil then return nil, created end
                if wrote then
                    if created then
                        reshaped = true -- a new file: the kustomization lists it
                    elseif p == vm_path and not reshaped then
                        -- a VM whose disk list changed leaves claim files behind
                        local old = yaml.decode(tx:read(p, { head = true }) or "")
                        local new = yaml.decode(bytes)
                        if type(old) ~= "table" or type(new) ~= "table"
                            or table.concat(inventory.vm_claims(old), "\0")
                                ~= table.concat(inventory.vm_claims(new), "\0") then
                            reshaped = true
                        end
                    end
                    stats.files = stats.files + 1
                    changed = true
                end
            end
        end
        if not v.failed then
            -- only a namespace whose set of files changed needs its kustomizations and
            -- unreferenced claim files settled (reading every file there is the slow part)
            if reshaped then dirty[v.ns] = true end
            if changed then
                stats.written = stats.written + 1
                stats.changed_vms[#stats.changed_vms + 1] = v.ns .. "/" .. v.name
            end
            if not dirty[v.ns] and not checked[v.ns] then
                checked[v.ns] = true
                -- a namespace whose kustomization is missing (first run, hand edit) is settled too
                if tx:read(lay:base_kustomization(v.ns)) == nil
                    or tx:read(lay:overlay_kustomization(v.ns)) == nil then
                    dirty[v.ns] = true
                end
            end
            if not changed then stats.unchanged = stats.unchanged + 1 end
        end
    end
    local nss = {}
    for ns in pairs(dirty) do nss[#nss + 1] = ns end
    table.sort(nss)
    local known = {}
    for _, v in ipairs(rendered.vms) do
        if dirty[v.ns] and not v.failed then
            local uses = {}
            for p in pairs(v.files or v.cached) do uses[basename(p)] = true end
            known[lay:vm(v.ns, v.name)] = uses
        end
    end
    settle_namespaces(tx, lay, nss, stats, known)
    stats.namespaces = #nss
    stats.cache = cache_entries(tx, rendered, verified)
    return stats
end

-- Sets entry.vm to the decoded VM file, or entry.err to why it cannot be used: it does
-- not parse, is not a VirtualMachine mapping, or names another VM than its file name.
local function check_stored(e, vm, derr)
    local md = type(vm) == "table" and vm.metadata
    if type(vm) ~= "table" then
        e.err = string.format("cannot parse %s: %s", e.path,
            derr and tostring(derr) or ("not a YAML mapping but a " .. type(vm)))
    elseif type(md) ~= "table" or md.name ~= e.name or md.namespace ~= e.ns then
        e.err = string.format("%s holds VirtualMachine %s/%s, not %s/%s", e.path,
            string.format("%q", tostring(type(md) == "table" and md.namespace or nil)),
            string.format("%q", tostring(type(md) == "table" and md.name or nil)), e.ns, e.name)
    elseif vm.kind ~= nil and vm.kind ~= "VirtualMachine" then
        e.err = string.format("%s holds a %s, not a VirtualMachine", e.path, tostring(vm.kind))
    else
        e.vm = vm
    end
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
                        check_stored(e, vm, derr)
                        out[#out + 1] = e
                    end
                end
            end
        end
    end
    return out
end

--- One stored VM, as stored_vms reports it, or nil when the repository has no file for it.
---@param tx table
---@param lay table
---@param ns string
---@param name string
---@return table|nil entry
function M.stored_vm(tx, lay, ns, name)
    local path = lay:vm(ns, name)
    if not path then return nil end
    local bytes = tx:read(path)
    if bytes == nil then return nil end
    local e = { ns = ns, name = name, path = path }
    check_stored(e, yaml.decode(bytes))
    return e
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
            local vname = type(pvc.spec) == "table" and pvc.spec.volumeName
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
    settle_namespaces(tx, lay, nss, stats)
    return stats
end

--- The volumes (storage driver `volume(pv)`) of bundles: vols (unique by image),
--- by_vm { ["ns/name"] = {vol...} }, problems { {vm=, err=} }, unprotected { {vm=, err=} }.
--- A PV the driver does not protect (err.code "not_rbd") is not a problem: it is simply
--- not replicated, and listed in unprotected so a workflow can say so.
function M.images(driver, bundles)
    local vols, seen, by_vm, problems, unprotected = {}, {}, {}, {}, {}
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
            elseif err then
                unprotected[#unprotected + 1] = { vm = key, err = tostring(err.message or err) }
            end
        end
    end
    return vols, by_vm, problems, unprotected
end

--- Logs, as a warning, each disk of an exported VM that the storage driver does not
--- replicate (a PV with no csi block, another CSI driver): the DR copy of such a VM has
--- no data for that disk. Quiet with storage.driver none, which replicates nothing.
---@param ctx table
---@param unprotected table[] from images
---@param exported table<string, boolean>|nil "ns/name" of the VMs written (nil: all)
function M.warn_unprotected(ctx, unprotected, exported)
    local st = ctx.config.storage
    if not ctx.log or (type(st) == "table" and st.driver == "none") then return end
    for _, u in ipairs(unprotected) do
        if not exported or exported[u.vm] then
            ctx.log.warn("disk not replicated: the DR copy of this VM has no data for it",
                { vm = u.vm, reason = u.err })
        end
    end
end

--- The images still used by stored VMs once `entries` (from stored_vms) are gone: image
--- spec -> the VM (or unreadable file) using it. A disk shared by two VMs (one RWX claim,
--- e.g. a cluster's quorum disk) must keep its mirroring when one of the VMs leaves: a
--- disable deletes the DR copy. Only the namespaces of `entries` are read (a claim, and so
--- its volume, belongs to one namespace); a VM file there that cannot be read counts as
--- using every volume of its namespace.
---@param driver table storage driver (its volume(pv) mapping is used)
---@param tx table vmdr.repo transaction or snapshot
---@param lay table vmdr.layout
---@param entries table[] the VMs leaving, from stored_vms
---@return table<string,string> used
function M.images_in_use(driver, tx, lay, entries)
    local leaving, nss = {}, {}
    for _, e in ipairs(entries) do
        leaving[e.path] = true
        nss[e.ns] = true
    end
    local used = {}
    local function use(pv, by)
        local vol = type(pv) == "table" and driver:volume(pv)
        if vol and not used[vol.spec] then used[vol.spec] = by end
    end
    for ns in pairs(nss) do
        for _, e in ipairs(M.stored_vms(tx, lay, { namespace = ns })) do
            if not leaving[e.path] then
                if e.vm then
                    for _, pv in ipairs(M.stored_bundle(tx, lay, e).pvs) do
                        use(pv, e.ns .. "/" .. e.name)
                    end
                else
                    local dir = lay:base_dir(ns)
                    for _, n in ipairs(tx:list(dir) or {}) do
                        if n:match("^pv%-.*%.yaml$") then
                            use(yaml.decode(tx:read(dir .. "/" .. n) or ""), e.path)
                        end
                    end
                end
            end
        end
    end
    return used
end

--- The volumes of one stored VM whose mirroring may be disabled: those no other stored
--- VM uses (see images_in_use); the others are logged and left alone.
---@param ctx table
---@param driver table
---@param tx table
---@param lay table
---@param entry table one of stored_vms
---@param in_use table<string,string> from images_in_use
---@return table[] vols
function M.images_to_disable(ctx, driver, tx, lay, entry, in_use)
    local out = {}
    for _, vol in ipairs((M.images(driver, { M.stored_bundle(tx, lay, entry) }))) do
        if in_use[vol.spec] then
            if ctx.log then
                ctx.log.info("mirroring kept: the image is used by another VM", { image = vol.spec,
                    vm = entry.ns .. "/" .. entry.name, used_by = in_use[vol.spec] })
            end
        else
            out[#out + 1] = vol
        end
    end
    return out
end

-- Above this many VMs (or volumes), one list call beats a GET each.
local BULK <const> = 20

local function split_key(k)
    local ns, name = k:match("^([^/]+)/(.+)$")
    return ns, name
end

--- Reads the VMs named by keys fresh from the API: protected (to export), gone
--- (confirmed by their own GET: a 404 naming the VM, or present without the DR label)
--- or failed.
local function fetch_vms(ctx, client, keys, live)
    local by_key, protected, gone, failed = {}, {}, {}, {}
    if live then
        for _, vm in ipairs(live) do
            local md = vm.metadata or {}
            by_key[tostring(md.namespace) .. "/" .. tostring(md.name)] = vm
        end
    elseif #keys > BULK then
        local list, err = client:list("virtualmachines.kubevirt.io",
            { labelSelector = ctx.config.label_selector })
        if not list then return nil, err end
        for _, vm in ipairs(list.items) do
            local md = vm.metadata or {}
            by_key[tostring(md.namespace) .. "/" .. tostring(md.name)] = vm
        end
    end
    for _, k in ipairs(keys) do
        local ns, name = split_key(k)
        local vm = by_key[k]
        local err
        if vm == nil then vm, err = client:get("virtualmachines.kubevirt.io", ns, name) end
        if vm and dr.is_protected(ctx, vm) then
            vm.kind = vm.kind or "VirtualMachine"
            vm.apiVersion = vm.apiVersion or "kubevirt.io/v1"
            protected[#protected + 1] = vm
        elseif vm or dr.confirmed_gone(err, name) then
            gone[#gone + 1] = k
        else
            if err.code == "interrupted" then return nil, err end
            failed[#failed + 1] = { key = k, err = tostring(err), retry = true }
        end
    end
    return protected, gone, failed
end

--- The claims and volumes of the VMs to export: one list per namespace (or one for all
--- namespaces when there are many), PVs by name (or one list when there are many).
local function fetch_volumes(client, vms)
    local nss, nns = {}, 0
    for _, vm in ipairs(vms) do
        if not nss[vm.metadata.namespace] then nns = nns + 1 end
        nss[vm.metadata.namespace] = true
    end
    local pvcs = {}
    if nns > 3 then
        local list, err = client:list("persistentvolumeclaims", {})
        if not list then return nil, err end
        pvcs = list.items
    else
        for ns in pairs(nss) do
            local list, err = client:list("persistentvolumeclaims", { namespace = ns })
            if not list then return nil, err end
            for _, c in ipairs(list.items) do pvcs[#pvcs + 1] = c end
        end
    end
    local wanted, nwanted = {}, 0
    local pvc_by = inventory.index(pvcs, {})
    for _, vm in ipairs(vms) do
        for _, claim in ipairs(inventory.vm_claims(vm)) do
            local pvc = pvc_by[vm.metadata.namespace .. "/" .. claim]
            local v = pvc and pvc.spec and pvc.spec.volumeName
            if type(v) == "string" and v ~= "" and not wanted[v] then
                wanted[v] = true
                nwanted = nwanted + 1
            end
        end
    end
    local pvs = {}
    if nwanted > BULK then
        local list, err = client:list("persistentvolumes", {})
        if not list then return nil, err end
        pvs = list.items
    else
        local names = {}
        for v in pairs(wanted) do names[#names + 1] = v end
        table.sort(names)
        for _, v in ipairs(names) do
            local pv, err = client:get("persistentvolumes", nil, v)
            if pv then
                pvs[#pvs + 1] = pv
            elseif err.code ~= "not_found" then
                return nil, err
            end
        end
    end
    return pvcs, pvs
end

--- Brings the DR copy of the VMs named by keys ("ns/name") up to date in ONE repository
--- transaction: shared by event_sync (one key) and the monitor (every VM that settled).
--- Each VM is read fresh; a protected one is exported (mirroring enabled first), one that
--- is gone or no longer labelled is removed as gc would (mirroring disabled first, from
--- what Git says it had). A VM whose GET fails for another reason, or whose disks cannot
--- be enabled/disabled, is left as it is in Git and reported with retry = true.
--- opts: live = VM objects known current (a watch's RESYNC list: no GET for those; any
--- key not among them is confirmed with its own GET), message = fn(summary) -> commit
--- message, may_commit = fn() -> true | false, err (asked before the first mirroring is
--- disabled and right before the commit; false aborts the transaction: nothing is
--- disabled or committed from then on).
--- Result: { commit = id|false, written = {key...}, unchanged = n, removed = {key...},
---   failed = { {key=, err=, retry=} }, diff = } or nil, err (API or repository failure:
---   nothing committed).
---@param ctx table
---@param client table vmdr.k8s client of the source cluster
---@param keys string[] "ns/name"
---@param opts table|nil
---@return table|nil result, table|nil err
function M.export_vms(ctx, client, keys, opts)
    opts = opts or {}
    local lay = dr.layout(ctx)
    local storage, serr = dr.storage(ctx)
    if not storage then return nil, serr end
    local uniq, seen = {}, {}
    for _, k in ipairs(keys) do
        if type(k) ~= "string" or not split_key(k) then error("export_vms: bad key " .. tostring(k), 2) end
        if not seen[k] then seen[k] = true; uniq[#uniq + 1] = k end
    end
    table.sort(uniq)
    local clock = require("vmdr.time").monotonic
    local t0 = clock()
    local function lap(what)
        if ctx.log then ctx.log.debug("export_vms: " .. what, { seconds = string.format("%.3f", clock() - t0) }) end
    end
    local vms, gone, failed = fetch_vms(ctx, client, uniq, opts.live)
    if not vms then return nil, gone end
    local pvcs, pvs = {}, {}
    if #vms > 0 then
        pvcs, pvs = fetch_volumes(client, vms)
        if not pvcs then return nil, pvs end
    end
    lap("read from the API")
    local rendered = M.render(ctx, lay, inventory.bundles(vms, pvcs, pvs))
    lap("rendered")
    for _, f in ipairs(rendered.failed) do
        failed[#failed + 1] = { key = f.ns .. "/" .. f.name, err = f.err }
    end
    -- mirroring first: a VM whose disks are not protected is not written
    local bundles = {}
    for _, v in ipairs(rendered.vms) do bundles[#bundles + 1] = v.bundle end
    local vols, by_vm, problems, unprotected = M.images(storage, bundles)
    M.warn_unprotected(ctx, unprotected)
    local bad = {}
    for _, p in ipairs(problems) do
        bad[p.vm] = true
        failed[#failed + 1] = { key = p.vm, err = p.err }
    end
    if #vols > 0 then
        local bad_image = {}
        for _, e in ipairs(storage:enable(vols)) do
            if e.result == "failed" or e.result == "refused" then bad_image[e.image] = tostring(e.err) end
        end
        for key, list in pairs(by_vm) do
            for _, vol in ipairs(list) do
                if bad_image[vol.spec] and not bad[key] then
                    bad[key] = true
                    failed[#failed + 1] = { key = key, retry = true,
                        err = "enabling mirroring of " .. vol.spec .. ": " .. bad_image[vol.spec] }
                end
            end
        end
    end
    if next(bad) then
        local keep = {}
        for _, v in ipairs(rendered.vms) do
            if not bad[v.ns .. "/" .. v.name] then keep[#keep + 1] = v end
        end
        rendered.vms = keep
    end

    local summary
    local result, terr = repo.transaction(ctx, function(tx)
        summary = { written = {}, unchanged = 0, removed = {}, kept = {} }
        lap("transaction started")
        if #rendered.vms > 0 then
            local stats, werr = M.write(ctx, tx, lay, rendered)
            lap("written")
            if not stats then return nil, werr end
            summary.written, summary.unchanged = stats.changed_vms, stats.unchanged
        end
        -- disabling mirroring is not undone by leaving the commit out: a writer that lost
        -- its right to write (the monitor's Lease) during a long batch must find out before
        -- it disables anything, not only at the commit
        if #gone > 0 and opts.may_commit then
            local ok, why = opts.may_commit()
            if not ok then return nil, why or dr.err("lost_lease", "no longer allowed to write") end
        end
        local entries, leaving = {}, {}
        for _, k in ipairs(gone) do
            local e = M.stored_vm(tx, lay, split_key(k))
            if e and e.err then
                summary.kept[#summary.kept + 1] = { key = k, err = e.err }
            elseif e then
                leaving[#leaving + 1] = e
            end
        end
        local in_use = #leaving > 0 and M.images_in_use(storage, tx, lay, leaving) or {}
        for _, e in ipairs(leaving) do
            local k = e.ns .. "/" .. e.name
            -- disks first, from what Git says this VM had; a failure keeps it in Git
            local refs = M.images_to_disable(ctx, storage, tx, lay, e, in_use)
            local why
            if #refs > 0 then
                for _, r in ipairs(storage:disable(refs)) do
                    if r.result == "failed" or r.result == "refused" then
                        why = "disabling mirroring of " .. r.image .. ": " .. tostring(r.err)
                    end
                end
            end
            if why then
                summary.kept[#summary.kept + 1] = { key = k, err = why, retry = true }
            else
                entries[#entries + 1] = e
                summary.removed[#summary.removed + 1] = k
            end
        end
        if #entries > 0 then M.remove(ctx, tx, lay, entries) end
        -- a long batch may have outlived the writer's right to write (the monitor's Lease):
        -- asked last, right before the commit and push
        if opts.may_commit then
            local ok, why = opts.may_commit()
            if not ok then return nil, why or dr.err("lost_lease", "no longer allowed to commit") end
        end
        local msg = opts.message and opts.message(summary)
        if not msg then
            local lines = {}
            for _, k in ipairs(summary.written) do lines[#lines + 1] = k end
            for _, k in ipairs(summary.removed) do lines[#lines + 1] = "removed " .. k end
            msg = string.format("vmdr sync: %d VM(s) changed, %d removed\n\n%s", #summary.written,
                #summary.removed, table.concat(lines, "\n"))
        end
        tx:set_message(msg)
        return summary
    end)
    lap("committed")
    if not result then return nil, terr end
    for _, f in ipairs(summary.kept) do failed[#failed + 1] = f end
    return { commit = result.commit, diff = result.diff, written = summary.written,
        unchanged = summary.unchanged, removed = summary.removed, failed = failed }
end

return M
