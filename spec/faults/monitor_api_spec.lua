-- The monitor under source-API faults (issue 8): one `vmdr-run monitor` process against
-- vmdr-sim (token auth read from a token file, in-cluster style), a real Git server (git
-- http-backend behind lighttpd) and the exec storage driver recording every storage call.
-- VMs change (through curl, an independent client) while the API fails reads, goes away
-- past the Lease's duration, drops streams and compacts, and rotates its token. Nothing may
-- be committed or disabled because of the outage, the monitor keeps running, and once the
-- API is back the repository converges on what a clean reconcile of the live state makes.
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local gitsrv = require "support.gitsrv"
local apifaults = require "support.apifaults"
local t = require "vmdr.time"

local N <const> = 8
local NS <const> = "dr-app-000"
local SEL <const> = "dr.demojam.com/enabled"

describe("monitor under source-API faults", function()
    local s, srv, bare, f, env, m
    local deleted = {}   -- VMs removed on purpose: the only ones Git may lose

    local function git(dir, args)
        return h.capture("git --git-dir " .. h.q(dir) .. " " .. args .. " 2>&1")
    end
    local function commits() return tonumber(git(bare, "rev-list --count main"):match("%d+")) end
    local function calls(op) return f.calls(op) end
    local function label(name, labels) apifaults.label(s, name, labels) end
    local function delete(name)
        assert.equals(200, s.curl { method = "DELETE", path = apifaults.vm_path(name) }.code)
        deleted[NS .. "/" .. name] = true
    end
    local function stored_file(name)
        local r = h.exec { "git", "--git-dir", bare, "show",
            "main:vms/base/" .. NS .. "/vm-" .. name .. ".yaml" }
        return r.code == 0 and r.stdout or nil
    end
    --- The repository holds what a clean reconcile of the live state makes (eventually).
    local function converged()
        local t0 = t.monotonic()
        local ok, err = pcall(mon.eventually, function()
            local r = f.reference()
            assert.equals(0, r.code, r.stderr)
            local sub = f.differs(bare)
            if sub then return false, sub .. " differs" end
            return true
        end, 60, "the repository did not converge")
        if not ok then error(tostring(err) .. "; the monitor's log:\n" .. m.log():sub(-3000), 2) end
        io.stderr:write(string.format("  converged in %.2f s\n", t.monotonic() - t0))
    end
    --- Closes the sim's listener for seconds (with more faults), waits until it closed,
    --- then until it answers again.
    local function outage(seconds, more)
        local _, before = (h.read(s.stderr_file) or ""):gsub("listener closed", "")
        local f = { restart = seconds }
        for k, v in pairs(more or {}) do f[k] = v end
        s.admin(f)
        mon.eventually(function()
            local _, n = (h.read(s.stderr_file) or ""):gsub("listener closed", "")
            return n > before
        end, 60, "the sim never closed its listener")
        mon.eventually(function()
            return s.curl { path = "/version", args = { "--max-time", "2" } }.code == 200
        end, 60, "the sim never came back")
    end
    local function log_has(pat, from)
        local ok, err = pcall(mon.eventually, function()
            return m.log():find(pat, from or 1, true) ~= nil
        end, 60, "the monitor never logged " .. pat)
        if not ok then
            error(tostring(err) .. "; its log since:\n" .. m.log():sub(from or 1):sub(-3000), 2)
        end
    end

    setup(function()
        h.need("git")
        srv = gitsrv.up()
        gitsrv.bare(srv, "manifests")
        bare = gitsrv.urls(srv, "manifests").path
        s = sim.start { fixtures = false, generate = N, token = true, bookmark_interval = 600 }
        env = mon.setup(s)
        f = apifaults.files(env.tmp, s, gitsrv.urls(srv, "manifests").http, { page_size = 3,
            token_file = srv.token_file, monitor = "debounce: 0.3, lease_duration: 3, "
            .. "lease_namespace: default, resync_interval: 3600" })
        -- env.start runs `vmdr-run monitor -c <env.cfg>`: f.cfg is that configuration
        assert(f.cfg == env.cfg, f.cfg)
        m = env.start()
    end)
    after_each(function() if s then s.admin { clear = true } end end)
    teardown(function()
        if m then m.stop() end
        if s then s.stop() end
        gitsrv.down(srv)
    end)

    it("syncs the VMs at start", function()
        converged()
        assert.equals(N + N / 4, calls("enable"))
        assert.matches("Monitor%-Holder: [^\n]+/" .. m.pid, git(bare, "log -1 --format=%B main"))
    end)

    it("every read failing (503) as VMs change: no commit, no disable; then converges", function()
        local c0, from = commits(), #m.log()
        s.admin { fail = { count = 1000000, status = 503, verb = "GET" } }
        -- changes the open watch stream still reports: the batch's own reads fail
        label("vm-00001", { outage = "reads" })
        delete("vm-00002")
        log_has("lease renewal failed", from)
        log_has("no longer leading", from)
        assert.equals(c0, commits())
        assert.equals(0, calls("disable"))
        assert.is_not_nil(stored_file("vm-00002"))
        s.admin { clear = true }
        converged()
        assert.equals(1, calls("disable"))
        assert.is_nil(m.rc())
    end)

    it("the API down longer than the Lease lasts (listener closed 5 s): converges after", function()
        label("vm-00003", { outage = "down" })
        outage(5)
        label("vm-00004", { outage = "after-down" })
        converged()
        assert.matches("outage: after%-down", stored_file("vm-00004"))
        assert.is_nil(m.rc())
    end)

    it("dropped watch streams and a 410 Gone while VMs change: converges", function()
        local from = #m.log()
        s.admin { drop_watch_after = 1 }
        for i = 5, 6 do label("vm-0000" .. i, { outage = "dropped" }) end
        converged()
        -- a change the VM watch does not see (a claim's label) moves the store past the
        -- watch's position (no BOOKMARK moves it: they are 600 s apart); compacted, then the
        -- stream cut: the watch resumes from before the floor, gets 410, lists again, and
        -- only that list can bring the claim's label to Git
        s.admin { clear = true }
        local r = s.curl { method = "PATCH", path = "/api/v1/namespaces/" .. NS
            .. "/persistentvolumeclaims/vm-00001-rootdisk",
            content_type = "application/merge-patch+json",
            body = { metadata = { labels = { seen = "only-by-a-list" } } } }
        assert.equals(200, r.code, r.body)
        outage(1, { compact = true })
        label("vm-00000", { outage = "after-410" })
        delete("vm-00007")
        converged()
        assert.matches("only%-by%-a%-list", h.exec { "git", "--git-dir", bare, "show",
            "main:vms/base/" .. NS .. "/pvc-vm-00001-rootdisk.yaml" }.stdout)
        mon.eventually(function()
            local _, n = m.log():sub(from):gsub("converging on the live list", "")
            return n >= 1, n
        end, 60, "no re-list after the 410")
        assert.is_nil(m.rc())
    end)

    it("401 after a token rotation, stale file: writes nothing; then takes the new file", function()
        local c0, d0, from = commits(), calls("disable"), #m.log()
        local pid = m.pid
        local new = s.token .. "-rotated"
        s.admin { token = new }
        label("vm-00005", { token = "rotated" })
        label("vm-00006", { [SEL] = "false" })   -- would be removed: its confirmation fails
        log_has("Unauthorized", from)
        log_has("no longer leading", from)
        assert.equals(c0, commits())
        assert.equals(d0, calls("disable"))
        assert.is_nil(m.log():find(new, 1, true))
        assert.is_nil(m.rc())
        -- the kubelet rotates the projected token file: no restart needed
        h.write(f.tokfile, new .. "\n")
        converged()
        assert.is_nil(stored_file("vm-00006"))
        assert.equals(pid, m.pid)
        assert.is_nil(m.rc())
        assert.matches("Monitor%-Holder: [^\n]+/" .. pid, git(bare, "log -1 --format=%B main"))
    end)

    it("no commit ever removed a VM that was still protected", function()
        deleted[NS .. "/vm-00006"] = true   -- unlabelled on purpose
        local out = git(bare, "log --diff-filter=D --name-only --format= main")
        local n = 0
        for p in out:gmatch("[^\n]+") do
            local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
            if ns then
                n = n + 1
                assert.is_true(deleted[ns .. "/" .. name] == true, "removed " .. p)
            end
        end
        assert.equals(3, n)
    end)
end)
