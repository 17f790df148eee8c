-- monitor: keep the DR copy in step with the source cluster in real time.
--
--   vmdr-run monitor [-e monitor.debounce=10] [-e monitor.resync_interval=3600]
--
-- 1. Leader election: a coordination.k8s.io/v1 Lease (monitor.lease_name in
--    monitor.lease_namespace) on the source cluster. Several monitors may run; only
--    the holder acts, the others retry every few seconds and take over when the
--    holder's Lease expires (monitor.lease_duration) or is handed over.
-- 2. The holder LISTs the DR-labelled VMs and converges the repository on that list
--    (a full reconcile, with gc's brakes for removals), then WATCHes from the list's
--    resourceVersion (vmdr.k8s: bookmarks, reconnects; a 410 Gone re-lists and
--    converges again).
-- 3. Each event marks its VM; a VM with no event for monitor.debounce seconds has
--    settled. Every VM that settled together is synced in ONE transaction
--    (vmdr.sync.export_vms: read fresh; exported, or confirmed gone with its own GET
--    and removed as gc would). A VM that could not be synced is retried later.
-- 4. Every monitor.resync_interval a fresh LIST is converged as a safety net (it also
--    catches changes no VM event reports, such as a PVC resize).
-- 5. SIGTERM/SIGINT: the batch in flight is finished (interrupts are held for it), the
--    Lease is released so another monitor takes over at once, and the exit code is 0.
-- Every commit names its holder ("Monitor-Holder: host/pid") so the history shows
-- which monitor wrote what, and that two never wrote at the same time.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local lease = require "vmdr.lease"
local mem = require "vmdr.mem"
local repo = require "vmdr.repo"
local signal = require "vmdr.signal"
local sync = require "vmdr.sync"
local time = require "vmdr.time"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, "monitor")
dr.check_git(ctx)
local mc = ctx.config.monitor or {}
local debounce <const> = tonumber(mc.debounce) or 10
local resync_interval <const> = tonumber(mc.resync_interval) or 3600
local force <const> = ctx.config.force == true or (ctx.config.gc and ctx.config.gc.force == true)
local max_fraction <const> = tonumber(ctx.config.gc and ctx.config.gc.max_delete_fraction) or 0.5
local VM <const> = "virtualmachines.kubevirt.io"

-- A process that lives for weeks keeps the RSS of what it uses, not of its peaks: glibc's
-- malloc thresholds fixed (its default keeps big freed buffers' pages after the first), no
-- transparent huge pages (khugepaged folds the Lua pool's given-back chunks into resident
-- 2 MiB pages again), and libgit2's pack maps bounded (by default it maps whole packs and
-- keeps them). See docs/bench/soak.md.
mem.long_running()
require("vmdr.git").map_limits { window = 512 * 1024, mapped = 2 * 1024 * 1024 }

dr.hooks(ctx)
local lay = dr.layout(ctx)
local src, cerr = dr.client(ctx, "source")
if not src then return nil, "source cluster: " .. tostring(cerr) end
local storage, serr = dr.storage(ctx)
if not storage then return nil, "storage: " .. tostring(serr) end
-- The watch gets a client (a connection pool) of its own, so the long-lived stream and the
-- batches' and the Lease's requests never wait on one another.
local k8s = require "vmdr.k8s"
local wsrc, werr0 = k8s.client(dr.client_opts(ctx, "source"))
if not wsrc then return nil, "source cluster: " .. tostring(werr0) end

local el = lease.new(src, {
    name = mc.lease_name or "vmdr-monitor",
    namespace = mc.lease_namespace or src.namespace or "default",
    identity = mc.identity,
    duration = tonumber(mc.lease_duration) or 15,
})
local me = el.identity

local function key_of(obj)
    local md = type(obj) == "table" and obj.metadata or {}
    if type(md.namespace) ~= "string" or type(md.name) ~= "string" then return nil end
    return md.namespace .. "/" .. md.name
end

