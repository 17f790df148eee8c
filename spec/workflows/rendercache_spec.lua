-- reconcile's render cache (vmdr.rendercache): an unchanged VM is not cleaned and
-- encoded again, and the cache must never hide a change. Every step runs reconcile
-- twice, on two repositories fed by the same vmdr-sim: A with the cache, B with
-- `git.cache: false`, and the two trees must be identical (same tree ids of vms/base
-- and vms/overlays; the ApplicationSet names each repository's URL) after each.
-- Real components: vmdr-sim (60 generated VMs in two namespaces), kubectl to change
-- objects, bare Git repositories and the git CLI (hand edits, tree ids).
local h = require "support.helper"
local sim = require "support.sim"
local json = require "vmdr.json"

local NVMS = 60 -- vmdr-sim puts 50 VMs in a namespace: dr-app-000 and dr-app-001
local NS = "dr-app-000"
local BASE = "vms/base/" .. NS .. "/"

describe("render cache", function()
    local tmp, s, site
    local A, B = {}, {}

    local function git(repo, args) return h.capture("git -C " .. h.q(repo.bare) .. " " .. args .. " 2>&1") end
    -- everything but vms/applicationset.yaml, which names the repository's own URL
    local function tree(repo)
        return (git(repo, "rev-parse main:vms/base main:vms/overlays"):gsub("%s+$", ""))
    end
    local function commits(repo) return tonumber((git(repo, "rev-list --count main"):match("%d+"))) end
    local function show(repo, path) return git(repo, "show main:" .. path) end
    local function kubectl(args)
        local argv = { "kubectl", "--kubeconfig", s.kubeconfig }
        for _, x in ipairs(args) do argv[#argv + 1] = x end
        local r = h.exec(argv)
        assert(r.code == 0, "kubectl " .. table.concat(args, " ") .. ": " .. r.stderr)
        return r.stdout
    end
    local function reconcile(repo, ...)
        local argv = { "-v", "reconcile", "-c", repo.cfg }
        for _, x in ipairs { ... } do argv[#argv + 1] = x end
        local r = h.run(argv)
        assert(r.code == 0, "reconcile failed:\n" .. r.stdout .. r.stderr)
        return r
    end
    -- how many VMs the run took from the cache (reconcile's "rendered" debug line)
    local function cached(r) return tonumber(r.stderr:match("rendered cached=(%d+)")) end
    -- reconcile on both repositories; their trees must be the same
    local function both(...)
        local ra = reconcile(A, ...)
        local rb = reconcile(B, ...)
        assert.equals(tree(B), tree(A))
        assert.equals(0, cached(rb))
        return ra, rb
    end
    local function cache_doc()
        local text = h.read(A.cache)
        return text and json.decode(text)
    end
    -- a hand edit pushed to both repositories with the git CLI
    local function hand_edit(repo, script)
        local co = tmp .. "/edit-" .. math.random(1e9)
        h.capture("git clone -q " .. h.q(repo.bare) .. " " .. h.q(co) .. " 2>&1")
        h.capture("cd " .. h.q(co) .. " && " .. script .. " && git add -A && git -c user.name=op"
            .. " -c user.email=op@x commit -qm 'hand edit' && git push -q origin main 2>&1")
    end

    setup(function()
        h.need("kubectl"); h.need("git")
        tmp = h.tmpdir("rendercache")
        s = sim.start { fixtures = false, generate = NVMS }
        site = tmp .. "/site"
        h.write(site .. "/hooks.lua", "return {}\n")
        for name, repo in pairs { a = A, b = B } do
            repo.bare = tmp .. "/" .. name .. ".git"
            h.capture("git init -q --bare -b main " .. h.q(repo.bare))
            repo.cfg = h.write(tmp .. "/" .. name .. ".yaml", string.format([[
cluster_name: dr-east
site_dir: %s
source: { kubeconfig: %s }
git: { url: "file://%s", workdir: %s/clone-%s, cache: %s }
storage: { driver: none }
]], site, s.kubeconfig, repo.bare, tmp, name, name == "a" and "true" or "false"))
            -- the clone is bare (git.worktree false): the cache sits in it
            repo.cache = tmp .. "/clone-" .. name .. "/vmdr-render-cache.json"
        end
    end)
    teardown(function() if s then s.stop() end end)

    it("is written by the first run and makes the second render nothing, with no commit", function()
        local ra = both()
        assert.equals(0, cached(ra))
        local doc = assert(cache_doc())
        assert.equals(1, doc.format)
        local n = 0
        for _ in pairs(doc.vms) do n = n + 1 end
        assert.equals(NVMS, n)
        assert.is_nil(h.read(B.cache)) -- git.cache: false writes nothing
        local ca, cb = commits(A), commits(B)
        ra = both()
        assert.equals(NVMS, cached(ra))
        assert.equals(ca, commits(A))
        assert.equals(cb, commits(B))
    end)

    it("picks up a change of the VM, of a PVC and of a PV", function()
        kubectl { "label", "vm", "-n", NS, "vm-00001", "owner=team-a" }
        kubectl { "annotate", "pvc", "-n", NS, "vm-00002-rootdisk", "example.com/note=resized" }
        local pv = kubectl { "get", "pvc", "-n", NS, "vm-00003-rootdisk", "-o", "jsonpath={.spec.volumeName}" }
        assert.is_true(#pv > 0)
        kubectl { "label", "pv", pv, "example.com/tier=gold" }
        local ca = commits(A)
        local ra = both()
        assert.equals(NVMS - 3, cached(ra))
        assert.equals(ca + 1, commits(A))
        assert.matches("owner: team%-a", show(A, BASE .. "vm-vm-00001.yaml"))
        assert.matches("example.com/note: resized", show(A, BASE .. "pvc-vm-00002-rootdisk.yaml"))
        assert.matches("example.com/tier: gold", show(A, BASE .. "pv-" .. pv .. ".yaml"))
        -- and once more: all current again
        ra = both()
        assert.equals(NVMS, cached(ra))
        assert.equals(ca + 1, commits(A))
    end)

    it("repairs files edited, removed or made executable in Git by hand", function()
        local before = tree(A)
        local vm = BASE .. "vm-vm-00004.yaml"
        local pvc = BASE .. "pvc-vm-00005-rootdisk.yaml"
        local exe = BASE .. "vm-vm-00006.yaml"
        for _, repo in ipairs { A, B } do
            hand_edit(repo, "printf 'hand: edit\\n' >> " .. h.q(vm) .. " && git rm -q " .. h.q(pvc)
                .. " && git update-index --chmod=+x " .. h.q(exe))
        end
        assert.not_equals(before, tree(A))
        local ra = both()
        -- the cache still knew them (their objects did not change): the blob ids did not match
        assert.equals(NVMS, cached(ra))
        assert.equals(before, tree(A))
        assert.not_matches("hand: edit", show(A, vm))
        assert.equals("100644", git(A, "ls-tree main " .. h.q(exe)):match("^(%d+)"))
    end)

    it("is invalidated by a change of the site's hooks (clean rules)", function()
        h.write(site .. "/hooks.lua", [[
return { clean_rules = { VirtualMachine = { { remove_keys = "metadata.labels", names = { "app-tier" } } } } }
]])
        local ra = both()
        assert.equals(0, cached(ra))
        assert.matches("render cache from another configuration", ra.stderr)
        assert.not_matches("app%-tier", show(A, BASE .. "vm-vm-00007.yaml"))
        ra = both()
        assert.equals(NVMS, cached(ra))
    end)

    it("is invalidated by a configuration key used in rendering", function()
        local ra = both("-e", "argocd.destination=elsewhere")
        assert.equals(0, cached(ra))
        ra = both()
        assert.equals(0, cached(ra))
        ra = both()
        assert.equals(NVMS, cached(ra))
    end)

    it("ignores a corrupt, truncated, ill-typed or other-format cache file with a log line", function()
        local good = assert(h.read(A.cache))
        local id40 = string.rep("0", 40)
        local bad = {
            "{not json",
            good:sub(1, #good // 2),
            '{"format":1,"fingerprint":"x","vms":{"a/b":{"in":1,"files":{}}}}',
            '{"format":1,"fingerprint":"x","vms":{"a/b":{"in":"x","files":{"p":"zz"}}}}',
            '{"format":99,"fingerprint":"x","vms":{}}',
            '[]',
        }
        local want = tree(B)
        for _, text in ipairs(bad) do
            h.write(A.cache, text)
            local ca = commits(A)
            local ra = reconcile(A) -- nothing changed: B need not run again
            assert.matches("render cache ignored", ra.stderr)
            assert.equals(0, cached(ra))
            assert.equals(ca, commits(A))
            assert.equals(want, tree(A))
            -- rewritten whole
            assert.equals(1, assert(cache_doc()).format)
        end
        -- a well-formed entry that lies about the blob ids cannot hide anything either:
        -- the ids are checked against the repository and the VM is rendered
        local doc = assert(cache_doc())
        for _, e in pairs(doc.vms) do
            for p in pairs(e.files) do e.files[p] = id40 end
        end
        h.write(A.cache, assert(json.encode(doc)))
        local ca = commits(A)
        local ra = both()
        assert.equals(NVMS, cached(ra))
        assert.equals(ca, commits(A))
        for _, e in pairs(assert(cache_doc()).vms) do
            for _, id in pairs(e.files) do assert.not_equals(id40, id) end
        end
    end)

    it("clears the temp file a run killed while saving left, and only on a real run", function()
        local left = A.cache:gsub("vmdr%-render%-cache%.json$", ".vmdr-render-cache.json.vmdr-tmp-Xy12Ab")
        h.write(left, '{"format":1,"fingerprint":"half')
        local r = reconcile(A, "--dry-run")
        assert.is_truthy(h.read(left))
        assert.not_matches("temp file", r.stderr)
        r = reconcile(A)
        assert.matches("removed the temp file%(s%) of a killed run.*removed=1", r.stderr)
        assert.is_nil(h.read(left))
        assert.equals(1, assert(cache_doc()).format)
    end)

    it("is never written by a dry run", function()
        kubectl { "label", "vm", "-n", NS, "vm-00008", "owner=team-b" }
        local before = h.read(A.cache)
        local r = reconcile(A, "--dry-run")
        assert.matches("owner: team%-b", r.stdout) -- the diff
        assert.equals(before, h.read(A.cache))
        os.remove(A.cache)
        reconcile(A, "--dry-run")
        assert.is_nil(h.read(A.cache))
        local ra = both()
        assert.equals(0, cached(ra))
        assert.matches("owner: team%-b", show(A, BASE .. "vm-vm-00008.yaml"))
        assert.is_truthy(h.read(A.cache))
    end)

    it("keeps the other namespaces' entries on a run limited to one namespace", function()
        kubectl { "label", "vm", "-n", "dr-app-001", "vm-00050", "owner=team-c" }
        local ra = both("-e", "namespace=dr-app-001")
        assert.equals(NVMS - 50 - 1, cached(ra))
        local n = 0
        for k in pairs(assert(cache_doc()).vms) do
            if k:sub(1, #NS + 1) == NS .. "/" then n = n + 1 end
        end
        assert.equals(50, n)
        ra = both()
        assert.equals(NVMS, cached(ra))
    end)

    it("sees a VM deleted and re-created under the same name", function()
        local path = BASE .. "vm-vm-00009.yaml"
        local y = kubectl { "get", "vm", "-n", NS, "vm-00009", "-o", "yaml" }
        kubectl { "delete", "vm", "-n", NS, "vm-00009" }
        -- the same object with another label, created anew (new uid)
        y = y:gsub("\n  resourceVersion:[^\n]*", ""):gsub("\n  uid:[^\n]*", "")
            :gsub("\n  creationTimestamp:[^\n]*", ""):gsub("app: vm%-00009", "app: recreated", 1)
        local f = h.write(tmp .. "/vm9.yaml", y)
        kubectl { "create", "-f", f }
        local ra = both()
        assert.equals(NVMS - 1, cached(ra))
        assert.matches("app: recreated", show(A, path))
    end)
end)
