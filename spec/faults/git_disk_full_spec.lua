-- Git faults (issue 8), part 3: the disk holding the working clone fills up. The clone
-- lives on a small tmpfs mounted by the spec (it runs as root in CI; if the mount is
-- refused the spec FAILS, it never skips). A filler file leaves a chosen amount of free
-- space, swept so that ENOSPC lands in different steps: creating the clone, fetching,
-- writing the work tree, packing the commit, the index. Expected every time: a clear
-- error naming ENOSPC, nothing partial on the remote (old commit or complete tree), and,
-- once the filler is gone, the next run repairs the clone and converges by itself.
-- Real components: vmdr-sim (150 VMs), lighttpd + git http-backend, vmdr-run, the git CLI
-- and kubectl kustomize as checkers.
local h = require "support.helper"
local gf = require "faults.gitfault"

local SIZE_KB = 4096

describe("git faults: disk full in the working clone", function()
    local E, mnt, mounted

    setup(function()
        mnt = h.tmpdir("fgit-tmpfs")
        local r = h.exec { "mount", "-t", "tmpfs", "-o", "size=" .. SIZE_KB .. "k", "tmpfs", mnt }
        if r.code ~= 0 then
            error("cannot mount a tmpfs for the disk-full cases (needs root or CAP_SYS_ADMIN; "
                .. "CI runs as root): " .. r.stderr, 0)
        end
        mounted = true
        E = gf.env { vms = 150, transport = "http", name = "fgit-full", workdir = mnt .. "/clone" }
        -- the remote already holds every VM (pushed from a clone on the normal disk)
        local r0 = E.run("reconcile", { "-e", "git.workdir=" .. E.dir .. "/clone-normal" })
        assert.equals(0, r0.code, r0.stdout .. r0.stderr)
        E.complete()
    end)
    teardown(function()
        if E then E.stop() end
        if mounted then
            if h.sh("umount " .. h.q(mnt)) ~= 0 then h.sh("umount -l " .. h.q(mnt)) end
        end
    end)

    local function avail_kb()
        local out = h.capture("df -k --output=avail " .. h.q(mnt))
        return tonumber(out:match("(%d+)%s*$"))
    end
    --- Fills the tmpfs so that `free_kb` stay free.
    local function fill(free_kb)
        os.remove(mnt .. "/filler")
        local n = avail_kb() - free_kb
        if n > 0 then
            h.sh("dd if=/dev/zero of=" .. h.q(mnt .. "/filler") .. " bs=1k count=" .. n .. " 2>/dev/null")
        end
    end
    local function unfill() assert(os.remove(mnt .. "/filler")) end

    -- One case: the run on the full disk, the checks, then the run after space is freed.
    local function case(what, free_kb, old, extra)
        fill(free_kb)
        local r = E.run("reconcile", extra)
        local out = r.stdout .. r.stderr
        local failed = r.code ~= 0
        if failed then
            assert.equals(1, r.code, out)
            assert.matches("No space left on device", out, 1, true)
            assert.matches("ENOSPC", out, 1, true)
        end
        -- nothing partial on the remote, the clone not locked
        local state = E.old_or_complete(old)
        assert.is_true(E.lock_free())
        unfill()
        local again = E.run("reconcile", extra)
        assert.equals(0, again.code, what .. " free=" .. free_kb .. "K, after freeing space: "
            .. again.stdout .. again.stderr)
        E.complete()
        assert.same({}, E.leftovers())
        return failed and "failed" or "ok", state
    end

    it("creating the clone on a full disk: a clear error, and the next run completes the clone", function()
        local results = {}
        for _, free in ipairs { 0, 4, 64 } do
            h.sh("rm -rf " .. h.q(E.workdir))
            local res = case("clone", free, E.head())
            results[#results + 1] = free .. "K:" .. res
        end
        io.stderr:write("clone on a full disk: " .. table.concat(results, " ") .. "\n")
        -- the smallest cases cannot even create the clone: they must have failed
        assert.matches("^0K:failed 4K:failed", table.concat(results, " "))
        -- and the clone made after them is sound (git CLI, an independent reader)
        assert.equals("", gf.trim(h.capture("git -C " .. h.q(E.workdir) .. " fsck --no-progress"
            .. " --no-dangling 2>&1")))
    end)

    for _, worktree in ipairs { false, true } do
        it("a full tree to commit and push on a full disk (worktree=" .. tostring(worktree)
            .. "): nothing partial pushed, the next run converges", function()
            local extra = { "-e", "git.worktree=" .. tostring(worktree) }
            h.sh("rm -rf " .. h.q(E.workdir))
            local r = E.run("reconcile", extra)
            assert.equals(0, r.code, r.stdout .. r.stderr)
            local results, failures = {}, 0
            for _, free in ipairs { 0, 8, 48, 384 } do
                -- someone rewrote the remote to a new root with no VM: the whole tree is new
                local old = E.orphan("rewritten, free " .. free .. "K")
                local res, state = case("commit", free, old, extra)
                if res == "failed" then
                    failures = failures + 1
                    assert.equals("old", state) -- a failed run pushed nothing
                end
                results[#results + 1] = free .. "K:" .. res
            end
            assert.equals("", gf.trim(h.capture("git -C " .. h.q(E.workdir) .. " fsck --no-progress"
                .. " --no-dangling 2>&1")))
            io.stderr:write("commit on a full disk (worktree=" .. tostring(worktree) .. "): "
                .. table.concat(results, " ") .. "\n")
            assert.is_true(failures >= 2, table.concat(results, " "))
        end)
    end
end)
