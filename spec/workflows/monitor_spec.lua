-- The monitor end to end on real components: vmdr-sim as the source cluster (changes
-- made with kubectl), a bare Git repository (checked with the git CLI), storage driver
-- "none" (the Git convergence is the point; storage is covered by e2e_spec). Each
-- vmdr-sim fault is injected while VMs change; the repository must converge on the
-- live state, and no commit may ever remove a live VM's manifests.
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local k8s = require "vmdr.k8s"
local t = require "vmdr.time"

local SEL = "dr.demojam.com/enabled"

describe("monitor", function()
    local s, env, m
    local removed_on_purpose = {}   -- "ns/name" we unlabelled or deleted

    local function kubectl(args, stdin)
        local t0 = t.monotonic()
        local r = s.kubectl(args, stdin)
        io.stderr:write(string.format("  kubectl %s: %.2f s\n", args[1], t.monotonic() - t0))
        assert.equals(0, r.code, table.concat(args, " ") .. ": " .. r.stderr)
        return r.stdout
    end
    local function apply(ns, name, labels, memory)
        kubectl({ "apply", "-f", "-" }, mon.vm_yaml(ns, name, labels, memory))
    end
    local function protected(extra)
        local l = { [SEL] = "true", app = "demo" }
        for k, v in pairs(extra or {}) do l[k] = v end
        return l
    end
    --- Git holds exactly the keys of expect, each matching its pattern (or true).
    local function converged(expect, timeout)
        return mon.eventually(function()
            local got = env.vms()
            for k, pat in pairs(expect) do
                if not got[k] then return false, "missing " .. k end
                if pat ~= true and not got[k]:find(pat) then return false, k .. " lacks " .. pat end
            end
            for k in pairs(got) do
                if expect[k] == nil then return false, "unexpected " .. k end
            end
            return true
        end, timeout or 60, "the repository did not converge")
    end
    local live = {}   -- what we expect in Git
    local function expect_all()
        local t0 = t.monotonic()
        converged(live)
        io.stderr:write(string.format("  converged in %.2f s\n", t.monotonic() - t0))
    end

    setup(function()
        h.need("kubectl"); h.need("git")
        s = sim.start { fixtures = false, bookmark_interval = 600 }
        kubectl { "create", "namespace", "shop" }
        kubectl { "create", "namespace", "blog" }
        env = mon.setup(s, [[
monitor: { debounce: 0.5, lease_duration: 4, lease_namespace: default, resync_interval: 3600 }
]])
        -- there before the monitor starts: the initial LIST must pick them up
        apply("shop", "db1", protected(), "1Gi")
        apply("blog", "web1", protected(), "1Gi")
        apply("shop", "scratch", { app = "demo" }, "1Gi")   -- not DR-enabled
        live["shop/db1"], live["blog/web1"] = true, true
        m = env.start()
    end)

    teardown(function()
        if m then m.stop() end
        if s then s.stop() end
    end)

    it("exports the VMs that exist at start (LIST), and not the unlabelled one", function()
        expect_all()
        assert.matches("Monitor%-Holder: [^\n]+/" .. m.pid, env.git("log -1 --format=%B main"))
        -- power-neutral and the layout around it
        local vm = env.vms()["shop/db1"]
        assert.not_matches("runStrategy", vm)
        assert.matches("vms/overlays/dr%-east/shop/kustomization.yaml",
            env.git("ls-tree -r --name-only main"))
    end)

    it("create, relabel, resize, unlabel and delete: the repository follows after the debounce", function()
        apply("shop", "db2", protected(), "1Gi")
        live["shop/db2"] = true
        expect_all()
        kubectl { "label", "vm", "-n", "shop", "db2", "owner=team-a" }
        live["shop/db2"] = "owner: team%-a"
        expect_all()
        kubectl { "patch", "vm", "-n", "blog", "web1", "--type", "merge", "-p",
            '{"spec":{"template":{"spec":{"domain":{"resources":{"requests":{"memory":"2Gi"}}}}}}}' }
        live["blog/web1"] = "memory: 2Gi"
        expect_all()
        kubectl { "label", "vm", "-n", "shop", "db1", SEL .. "-" }
        live["shop/db1"] = nil
        removed_on_purpose["shop/db1"] = true
        expect_all()
        kubectl { "get", "vm", "-n", "shop", "db1" }   -- still there, just not protected
        kubectl { "delete", "vm", "-n", "shop", "db2" }
        live["shop/db2"] = nil
        removed_on_purpose["shop/db2"] = true
        expect_all()
        -- the namespace emptied of protected VMs lost its directories
        assert.not_matches("vms/base/shop/", env.git("ls-tree -r --name-only main"))
    end)

    it("batches VMs that settle together into one commit", function()
        for i = 1, 5 do apply("blog", "b" .. i, protected(), "1Gi"); live["blog/b" .. i] = true end
        expect_all()
        local before = env.commits()
        -- five changes back to back (through the API: one kubectl per VM could take longer
        -- than the debounce on a loaded machine, which would rightly make several batches)
        local c = assert(k8s.client { kubeconfig = s.kubeconfig })
        for i = 1, 5 do
            assert(c:patch("virtualmachines.kubevirt.io", "blog", "b" .. i,
                { metadata = { labels = { batch = "one" } } }))
        end
        c:close()
        for i = 1, 5 do live["blog/b" .. i] = "batch: one" end
        expect_all()
        assert.equals(before + 1, env.commits())
        local msg = env.git("log -1 --format=%B main")
        for i = 1, 5 do assert.matches("blog/b" .. i, msg) end
    end)

    it("a dropped watch stream: resumes and misses nothing", function()
        s.admin { drop_watch_after = 1 }
        for i = 1, 3 do
            kubectl { "label", "vm", "-n", "blog", "--overwrite", "b" .. i, "drop=" .. i }
            live["blog/b" .. i] = "drop: \"?" .. i
        end
        expect_all()
        s.admin { clear = true }
    end)

    it("410 Gone (compaction): re-lists, converges, continues", function()
        -- a change the watch does not see moves the store past the watch's position;
        -- compacted, then the stream cut: the watch resumes from before the floor
        -- (no BOOKMARK may advance it meanwhile: the stream's next one is an hour away once
        -- the one already scheduled, at most 1 s ahead, has gone)
        s.admin { bookmark_interval = 3600 }
        t.sleep(1.2)
        kubectl { "label", "vm", "-n", "shop", "--overwrite", "scratch", "x=1" }
        s.admin { compact = true, restart = 1 }
        mon.eventually(function() return s.kubectl { "get", "ns" }.code == 0 end, 60, "sim never came back")
        kubectl { "label", "vm", "-n", "blog", "--overwrite", "b4", "gone=yes" }
        live["blog/b4"] = "gone: \"?yes"
        expect_all()
        mon.eventually(function()
            local _, n = m.log():gsub("converging on the live list", "")
            return n >= 2, n
        end, 60, "no re-list after 410")
        apply("shop", "after410", protected(), "1Gi")
        live["shop/after410"] = true
        expect_all()
    end)

    it("the API down for 5 s (listener closed): reconnects and converges", function()
        s.admin { restart = 5 }
        t.sleep(0.2)
        mon.eventually(function() return s.kubectl { "get", "ns" }.code == 0 end, 60, "sim never came back")
        kubectl { "label", "vm", "-n", "blog", "--overwrite", "b5", "outage=over" }
        live["blog/b5"] = "outage: over"
        apply("blog", "afterdown", protected(), "1Gi")
        live["blog/afterdown"] = true
        expect_all()
    end)

    it("500s from the API: retries the batch, converges, removes nothing live", function()
        kubectl { "label", "vm", "-n", "blog", "--overwrite", "b1", "err=500" }
        s.admin { fail = { count = 12, status = 500, verb = "GET" } }
        live["blog/b1"] = "err: \"?500"
        expect_all()
        s.admin { clear = true }
        kubectl { "delete", "vm", "-n", "blog", "b2" }
        live["blog/b2"] = nil
        removed_on_purpose["blog/b2"] = true
        expect_all()
    end)

    it("no commit ever removed a live VM's manifests", function()
        local out = env.git("log --diff-filter=D --name-only --format= main")
        local n = 0
        for p in out:gmatch("[^\n]+") do
            local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
            if ns then
                n = n + 1
                assert.is_true(removed_on_purpose[ns .. "/" .. name] == true, "removed " .. p)
            end
        end
        assert.equals(3, n)
    end)

    it("SIGTERM: exits 0 and hands the Lease over", function()
        m.signal("TERM")
        assert.equals(0, m.wait(60), m.log())
        local r = s.kubectl { "get", "lease", "-n", "default", "vmdr-monitor", "-o",
            "jsonpath={.spec.holderIdentity}" }
        assert.equals(0, r.code, r.stderr)
        assert.equals("", r.stdout)
        assert.matches("monitor stopped", m.log())
        m = nil
    end)
end)
