-- gc: remove from the DR copy the VMs that are no longer protected.
--
--   vmdr-run gc [-e namespace=NS] [-e force=true] [--dry-run]
--
-- Orphans are VMs in Git with no live DR-enabled VM. Because deleting is the
-- one thing a DR tool must never do by mistake:
-- * the live list must succeed completely (vmdr.k8s returns everything or an
--   error); if it fails, nothing is deleted;
-- * an empty live list while Git holds VMs, or orphans above gc.max_delete_fraction
--   of the VMs in Git, is refused unless -e force=true;
-- * every orphan is confirmed with its own GET: a 404 naming it, or present without
--   the DR label; any other answer (a 404 naming nothing included) aborts the whole run;
-- * mirroring is disabled first (never for an image that is primary on the DR
--   side: the storage driver refuses), then the files, their kustomization
--   entries and empty directories go in one commit.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local report = require "vmdr.report"
local repo = require "vmdr.repo"
local sync = require "vmdr.sync"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "gc")
dr.check_git(ctx)
dr.hooks(ctx)
local lay = dr.layout(ctx)
local force = ctx.config.force == true or (ctx.config.gc and ctx.config.gc.force == true)
local max_fraction = tonumber(ctx.config.gc and ctx.config.gc.max_delete_fraction) or 0.5
local only_ns = ctx.config.namespace

local src, cerr = dr.client(ctx, "source")
if not src then return nil, "source cluster: " .. tostring(cerr) end
local storage, serr = dr.storage(ctx)
if not storage then return nil, "storage: " .. tostring(serr) end

-- the live DR set; a failed (or, inside vmdr.k8s, partial) list ends the run here
local live, lerr = src:list("virtualmachines.kubevirt.io",
    { labelSelector = ctx.config.label_selector, namespace = only_ns })
if not live then
    return nil, "listing the live VMs failed, nothing deleted: " .. tostring(lerr)
end
local alive = {}
for _, vm in ipairs(live.items) do alive[vm.metadata.namespace .. "/" .. vm.metadata.name] = true end

local removed_rows = {}
local result, terr = repo.transaction(ctx, function(tx)
    removed_rows = {}
    local stored = sync.stored_vms(tx, lay, { namespace = only_ns })
    local candidates, broken = {}, {}
    for _, e in ipairs(stored) do
        if not alive[e.ns .. "/" .. e.name] then
            if e.err then broken[#broken + 1] = e else candidates[#candidates + 1] = e end
        end
    end
    for _, e in ipairs(broken) do
        log.error("not collected: the file is not what its name says", { file = e.path, reason = e.err })
    end
    if #candidates == 0 then return { removed = 0, stored = #stored, broken = #broken } end

    -- the brakes
    if #live.items == 0 and not force then
        return nil, dr.err("refused", "the live list is empty but Git holds %d VM(s): refusing to "
            .. "remove them all (an API or selector problem looks like this); -e force=true overrides",
            #stored)
    end
    if #candidates > max_fraction * #stored and not force then
        return nil, dr.err("refused", "%d of %d VM(s) would be removed, more than gc.max_delete_fraction "
            .. "(%.0f%%); -e force=true overrides", #candidates, #stored, max_fraction * 100)
    end

    -- confirm each orphan on its own
    local orphans = {}
    for _, e in ipairs(candidates) do
        local vm, err = src:get("virtualmachines.kubevirt.io", e.ns, e.name)
        if vm and dr.is_protected(ctx, vm) then
            log.info("still protected (appeared since the list): kept", { vm = e.ns .. "/" .. e.name })
        elseif vm or dr.confirmed_gone(err, e.name) then
            orphans[#orphans + 1] = e
        else
            return nil, dr.err(err.code or "failed", "confirming %s/%s: %s; nothing removed", e.ns, e.name,
                tostring(err))
        end
    end

    -- disks first: a failure keeps the VM in Git, so the next run retries
    local keep = {}
    local to_remove = {}
    -- a disk another VM still uses (a shared RWX claim) keeps its mirroring
    local in_use = #orphans > 0 and sync.images_in_use(storage, tx, lay, orphans) or {}
    for _, e in ipairs(orphans) do
        local refs = sync.images_to_disable(ctx, storage, tx, lay, e, in_use)
        local ok, why = true, nil
        if #refs > 0 then
            for _, r in ipairs(storage:disable(refs)) do
                if r.result == "failed" or r.result == "refused" then
                    ok, why = false, r.image .. ": " .. tostring(r.err)
                end
            end
        end
        if ok then
            to_remove[#to_remove + 1] = e
            removed_rows[#removed_rows + 1] = { e.ns, e.name, #refs }
        else
            keep[#keep + 1] = e
            log.error("mirroring not disabled: VM kept in Git", { vm = e.ns .. "/" .. e.name, reason = why })
        end
    end
    local stats = sync.remove(ctx, tx, lay, to_remove)
    tx:set_message(string.format("vmdr gc: remove %d VM(s)", #to_remove))
    return { removed = #to_remove, kept = #keep, stored = #stored, files = stats.removed,
        broken = #broken }
end)
if not result then dr.close(ctx); return nil, "gc: " .. tostring(terr) end

local v = result.value or {}
if report.machine(ctx) then
    report.emit({ json = true }, { workflow = "gc", removed = v.removed or 0, kept = v.kept or 0,
        commit = result.commit or false, dry_run = ctx.dry_run or false })
elseif #removed_rows > 0 then
    report.table({ "NAMESPACE", "VM", "IMAGES DISABLED" }, removed_rows)
else
    io.stdout:write("gc: nothing to remove\n")
end
dr.close(ctx)
if (v.kept or 0) > 0 then return nil, string.format("%d orphan(s) kept: mirroring not disabled", v.kept) end
-- a file gc cannot judge is left alone, but not quietly: a cron job sees exit 1
if (v.broken or 0) > 0 then
    return nil, string.format("%d VM file(s) left alone: they are not what their names say (see above)",
        v.broken)
end
return true
