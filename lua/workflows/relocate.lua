-- relocate: a planned move of a group to the DR site, without data loss.
--
--   vmdr-run relocate -e vm_selector=app-tier=database [--dry-run]
--
-- For a drill or a planned site move while both sites are up (DOMAIN.md §3.3):
-- 1. power the group's VMs off on the source cluster and wait until they are down
--    (nothing may write to the disks any more);
-- 2. demote their images on the source site (each demotion takes a last mirror
--    snapshot);
-- 3. wait until the DR site holds that snapshot completely;
-- 4. promote on the DR site WITHOUT force: no split-brain, nothing to resync later.
-- Then `vmdr-run activate` powers the group on at the DR site. Every step is
-- idempotent: a re-run after a failure picks up where it stopped.
-- Before step 1, every image is checked on both sites (present, mirroring enabled,
-- sites reachable): if one cannot be moved, the command names each such image with
-- its VM and reason and does nothing, so a predictable failure never leaves the group
-- stopped and half demoted.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local power = require "vmdr.power"
local report = require "vmdr.report"
local selector = require "vmdr.selector"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "relocate")
dr.check_git(ctx)
dr.hooks(ctx)
local rcfg = ctx.config.relocate or {}
local stop_timeout = tonumber(rcfg.stop_timeout) or 300
local sync_timeout = tonumber(rcfg.sync_timeout) or 300

local g, gerr = dr.group(ctx)
if not g then return nil, "relocate: " .. gerr end
if #g.problems > 0 then
    for _, p in ipairs(g.problems) do log.error("disk cannot be relocated", { vm = p.vm, reason = p.err }) end
    return nil, "relocate: some disks of the group cannot be resolved; nothing done"
end
local storage = dr.storage(ctx)
local rows = {}
local function step(name, detail) rows[#rows + 1] = { #rows + 1, name, detail } end
local vms_of = {}
for key, vols in pairs(g.by_vm) do
    for _, v in ipairs(vols) do
        vms_of[v.spec] = vms_of[v.spec] and (vms_of[v.spec] .. "," .. key) or key
    end
end
-- names every failed entry of a storage report (image, VM, reason); nil when none failed
local function failures(rep, what)
    local list = {}
    for _, e in ipairs(rep) do
        if dr.failed(e) then
            log.error(what, { image = e.image, vm = vms_of[e.image], reason = tostring(e.err) })
            list[#list + 1] = string.format("%s (VM %s): %s", e.image, tostring(vms_of[e.image]),
                tostring(e.err))
        end
    end
    if #list == 0 then return nil end
    return string.format("%d image(s): %s", #list, table.concat(list, "; "))
end

-- 0. every image present and mirrored on both sites (drivers that report no per-site
--    state, such as exec, are not judged here)
do
    local bad = {}
    for _, e in ipairs(storage:status(g.vols)) do
        local why = {}
        for _, site in ipairs { "source", "dr" } do
            local st = e[site]
            if type(st) == "table" and st.state ~= "enabled" then
                why[#why + 1] = site .. " site: " .. (st.err and tostring(st.err)
                    or ("mirroring " .. tostring(st.state)))
            end
        end
        if #why > 0 then
            bad[#bad + 1] = { image = e.image, result = "failed", err = table.concat(why, ", ") }
        end
    end
    local msg = failures(bad, "image cannot be relocated")
    if msg then return nil, "relocate: nothing done, " .. msg end
end
step("images checked on both sites", string.format("%d image(s)", #g.vols))

-- 1. power off on the source
local src, cerr = dr.client(ctx, "source")
if not src then return nil, "source cluster: " .. tostring(cerr) end
if ctx.dry_run then
    for _, b in ipairs(g.bundles) do io.stdout:write("would stop ", b.ns, "/", b.name, " on the source\n") end
else
    local patched, perr = power.stop(src, g.bundles)
    if not patched then return nil, perr end
    local ok, werr = power.wait_stopped(src, g.bundles, stop_timeout)
    if not ok then return nil, "waiting for the source VMs to stop: " .. werr end
end
step("source VMs stopped", string.format("%d VM(s)", #g.bundles))

-- 2. demote on the source
local demoted = storage:demote(g.vols, { site = "source" })
local dmsg = failures(demoted, "not demoted")
if dmsg then
    return nil, "relocate: demoting on the source failed for " .. dmsg .. "; run relocate again"
end
local snap_ids, wait_vols = {}, {}
for i, e in ipairs(demoted) do
    if e.snap_id then
        wait_vols[#wait_vols + 1] = g.vols[i]
        snap_ids[#snap_ids + 1] = e.snap_id
    end
end
step("demoted on the source", report.counts(demoted.summary))

-- 3. wait for the demotion snapshots on the DR site
if #wait_vols > 0 and not ctx.dry_run then
    local waited = storage:wait_synced(wait_vols, snap_ids, { site = "dr", timeout = sync_timeout })
    local wmsg = failures(waited, "last snapshot not on the DR site")
    if wmsg then
        return nil, "relocate: waiting on the DR site failed for " .. wmsg .. "; run relocate again"
    end
end
step("last snapshot on the DR site", string.format("%d image(s)", #wait_vols))

-- 4. promote on the DR site, never forced
local promoted = storage:promote(g.vols, { site = "dr", no_force = true })
local failed = 0
for _, e in ipairs(promoted) do
    if dr.failed(e) or e.forced then
        failed = failed + 1
        log.error("not promoted", { image = e.image, err = tostring(e.err) })
    end
end
step("promoted on the DR site", report.counts(promoted.summary))

report.table({ "STEP", "WHAT", "RESULT" }, rows)
dr.close(ctx)
if failed > 0 then return nil, string.format("%d image(s) not promoted; run relocate again", failed) end
io.stdout:write(string.format("\nThe group %s is on the DR site with no data lost. Next step:\n"
    .. "  vmdr-run activate -e vm_selector=%s\n", g.text, g.sel and selector.canonical(g.sel) or "<selector>"))
return true
