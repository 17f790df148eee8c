-- A randomized storm of source-API faults against one running monitor (through
-- bench/faults/api). Real components: vmdr-sim (token read from a token file), a bare
-- manifests repository, `vmdr-run monitor` as its own process, the exec storage driver
-- logging every call. Each cycle makes 1-3 random VM changes through the API (label
-- changes, new VMs, unlabels, deletions), injects one fault class for 1-4 s, clears it,
-- and waits until the repository equals what a clean reconcile of the live state makes.
-- Invariants checked over the whole run: every VM ever removed from Git was unlabelled or
-- deleted on purpose; every disabled image belongs to such a VM; the monitor never exited.
--   vmdr-run bench/faults/api_storm.lua -- CYCLES [SEED]
-- Prints markdown table rows: | fault class | cycles | what held | command |.
local src = assert(os.getenv("VMDR_SOURCE_DIR"))
package.path = src .. "/spec/?.lua;" .. package.path
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local apifaults = require "support.apifaults"
local t = require "vmdr.time"

local args = ...
local argv = type(args) == "table" and args.args or { ... }
local cycles = tonumber(argv[1]) or 20
local seed = tonumber(argv[2]) or os.time()
math.randomseed(seed)

local N <const> = 20
local NS <const> = "dr-app-000"
local SEL <const> = "dr.demojam.com/enabled"
local VMS <const> = "/apis/kubevirt.io/v1"

local s = sim.start { fixtures = false, generate = N, token = true }
local env = mon.setup(s)
-- env.start runs `vmdr-run monitor -c <env.cfg>`: f.cfg is that configuration
local f = apifaults.files(env.tmp, s, "file://" .. env.bare, { page_size = 7, timeout = 1,
    monitor = "debounce: 0.3, lease_duration: 3, lease_namespace: default, resync_interval: 3600" })
assert(f.cfg == env.cfg, f.cfg)
local tokfile, storage_log = f.tokfile, f.storage_log

-- image -> VM, from the PVs (generated claims are <vm>-rootdisk / <vm>-data)
local image_vm = {}
local pvs = s.curl { path = "/api/v1/persistentvolumes" }.json
for _, pv in ipairs(pvs.items) do
    local img = pv.spec.csi.volumeAttributes.imageName
    local vm = pv.spec.claimRef.name:gsub("%-rootdisk$", ""):gsub("%-data$", "")
    image_vm[img] = NS .. "/" .. vm
end

