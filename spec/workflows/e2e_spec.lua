-- The DR workflows end to end on real components: vmdr-sim as the source cluster
-- (HTTPS + token), a bare Git repository, and the shared Ceph pair (site a = source,
-- site b = DR) with rbd-mirror. Checked with independent clients: kubectl, the git
-- CLI, kubectl kustomize, and librbd on each site.
-- needs: ceph
local h = require "support.helper"
local ceph = require "support.ceph"
local sim = require "support.sim"
local yaml = require "vmdr.yaml"

local SEL = "dr.demojam.com/enabled"

local function vm_yaml(ns, name, tier, claims, extra_labels)
    local vols, disks = {}, {}
    for i, c in ipairs(claims) do
        disks[#disks + 1] = string.format("          - name: d%d\n            disk: {bus: virtio}", i)
        vols[#vols + 1] = string.format("        - name: d%d\n          persistentVolumeClaim: {claimName: %s}", i, c)
    end
    return string.format([[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: %s
  namespace: %s
  labels: {app-tier: %s, %s: "true"%s}
spec:
  running: true
  template:
    spec:
      domain:
        devices:
          disks:
%s
        resources: {requests: {memory: 1Gi}}
      volumes:
%s
]], name, ns, tier, SEL, extra_labels or "", table.concat(disks, "\n"), table.concat(vols, "\n"))
end

describe("DR workflows end to end", function()
    local tmp, s, a, b, run, bare, kube
    local images = {}   -- claim -> image name
    local group = {     -- ns, vm, tier, claims
        { "shop", "db1", "database", { "db1-root", "db1-data" } },
        { "shop", "web1", "web", { "web1-root" } },
        { "blog", "web2", "web", { "web2-root" } },
    }

    local function kubectl(args)
        local argv = { "kubectl", "--kubeconfig", s.kubeconfig }
        for _, x in ipairs(args) do argv[#argv + 1] = x end
        return h.exec(argv)
    end
    local function git(args)
        return h.capture("git -C " .. h.q(bare) .. " " .. args .. " 2>&1")
    end
    local function commits() return tonumber((git("rev-list --count main"):match("%d+"))) end
    local function show(path) return git("show main:" .. path) end
    local function build(ns)
        local co = tmp .. "/co-" .. ns .. "-" .. math.random(1e9)
        h.capture("git clone -q " .. h.q(bare) .. " " .. h.q(co) .. " 2>&1")
        local r = h.exec { "kubectl", "kustomize", co .. "/vms/overlays/dr-east/" .. ns }
        assert(r.code == 0, "kubectl kustomize failed: " .. r.stderr)
        local out = {}
        for _, d in ipairs(assert(yaml.decode_all(r.stdout))) do
            if d.kind == "VirtualMachine" then out[d.metadata.name] = d end
        end
        return out, r.stdout
    end
    local function image(site, name)
        return assert((site == "a" and a or b):image("rbd", name))
    end

    setup(function()
        h.need("kubectl"); h.need("git")
        tmp = h.tmpdir("e2e")
        a, b = ceph.connect("a"), ceph.connect("b")
        -- the disks, on the source site
        local fx = tmp .. "/fixtures"
        for _, g in ipairs(group) do
            ceph.disks(a, fx, g[1], "e2e-", g[4], images)
            h.write(fx .. "/vm-" .. g[2] .. ".yaml", vm_yaml(g[1], g[2], g[3], g[4]))
        end
        -- a VM that is not DR-enabled must never reach Git
        h.write(fx .. "/vm-scratch.yaml", (vm_yaml("shop", "scratch", "web", { "db1-root" })
            :gsub(SEL .. ': "true"', SEL .. ': "false"')))
        s = sim.start { fixtures = fx, tls = true, token = true }
        local w = ceph.workspace(tmp, s, ceph.site("a"), ceph.site("b"), { author = "e2e" })
        run, bare = w.run, w.bare
        kube = s
    end)

    teardown(function()
        if s then s.stop() end
        if a then
            for _, img in pairs(images) do
                local i = a:image("rbd", img)
                if i then i:mirror_disable(true); i:close() end
            end
        end
    end)

    it("reconcile exports every DR-enabled VM, enables mirroring, and builds", function()
        local r = run("reconcile")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.equals(1, commits())
        -- files as the layout says, and the VM that is not DR-enabled absent
        local files = git("ls-tree -r --name-only main")
        for _, g in ipairs(group) do
            assert.matches("vms/base/" .. g[1] .. "/vm%-" .. g[2] .. "%.yaml", files)
            for _, claim in ipairs(g[4]) do
                assert.matches("vms/base/" .. g[1] .. "/pvc%-" .. claim:gsub("%-", "%%-") .. "%.yaml", files)
                assert.matches("vms/base/" .. g[1] .. "/pv%-pv%-" .. images[claim]:gsub("%-", "%%-") .. "%.yaml", files)
            end
        end
        assert.not_matches("scratch", files)
        assert.matches("vms/applicationset%.yaml", files)
        assert.matches("vms/overlays/dr%-east/components/failover%-control/kustomization%.yaml", files)
        -- the VM is power-neutral, the PV kept and pre-bound
        local vm = yaml.decode(show("vms/base/shop/vm-db1.yaml"))
        assert.is_nil(vm.spec.running); assert.is_nil(vm.spec.runStrategy)
        local pv = yaml.decode(show("vms/base/shop/pv-pv-" .. images["db1-root"] .. ".yaml"))
        assert.equals("Retain", pv.spec.persistentVolumeReclaimPolicy)
        assert.is_nil(pv.spec.claimRef.uid)
        -- every disk mirrored, primary on the source
        for _, img in pairs(images) do
            local info = image("a", img):mirror_info()
            assert.equals("enabled", info.state)
            assert.is_true(info.primary)
        end
        -- every overlay builds with kubectl kustomize, all VMs powered off
        for _, ns in ipairs { "shop", "blog" } do
            local vms = build(ns)
            for name, v in pairs(vms) do assert.equals("Halted", v.spec.runStrategy, name) end
        end
    end)

    it("a second reconcile with nothing changed makes no commit", function()
        local before = commits()
        local r = run("reconcile")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.equals(before, commits())
    end)

    it("event_sync after a label change and a resize commits exactly that VM's change", function()
        local before = commits()
        assert.equals(0, kubectl { "label", "vm", "-n", "shop", "web1", "owner=team-a" }.code)
        assert.equals(0, kubectl { "patch", "pvc", "-n", "shop", "web1-root", "--type", "merge", "-p",
            '{"spec":{"resources":{"requests":{"storage":"16Mi"}}}}' }.code)
        local r = run("event_sync", "-e", "namespace=shop", "-e", "name=web1")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.equals(before + 1, commits())
        local changed = git("diff --name-only main~1 main")
        assert.equals("vms/base/shop/pvc-web1-root.yaml\nvms/base/shop/vm-web1.yaml\n", changed)
        assert.matches("owner: team%-a", show("vms/base/shop/vm-web1.yaml"))
        assert.matches("16Mi", show("vms/base/shop/pvc-web1-root.yaml"))
    end)

    it("--dry-run shows the change and changes nothing, in every workflow", function()
        local function state()
            local parts = { git("rev-parse main"), git("ls-tree -r main") }
            local names = {}
            for claim in pairs(images) do names[#names + 1] = claim end
            table.sort(names)
            for _, claim in ipairs(names) do
                for _, site in ipairs { "a", "b" } do
                    local i = image(site, images[claim]):mirror_info()
                    parts[#parts + 1] = string.format("%s %s %s %s", site, claim, i.state, tostring(i.primary))
                end
            end
            local vms = kubectl { "get", "vm", "-A", "-o", "jsonpath={range .items[*]}{.metadata.name} "
                .. "{.spec.runStrategy} {.status.printableStatus}{'\\n'}{end}" }
            parts[#parts + 1] = vms.stdout
            return table.concat(parts, "\n")
        end
        -- rbd-mirror creates the DR copies on its own schedule: wait for them, so the
        -- state compared below cannot change by itself
        for _, img in pairs(images) do assert(ceph.image_when_there(b, "rbd", img)) end
        assert.equals(0, kubectl { "label", "vm", "-n", "blog", "web2", "owner=team-b" }.code)
        local before = state()
        local r = run("reconcile", "--dry-run")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("%+    owner: team%-b", r.stdout)
        for _, argv in ipairs {
            { "event_sync", "-e", "namespace=blog", "-e", "name=web2" },
            { "gc", "-e", "force=true" },
            { "failover", "-e", "vm_selector=app-tier=database", "-e", "force=true" },
            { "activate", "-e", "vm_selector=app-tier=database" },
            { "deactivate", "-e", "vm_selector=app-tier=web" },
            { "relocate", "-e", "vm_selector=app-tier=web" },
            { "failback", "-e", "vm_selector=app-tier=database", "-e", "force=true" },
        } do
            argv[#argv + 1] = "--dry-run"
            r = run(table.unpack(argv))
            assert.equals(0, r.code, argv[1] .. ": " .. r.stdout .. r.stderr)
            assert.equals(before, state(), argv[1] .. " --dry-run changed something")
        end
        -- what the storage steps would have done is shown
        r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true", "--dry-run")
        assert.matches("would promote", r.stdout .. r.stderr)
        r = run("activate", "-e", "vm_selector=app-tier=database", "--dry-run")
        assert.matches("labelSelector", r.stdout)
    end)

    it("failover of a selector promotes exactly that group's images on the DR site", function()
        -- the DR copies must have a complete snapshot before a forced promote can work
        for _, img in pairs(images) do
            local sid = assert(image("a", img):mirror_snapshot())
            local peer = assert(ceph.image_when_there(b, "rbd", img))
            assert(peer:wait_synced(sid, 60))
        end
        local r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("vmdr%-run activate %-e vm_selector=app%-tier=database", r.stdout)
        assert.is_true(image("b", images["db1-root"]):mirror_info().primary)
        assert.is_true(image("b", images["db1-data"]):mirror_info().primary)
        assert.is_false(image("b", images["web1-root"]):mirror_info().primary)
        assert.is_false(image("b", images["web2-root"]):mirror_info().primary)
        -- idempotent: a re-run finds them already primary
        r = run("failover", "-e", "vm_selector=app-tier=database", "-e", "force=true")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("already primary", r.stdout)
    end)

    it("failover of a selector that matches nothing fails loudly", function()
        local r = run("failover", "-e", "vm_selector=app-tier=nosuch")
        assert.equals(1, r.code)
        assert.matches("no VM in Git matches", r.stderr)
        r = run("failover", "-e", "vm_selector=app-tier in (")
        assert.equals(2, r.code)
    end)

    it("activate powers the group on; deactivate restores the control panel byte for byte", function()
        local panel = "vms/overlays/dr-east/components/failover-control/kustomization.yaml"
        local before = show(panel)
        local r = run("activate", "-e", "vm_selector=app-tier=database")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        local vms = build("shop")
        assert.equals("Always", vms.db1.spec.runStrategy)
        assert.equals("Halted", vms.web1.spec.runStrategy)
        r = run("deactivate", "-e", "vm_selector=app-tier=database")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.equals(before, show(panel))
        assert.equals("Halted", build("shop").db1.spec.runStrategy)
    end)

    it("failback refuses while the group is on at the DR site, then brings it home safely", function()
        -- the DR cluster: the group's VMs as Argo CD created them, one still running
        local dfx = tmp .. "/dr-fixtures"
        local function dr_vm(name, status)
            return vm_yaml("shop", name, "database", { name .. "-root" }):gsub("spec:\n  running: true\n", "spec:\n  runStrategy: Halted\n")
                .. "status: {printableStatus: " .. status .. "}\n"
        end
        h.write(dfx .. "/db1.yaml", dr_vm("db1", "Running"))
        local sdr = sim.start { fixtures = dfx }
        local r = run("failback", "-e", "vm_selector=app-tier=database", "-e", "dr.kubeconfig=" .. sdr.kubeconfig)
        assert.equals(1, r.code)
        assert.matches("still run at the DR site: shop/db1", r.stderr)
        sdr.stop()
        h.write(dfx .. "/db1.yaml", dr_vm("db1", "Stopped"))
        sdr = sim.start { fixtures = dfx }
        -- the control panel must not power the group on either
        assert.equals(0, run("activate", "-e", "vm_selector=app-tier=database").code)
        r = run("failback", "-e", "vm_selector=app-tier=database", "-e", "dr.kubeconfig=" .. sdr.kubeconfig)
        assert.equals(1, r.code)
        assert.matches("still powered on at the DR site", r.stderr)
        assert.equals(0, run("deactivate", "-e", "vm_selector=app-tier=database").code)
        -- db1 was force-promoted (split-brain): failback demotes and resyncs the source first
        r = run("failback", "-e", "vm_selector=app-tier=database", "-e", "dr.kubeconfig=" .. sdr.kubeconfig)
        sdr.stop()
        assert.equals(0, r.code, r.stdout .. r.stderr)
        for _, claim in ipairs { "db1-root", "db1-data" } do
            assert.is_true(image("a", images[claim]):mirror_info().primary, claim)
            assert.is_false(image("b", images[claim]):mirror_info().primary, claim)
        end
        -- and mirroring runs source -> DR again: a new snapshot reaches the DR copy
        local sid = assert(image("a", images["db1-root"]):mirror_snapshot())
        assert(image("b", images["db1-root"]):wait_synced(sid, 60))
    end)

    it("gc refuses an empty live list while Git holds VMs, and deletes nothing", function()
        local before = commits()
        local r = run("gc", "-e", "label_selector=nothing=matches")
        assert.equals(1, r.code)
        assert.matches("refusing", r.stderr)
        assert.equals(before, commits())
    end)

    it("gc removes a deleted VM with its files and disables its mirroring", function()
        assert.equals(0, kubectl { "delete", "vm", "-n", "blog", "web2" }.code)
        local r = run("gc") -- 1 of 3 is under gc.max_delete_fraction: no force needed
        assert.equals(0, r.code, r.stdout .. r.stderr)
        local files = git("ls-tree -r --name-only main")
        assert.not_matches("web2", files)
        assert.not_matches("vms/base/blog", files)
        assert.not_matches("vms/overlays/dr%-east/blog", files)
        assert.matches("vm%-web1", files)
        assert.equals("disabled", image("a", images["web2-root"]):mirror_info().state)
    end)
    it("relocate moves a group without force: source VMs stopped, DR copies primary", function()
        local r = run("relocate", "-e", "vm_selector=app-tier=web")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("vmdr%-run activate %-e vm_selector=app%-tier=web", r.stdout)
        local vm = kubectl { "get", "vm", "-n", "shop", "web1", "-o", "jsonpath={.spec.runStrategy} {.status.printableStatus}" }
        assert.equals("Halted Stopped", vm.stdout)
        assert.is_true(image("b", images["web1-root"]):mirror_info().primary)
        assert.is_false(image("a", images["web1-root"]):mirror_info().primary)
        -- a graceful move: no split-brain on either side
        assert.is_false(image("b", images["web1-root"]):mirror_status().split_brain)
        -- the database group, not selected, did not move
        assert.is_true(image("a", images["db1-root"]):mirror_info().primary)
    end)
end)
