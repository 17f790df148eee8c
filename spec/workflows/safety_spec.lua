-- The brakes that keep a DR tool from making a disaster worse (issue 6, "Safety"):
-- gc never deletes because the live list failed or came back empty; a VM whose
-- names cannot become safe paths is refused while the others are still synced.
-- vmdr-sim with 100 generated VMs, a bare Git repository, storage driver none.
local h = require "support.helper"
local sim = require "support.sim"

describe("safety", function()
    local tmp, s, bare, cfg

    local function git(args) return h.capture("git -C " .. h.q(bare) .. " " .. args .. " 2>&1") end
    local function commits() return tonumber((git("rev-list --count main"):match("%d+"))) end
    local function stored()
        local n = 0
        for _ in git("ls-tree -r --name-only main"):gmatch("/vm%-[^\n]+%.yaml") do n = n + 1 end
        return n
    end
    local function run(...)
        local argv = { ... }
        argv[#argv + 1] = "-c"
        argv[#argv + 1] = cfg
        return h.run(argv)
    end

    setup(function()
        tmp = h.tmpdir("safety")
        h.write(tmp .. "/fx/hostile.yaml", [[
apiVersion: v1
kind: Namespace
metadata: {name: components}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: sneaky
  namespace: components
  labels: {dr.demojam.com/enabled: "true"}
spec:
  template: {spec: {domain: {devices: {}}}}
]])
        s = sim.start { fixtures = tmp .. "/fx", generate = 100 }
        bare = tmp .. "/m.git"
        h.capture("git init -q --bare -b main " .. h.q(bare))
        cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
git: { url: "file://%s", workdir: %s/clone }
storage: { driver: none }
]], s.kubeconfig, bare, tmp))
    end)
    teardown(function() if s then s.stop() end end)

    it("a VM whose namespace would collide with the layout is refused; the 100 others are synced", function()
        local r = run("reconcile")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("components/sneaky", r.stderr)
        assert.equals(100, stored())
        assert.not_matches("sneaky", git("ls-tree -r --name-only main"))
    end)

    it("gc deletes nothing when the live list fails, even after retries", function()
        local before = commits()
        s.admin { fail = { count = 50, status = 500, path_prefix = "/apis/kubevirt.io/v1/virtualmachines" } }
        local r = run("gc", "-e", "force=true")
        s.admin { clear = true }
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("nothing deleted", r.stderr)
        assert.equals(before, commits())
        assert.equals(100, stored())
    end)

    it("gc deletes nothing when the live list comes back cut short", function()
        local before = commits()
        s.admin { garble = { mode = "truncate", count = 50, path_prefix = "/apis/kubevirt.io/v1/virtualmachines" } }
        local r = run("gc", "-e", "force=true")
        s.admin { clear = true }
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.equals(before, commits())
        assert.equals(100, stored())
    end)

    it("an empty live list with 100 VMs in Git is refused, and nothing is deleted", function()
        local before = commits()
        local r = run("gc", "-e", "label_selector=dr.demojam.com/enabled=nowhere")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("refusing", r.stderr)
        assert.equals(before, commits())
        assert.equals(100, stored())
    end)

    it("more than gc.max_delete_fraction of the VMs is refused without force", function()
        -- unlabel 60 of the 100: 60% > the default 50%
        local names = h.capture("kubectl --kubeconfig " .. h.q(s.kubeconfig)
            .. " get vm -A -l dr.demojam.com/enabled=true -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {end}'")
        local n = 0
        for ns, name in names:gmatch("(%S+)/(%S+)") do
            if ns ~= "components" and n < 60 then
                h.capture("kubectl --kubeconfig " .. h.q(s.kubeconfig) .. " label vm -n " .. h.q(ns) .. " "
                    .. h.q(name) .. " dr.demojam.com/enabled- 2>&1")
                n = n + 1
            end
        end
        local before = commits()
        local r = run("gc")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("max_delete_fraction", r.stderr)
        assert.equals(before, commits())
        -- forced, the 60 go and the 40 stay
        r = run("gc", "-e", "force=true")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.equals(40, stored())
    end)
end)
