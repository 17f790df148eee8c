-- Process faults around Git (issue 8), part 4: SIGTERM, SIGINT and SIGKILL at random
-- moments of a reconcile, and a stale lock. Each run has a whole tree to push (the remote
-- was rewritten to a new root first), and the signal lands after a random delay within
-- one reconcile's measured duration: listing, rendering, writing, packing or pushing.
-- Expected: SIGTERM/SIGINT end the run with 130 (or 0 if it had finished), leaving no
-- temp file, no git *.lock file and no held lock; SIGKILL may leave git's lock files, and
-- the next run clears them; in every case the remote has the old commit or a complete
-- tree, and the next run converges. The clone's lock is an flock, so a lock whose holder
-- died is free at once: taken over without waiting, while a live holder makes the run
-- wait and then fail clearly. More kill -9 points: bench/faults/git/kill9.
-- Real components: vmdr-sim (150 VMs), lighttpd + git http-backend, vmdr-run processes.
local h = require "support.helper"
local gf = require "faults.gitfault"
local t = require "vmdr.time"

local seed = tonumber(os.getenv("VMDR_FAULT_SEED") or "") or os.time()
math.randomseed(seed)

describe("process faults: signals and locks around a reconcile (seed " .. seed .. ")", function()
    local E, duration

    setup(function()
        E = gf.env { vms = 150, transport = "http", name = "fgit-sig" }
        local t0 = t.monotonic()
        local r = E.run("reconcile")
        duration = t.monotonic() - t0
        assert.equals(0, r.code, r.stdout .. r.stderr)
        E.complete()
    end)
    teardown(function() if E then E.stop() end end)

    --- One run with `sig` after a random delay; returns the exit code and what it saw.
    local function signalled(sig)
        local old = E.orphan("rewritten before SIG" .. sig)
        local delay = math.random() * duration
        local p = E.spawn("reconcile", nil, "sig" .. sig)
        t.sleep(delay)
        p.signal(sig)
        local code = p.wait(300)
        local state = E.old_or_complete(old)
        return code, state, delay, p.out()
    end

    local function next_run_converges()
        local r = E.run("reconcile")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        E.complete()
        assert.same({}, E.leftovers())
        assert.is_true(E.lock_free())
    end

    for _, sig in ipairs { "TERM", "INT", "TERM", "INT" } do
        it("SIG" .. sig .. " at a random moment: 130, no temp file, no lock, the next run converges", function()
            local code, state, delay, out = signalled(sig)
            io.stderr:write(string.format("SIG%s after %.2f s of %.2f s: exit %d, remote %s\n", sig, delay,
                duration, code, state))
            if code == 0 then
                assert.equals("new", state) -- it had finished: then it had pushed everything
            else
                assert.equals(130, code, out)
            end
            assert.same({}, E.leftovers())
            assert.is_true(E.lock_free())
            next_run_converges()
        end)
    end

    for i = 1, 2 do
        it("kill -9 at a random moment (" .. i .. "): the next run clears what it left and converges", function()
            local code, state, delay = signalled("KILL")
            io.stderr:write(string.format("SIGKILL after %.2f s of %.2f s: exit %d, remote %s, left %d file(s)\n",
                delay, duration, code, state, #E.leftovers()))
            assert.truthy(code == 137 or (code == 0 and state == "new"), "exit " .. code)
            assert.is_true(E.lock_free()) -- flock: the kernel released it with the process
            next_run_converges()
        end)
    end

    it("a lock whose holder died is taken over at once; a live holder makes the run fail clearly", function()
        local lock = E.workdir .. ".lock"
        local holder = h.write(E.dir .. "/holder.lua", string.format([[
            local git = require "vmdr.git"
            local time = require "vmdr.time"
            local l = assert(git.lock(%q, 5))
            io.stdout:write("READY\n"); io.stdout:flush()
            time.sleep(120)
        ]], lock))
        -- the holder killed: the lock file stays, its lock does not
        local r = h.run_signalled({ holder }, "KILL", "READY")
        assert.equals(137, r.code)
        assert.is_not_nil(h.read(lock))
        assert.is_true(E.lock_free())
        local old = E.orphan("rewritten before the stale lock")
        -- (a wait for the dead holder would end in a timeout error: exit 1)
        r = E.run("reconcile", { "-e", "git.lock_timeout=30" })
        assert.equals(0, r.code, r.stdout .. r.stderr)
        E.complete()
        assert.is_not.equals(old, E.head())
        -- a live holder: the run waits its lock_timeout, then fails naming the lock file
        local p = E.spawn(holder, nil, "holder")
        local deadline = t.monotonic() + 30
        while not p.out():find("READY", 1, true) do
            assert(t.monotonic() < deadline, "the holder never took the lock: " .. p.out())
            t.sleep(0.02)
        end
        old = E.orphan("rewritten while the lock is held")
        r = E.run("reconcile", { "-e", "git.lock_timeout=1" })
        p.signal("KILL")
        p.wait(30)
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("another vmdr process holds", r.stderr, 1, true)
        assert.matches(lock, r.stderr, 1, true)
        assert.equals(old, E.head())
        next_run_converges()
    end)
end)