local live, removed = {}, {}   -- protected VMs now; VMs unlabelled or deleted on purpose
for i = 0, N - 1 do live[#live + 1] = string.format("vm-%05d", i) end
local created = 0

local function api(method, path, body, ctype)
    return s.curl { method = method, path = path, body = body, content_type = ctype }
end
local function change()
    local r = math.random(10)
    if #live < 8 then r = 1 end
    local name = live[math.random(#live)]
    local p = VMS .. "/namespaces/" .. NS .. "/virtualmachines/" .. name
    if r <= 5 then
        return api("PATCH", p, { metadata = { labels = { storm = tostring(math.random(1e6)) } } },
            "application/merge-patch+json").code
    elseif r <= 7 then
        created = created + 1
        local nm = string.format("new-%03d", created)
        local yaml = require "vmdr.yaml"
        local obj = yaml.decode(mon.vm_yaml(NS, nm, { [SEL] = "true" }, "1Gi"))
        local c = api("POST", VMS .. "/namespaces/" .. NS .. "/virtualmachines", obj).code
        if c == 201 then live[#live + 1] = nm end
        return c
    end
    local c
    if r <= 8 then
        c = api("PATCH", p, { metadata = { labels = { [SEL] = "false" } } }, "application/merge-patch+json").code
    else
        c = api("DELETE", p).code
    end
    -- a change the API refused (the fault in force) did not happen
    if c == 200 then
        removed[NS .. "/" .. name] = true
        for i, v in ipairs(live) do if v == name then table.remove(live, i) break end end
    end
    return c
end

local FAULTS = {
    { "500 on every request (all verbs)", function() return { fail = { count = 1e6, status = 500 } } end },
    { "503 on every read (watch, Lease, lists)", function() return { fail = { count = 1e6, status = 503, verb = "GET" } } end },
    { "500 from the 2nd page of VM lists on (page size 7)", function()
        return { fail = { after = 1, count = 1e6, status = 500, path_prefix = VMS .. "/virtualmachines" } } end },
    { "429 with Retry-After 1", function() return { fail = { count = 20, status = 429, retry_after = 1 } } end },
    { "watch streams dropped after 1 event", function() return { drop_watch_after = 1 } end },
    { "compaction + listener closed 1 s (410 Gone)", function() return { compact = true, restart = 1 } end },
    { "listener closed 4 s (longer than the Lease)", function() return { restart = 4 } end },
    { "responses 1.5 s late (client timeout 1 s)", function() return { delay_ms = 1500 } end },
    { "401 on every request (reject_auth)", function() return { reject_auth = true } end },
    { "token rotated, token file stale", function() return { token = "rot-" .. math.random(1e9) } end },
}

local function git(dir, a) return h.capture("git --git-dir " .. h.q(dir) .. " " .. a .. " 2>&1") end
local function converged()
    local r = f.reference()
    if r.code ~= 0 then return false, "reference reconcile: " .. r.stderr end
    local sub = f.differs(env.bare)
    if sub then return false, sub .. " differs" end
    return true
end
local ndisabled = 0
local function violations()
    local v = {}
    ndisabled = 0
    for p in git(env.bare, "log --diff-filter=D --name-only --format= main"):gmatch("[^\n]+") do
        local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
        if ns and not removed[ns .. "/" .. name] then v[#v + 1] = "removed live VM " .. ns .. "/" .. name end
    end
    for l in (h.read(storage_log) or ""):gmatch("[^\n]+") do
        local img = l:match("^disable %S-([%w%-]+)$")
        local vm = img and image_vm[img]
        if img then ndisabled = ndisabled + 1 end
        if img and not (vm and removed[vm]) then v[#v + 1] = "disabled " .. l end
    end
    return v
end

local m = env.start()
local stats = {}
local ok, err = pcall(function()
    local dl = t.monotonic() + 120
    while not converged() do
        assert(t.monotonic() < dl, "the initial sync did not converge")
        t.sleep(0.2)
    end
    for c = 1, cycles do
        local f = FAULTS[math.random(#FAULTS)]
        local st = stats[f[1]] or { n = 0, converged = 0, worst = 0 }
        stats[f[1]] = st
        for _ = 1, math.random(3) do change() end
        local doc = f[2]()
        s.admin(doc)
        t.sleep(1 + math.random() * 3)
        -- changes while the fault is in force (refused ones are not counted as made)
        change()
        -- the admin endpoint answers again once a closed listener is back
        local up = t.monotonic() + 60
        while s.curl { path = "/_sim/state", args = { "--max-time", "2" } }.code ~= 200 do
            assert(t.monotonic() < up, "the sim did not come back")
            t.sleep(0.1)
        end
        s.admin { clear = true }
        if doc.token then h.write(tokfile, doc.token .. "\n") end
        local t0 = t.monotonic()
        local done, why = false, nil
        while t.monotonic() - t0 < 120 do
            done, why = converged()
            if done then break end
            t.sleep(0.2)
        end
        st.n = st.n + 1
        if done then
            st.converged = st.converged + 1
            st.worst = math.max(st.worst, t.monotonic() - t0)
        else
            io.stderr:write(string.format("cycle %d (%s): not converged in 120 s: %s\n", c, f[1], tostring(why)))
        end
        if m.rc() then error("the monitor exited with " .. m.rc() .. " in cycle " .. c) end
        io.stderr:write(string.format("cycle %d: %s: %s\n", c, f[1], done and "converged" or "NOT converged"))
    end
end)
local v = violations()
local alive = m.rc() == nil
m.stop()
s.stop()
local bad = not ok or #v > 0 or not alive
for _, x in ipairs(v) do io.stderr:write("VIOLATION: " .. x .. "\n") end
if not ok then io.stderr:write("storm failed: " .. tostring(err) .. "\n") end
local names = {}
for k in pairs(stats) do names[#names + 1] = k end
table.sort(names)
local cmd = string.format("`vmdr-run bench/faults/api_storm.lua -- %d %d` (env as bench/faults/api sets it)",
    cycles, seed)
for _, k in ipairs(names) do
    local st = stats[k]
    io.stdout:write(string.format("| monitor storm: %s | %d | converged %d/%d (slowest %.1f s after the fault "
        .. "cleared); no live VM removed, no live disk disabled: %s | %s |\n", k, st.n, st.converged, st.n,
        st.worst, #v == 0 and "held" or "BROKEN", cmd))
end
io.stdout:write(string.format("| monitor storm: whole run | %d cycles | %s; %d VMs removed on purpose, "
    .. "%d disks disabled (all theirs); monitor still running: %s | %s |\n", cycles,
    #v == 0 and "0 invariant violations" or (#v .. " VIOLATIONS"),
    (function() local n = 0 for _ in pairs(removed) do n = n + 1 end return n end)(), ndisabled, tostring(alive), cmd))
if bad then os.exit(1) end
