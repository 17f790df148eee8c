-- event_sync: bring one VM's DR copy up to date after a change event.
--
--   vmdr-run event_sync -e namespace=NS -e name=NAME [--dry-run]
--
-- The event only says which VM; its content is read fresh from the API.
-- * Still there and DR-enabled: export it as reconcile would (its claims listed
--   in its namespace, its volumes read by name), mirroring enabled, one commit.
-- * Gone (404), or no longer carrying the DR label: removed from the repository
--   as gc would, its mirroring disabled. The GET is the confirmation: a
--   label-selected watch reports "unlabelled" as DELETED too.
-- Any other API error stops the run without touching anything.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local inventory = require "vmdr.inventory"
local layout = require "vmdr.layout"
local repo = require "vmdr.repo"
local sync = require "vmdr.sync"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir", "namespace", "name" },
    "event_sync")
local ns, name = ctx.config.namespace, ctx.config.name
if not layout.is_dns_label(ns) or not layout.is_dns_subdomain(name) then
    config.error("namespace/name %q/%q are not Kubernetes names", tostring(ns), tostring(name))
end
dr.hooks(ctx)
local lay = dr.layout(ctx)
local src, cerr = dr.client(ctx, "source")
if not src then return nil, "source cluster: " .. tostring(cerr) end
local storage, serr = dr.storage(ctx)
if not storage then return nil, "storage: " .. tostring(serr) end

local vm, err = src:get("virtualmachines.kubevirt.io", ns, name)
if not vm and err.code ~= "not_found" then
    return nil, "reading VM " .. ns .. "/" .. name .. ": " .. tostring(err)
end

if vm and dr.is_protected(ctx, vm) then
    -- export: claims from one namespaced list, volumes by name
    local pvcs, lerr = src:list("persistentvolumeclaims", { namespace = ns })
    if not pvcs then return nil, "listing the claims of " .. ns .. ": " .. tostring(lerr) end
    local claims = {}
    for _, c in ipairs(inventory.vm_claims(vm)) do claims[c] = true end
    local pvs = {}
    for _, pvc in ipairs(pvcs.items) do
        local v = claims[pvc.metadata.name] and pvc.spec and pvc.spec.volumeName
        if type(v) == "string" and v ~= "" then
            local pv, perr = src:get("persistentvolumes", nil, v)
            if pv then
                pvs[#pvs + 1] = pv
            elseif perr.code ~= "not_found" then
                return nil, "reading PV " .. v .. ": " .. tostring(perr)
            end
        end
    end
    local bundles = inventory.bundles({ vm }, pvcs, pvs)
    local rendered = sync.render(ctx, lay, bundles)
    if #rendered.failed > 0 then
        return nil, string.format("VM %s/%s not exported: %s", ns, name, rendered.failed[1].err)
    end
    local refs, _, problems = sync.images(storage, bundles)
    if #problems > 0 then return nil, problems[1].vm .. ": " .. problems[1].err end
    if #refs > 0 then
        for _, e in ipairs(storage:enable(refs)) do
            if e.result == "failed" or e.result == "refused" then
                return nil, "enabling mirroring of " .. e.image .. ": " .. tostring(e.err)
            end
        end
    end
    local result, terr = repo.transaction(ctx, function(tx)
        local stats, werr = sync.write(ctx, tx, lay, rendered)
        if not stats then return nil, werr end
        tx:set_message(string.format("vmdr event_sync: %s/%s", ns, name))
        return stats
    end)
    if not result then dr.close(ctx); return nil, "manifests repository: " .. tostring(terr) end
    log.info(result.commit and "VM synced" or "VM unchanged", { vm = ns .. "/" .. name,
        commit = result.commit or nil, images = #refs })
else
    -- gone or unlabelled: take it out as gc would
    log.info(vm and "VM left the DR set" or "VM deleted", { vm = ns .. "/" .. name })
    local refs = {}
    local result, terr = repo.transaction(ctx, function(tx)
        local entries = {}
        for _, e in ipairs(sync.stored_vms(tx, lay, { namespace = ns })) do
            if e.name == name then
                if e.err then return nil, dr.err("invalid", "%s", e.err) end
                entries[#entries + 1] = e
            end
        end
        if #entries == 0 then return { removed = 0 } end
        -- disks first, from what Git says this VM had; a failure leaves Git untouched
        -- so a later run finds the VM again and retries
        refs = sync.images(storage, { sync.stored_bundle(tx, lay, entries[1]) })
        if #refs > 0 then
            for _, e in ipairs(storage:disable(refs)) do
                if e.result == "failed" or e.result == "refused" then
                    return nil, dr.err(e.err and e.err.code or "failed", "disabling mirroring of %s: %s",
                        e.image, tostring(e.err))
                end
            end
        end
        tx:set_message(string.format("vmdr event_sync: remove %s/%s", ns, name))
        return sync.remove(ctx, tx, lay, entries)
    end)
    if not result then dr.close(ctx); return nil, "removing " .. ns .. "/" .. name .. ": " .. tostring(terr) end
    log.info("removed from the repository", { vm = ns .. "/" .. name, commit = result.commit or nil,
        images = #refs })
end
dr.close(ctx)
return true