local function message(kind)
    return function(s)
        local lines = {}
        for _, k in ipairs(s.written) do lines[#lines + 1] = k end
        for _, k in ipairs(s.removed) do lines[#lines + 1] = "removed " .. k end
        return string.format("vmdr monitor %s: %d VM(s) changed, %d removed\n\n%s\n\nMonitor-Holder: %s",
            kind, #s.written, #s.removed, table.concat(lines, "\n"), me)
    end
end

-- VMs waiting for their quiet period: key -> monotonic time they settle at
local pending, npending = {}, 0
local function mark(key, due)
    if not pending[key] then npending = npending + 1 end
    if not pending[key] or pending[key] < due then pending[key] = due end
end

--- Syncs keys in one transaction; what could not be synced comes back after a pause.
--- Runs with interrupts held: a SIGTERM lets it finish.
local function sync_batch(keys, kind, live)
    if not el:leading() then
        log.warn("lease not renewed in time: batch left to the next holder", { vms = #keys })
        return false
    end
    local t0 = time.monotonic()
    local r, err = sync.export_vms(ctx, src, keys, { live = live, message = message(kind),
        -- no renewal ran during the batch: renew now, and commit only if still the holder
        may_commit = function()
            -- renewed moments ago (the usual short batch): nobody can have taken over
            if el.renewed_at and time.monotonic() - el.renewed_at < el.retry_period then return true end
            local held, lerr = el:try()
            if held or el:leading() then return true end
            return false, dr.err("lost_lease", "the Lease was lost during the batch%s",
                lerr and (": " .. tostring(lerr)) or "")
        end })
    local again = time.monotonic() + math.max(debounce, 1)
    if not r then
        log.error("batch not synced, will retry", { vms = #keys, err = tostring(err) })
        for _, k in ipairs(keys) do mark(k, again) end
        return false
    end
    for _, f in ipairs(r.failed) do
        log.error("VM not synced", { vm = f.key, reason = f.err, retry = f.retry or false })
        if f.retry then mark(f.key, again) end
    end
    log.info("batch synced", { kind = kind, vms = #keys, written = #r.written, removed = #r.removed,
        failed = #r.failed, commit = r.commit or nil,
        seconds = string.format("%.3f", time.monotonic() - t0) })
    return true
end

--- Converges the repository on a full list of the live DR set: every live VM exported,
--- every VM in Git that is not in the list confirmed (its own GET) and removed, under
--- gc's brakes (an empty list, or too large a share, removes nothing unless forced).
local function converge(list, kind)
    local snap, serr2 = repo.snapshot(ctx)
    if not snap then
        log.error("cannot read the repository, convergence postponed", { err = tostring(serr2) })
        return false
    end
    local stored = sync.stored_vms(snap, lay)
    snap:close()
    local live, keys = {}, {}
    for _, vm in ipairs(list.items) do
        local k = key_of(vm)
        if k then live[k] = true; keys[#keys + 1] = k end
    end
    local orphans, nstored = {}, 0
    for _, e in ipairs(stored) do
        nstored = nstored + 1
        local k = e.ns .. "/" .. e.name
        if not live[k] and not e.err then orphans[#orphans + 1] = k end
    end
    if #orphans > 0 and not force then
        if #list.items == 0 then
            log.error("the live list is empty but Git holds VMs: nothing removed (gc.force overrides)",
                { stored = nstored })
            orphans = {}
        elseif #orphans > max_fraction * nstored then
            log.error("too many VMs would be removed: nothing removed (gc.max_delete_fraction)",
                { orphans = #orphans, stored = nstored })
            orphans = {}
        end
    end
    for _, k in ipairs(orphans) do keys[#keys + 1] = k end
    -- events queued before this list are covered by it
    pending, npending = {}, 0
    log.info("converging on the live list", { kind = kind, live = #list.items, stored = nstored,
        orphans = #orphans })
    return sync_batch(keys, kind, list.items)
end

-- Each batch's garbage is collected, but the allocators keep the freed pages until they are
-- given back (in a soak, a malloc_trim of the running monitor gave back 1.5 MB of them).
-- At most every monitor.trim_interval (5) seconds after a batch, a full collection and a
-- trim (about a millisecond on the monitor's few-MB heap).
local TRIM_EVERY <const> = tonumber(mc.trim_interval) or 5
local last_trim = time.monotonic()
local function settle_memory()
    local now = time.monotonic()
    if now - last_trim < TRIM_EVERY then return end
    collectgarbage("collect")
    mem.trim()
    last_trim = time.monotonic()
    if not log.enabled("debug") then return end
    local st = mem.stats()
    log.debug("memory given back", { seconds = string.format("%.4f", last_trim - now),
        rss = mem.rss(), lua = st.lua, pool_chunks = st.pool and st.pool.chunks_used,
        pool_blocks = st.pool and st.pool.blocks, malloc = st.malloc and st.malloc.in_use })
end

--- The settled VMs, if any, synced as one batch.
local function flush_settled(now)
    if npending == 0 then return end
    local due = {}
    for k, t in pairs(pending) do if t <= now then due[#due + 1] = k end end
    if #due == 0 then return end
    for _, k in ipairs(due) do pending[k] = nil end
    npending = npending - #due
    signal.hold(sync_batch, due, "events")
    settle_memory()
end

--- One term as the holder: watch, debounce, sync, renew. Returns why it ended:
--- "lost" (the Lease), "stopped" (a signal) or "error" (after logging it).
local function lead()
    local next_renew = time.monotonic() + el.retry_period
    local next_resync = time.monotonic() + resync_interval
    local tick = math.max(0.01, math.min(debounce > 0 and debounce / 2 or 0.02, el.retry_period))
    local ok, why = pcall(function()
        for typ, obj in wsrc:watch(VM, { labelSelector = ctx.config.label_selector, idle = tick }) do
            local now = time.monotonic()
            if typ == "RESYNC" then
                signal.hold(converge, obj, "resync")
                -- a full list and its rendering are the monitor's peak: free them now, and
                -- give the pages back (the allocator would keep them: RSS at the peak)
                obj = nil
                collectgarbage("collect")
                mem.trim()
                next_resync = time.monotonic() + resync_interval
            elseif typ == "ADDED" or typ == "MODIFIED" or typ == "DELETED" then
                local k = key_of(obj)
                if k then mark(k, now + debounce) end
            end
            if signal.pending() then return "stopped" end
            now = time.monotonic()
            if now >= next_renew then
                local held, lerr = el:try()
                if lerr then log.warn("lease renewal failed", { err = tostring(lerr) }) end
                if not held and not el:leading() then return "lost" end
                next_renew = now + el.retry_period
            end
            flush_settled(now)
            if now >= next_resync then
                local list, err = src:list(VM, { labelSelector = ctx.config.label_selector })
                if list then
                    signal.hold(converge, list, "periodic resync")
                    list = nil
                    collectgarbage("collect")
                    mem.trim()
                else
                    log.error("periodic resync: listing failed", { err = tostring(err) })
                end
                next_resync = time.monotonic() + resync_interval
            end
            if signal.pending() then return "stopped" end
        end
        return "error"
    end)
    if ok then return why end
    if signal.pending() then return "stopped" end
    log.error("watch failed", { err = tostring(why) })
    return "error"
end

log.info("monitor starting", { identity = me, lease = el.namespace .. "/" .. el.name,
    debounce = debounce, resync_interval = resync_interval })
local leading_logged = false
local function serve()
    while not signal.pending() do
        local held, lerr = el:try()
        if held then
            log.info("leading", { identity = me })
            leading_logged = true
            local why = lead()
            pending, npending = {}, 0
            if why == "stopped" then return end
            log.warn("no longer leading", { identity = me, reason = why })
            if why == "error" and not time.sleep(math.min(el.retry_period * 5, 5)) then return end
        else
            if lerr then log.warn("lease: " .. tostring(lerr)) end
            if leading_logged then log.info("following", { identity = me }); leading_logged = false end
            if not time.sleep(el.retry_period) then return end
        end
    end
end
-- serve() ends once it has seen the signal, by a return or an error, and the host's count
-- hook may still raise the signal at its next mark: handled() is called while still inside
-- the protected call (after a return, and in the message handler after an error), so no
-- raise can land between the call and the clean-up below (it did, as an exit 130, now and
-- then: monitor_resync_spec)
local function stop_seen(e)
    if signal.pending() then signal.handled() end
    return e
end
local loop_ok, loop_err = xpcall(function()
    serve()
    stop_seen()
end, stop_seen)
if not loop_ok and not signal.pending() then error(loop_err, 0) end
-- the stop is ours to finish: the signal must not abort the hand-over and clean-up below
-- (nor the host's epilogue) at whichever instruction the interrupt hook next runs
if signal.pending() then signal.handled() end
-- hand over: the next candidate takes the Lease at its next round; in one hold, so no
-- interrupt raised by the host's count hook cuts the clean-up short
signal.hold(function()
    local ok, rerr = el:release()
    if not ok then log.warn("lease not released (it will expire)", { err = tostring(rerr) }) end
    log.info("monitor stopped", { identity = me })
    wsrc:close()
    dr.close(ctx)
end)
return true
