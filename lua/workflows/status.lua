-- status: replication health and the measured RPO of every protected VM.
--
--   vmdr-run status [-e vm_selector=SEL] [-e status.max_rpo=SECONDS]
--                   [-e format=table|json|prometheus]
--
-- From Git alone (repo.snapshot: the source cluster's API is not needed): each VM ->
-- its claims -> volumes -> images, then the storage driver's status: the mirroring
-- state on both sites, which site is primary, and the age of the newest mirror
-- snapshot that completely reached the non-primary side (the RPO now).
-- A VM is flagged when one of its images has an RPO above status.max_rpo, has never
-- completed a mirror snapshot, or is not healthily mirrored (split brain, no primary,
-- disabled on a site). Exit 1 if any VM is flagged.
-- format=prometheus prints the text exposition format for a node-exporter textfile
-- collector: gauges vmdr_rpo_seconds and vmdr_mirror_healthy per image (labels
-- namespace, vm, image), vmdr_vm_flagged per VM, vmdr_status_max_rpo_seconds.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local json = require "vmdr.json"
local report = require "vmdr.report"
local repo = require "vmdr.repo"
local selector = require "vmdr.selector"
local sync = require "vmdr.sync"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "status")
dr.check_git(ctx)
dr.hooks(ctx)
local lay = dr.layout(ctx)
local max_rpo = tonumber(ctx.config.status and ctx.config.status.max_rpo) or 3600
local format = ctx.config.format or (report.machine(ctx) and "json") or "table"
local sel, sel_text
if ctx.config.vm_selector ~= nil then sel, sel_text = dr.vm_selector(ctx) end

