-- reconcile: make the manifests repository and the disk mirroring match every
-- DR-enabled VM of the source cluster.
--
--   vmdr-run reconcile [-e namespace=NS] [--dry-run]
--
-- 1. List the labelled VMs, then all PVCs and PVs: three list calls whatever the
--    number of VMs, joined in memory. A list that fails stops the run.
-- 2. Enable mirroring for every disk (already enabled is fine; clones are flattened).
-- 3. In one repository transaction: create the layout if missing, write the files
--    whose cleaned bytes changed, regenerate the kustomizations touched; one commit,
--    one push (redone on the new remote state if another writer got there first).
-- A VM that cannot be exported completely (a claim missing or unbound, a hostile
-- name) is reported and skipped; the others are still synced. Exit 1 if any failed.
local ctx = ...
local dr = require "vmdr.dr"
local inventory = require "vmdr.inventory"
local report = require "vmdr.report"
local rendercache = require "vmdr.rendercache"
local repo = require "vmdr.repo"
local sync = require "vmdr.sync"
local config = require "vmdr.config"
local time = require "vmdr.time"

local log = ctx.log
local t0 = time.monotonic()
-- CPU seconds of this process, beside the wall clock: on a busy machine they tell
-- where the work is
local function cpu() return string.format("%.2f", os.clock()) end
local function elapsed() return string.format("%.2f", time.monotonic() - t0) end
-- A reconcile allocates in one long burst; collecting a little earlier than Lua's
-- default (pause 200) keeps 10,000 VMs under 300 MB for about 5% more time
-- (docs/BENCHMARKS.md).
collectgarbage("incremental", 170, 200)
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "reconcile")
dr.check_git(ctx)
dr.hooks(ctx)
local lay = dr.layout(ctx)
local only_ns = ctx.config.namespace

-- 1. the live state
local src, err = dr.client(ctx, "source")
if not src then return nil, "source cluster: " .. tostring(err) end
local vms, pvcs, pvs
-- Nearly everything the lists allocate stays alive (the decoded objects), so the
-- collector would only re-traverse a growing heap page after page: paused, the
-- listing takes about half the CPU (docs/BENCHMARKS.md).
collectgarbage("stop")
local what = "VirtualMachines"
vms, err = src:list("virtualmachines.kubevirt.io",
    { labelSelector = ctx.config.label_selector, namespace = only_ns })
if vms then
    what = "PersistentVolumeClaims"
    pvcs, err = src:list("persistentvolumeclaims", { namespace = only_ns })
end
if pvcs then
    what = "PersistentVolumes"
    pvs, err = src:list("persistentvolumes", {})
end
collectgarbage("restart")
if not pvs then return nil, "listing " .. what .. ": " .. tostring(err) end
local bundles = inventory.bundles(vms, pvcs, pvs)
log.info("listed the source cluster", { vms = #bundles, pvcs = #pvcs.items, pvs = #pvs.items,
    seconds = string.format("%.2f", time.monotonic() - t0) })
log.debug("listed", { cpu = cpu() })
-- The lists are no longer needed (the bundles hold what matters): let them go, and
-- let render release each VM's objects once its bytes exist, so the decoded objects
-- and the rendered bytes are not both whole in memory (the peak at 10,000 VMs).
vms, pvcs, pvs = nil, nil, nil
local nvms = #bundles

-- the disks, from the PVs, before render releases them
local storage
storage, err = dr.storage(ctx)
if not storage then return nil, "storage: " .. tostring(err) end
local _, by_vm, problems, unprotected = sync.images(storage, bundles)

-- unchanged VMs (same objects, same everything else, same files in Git) are not
-- cleaned and encoded again: see vmdr.rendercache
local cache = rendercache.open(ctx, { scope = only_ns })
local rendered = sync.render(ctx, lay, bundles, { release = true, cache = cache })
bundles = nil
log.debug("rendered", { vms = #rendered.vms, cached = cache.hits,
    seconds = elapsed(), cpu = cpu() })
for _, f in ipairs(rendered.failed) do
    log.error("VM not exported", { vm = f.ns .. "/" .. f.name, reason = f.err })
end

-- 2. mirroring for every disk of the VMs that will be written
local vols, seen = {}, {}
for _, v in ipairs(rendered.vms) do
    for _, vol in ipairs(by_vm[v.ns .. "/" .. v.name] or {}) do
        if not seen[vol.spec] then seen[vol.spec] = true; vols[#vols + 1] = vol end
    end
end
for _, p in ipairs(problems) do
    log.error("disk not protected", { vm = p.vm, reason = p.err })
end
local exported = {}
for _, v in ipairs(rendered.vms) do exported[v.ns .. "/" .. v.name] = true end
sync.warn_unprotected(ctx, unprotected, exported)
local images = { enabled = 0, already = 0, failed = 0 }
if #vols > 0 then
    for _, e in ipairs(storage:enable(vols)) do
        if e.result == "failed" or e.result == "refused" then
            images.failed = images.failed + 1
            log.error("enabling mirroring failed", { image = e.image, err = tostring(e.err) })
        elseif e.result == "already" then
            images.already = images.already + 1
        else
            images.enabled = images.enabled + 1
        end
    end
end

-- 3. the repository
local result
log.debug("storage done", { seconds = elapsed(), cpu = cpu() })
result, err = repo.transaction(ctx, function(tx)
    log.debug("repository ready", { seconds = elapsed(), cpu = cpu() })
    local stats, werr = sync.write(ctx, tx, lay, rendered)
    log.debug("written", { seconds = elapsed(), cpu = cpu() })
    if not stats then return nil, werr end
    tx:set_message(string.format("vmdr reconcile: %d VM(s) changed\n\n%s", stats.written,
        table.concat(stats.changed_vms, "\n")))
    return stats
end)
if not result then dr.close(ctx); return nil, "manifests repository: " .. tostring(err) end
local stats = result.value
-- only now: what the cache records is in the pushed tree (or was already there)
if not ctx.dry_run then cache:save(stats.cache) end
stats.cache = nil

local failed = #rendered.failed + #problems + images.failed
if report.machine(ctx) then
    report.emit({ json = true }, {
        workflow = "reconcile", vms = nvms, written = stats.written, unchanged = stats.unchanged,
        failed = #rendered.failed, images = images, commit = result.commit or false,
        dry_run = ctx.dry_run or false,
    })
else
    report.table({ "VMs", "written", "unchanged", "failed", "images enabled", "already", "image errors", "commit" },
        { { nvms, stats.written, stats.unchanged, #rendered.failed + #problems, images.enabled,
            images.already, images.failed, result.commit or (ctx.dry_run and "(dry run)" or "none") } })
end
dr.close(ctx)
if failed > 0 then return nil, string.format("%d VM(s) or disk(s) failed; see the log above", failed) end
return true
