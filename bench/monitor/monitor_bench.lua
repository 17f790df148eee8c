-- Monitor benchmarks (run through bench/monitor/run): event latency, burst batching,
-- steady-state RSS. Real components: vmdr-sim, a bare Git repository over file://, the
-- monitor as its own process (vmdr-run monitor), storage driver none.
--   vmdr-run bench/monitor/monitor_bench.lua -- latency N | burst N | rss N
local src = assert(os.getenv("VMDR_SOURCE_DIR"))
package.path = src .. "/spec/?.lua;" .. package.path
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local k8s = require "vmdr.k8s"
local t = require "vmdr.time"

local args = ...
local argv = type(args) == "table" and args.args or { ... }
local mode, n = argv[1], tonumber(argv[2])
assert(mode and n, "usage: monitor_bench.lua -- latency N | burst N | rss N")

local function head(env)
    local f = io.open(env.bare .. "/refs/heads/main", "r")
    if not f then return nil end
    local s = f:read("l")
    f:close()
    return s
end
local function wait_head_change(env, old, timeout)
    local dl = t.monotonic() + (timeout or 120)
    while true do
        local cur = head(env)
        if cur and cur ~= old then return cur end
        if t.monotonic() > dl then error("no commit within " .. (timeout or 120) .. " s") end
        t.sleep(0.001)
    end
end
local function pct(xs, p)
    table.sort(xs)
    local i = math.max(1, math.min(#xs, math.ceil(p / 100 * #xs)))
    return xs[i]
end

local result
if mode == "latency" then
    local s = sim.start { fixtures = false }
    local ok, err = pcall(function()
        assert(s.kubectl { "create", "namespace", "lat" }.code == 0)
        local r = s.kubectl({ "apply", "-f", "-" }, mon.vm_yaml("lat", "vm1", { ["dr.demojam.com/enabled"] = "true" }))
        assert(r.code == 0, r.stderr)
        local env = mon.setup(s, "monitor: { debounce: 0, lease_namespace: default }")
        local m = env.start()
        m.wait_log("batch synced", 60)
        local c = assert(k8s.client { kubeconfig = s.kubeconfig })
        local lat = {}
        for i = -4, n do   -- 5 warm-up changes
            local old = head(env)
            local t0 = t.monotonic()
            assert(c:patch("virtualmachines.kubevirt.io", "lat", "vm1",
                { metadata = { labels = { seq = tostring(i) } } }))
            wait_head_change(env, old, 120)
            if i > 0 then lat[#lat + 1] = (t.monotonic() - t0) * 1000 end
        end
        m.stop()
        -- baseline: the EDA way, one `vmdr-run event_sync` process per change (what the
        -- standalone rulebook launches), minus ansible-rulebook's own overhead
        local base = {}
        for i = 1, math.max(10, n // 10) do
            local old = head(env)
            local t0 = t.monotonic()
            assert(c:patch("virtualmachines.kubevirt.io", "lat", "vm1",
                { metadata = { labels = { seq = "b" .. i } } }))
            local r = h.run({ "event_sync", "-c", env.cfg, "-e", "namespace=lat", "-e", "name=vm1" })
            assert(r.code == 0, r.stderr)
            wait_head_change(env, old, 120)
            base[#base + 1] = (t.monotonic() - t0) * 1000
        end
        c:close()
        result = string.format("latency, change -> commit on the remote: monitor (debounce 0) over %d "
            .. "changes: p50 %.1f ms, p99 %.1f ms, max %.1f ms | baseline event_sync process per change "
            .. "over %d: p50 %.1f ms, p99 %.1f ms", #lat, pct(lat, 50), pct(lat, 99), pct(lat, 100),
            #base, pct(base, 50), pct(base, 99))
    end)
    s.stop()
    if not ok then error(err, 0) end
elseif mode == "burst" then
    local s = sim.start { fixtures = false, generate = n }
    local ok, err = pcall(function()
        local env = mon.setup(s, "monitor: { debounce: 2, lease_namespace: default }")
        local m = env.start()
        m.wait_log("batch synced", 900)
        local c = assert(k8s.client { kubeconfig = s.kubeconfig })
        local list = assert(c:list("virtualmachines.kubevirt.io", { labelSelector = "dr.demojam.com/enabled=true" }))
        local before = env.commits()
        local t0 = t.monotonic()
        for _, vm in ipairs(list.items) do
            assert(c:patch("virtualmachines.kubevirt.io", vm.metadata.namespace, vm.metadata.name,
                { metadata = { labels = { burst = "1" } } }))
        end
        local t_last = t.monotonic()
        -- done when every VM's file carries the label: count via the monitor's log
        local dl = t.monotonic() + 600
        local synced = 0
        local last_commit_at
        local old = head(env)
        while synced < #list.items do
            local cur = head(env)
            if cur ~= old then old = cur; last_commit_at = t.monotonic() end
            synced = 0
            for w in m.log():gmatch("kind=events[^\n]-written=(%d+)") do synced = synced + tonumber(w) end
            if t.monotonic() > dl then error("burst not synced: " .. synced) end
            t.sleep(0.01)
        end
        last_commit_at = last_commit_at or t.monotonic()
        local cur = head(env)
        if cur ~= old then last_commit_at = t.monotonic() end
        local commits = env.commits() - before
        m.stop()
        -- baseline: one full reconcile of the same site after another burst
        for _, vm in ipairs(list.items) do
            assert(c:patch("virtualmachines.kubevirt.io", vm.metadata.namespace, vm.metadata.name,
                { metadata = { labels = { burst = "2" } } }))
        end
        local tr = t.monotonic()
        local r = h.run({ "reconcile", "-c", env.cfg })
        assert(r.code == 0, r.stderr)
        local reconcile_s = t.monotonic() - tr
        c:close()
        result = string.format("burst of %d VMs: patches took %.2f s; %d commit(s); last commit %.2f s "
            .. "after the last patch (debounce 2 s, so %.2f s after the quiet period ended)",
            #list.items, t_last - t0, commits, last_commit_at - t_last, last_commit_at - t_last - 2)
            .. string.format(" | baseline: one vmdr-run reconcile of the same burst %.2f s", reconcile_s)
    end)
    s.stop()
    if not ok then error(err, 0) end
elseif mode == "rss" then
    local s = sim.start { fixtures = false, generate = n }
    local ok, err = pcall(function()
        local env = mon.setup(s, "monitor: { debounce: 10, lease_namespace: default }")
        local t0 = t.monotonic()
        local m = env.start()
        m.wait_log("batch synced", 1800)
        local initial = t.monotonic() - t0
        local peak = 0
        for _ = 1, 20 do   -- 10 s of steady state (bookmarks, lease renewals)
            local r = mon.rss_kb(m.pid) or 0
            if r > peak then peak = r end
            t.sleep(0.5)
        end
        local steady = (mon.rss_kb(m.pid))
        m.stop()
        result = string.format("%d watched VMs: initial converge %.1f s; steady-state RSS %.1f MB "
            .. "(highest sample after the converge %.1f MB)", n, initial, steady / 1024, peak / 1024)
    end)
    s.stop()
    if not ok then error(err, 0) end
else
    error("unknown mode " .. mode)
end
io.stdout:write(result, "\n")
return true
