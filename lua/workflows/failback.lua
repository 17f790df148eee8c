-- failback: bring a failed-over group back to the source site, in the safe order.
--
--   vmdr-run failback -e vm_selector=app-tier=database [--dry-run]
--
-- After a failover the DR copies are primary (after a forced failover the old
-- primary is too: split-brain). Going back must lose nothing written at the DR
-- site (DOMAIN.md §3.3, ceph-csi's sequence):
-- 0. refuse while the group is powered on at the DR site: its power-on block must
--    be gone from the control panel (vmdr-run deactivate) and, when the DR API is
--    reachable, its VMs stopped;
-- 1. on the source site, demote the old primaries and flag the split-brained ones
--    for resync, so rbd-mirror copies the DR data back;
-- 2. take a mirror snapshot at the DR site and wait until the source holds it;
-- 3. demote the DR copies and wait until the source holds the demotion snapshot;
-- 4. promote on the source WITHOUT force.
-- Then start the VMs at the source site. Each step is idempotent.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local kustomize = require "vmdr.kustomize"
local power = require "vmdr.power"
local repo = require "vmdr.repo"
local report = require "vmdr.report"
local selector = require "vmdr.selector"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "failback")
dr.check_git(ctx)
dr.hooks(ctx)
local fcfg = ctx.config.failback or {}
local sync_timeout = tonumber(fcfg.sync_timeout) or 600
local force = ctx.config.force == true

local g, gerr = dr.group(ctx)
if not g then return nil, "failback: " .. gerr end
if not g.sel then return nil, "failback acts on a group: give -e vm_selector=..." end
if #g.problems > 0 then
    for _, p in ipairs(g.problems) do log.error("disk cannot be failed back", { vm = p.vm, reason = p.err }) end
    return nil, "failback: some disks of the group cannot be resolved; nothing done"
end
local canon = selector.canonical(g.sel)
local rows = {}
local function step(name, detail) rows[#rows + 1] = { #rows + 1, name, detail } end

-- 0. the group must be down at the DR site
do
    local snap, serr = repo.snapshot(ctx)
    if not snap then return nil, "reading the control panel: " .. tostring(serr) end
    local panel_path = dr.layout(ctx):component_kustomization()
    local panel = snap:read(panel_path)
    snap:close()
    local actives, perr = {}, nil
    if panel then actives, perr = kustomize.active_selectors(panel) end
    if not actives then
        -- a panel that cannot be read says nothing about the group: never "not active"
        if not force then
            return nil, string.format("cannot tell whether the group is powered on at the DR site: "
                .. "%s: %s; -e force=true proceeds without that check", panel_path, tostring(perr))
        end
        log.warn("proceeding without reading the control panel", { file = panel_path, reason = tostring(perr) })
        actives = {}
    end
    for _, active in ipairs(actives) do
        if active == canon then
            return nil, string.format("the group %s is still powered on at the DR site: run "
                .. "'vmdr-run deactivate -e vm_selector=%s' and let Argo CD stop it first", canon, canon)
        end
    end
    local dclient, cerr = dr.client(ctx, "dr")
    local up, rerr
    if dclient then up, rerr = power.running(dclient, g.bundles) else rerr = tostring(cerr) end
    if up and #up > 0 then
        return nil, "these VMs still run at the DR site: " .. table.concat(up, ", ")
    elseif not up then
        if not force then
            return nil, "cannot confirm the group is stopped at the DR site (" .. tostring(rerr)
                .. "); -e force=true proceeds without that check"
        end
        log.warn("proceeding without checking the DR VMs", { reason = rerr })
    end
    step("group stopped at the DR site", up and string.format("%d VM(s) checked", #g.bundles) or "not checked (force)")
end

local storage = dr.storage(ctx)

-- 1. demote the old primaries at the source; resync the split-brained ones
local status = storage:status(g.vols)
local resync = {}
for i, e in ipairs(status) do
    if e.result == "failed" then return nil, "status of " .. e.image .. ": " .. tostring(e.err) end
    if e.split_brain then resync[#resync + 1] = g.vols[i] end
end
local demoted = storage:demote(g.vols, { site = "source" })
for _, e in ipairs(demoted) do
    if dr.failed(e) then return nil, "demoting " .. e.image .. " at the source: " .. tostring(e.err) end
end
if #resync > 0 then
    for _, e in ipairs(storage:resync(resync, { site = "source" })) do
        if dr.failed(e) then return nil, "resync of " .. e.image .. ": " .. tostring(e.err) end
    end
end
step("old primaries demoted at the source", string.format("%s; %d flagged for resync",
    report.counts(demoted.summary), #resync))

-- 2. the source catches up with a fresh DR snapshot
local function wait_source(rep, what)
    local vols, ids = {}, {}
    for i, e in ipairs(rep) do
        if e.snap_id then vols[#vols + 1] = g.vols[i]; ids[#ids + 1] = e.snap_id end
    end
    if ctx.dry_run or #vols == 0 then return true end
    for _, e in ipairs(storage:wait_synced(vols, ids, { site = "source", timeout = sync_timeout })) do
        if dr.failed(e) then return nil, what .. ": " .. e.image .. ": " .. tostring(e.err) end
    end
    return true
end
local snaps = storage:snapshot(g.vols, { site = "dr" })
for _, e in ipairs(snaps) do
    if dr.failed(e) then return nil, "snapshot of " .. e.image .. " at the DR site: " .. tostring(e.err) end
end
local ok, werr = wait_source(snaps, "waiting for the source to catch up")
if not ok then return nil, werr end
step("source in sync with the DR site", string.format("%d image(s)", #g.vols))

-- 3. demote at the DR site; the source takes the demotion snapshot
local ddem = storage:demote(g.vols, { site = "dr" })
for _, e in ipairs(ddem) do
    if dr.failed(e) then return nil, "demoting " .. e.image .. " at the DR site: " .. tostring(e.err) end
end
ok, werr = wait_source(ddem, "waiting for the demotion snapshot at the source")
if not ok then return nil, werr end
step("demoted at the DR site", report.counts(ddem.summary))

-- 4. promote at the source, never forced
local promoted = storage:promote(g.vols, { site = "source", no_force = true })
local failed = 0
for _, e in ipairs(promoted) do
    if dr.failed(e) then
        failed = failed + 1
        log.error("not promoted at the source", { image = e.image, err = tostring(e.err) })
    end
end
step("promoted at the source", report.counts(promoted.summary))

report.table({ "STEP", "WHAT", "RESULT" }, rows)
dr.close(ctx)
if failed > 0 then return nil, string.format("%d image(s) not promoted; run failback again", failed) end
io.stdout:write(string.format("\nThe group %s is primary at the source site again; mirroring runs "
    .. "source -> DR.\nStart its VMs at the source site.\n", canon))
return true
