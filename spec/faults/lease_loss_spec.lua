-- Monitor leader election: the Lease lost while a batch of syncs is in flight (issue 7).
-- Two monitors (vmdr-run monitor, identities monitor-a and monitor-b) against vmdr-sim, a
-- bare repository and the exec storage driver, whose enable command can be held at a gate
-- (a file) so a batch is provably in flight while the Lease changes hands:
-- * another holder takes the Lease mid-batch: the old leader disables nothing and commits
--   nothing once the batch resumes, steps down, and the new holder converges;
-- * the API unreachable for the Lease past its duration mid-batch: the leader commits
--   nothing it cannot prove it may, and whoever holds the Lease afterwards converges.
-- Regression for: a monitor that lost its Lease during a batch still disabled mirroring
-- for the batch's removed VMs before finding out at the commit (vmdr.sync.export_vms now
-- asks may_commit before the first disable too).
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local apifaults = require "support.apifaults"
local t = require "vmdr.time"

local NS <const> = "dr-app-000"
local SEL <const> = "dr.demojam.com/enabled"
local DURATION <const> = 3

describe("monitor: the Lease lost mid-batch", function()
    local s, env, a, b
    local gates = {}

    local function label(name, labels) apifaults.label(s, name, labels) end
    local function storage_calls(who, op)
        return apifaults.count(env.tmp .. "/storage-" .. who .. ".log", op)
    end
    local function stored()
        local l = {}
        for k in pairs(env.vms()) do l[#l + 1] = k end
        table.sort(l)
        return l
    end
    local function holder()
        local r = s.curl { path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/"
            .. "vmdr-monitor" }
        return r.code == 200 and r.json.spec.holderIdentity or nil
    end
    local function holders()
        local seq = {}
        for id in env.git("log --reverse --format=%B main"):gmatch("Monitor%-Holder: (%S+)") do
            seq[#seq + 1] = id
        end
        return seq
    end
    local function wait_entered(who)
        mon.eventually(function() return h.read(gates[who] .. ".entered") ~= nil end, 60,
            "monitor-" .. who .. " never reached the gate")
    end
    local function open_gate(who) os.remove(gates[who]) end
    local function close_gate(who)
        os.remove(gates[who] .. ".entered")
        h.write(gates[who], "")
    end

    setup(function()
        h.need("git")
        s = sim.start { fixtures = false, generate = 4 }
        env = mon.setup(s)
        -- each monitor's storage commands log to their own file; enable waits while the
        -- gate exists (30 s at most, so nothing can be left running)
        local function storage(who)
            gates[who] = env.tmp .. "/gate-" .. who
            local script = h.write(env.tmp .. "/storage-" .. who .. ".sh", string.format([[
#!/bin/sh
if [ "$1" = enable ] && [ -e %s ]; then
    : > %s.entered
    i=0
    while [ -e %s ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
fi
echo "$*" >> %s
]], h.q(gates[who]), h.q(gates[who]), h.q(gates[who]),
                h.q(env.tmp .. "/storage-" .. who .. ".log")))
            h.capture("chmod +x " .. h.q(script))
            return h.write(env.tmp .. "/" .. who .. ".yaml", string.format([[
git: { workdir: %s/clone-%s }
storage:
  driver: exec
  exec: { enable: [%s, enable, "{spec}"], disable: [%s, disable, "{spec}"] }
monitor: { identity: monitor-%s, debounce: 0.3, lease_duration: %d, lease_namespace: default }
]], env.tmp, who, script, script, who, DURATION))
        end
        env.vars = { a = storage("a"), b = storage("b") }
        -- the 4 VMs in Git first (a one-shot reconcile), then changes the next leader must carry
        local r = h.run { "reconcile", "-c", env.cfg, "-e", "@" .. env.vars.a }
        assert.equals(0, r.code, r.stderr)
        assert.equals(4, #stored())
    end)
    teardown(function()
        for w in pairs(gates) do open_gate(w) end
        for _, m in ipairs { a, b } do if m then m.stop() end end
        if s then s.stop() end
    end)

    it("Lease taken mid-batch: no disable, no commit, steps down; new holder converges", function()
        -- the batch the next leader starts with (its first full-list convergence): a label
        -- change to write and a deleted VM to remove (its mirroring to disable)
        label("vm-00001", { lease = "stolen" })
        assert.equals(200, s.curl { method = "DELETE", path = apifaults.vm_path("vm-00002") }.code)
        local commits = env.commits()
        close_gate("a")
        a = env.start { "-e", "@" .. env.vars.a }
        wait_entered("a")
        assert.equals("monitor-a", holder())
        -- no renewal runs during a batch: wait past the "renewed moments ago" window, then
        -- hand the Lease to monitor-b (not yet running: nobody may write now)
        t.sleep(2 * DURATION * 2 / 15)
        local r = s.kubectl { "patch", "lease", "-n", "default", "vmdr-monitor", "--type", "merge",
            "-p", '{"spec":{"holderIdentity":"monitor-b"}}' }
        assert.equals(0, r.code, r.stderr)
        open_gate("a")
        mon.eventually(function() return a.log():find("no longer leading", 1, true) end, 60,
            "monitor-a did not step down")
        assert.matches("lost_lease", a.log())
        assert.equals(commits, env.commits())
        assert.equals(0, storage_calls("a", "disable"))
        assert.is_nil(a.rc())   -- still running, following
        -- the new holder converges: vm-00002 removed (its disk disabled), vm-00001 written
        b = env.start { "-e", "@" .. env.vars.b }
        mon.eventually(function()
            local v = env.vms()
            return v[NS .. "/vm-00002"] == nil
                and (v[NS .. "/vm-00001"] or ""):find("lease: stolen") ~= nil
        end, 60, "monitor-b did not converge")
        assert.equals(1, storage_calls("b", "disable"))
        assert.equals(0, storage_calls("a", "disable"))
        assert.equals("monitor-b", holder())
        for _, id in ipairs(holders()) do assert.equals("monitor-b", id) end
    end)

    it("Lease unreachable past its duration mid-batch: no commit; next holder converges", function()
        assert.equals("monitor-b", holder())
        local commits = env.commits()
        close_gate("b")
        label("vm-00003", { lease = "unreachable" })
        wait_entered("b")
        -- every Lease request fails from now on, for longer than the Lease lasts
        s.admin { fail = { count = 1000000, status = 503,
            path_prefix = "/apis/coordination.k8s.io" } }
        t.sleep(DURATION + 0.5)
        open_gate("b")
        mon.eventually(function() return b.log():find("lost_lease", 1, true) end, 60,
            "monitor-b committed or did not notice")
        assert.equals(commits, env.commits())
        assert.is_nil((env.vms()[NS .. "/vm-00003"] or ""):find("lease: unreachable"))
        -- the API is back: one of the two takes or keeps the Lease and converges
        s.admin { clear = true }
        mon.eventually(function()
            return (env.vms()[NS .. "/vm-00003"] or ""):find("lease: unreachable") ~= nil
        end, 60, "nobody converged after the Lease came back")
        assert.is_nil(a.rc())
        assert.is_nil(b.rc())
        -- one writer at a time: the writers' sequence never returns to an earlier one
        local seq = {}
        for _, id in ipairs(holders()) do if seq[#seq] ~= id then seq[#seq + 1] = id end end
        local seen = {}
        for _, id in ipairs(seq) do
            assert.is_nil(seen[id], "writer " .. id .. " came back after another")
            seen[id] = true
        end
        assert.same({ NS .. "/vm-00000", NS .. "/vm-00001", NS .. "/vm-00003" }, stored())
    end)
end)
