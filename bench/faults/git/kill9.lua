-- The body of bench/faults/git/kill9 (run inside vmdr-run; reuses the spec helpers).
local _, args = ...
local src = assert(os.getenv("VMDR_SOURCE_DIR"), "run bench/faults/git/kill9")
package.path = package.path .. ";" .. src .. "/spec/?.lua"
local gf = require "faults.gitfault"
local t = require "vmdr.time"

local n = tonumber(args[1]) or 20
local vms = tonumber(args[2]) or 300
-- the delays are drawn from [from, 1] x one reconcile's duration: 0.6 aims at the
-- commit and the push, which come last
local from = tonumber(args[3]) or 0
local seed = tonumber(os.getenv("VMDR_FAULT_SEED") or "") or os.time()
math.randomseed(seed)

local E = gf.env { vms = vms, transport = "http", name = "kill9" }
local failures, olds, news, left_after_kill = 0, 0, 0, 0
local ok, err = pcall(function()
    local t0 = t.monotonic()
    local r = E.run("reconcile")
    local duration = t.monotonic() - t0
    assert(r.code == 0, r.stdout .. r.stderr)
    E.complete()
    print(string.format("kill -9 at %d random moments of a reconcile of %d VMs over smart HTTP "
        .. "(one takes %.2f s; delays in [%.1f, 1] of it; seed %d)", n, vms, duration, from, seed))
    print("| # | delay (s) | exit | remote after the kill | left in the clone | next run |")
    print("|---:|---:|---:|---|---|---|")
    for i = 1, n do
        local old = E.orphan("rewritten before kill " .. i)
        local delay = (from + math.random() * (1 - from)) * duration
        local p = E.spawn("reconcile", nil, "k" .. i)
        t.sleep(delay)
        p.signal("KILL")
        local code = p.wait(300)
        local sok, state = pcall(E.old_or_complete, old)
        local left = E.leftovers()
        local names = {}
        for _, f in ipairs(left) do names[#names + 1] = f:match("[^/]+$") end
        if #left > 0 then left_after_kill = left_after_kill + 1 end
        local verdict = "ok"
        if not sok then
            verdict = "PARTIAL REMOTE: " .. tostring(state)
        elseif not E.lock_free() then
            verdict = "LOCK STILL HELD"
        else
            if state == "old" then olds = olds + 1 else news = news + 1 end
            local again = E.run("reconcile")
            local cok, cerr = pcall(E.complete)
            if again.code ~= 0 then
                verdict = "NEXT RUN FAILED: " .. again.stderr:gsub("\n", " ")
            elseif not cok then
                verdict = "NOT CONVERGED: " .. tostring(cerr)
            elseif #E.leftovers() > 0 then
                verdict = "LEFT FILES: " .. table.concat(E.leftovers(), " ")
            elseif not E.lock_free() then
                verdict = "LOCK HELD AFTER THE NEXT RUN"
            end
        end
        if verdict ~= "ok" then failures = failures + 1 end
        print(string.format("| %d | %.2f | %d | %s | %s | %s |", i, delay, code,
            sok and state or "partial", #names > 0 and table.concat(names, ", ") or "-", verdict))
        io.stdout:flush()
    end
end)
E.stop()
if not ok then error(err, 0) end
print(string.format("\n%d kills: remote old %d, new %d, partial 0 expected; %d left git lock/temp "
    .. "files that the next run cleared; %d failed check(s)", n, olds, news, left_after_kill, failures))
if failures > 0 then return 1 end
return 0