-- the VMs, from Git
local snap, serr = repo.snapshot(ctx)
if not snap then return nil, "reading the manifests repository: " .. tostring(serr) end
if snap.stale then log.warn("the Git server is unreachable: status of the last fetched state") end
local group, unreadable = {}, 0
for _, e in ipairs(sync.stored_vms(snap, lay)) do
    if e.err then
        unreadable = unreadable + 1
        log.error("unreadable VM file skipped", { file = e.path, reason = e.err })
    elseif not sel or selector.match(sel, dr.labels(e.vm)) then
        group[#group + 1] = sync.stored_bundle(snap, lay, e)
    end
end
snap:close()
if sel and #group == 0 then
    return nil, string.format("no VM in Git matches %s (check the selector)", sel_text)
end

-- the images and their state on both sites
local storage, derr = dr.storage(ctx)
if not storage then return nil, "storage: " .. tostring(derr) end
local vols, by_vm, problems = sync.images(storage, group)
local problem_of = {}
for _, p in ipairs(problems) do problem_of[p.vm] = p.err end
local st_by_image = {}
if #vols > 0 then
    for _, e in ipairs(storage:status(vols)) do st_by_image[e.image] = e end
end

local function site_state(s)
    if type(s) ~= "table" then return "unknown" end
    local l = s["local"]
    if type(l) == "table" and type(l.status) == "string" and l.status ~= "" then
        return s.state .. " (" .. l.status .. ")"
    end
    return tostring(s.state)
end

--- Healthy: mirroring enabled on both sites, exactly one primary, no split brain, the
--- non-primary's daemon up (when the site reports it), and a completed mirror snapshot.
local function healthy(e)
    if not e or e.result == "failed" or e.split_brain then return false end
    if not (e.source and e.dr) or e.source.state ~= "enabled" or e.dr.state ~= "enabled" then return false end
    if e.primary_site ~= "source" and e.primary_site ~= "dr" then return false end
    local copy = e.primary_site == "source" and e.dr or e.source
    local l = copy["local"]
    if type(l) == "table" and l.up == false then return false end
    return e.last_sync_age ~= nil
end

local vms, flagged = {}, 0
for _, b in ipairs(group) do
    local key = b.ns .. "/" .. b.name
    local v = { namespace = b.ns, name = b.name, images = {}, flagged = false,
        problem = problem_of[key] or (#b.problems > 0 and table.concat(b.problems, "; ")) or nil }
    for _, vol in ipairs(by_vm[key] or {}) do
        local e = st_by_image[vol.spec]
        local img = {
            image = vol.spec, pv = vol.pv, primary_site = e and e.primary_site or nil,
            source_state = e and site_state(e.source) or "unknown",
            dr_state = e and site_state(e.dr) or "unknown",
            rpo_seconds = e and e.last_sync_age or nil,
            last_sync_time = e and e.last_sync_time or nil,
            healthy = healthy(e),
            err = e and e.err and tostring(e.err) or nil,
        }
        img.over = img.rpo_seconds == nil or img.rpo_seconds > max_rpo or not img.healthy
        if img.over then v.flagged = true end
        v.images[#v.images + 1] = img
    end
    if v.problem then v.flagged = true end
    if v.flagged then flagged = flagged + 1 end
    vms[#vms + 1] = v
end

-- output
if format == "json" then
    local doc = { workflow = "status", max_rpo = max_rpo, flagged = flagged, vms = setmetatable({}, json.array_mt) }
    for _, v in ipairs(vms) do
        local imgs = setmetatable({}, json.array_mt)
        for _, i in ipairs(v.images) do
            imgs[#imgs + 1] = { image = i.image, pv = i.pv, primary_site = i.primary_site or json.null,
                source = i.source_state, dr = i.dr_state, rpo_seconds = i.rpo_seconds or json.null,
                last_sync_time = i.last_sync_time or json.null, healthy = i.healthy, flagged = i.over,
                error = i.err }
        end
        doc.vms[#doc.vms + 1] = { namespace = v.namespace, name = v.name, flagged = v.flagged,
            problem = v.problem, images = imgs }
    end
    io.stdout:write(assert(json.encode(doc)), "\n")
elseif format == "prometheus" then
    local function esc(s)
        return (tostring(s):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
    end
    local function labels(v, i)
        local s = string.format('namespace="%s",vm="%s"', esc(v.namespace), esc(v.name))
        if i then s = s .. string.format(',image="%s"', esc(i.image)) end
        return s
    end
    local out = {}
    local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
    add("# HELP vmdr_rpo_seconds Age of the newest mirror snapshot that reached the non-primary "
        .. "site (NaN: none yet).")
    add("# TYPE vmdr_rpo_seconds gauge")
    for _, v in ipairs(vms) do
        for _, i in ipairs(v.images) do
            add("vmdr_rpo_seconds{%s} %s", labels(v, i), i.rpo_seconds and string.format("%d", i.rpo_seconds) or "NaN")
        end
    end
    add("# HELP vmdr_mirror_healthy 1 when the image is mirrored both ways with one primary and a "
        .. "completed snapshot.")
    add("# TYPE vmdr_mirror_healthy gauge")
    for _, v in ipairs(vms) do
        for _, i in ipairs(v.images) do add("vmdr_mirror_healthy{%s} %d", labels(v, i), i.healthy and 1 or 0) end
    end
    add("# HELP vmdr_mirror_primary 1 for the site that holds the primary image.")
    add("# TYPE vmdr_mirror_primary gauge")
    for _, v in ipairs(vms) do
        for _, i in ipairs(v.images) do
            for _, site in ipairs { "source", "dr" } do
                add('vmdr_mirror_primary{%s,site="%s"} %d', labels(v, i), site,
                    (i.primary_site == site or i.primary_site == "both") and 1 or 0)
            end
        end
    end
    add("# HELP vmdr_vm_flagged 1 when the VM's RPO exceeds status.max_rpo or its mirroring is unhealthy.")
    add("# TYPE vmdr_vm_flagged gauge")
    for _, v in ipairs(vms) do add("vmdr_vm_flagged{%s} %d", labels(v), v.flagged and 1 or 0) end
    add("# HELP vmdr_status_max_rpo_seconds The RPO objective status checks against.")
    add("# TYPE vmdr_status_max_rpo_seconds gauge")
    add("vmdr_status_max_rpo_seconds %s", string.format("%g", max_rpo))
    io.stdout:write(table.concat(out, "\n"), "\n")
else
    local rows = {}
    local function age(s)
        if not s then return "never" end
        if s < 120 then return string.format("%ds", s) end
        if s < 7200 then return string.format("%dm%02ds", s // 60, s % 60) end
        return string.format("%dh%02dm", s // 3600, (s % 3600) // 60)
    end
    for _, v in ipairs(vms) do
        if #v.images == 0 then
            rows[#rows + 1] = { v.namespace, v.name, "-", "-", "-", "-", "-", "-",
                v.flagged and ("FLAGGED: " .. tostring(v.problem)) or "no replicated disk" }
        end
        for _, i in ipairs(v.images) do
            rows[#rows + 1] = { v.namespace, v.name, i.image, i.primary_site or "none", i.source_state,
                i.dr_state, age(i.rpo_seconds), i.healthy and "yes" or "no",
                i.over and "FLAGGED" or "ok" }
        end
    end
    report.table({ "NAMESPACE", "VM", "IMAGE", "PRIMARY", "SOURCE", "DR", "RPO", "HEALTHY", "STATUS" }, rows)
    io.stdout:write(string.format("%d VM(s), %d flagged (max RPO %gs)\n", #vms, flagged, max_rpo))
end
dr.close(ctx)
local bad = {}
if flagged > 0 then
    bad[#bad + 1] = string.format("%d VM(s) flagged: RPO above status.max_rpo (%gs) or unhealthy "
        .. "mirroring", flagged, max_rpo)
end
-- a VM file that cannot be read is a VM whose health nobody can vouch for
if unreadable > 0 then
    bad[#bad + 1] = string.format("%d VM file(s) unreadable (see above): their status is unknown",
        unreadable)
end
if #bad > 0 then return nil, table.concat(bad, "; ") end
return true
