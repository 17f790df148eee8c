-- Monitor soak (run through bench/soak/monitor): one `vmdr-run monitor` process against a
-- vmdr-sim with SOAK_VMS generated VMs, pushing to a bare repository over file://, while a
-- driver keeps changing VMs (label and spec patches, DR label toggles, creates and deletes,
-- SOAK_RATE operations a second) for SECONDS. The monitor's VmRSS is sampled every 10 s to
-- a CSV. At the end the driver stops and the remote's tree must converge on the sim's
-- DR-enabled VMs (same set, same soak-seq label, same guest memory). Real components only.
--   vmdr-run bench/soak/monitor_soak.lua -- SECONDS
local src = assert(os.getenv("VMDR_SOURCE_DIR"))
package.path = src .. "/spec/?.lua;" .. package.path
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local k8s = require "vmdr.k8s"
local yaml = require "vmdr.yaml"
local t = require "vmdr.time"

local args = ...
local argv = type(args) == "table" and args.args or { ... }
local secs = assert(tonumber(argv[1]), "usage: monitor_soak.lua -- SECONDS")
local n_vms = tonumber(os.getenv("SOAK_VMS") or "") or 1500
local rate = tonumber(os.getenv("SOAK_RATE") or "") or 4
local warmup = tonumber(os.getenv("SOAK_WARMUP") or "") or math.min(300, secs // 4)
local SEL = "dr.demojam.com/enabled"
local VMS = "virtualmachines.kubevirt.io"
math.randomseed(20261126)   -- the same sequence of operations every run

local function nfds(pid)
    local n = 0
    for _ in h.capture("ls /proc/" .. pid .. "/fd 2>/dev/null || true"):gmatch("[^\n]+") do n = n + 1 end
    return n
end
local function say(fmt, ...)
    io.stderr:write(os.date("!%H:%M:%S "), string.format(fmt, ...), "\n")
end

--- The remote's VMs: { ["ns/name"] = decoded manifest }, read from one commit of main.
local function remote_vms(env)
    local out = {}
    if env.commits() == 0 then return out end
    local d = h.tmpdir("soak-tree")
    h.capture("git --git-dir " .. h.q(env.bare) .. " archive main vms/base | tar -x -C " .. h.q(d))
    local list = h.capture("cd " .. h.q(d) .. " && find vms/base -name 'vm-*.yaml' | sort")
    for p in list:gmatch("[^\n]+") do
        local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
        if ns then out[ns .. "/" .. name] = assert(yaml.decode(h.read(d .. "/" .. p))) end
    end
    h.sh("rm -rf " .. h.q(d))
    return out
end
local function guest_mem(vm)
    local s = vm.spec and vm.spec.template and vm.spec.template.spec
    return s and s.domain and s.domain.memory and s.domain.memory.guest
end
--- nil when the remote equals the live DR-enabled VMs, else the first difference.
local function difference(c, env)
    local live = assert(c:list(VMS, { labelSelector = SEL .. "=true" }))
    local got = remote_vms(env)
    local seen = 0
    for _, vm in ipairs(live.items) do
        local k = vm.metadata.namespace .. "/" .. vm.metadata.name
        local g = got[k]
        if not g then return "missing " .. k, #live.items end
        local want_seq = vm.metadata.labels["soak-seq"]
        local got_seq = g.metadata.labels and g.metadata.labels["soak-seq"]
        if want_seq ~= got_seq then
            return string.format("%s soak-seq %s, live %s", k, tostring(got_seq), tostring(want_seq)),
                #live.items
        end
        if guest_mem(vm) ~= guest_mem(g) then
            return string.format("%s memory %s, live %s", k, tostring(guest_mem(g)),
                tostring(guest_mem(vm))), #live.items
        end
        seen = seen + 1
    end
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    if n ~= seen then return string.format("%d VMs on the remote, %d live", n, seen), #live.items end
    return nil, #live.items
end

-- SOAK_WRAP: a program to run the monitor under (heaptrack, valgrind): RSS is then the wrapper's
if os.getenv("SOAK_WRAP") then h.vmdr_run = os.getenv("SOAK_WRAP") .. "-vmdr-run" end
local s = sim.start { fixtures = false, generate = n_vms }
local m
local ok, err = pcall(function()
    h.need("git")
    assert(s.kubectl { "create", "namespace", "soak-new" }.code == 0)
    local env = mon.setup(s, "monitor: { debounce: 1, lease_namespace: default, "
        .. "resync_interval: 600 }")
    local t0 = t.monotonic()
    -- SOAK_ARGS: extra vmdr-run arguments for the monitor, space-separated ("-vv" logs the
    -- memory breakdown after every trim)
    local margs = {}
    for a in (os.getenv("SOAK_ARGS") or ""):gmatch("%S+") do margs[#margs + 1] = a end
    m = env.start(margs)
    m.wait_log("batch synced", 1800)
    say("initial converge of %d VMs: %.1f s, RSS %d kB", n_vms, t.monotonic() - t0,
        (mon.rss_kb(m.pid)))

    local csv_path = os.getenv("SOAK_CSV") or (env.tmp .. "/rss.csv")
    local csv = assert(io.open(csv_path, "w"))
    csv:write("elapsed_s,rss_kb,rss_anon_kb,rss_file_kb,fds,operations,errors,commits\n")
    local c = assert(k8s.client { kubeconfig = s.kubeconfig })

    -- the driver's own view: generated VMs (enabled or not) and the ones it created
    local base = {}
    for i = 0, n_vms - 1 do
        base[#base + 1] = { ns = string.format("dr-app-%03d", i // 50), name = string.format("vm-%05d", i),
            enabled = true }
    end
    local created, next_id = {}, 0
    local ops, errors, seq = 0, 0, 0
    local counts = { label = 0, spec = 0, toggle = 0, create = 0, delete = 0 }
    local function pick()
        if #created > 0 and math.random() < 0.1 then return created[math.random(#created)] end
        return base[math.random(#base)]
    end
    local function try(kind, fn)
        ops = ops + 1
        counts[kind] = counts[kind] + 1
        local r, e = fn()
        if not r then
            errors = errors + 1
            if errors <= 20 then say("driver %s failed: %s", kind, tostring(e)) end
        end
    end
    local function step()
        seq = seq + 1
        local x = math.random()
        if x < 0.60 then
            local v = pick()
            try("label", function()
                return c:patch(VMS, v.ns, v.name, { metadata = { labels = { ["soak-seq"] = "s" .. seq } } })
            end)
        elseif x < 0.75 then
            local v = pick()
            try("spec", function()
                return c:patch(VMS, v.ns, v.name, { spec = { template = { spec = { domain = {
                    memory = { guest = math.random(1, 16) .. "Gi" } } } } } })
            end)
        elseif x < 0.80 then
            local v = base[math.random(#base)]
            v.enabled = not v.enabled
            try("toggle", function()
                return c:patch(VMS, v.ns, v.name, { metadata = { labels = {
                    [SEL] = v.enabled and "true" or yaml.null } } })
            end)
        elseif x < 0.90 or #created < 20 then
            if #created >= 100 then return end
            next_id = next_id + 1
            local name = string.format("soak-%06d", next_id)
            try("create", function()
                local obj = assert(yaml.decode(mon.vm_yaml("soak-new", name,
                    { [SEL] = "true", ["soak-seq"] = "s" .. seq }, "1Gi")))
                return c:create(VMS, obj, { namespace = "soak-new" })
            end)
            created[#created + 1] = { ns = "soak-new", name = name }
        else
            local i = math.random(#created)
            local v = table.remove(created, i)
            try("delete", function() return c:delete(VMS, v.ns, v.name) end)
        end
    end

    local start = t.monotonic()
    local next_sample, next_op = start, start
    local samples = {}
    while true do
        local now = t.monotonic()
        if m.rc() then error("monitor exited during the soak: " .. m.log():sub(-3000)) end
        if now >= next_sample then
            local r, anon, file = mon.rss_kb(m.pid)
            local el = now - start
            samples[#samples + 1] = { el = el, rss = r }
            csv:write(string.format("%.0f,%d,%d,%d,%d,%d,%d,%d\n", el, r, anon, file, nfds(m.pid), ops,
                errors, env.commits()))
            csv:flush()
            next_sample = next_sample + 10
            if #samples % 30 == 1 then say("t=%4.0f s RSS %d kB, %d operations", el, r, ops) end
        end
        if now - start >= secs then break end
        if now >= next_op then
            step()
            next_op = next_op + 1 / rate
            if next_op < now - 5 then next_op = now end   -- fell behind: do not burst to catch up
        end
        t.sleep(math.max(0, math.min(next_op, next_sample) - t.monotonic()))
    end
    local driven = t.monotonic() - start
    local rss_end = (mon.rss_kb(m.pid))

    -- convergence: every live DR-enabled VM on the remote with its last values, nothing else
    local tc = t.monotonic()
    local live_n
    mon.eventually(function()
        local d, n = difference(c, env)
        live_n = n
        return d == nil, d
    end, 600, "the remote did not converge on the sim")
    local conv = t.monotonic() - tc
    csv:close()
    c:close()
    local rc = m.stop()
    m = nil

    local warm
    for _, sm in ipairs(samples) do
        if sm.el >= warmup then warm = sm; break end
    end
    local lo, hi = math.huge, 0
    for _, sm in ipairs(samples) do
        if sm.el >= warmup then lo = math.min(lo, sm.rss); hi = math.max(hi, sm.rss) end
    end
    local parts = {}
    for _, k in ipairs { "label", "spec", "toggle", "create", "delete" } do
        parts[#parts + 1] = k .. " " .. counts[k]
    end
    io.stdout:write(string.format(
        "soak %.0f s, %d generated VMs, %d operations (%s), %d failed; %d commits\n"
        .. "RSS at %.0f s (after warm-up) %d kB, at the end %d kB: growth %+.2f%%; "
        .. "after warm-up min %d kB, max %d kB\n"
        .. "converged %.1f s after the driver stopped: %d live DR-enabled VMs, the remote equal; "
        .. "monitor exit %s\nCSV: %s\n",
        driven, n_vms, ops, table.concat(parts, ", "), errors, env.commits(),
        warm.el, warm.rss, rss_end, (rss_end - warm.rss) * 100 / warm.rss, lo, hi,
        conv, live_n, tostring(rc), csv_path))
end)
if m then m.stop() end
s.stop()
if not ok then error(err, 0) end
return true
