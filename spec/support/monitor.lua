-- Test support for the monitor specs: a bare manifests repository, a config file, and
-- monitors started as real background processes (vmdr-run monitor) that can be
-- signalled, killed and waited for. Test code only.
local h = require "support.helper"
local t = require "vmdr.time"

local M = {}

--- A VirtualMachine manifest with no disks (storage is not the point here) or with
--- claims; labels is a table; memory like "1Gi".
function M.vm_yaml(ns, name, labels, memory, claims)
    local ls = {}
    local keys = {}
    for k in pairs(labels) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do ls[#ls + 1] = string.format("%q: %q", k, labels[k]) end
    local vols = ""
    for i, c in ipairs(claims or {}) do
        vols = vols .. string.format("\n        - name: d%d\n          persistentVolumeClaim: {claimName: %s}",
            i, c)
    end
    return string.format([[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: %s
  namespace: %s
  labels: {%s}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices: {}
        resources: {requests: {memory: %s}}
      volumes:%s
]], name, ns, table.concat(ls, ", "), memory or "1Gi", vols == "" and " []" or vols)
end

--- A bare repository and a vmdr config for monitor runs against sim s.
function M.setup(s, extra)
    local tmp = h.tmpdir("mon")
    local bare = tmp .. "/manifests.git"
    h.capture("git init -q --bare -b main " .. h.q(bare))
    local cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
git:
  url: file://%s
  workdir: %s/clone
  author: { name: vmdr-monitor, email: monitor@localhost }
argocd: { destination: dr-east }
storage: { driver: none }
%s
]], s.kubeconfig, bare, tmp, extra or ""))
    local env = { tmp = tmp, bare = bare, cfg = cfg, n = 0 }
    function env.git(args)
        return h.capture("git --git-dir " .. h.q(bare) .. " " .. args .. " 2>&1")
    end
    function env.commits()
        local out = h.capture("git --git-dir " .. h.q(bare) .. " rev-list --count main 2>/dev/null || echo 0")
        return tonumber(out:match("%d+")) or 0
    end
    --- The VM files on the remote: { ["ns/name"] = yaml text }
    function env.vms()
        local out = {}
        if env.commits() == 0 then return out end
        -- one commit for the whole read: main may move meanwhile
        local head = env.git("rev-parse main"):match("%x+")
        for p in env.git("ls-tree -r --name-only " .. head):gmatch("[^\n]+") do
            local ns, name = p:match("^vms/base/([^/]+)/vm%-(.+)%.yaml$")
            if ns then out[ns .. "/" .. name] = env.git("show " .. h.q(head .. ":" .. p)) end
        end
        return out
    end
    --- Starts a monitor; returns {pid=, out=, err=, rc=fn, signal=fn, wait=fn}.
    function env.start(args)
        env.n = env.n + 1
        local d = tmp .. "/m" .. env.n
        h.sh("mkdir -p " .. h.q(d))
        local argv = { h.vmdr_run, "monitor", "-c", cfg }
        for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
        local parts = {}
        for i, a in ipairs(argv) do parts[i] = h.q(a) end
        local inner = table.concat(parts, " ") .. " >" .. h.q(d .. "/out") .. " 2>" .. h.q(d .. "/err")
            .. " </dev/null & echo $! >" .. h.q(d .. "/pid") .. "; wait $!; echo $? >" .. h.q(d .. "/rc")
        assert(h.sh("sh -c " .. h.q(inner) .. " >/dev/null 2>&1 &") == 0)
        local deadline = t.monotonic() + 10
        while not (h.read(d .. "/pid") or ""):match("%d") do
            assert(t.monotonic() < deadline, "monitor did not start")
            t.sleep(0.02)
        end
        local m = { dir = d, pid = h.read(d .. "/pid"):match("%d+") }
        function m.log() return h.read(d .. "/err") or "" end
        function m.rc()
            local r = h.read(d .. "/rc")
            return r and tonumber(r:match("%d+")) or nil
        end
        function m.signal(sig) h.sh("kill -" .. sig .. " " .. m.pid .. " 2>/dev/null") end
        function m.wait(timeout)
            local dl = t.monotonic() + (timeout or 30)
            while not m.rc() do
                if t.monotonic() > dl then return nil end
                t.sleep(0.05)
            end
            return m.rc()
        end
        --- Waits until the log matches Lua pattern pat; raises when the monitor exits
        --- first or timeout seconds (600) pass.
        function m.wait_log(pat, timeout)
            local dl = t.monotonic() + (timeout or 600)
            while not m.log():find(pat) do
                if m.rc() then error("monitor exited: " .. m.log():sub(-2000), 2) end
                if t.monotonic() > dl then error("monitor never logged " .. pat, 2) end
                t.sleep(0.05)
            end
        end
        function m.stop()
            if m.rc() then return m.rc() end
            m.signal("TERM")
            local rc = m.wait(30)
            if not rc then m.signal("KILL"); rc = m.wait(5) end
            return rc
        end
        return m
    end
    return env
end

--- A process's resident set in kB: VmRSS, RssAnon, RssFile (nil once it is gone).
function M.rss_kb(pid)
    local s = h.read("/proc/" .. pid .. "/status") or ""
    return tonumber(s:match("VmRSS:%s+(%d+)")), tonumber(s:match("RssAnon:%s+(%d+)")),
        tonumber(s:match("RssFile:%s+(%d+)"))
end

--- Polls fn until it returns a true value; raises with what(last) after timeout seconds.
function M.eventually(fn, timeout, what)
    local dl = t.monotonic() + (timeout or 60)
    local last
    while true do
        local v, info = fn()
        if v then return v end
        last = info
        if t.monotonic() > dl then
            error((what or "condition not reached") .. (last and (": " .. tostring(last)) or ""), 2)
        end
        t.sleep(0.1)
    end
end

return M
