-- failover: make the replicated disks of a group of VMs writable on the DR site.
--
--   vmdr-run failover -e vm_selector=app-tier=database [-e force=true] [--dry-run]
--   vmdr-run failover -e all=true
--
-- Works from Git alone (the source site may be gone): the VMs in the manifests
-- repository whose labels match the selector -> their PVCs -> PVs -> RBD images,
-- promoted on the DR storage, many in parallel. The driver tries a graceful
-- promote first and forces only when the peer cannot be reached (or -e force=true).
-- Already primary counts as done, so a re-run finishes what a failed run left.
-- Git is never changed: powering the group on is the separate, explicit
-- `vmdr-run activate` step this prints at the end. Exit 1 if any image failed.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local report = require "vmdr.report"
local selector = require "vmdr.selector"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "failover")
dr.check_git(ctx)
dr.hooks(ctx)
local force = ctx.config.force == true

-- the group, from Git
local g, gerr = dr.group(ctx)
if not g then return nil, "failover: " .. gerr end
if g.stale then log.warn("failing over from the clone's last fetched state: the Git remote is unreachable") end
local sel, sel_text, group, refs, by_vm, problems = g.sel, g.text, g.bundles, g.vols, g.by_vm, g.problems
for _, p in ipairs(problems) do log.error("disk cannot be failed over", { vm = p.vm, reason = p.err }) end
local storage = dr.storage(ctx)

local results = {}
if #refs > 0 then
    for _, e in ipairs(storage:promote(refs, { site = "dr", force = force })) do results[e.image] = e end
end

-- the report: per VM and per image
local rows, failed, done = {}, 0, 0
for _, b in ipairs(group) do
    local key = b.ns .. "/" .. b.name
    for _, p in ipairs(problems) do
        if p.vm == key then rows[#rows + 1] = { b.ns, b.name, "-", "FAILED", p.err } end
    end
    for _, vol in ipairs(by_vm[key]) do
        local e = results[vol.spec]
        local state
        if not e or e.result == "failed" or e.result == "refused" then
            state = "FAILED"
        elseif e.result == "already" then
            state = "already primary"
        elseif e.result == "dry_run" then
            state = "would promote"
        elseif e.forced then
            state = "promoted (forced)"
        else
            state = "promoted"
        end
        if state == "FAILED" then failed = failed + 1 else done = done + 1 end
        rows[#rows + 1] = { b.ns, b.name, vol.spec, state,
            e and e.err and tostring(e.err) or (e and e.seconds and string.format("%.2fs", e.seconds)) or "" }
    end
end
for _, p in ipairs(problems) do failed = failed + 1 end
-- a VM file that cannot be read may belong to the group: the run is not complete
for _, e in ipairs(g.unreadable) do
    rows[#rows + 1] = { e.ns, e.name, "-", "FAILED", "unreadable VM file " .. e.path }
    failed = failed + 1
end

if report.machine(ctx) then
    local out = {}
    for _, r in ipairs(rows) do out[#out + 1] = { namespace = r[1], vm = r[2], image = r[3], state = r[4], detail = r[5] } end
    report.emit({ json = true }, { workflow = "failover", selector = sel_text, images = out, failed = failed })
else
    report.table({ "NAMESPACE", "VM", "IMAGE", "RESULT", "DETAIL" }, rows)
    io.stdout:write("\n")
    if failed == 0 then
        io.stdout:write(string.format("%d image(s) of %d VM(s) are writable on the DR site.\n", done, #group))
        io.stdout:write("Next step: power the group on through the control panel:\n")
        io.stdout:write(string.format("  vmdr-run activate -e vm_selector=%s\n",
            sel and selector.canonical(sel) or "<selector>"))
    else
        io.stdout:write(string.format("%d image(s) or VM file(s) failed: fix and run the same command again "
            .. "(promoted images are left as they are).\n", failed))
    end
end
dr.close(ctx)
if failed > 0 then
    return nil, string.format("%d image(s) not promoted%s", failed - #g.unreadable,
        #g.unreadable > 0 and string.format(", %d VM file(s) unreadable", #g.unreadable) or "")
end
return true
