-- bench/faults/leaks: every workflow as its own vmdr-run process under LeakSanitizer
-- (see the shell wrapper). Real components: vmdr-sim, a bare Git repository over
-- file://, the exec storage driver (a command that records nothing and exits 0), and
-- with VMDR_LEAKS_CEPH the shared Ceph pair with the ceph driver.
local src = assert(os.getenv("VMDR_SOURCE_DIR"))
package.path = src .. "/spec/?.lua;" .. package.path
local h = require "support.helper"
local sim = require "support.sim"
local objects = require "support.objects"

local LSAN = {
    ASAN_OPTIONS = "detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=30",
    LSAN_OPTIONS = "suppressions=" .. src .. "/bench/faults/lsan.supp:print_suppressions=1",
}
local tmp = h.tmpdir("leaks")
local runs, leaky = 0, {}

local function check(label, r)
    runs = runs + 1
    local leak = r.stderr:find("LeakSanitizer", 1, true) or r.stderr:find("AddressSanitizer", 1, true)
    io.stdout:write(string.format("%-40s exit %d  %s\n", label, r.code, leak and "LEAK/ERROR" or "no leak"))
    if r.code ~= 0 and not leak and os.getenv("VMDR_LEAKS_VERBOSE") then
        io.stdout:write(r.stderr:sub(-1500), "\n")
    end
    if leak then
        leaky[#leaky + 1] = label
        io.stdout:write(r.stderr:sub(leak - 200), "\n")
    end
end

local function vmdr(label, argv, env)
    local e = {}
    for k, v in pairs(LSAN) do e[k] = v end
    for k, v in pairs(env or {}) do e[k] = v end
    local full = { h.vmdr_run }
    for _, a in ipairs(argv) do full[#full + 1] = a end
    check(label, h.exec(full, e))
end

-- the site: two VMs with one disk each, the ceph-csi PVs in pool rbd
local function site(fx, images)
    for i, img in ipairs(images) do
        local name = "vm" .. i
        h.write(fx .. "/" .. name .. "-disk.yaml", objects.pvc_pv_yaml("leaks", name .. "-root",
            "pv-" .. img, img))
        h.write(fx .. "/" .. name .. ".yaml", string.format([[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: %s, namespace: leaks, labels: {app-tier: t%d, dr.demojam.com/enabled: "true"}}
spec:
  runStrategy: Always
  template:
    spec:
      domain: {devices: {disks: [{name: d1, disk: {bus: virtio}}]}}
      volumes: [{name: d1, persistentVolumeClaim: {claimName: %s-root}}]
]], name, i, name))
    end
end

-- exec driver runs
local monitor_pid   -- killed on the way out whatever happens
local fx = tmp .. "/fx"
site(fx, { "img-a", "img-b" })
local s = sim.start { fixtures = fx, tls = true, token = true }
local ok, err = pcall(function()
    local bare = tmp .. "/m.git"
    h.capture("git init -q --bare -b main " .. h.q(bare))
    local ops = {}
    for _, op in ipairs { "enable", "disable", "promote", "demote", "resync", "snapshot",
        "wait_synced", "status" } do
        ops[#ops + 1] = string.format("    %s: [/bin/true, '{image}']", op)
    end
    local cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
dr: { kubeconfig: %s }
git: { url: "file://%s", workdir: %s/clone }
argocd: { destination: dr-east }
storage:
  driver: exec
  exec:
%s
monitor: { debounce: 0.2, lease_namespace: default }
relocate: { stop_timeout: 20, sync_timeout: 5 }
]], s.kubeconfig, s.kubeconfig, bare, tmp, table.concat(ops, "\n")))
    local function wf(name, ...) vmdr(name, { name, "-c", cfg, "-v", "-v", ... }) end
    wf("reconcile")
    wf("reconcile")                       -- idle: no commit
    wf("event_sync", "-e", "namespace=leaks", "-e", "name=vm1")
    wf("status")
    wf("failover", "-e", "vm_selector=app-tier=t1")
    wf("activate", "-e", "vm_selector=app-tier=t1")
    wf("deactivate", "-e", "vm_selector=app-tier=t1")
    wf("relocate", "-e", "vm_selector=app-tier=t2")
    wf("failback", "-e", "vm_selector=app-tier=t2")
    assert(s.kubectl { "delete", "vm", "-n", "leaks", "vm2" }.code == 0)
    wf("gc", "-e", "force=true")
    wf("reconcile", "--dry-run")
    -- an error path: the API refuses every request
    s.admin { reject_auth = true }
    wf("reconcile")
    s.admin { reject_auth = false }
    -- the monitor: start, converge, a few events, SIGTERM
    local d = tmp .. "/mon"
    h.sh("mkdir -p " .. h.q(d))
    local e = {}
    for k, v in pairs(LSAN) do e[#e + 1] = k .. "=" .. h.q(v) end
    assert(h.sh(string.format("env %s %s monitor -c %s -v >%s/out 2>%s/err & echo $! >%s/pid",
        table.concat(e, " "), h.q(h.vmdr_run), h.q(cfg), h.q(d), h.q(d), h.q(d))) == 0)
    local t = require "vmdr.time"
    monitor_pid = (h.read(d .. "/pid") or ""):match("%d+")
    local dl = t.monotonic() + 120
    while not (h.read(d .. "/err") or ""):find("batch synced") do
        assert(t.monotonic() < dl, "the monitor never synced: " .. (h.read(d .. "/err") or ""))
        t.sleep(0.1)
    end
    for i = 1, 5 do
        assert(s.kubectl { "label", "--overwrite", "vm", "-n", "leaks", "vm1", "seq=" .. i }.code == 0)
        t.sleep(0.5)
    end
    local pid = h.read(d .. "/pid"):match("%d+")
    monitor_pid = nil
    h.sh("kill -TERM " .. pid)
    while h.sh("kill -0 " .. pid .. " 2>/dev/null") == 0 do t.sleep(0.1) end
    check("monitor (5 events, SIGTERM)", { code = 0, stderr = h.read(d .. "/err") or "" })
end)
if monitor_pid then h.sh("kill -KILL " .. monitor_pid .. " 2>/dev/null") end
s.stop()
if not ok then error(err, 0) end

