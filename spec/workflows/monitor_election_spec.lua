-- Monitor high availability: three monitors against one vmdr-sim and one bare repository.
-- Exactly one leads (the Lease names it); SIGKILL of the leader -> another takes over
-- after the Lease expires and keeps syncing; SIGTERM hands over at once. Every commit
-- names its writer (Monitor-Holder), and the history shows one writer at a time.
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local t = require "vmdr.time"

local SEL = "dr.demojam.com/enabled"
local DURATION <const> = 3

describe("monitor leader election", function()
    local s, env
    local ms = {}
    local function kubectl(args, stdin)
        local r = s.kubectl(args, stdin)
        assert.equals(0, r.code, table.concat(args, " ") .. ": " .. r.stderr)
        return r.stdout
    end
    local function holder()
        local r = s.kubectl { "get", "lease", "-n", "default", "vmdr-monitor", "-o",
            "jsonpath={.spec.holderIdentity}" }
        if r.code ~= 0 then return nil end
        return r.stdout
    end
    local function by_pid(pid)
        for _, m in ipairs(ms) do if m.pid == pid then return m end end
    end
    local function leader()
        return mon.eventually(function()
            local id = holder()
            local pid = id and id:match("/(%d+)$")
            local m = pid and by_pid(pid)
            if m and not m.rc() then return m end
            return false, id
        end, 60, "no live monitor holds the Lease")
    end
    local function apply(name, memory)
        kubectl({ "apply", "-f", "-" }, mon.vm_yaml("ha", name, { [SEL] = "true" }, memory))
    end
    local function synced(name, pat)
        return mon.eventually(function()
            local v = env.vms()["ha/" .. name]
            return v and v:find(pat) ~= nil
        end, 60, "ha/" .. name .. " not synced")
    end
    local function last_holder() return env.git("log -1 --format=%B main"):match("Monitor%-Holder: (%S+)") end

    setup(function()
        h.need("kubectl"); h.need("git")
        s = sim.start { fixtures = false }
        kubectl { "create", "namespace", "ha" }
        env = mon.setup(s, string.format(
            "monitor: { debounce: 0.3, lease_duration: %d, lease_namespace: default }", DURATION))
        apply("vm1", "1Gi")
        for _ = 1, 3 do ms[#ms + 1] = env.start() end
    end)
    teardown(function()
        for _, m in ipairs(ms) do m.stop() end
        if s then s.stop() end
    end)

    it("exactly one of three leads and syncs", function()
        local l = leader()
        synced("vm1", "1Gi")
        assert.matches("/" .. l.pid .. "$", last_holder())
        -- the two others follow: they never logged "leading"
        local leading = 0
        for _, m in ipairs(ms) do
            if m.log():find("INFO  leading") then leading = leading + 1 end
        end
        assert.equals(1, leading)
    end)

    it("SIGKILL of the leader: another takes over after the Lease expires and keeps syncing", function()
        local old = leader()
        local t0 = t.monotonic()
        old.signal("KILL")
        local new = mon.eventually(function()
            local id = holder()
            local pid = id and id:match("/(%d+)$")
            if pid and pid ~= old.pid and by_pid(pid) then return by_pid(pid) end
            return false, id
        end, 60, "nobody took over")
        io.stderr:write(string.format("  takeover %.2f s after SIGKILL (lease duration %d s)\n",
            t.monotonic() - t0, DURATION))
        apply("vm1", "2Gi")
        synced("vm1", "2Gi")
        assert.matches("/" .. new.pid .. "$", last_holder())
    end)

    it("SIGTERM of the leader: exits 0, hands over, the last one syncs", function()
        local cur = leader()
        cur.signal("TERM")
        assert.equals(0, cur.wait(60), cur.log())
        local third = leader()
        assert.are_not.equal(cur.pid, third.pid)
        apply("vm2", "1Gi")
        synced("vm2", "1Gi")
        assert.matches("/" .. third.pid .. "$", last_holder())
    end)

    it("never two active: the commits' writers take turns, none comes back", function()
        local seq = {}
        for id in env.git("log --reverse --format=%B main"):gmatch("Monitor%-Holder: (%S+)") do
            if seq[#seq] ~= id then seq[#seq + 1] = id end
        end
        assert.equals(3, #seq)
        local seen = {}
        for _, id in ipairs(seq) do
            assert.is_nil(seen[id], "writer " .. id .. " came back after another")
            seen[id] = true
        end
    end)
end)