-- the ceph driver on the real pair
local cdir = os.getenv("VMDR_LEAKS_CEPH")
if cdir and cdir ~= "" then
    local env = {}
    for k, v in (h.read(cdir .. "/env") or error("no Ceph pair in " .. cdir)):gmatch("([%w_]+)=([^\n]*)") do
        env[k] = v
    end
    local rbd = require "vmdr.rbd"
    local a = assert(rbd.connect { conf = env.CEPH_A_CONF, keyring = env.CEPH_A_KEYRING, user = "admin" })
    local images = { "leaks-" .. h.pid() .. "-a", "leaks-" .. h.pid() .. "-b" }
    for _, img in ipairs(images) do
        assert(a:create_image("rbd", img, 4 * 1024 * 1024, { features = "layering,exclusive-lock" }))
    end
    local cfx = tmp .. "/cfx"
    site(cfx, images)
    local cs = sim.start { fixtures = cfx }
    local ok2, err2 = pcall(function()
        local bare = tmp .. "/c.git"
        h.capture("git init -q --bare -b main " .. h.q(bare))
        local cfg = h.write(tmp .. "/ceph.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
git: { url: "file://%s", workdir: %s/cclone }
argocd: { destination: dr-east }
storage:
  driver: ceph
  ceph:
    source: { conf: %s, keyring: %s, user: admin }
    dr: { conf: %s, keyring: %s, user: admin }
]], cs.kubeconfig, bare, tmp, env.CEPH_A_CONF, env.CEPH_A_KEYRING, env.CEPH_B_CONF, env.CEPH_B_KEYRING))
        local function wf(name, ...) vmdr("ceph " .. name, { name, "-c", cfg, ... }) end
        wf("reconcile")
        h.sh("sleep 5")   -- let rbd-mirror create the DR copies
        wf("status")
        wf("failover", "-e", "all=true", "-e", "force=true")
        wf("status")
    end)
    cs.stop()
    local b = assert(rbd.connect { conf = env.CEPH_B_CONF, keyring = env.CEPH_B_KEYRING, user = "admin" })
    for _, c in ipairs { a, b } do
        for _, img in ipairs(images) do
            local i = c:image("rbd", img)
            if i then i:mirror_disable(true); i:close(); c:remove_image("rbd", img) end
        end
        c:close()
    end
    if not ok2 then error(err2, 0) end
end

io.stdout:write(string.format("%d vmdr-run processes under LeakSanitizer, %d with a leak or error%s\n",
    runs, #leaky, #leaky > 0 and (": " .. table.concat(leaky, ", ")) or ""))
os.exit(#leaky == 0 and 0 or 1)
