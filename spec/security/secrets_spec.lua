-- No secret in any output (issue 8). Every workflow runs at debug level (-v -v, text and
-- JSON logs) with known secrets: the vmdr-sim bearer token and a client key in the source
-- kubeconfig (client-key-data and token), an exec credential plugin for the DR kubeconfig,
-- the Git password over smart HTTP from git.token_env, and an SSH key with a passphrase
-- from git.ssh_passphrase_env. Then every place a secret could land is searched: stdout,
-- stderr, JSON logs, every commit message and tree of the remote (git log -p), the files
-- of the working clone (.git/config, FETCH_HEAD, logs), and the argv and environment of
-- every child vmdr spawns (the exec storage driver's commands and the credential plugin
-- record their own argv, environment and their parent's /proc/PID/cmdline). Error paths
-- too: a wrong password, a wrong bearer token, an unreachable Git server, a URL carrying a
-- password.
--
-- Regression: children inherited vmdr's whole environment, so the exec storage driver's
-- commands and kubectl credential plugins received the Git token variable (git.token_env).
-- vmdr.proc and the k8s exec runner now leave out inherited variables that hold a
-- registered secret.
--
-- The exec driver's image name carries shell metacharacters: they must reach the command
-- as one argv element, and the file the `$(touch …)` would create must not exist.
-- Real components: vmdr-sim (TLS, token, client certificates), lighttpd + git
-- http-backend with basic auth, sshd, the git CLI.
-- lsan: full-stacks (libgit2 1.5's SSH transport; see cmake/tests.cmake)
local h = require "support.helper"
local sim = require "support.sim"
local gitsrv = require "support.gitsrv"
local k8stest = require "support.k8stest"
local json = require "vmdr.json"
local yaml = require "vmdr.yaml"

local SEL = "dr.demojam.com/enabled"

describe("secrets never leak", function()
    local tmp, s, S, certs, rec, cfg, bare, kc_dr
    local secrets = {}     -- label -> secret text
    local outputs = {}     -- { label, text } searched at the end
    local evil             -- the image name with shell metacharacters
    local GIT_ENV = { VMDR_SEC_GIT_PAT = nil }

    local function add_secret(label, v)
        assert(type(v) == "string" and #v >= 8, label)
        secrets[label] = v
    end
    local function collect(label, text) outputs[#outputs + 1] = { label, text or "" } end
    --- the first secret found in text, if any
    local function leaked(text)
        for label, v in pairs(secrets) do
            if text:find(v, 1, true) then return label end
        end
        return nil
    end
    local function assert_clean(label, text)
        local l = leaked(text)
        assert(l == nil, string.format("%s shows the secret %s", label, tostring(l)))
    end

    local function run(wf, extra, env, config)
        local argv = { wf, "-c", config or cfg, "-v", "-v" }
        if #outputs % 2 == 0 then argv[#argv + 1] = "--log-format"; argv[#argv + 1] = "json" end
        for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
        local r = h.run(argv, env or GIT_ENV)
        collect(wf .. " stdout", r.stdout)
        collect(wf .. " stderr", r.stderr)
        return r
    end

    setup(function()
        h.need("git"); h.need("kubectl")
        tmp = h.tmpdir("secrets")
        h.sh("mkdir -p " .. h.q(tmp .. "/certs"))
        certs = k8stest.certs(tmp .. "/certs")
        rec = tmp .. "/rec"
        h.sh("mkdir -p " .. h.q(rec))
        evil = "img $(touch " .. tmp .. "/pwned1);touch " .. tmp .. "/pwned2 `touch " .. tmp
            .. "/pwned3` 'q' \"dq\" | > " .. tmp .. "/pwned4"

        -- the source site: one VM with the evil image, one plain
        local fx = tmp .. "/fx"
        local objects = require "support.objects"
        h.write(fx .. "/db1.yaml", (objects.pvc_pv_yaml("sec", "db1-root", "pv-db1", "EVILIMAGE")
            :gsub("imageName: EVILIMAGE", function() return "imageName: " .. json.encode(evil) end)))
        h.write(fx .. "/web1.yaml", objects.pvc_pv_yaml("sec", "web1-root", "pv-web1", "csi-vol-web1"))
        for _, v in ipairs { { "db1", "database" }, { "web1", "web" } } do
            h.write(fx .. "/vm-" .. v[1] .. ".yaml", string.format([[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: %s, namespace: sec, labels: {app-tier: %s, %s: "true"}}
spec:
  runStrategy: Always
  template:
    spec:
      domain: {devices: {disks: [{name: d1, disk: {bus: virtio}}]}}
      volumes: [{name: d1, persistentVolumeClaim: {claimName: %s-root}}]
]], v[1], v[2], SEL, v[1]))
        end
        s = sim.start { fixtures = fx, tls = true, token = true, client_ca = certs.ca_crt,
            client_cert = certs.client_crt, client_key = certs.client_key }
        local kc = h.read(s.kubeconfig)
        assert.matches("client%-key%-data: ", kc)
        assert.matches("token: ", kc)
        add_secret("sim bearer token", s.token)
        add_secret("client-key-data", kc:match("client%-key%-data: (%S+)"):sub(1, 64))
        for line in certs.client_key_pem:gmatch("[^\n]+") do
            if not line:match("^%-%-%-%-%-") then add_secret("client key line", line) end
        end

        -- the DR kubeconfig: the same server through an exec credential plugin that
        -- records its argv, its environment and its parent's command line
        local plugin = h.write(tmp .. "/plugin", string.format([[#!/bin/sh
n=$(date +%%s%%N).$$
for a in "$@"; do printf '%%s\0' "$a"; done > %s/plugin-argv.$n
cat /proc/self/environ > %s/plugin-env.$n
cat /proc/$PPID/cmdline > %s/plugin-parent.$n
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%%s"}}' "$(cat %s)"
]], h.q(rec), h.q(rec), h.q(rec), h.q(s.dir .. "/token")))
        h.sh("chmod +x " .. h.q(plugin))
        kc_dr = k8stest.kubeconfig(tmp .. "/kc-dr.json", {
            clusters = { { name = "c", cluster = { server = s.url,
                ["certificate-authority-data"] = kc:match("certificate%-authority%-data: (%S+)") } } },
            users = { { name = "u", user = { exec = {
                apiVersion = "client.authentication.k8s.io/v1", command = plugin,
                args = { "get-token", "--cluster", "dr" }, interactiveMode = "Never" } } } },
            contexts = { { name = "x", context = { cluster = "c", user = "u" } } },
            ["current-context"] = "x",
        })

        -- Git over smart HTTP with basic auth; SSH with a passphrase-protected key
        S = gitsrv.up()
        add_secret("git password", S.token)
        add_secret("ssh passphrase", S.ssh_passphrase)
        for line in h.read(S.ssh_key_pass):gmatch("[^\n]+") do
            if not line:match("^%-%-%-%-%-") and #line >= 16 then add_secret("ssh key line", line) end
        end
        bare = gitsrv.bare(S, "sec")
        GIT_ENV = { VMDR_SEC_GIT_PAT = S.token }

        -- the exec storage driver's command records the same as the plugin
        local tool = h.write(tmp .. "/mirror-tool", string.format([[#!/bin/sh
n=$(date +%%s%%N).$$
for a in "$@"; do printf '%%s\0' "$a"; done > %s/tool-argv.$n
cat /proc/self/environ > %s/tool-env.$n
cat /proc/$PPID/cmdline > %s/tool-parent.$n
exit 0
]], h.q(rec), h.q(rec), h.q(rec)))
        h.sh("chmod +x " .. h.q(tool))
        local ops = {}
        for _, op in ipairs { "enable", "disable", "promote", "demote", "resync", "snapshot",
            "wait_synced", "status" } do
            ops[#ops + 1] = string.format("    %s: [%q, %s, '{pool}', '{image}', '{site}']", op, tool, op)
        end
        cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
dr: { kubeconfig: %s }
git:
  url: %s
  workdir: %s/clone
  token_env: VMDR_SEC_GIT_PAT
  author: { name: vmdr-sec, email: sec@localhost }
argocd: { destination: dr-east }
storage:
  driver: exec
  exec:
%s
monitor: { debounce: 0.2, lease_namespace: default }
relocate: { stop_timeout: 20, sync_timeout: 5 }
failback: { sync_timeout: 5 }
]], s.kubeconfig, kc_dr, gitsrv.urls(S, "sec").http, tmp, table.concat(ops, "\n")))
    end)

    teardown(function()
        if s then s.stop() end
        gitsrv.down(S)
    end)

    it("every workflow at debug level, text and JSON logs", function()
        local function ok(wf, extra, codes)
            local r = run(wf, extra)
            codes = codes or { [0] = true }
            assert(codes[r.code], string.format("%s exited %d:\n%s%s", wf, r.code, r.stdout, r.stderr))
            return r
        end
        ok("reconcile")
        ok("event_sync", { "-e", "namespace=sec", "-e", "name=web1" })
        ok("status", {}, { [0] = true, [1] = true })   -- 1: the exec driver reports no RPO
        ok("failover", { "-e", "vm_selector=app-tier=database" })
        ok("activate", { "-e", "vm_selector=app-tier=database" })
        ok("deactivate", { "-e", "vm_selector=app-tier=database" })
        ok("relocate", { "-e", "vm_selector=app-tier=web" })
        -- failback uses the DR kubeconfig (the credential plugin) to check the group is down
        ok("failback", { "-e", "vm_selector=app-tier=web" })
        assert.equals(0, s.kubectl { "delete", "vm", "-n", "sec", "web1" }.code)
        ok("gc", { "-e", "force=true" })
        -- the monitor, briefly: its converge at start runs the storage commands too
        local r = h.exec({ "timeout", "--preserve-status", "-s", "TERM", "8", h.vmdr_run, "monitor",
            "-c", cfg, "-v", "-v" },
            GIT_ENV)
        collect("monitor stdout", r.stdout)
        collect("monitor stderr", r.stderr)
        assert.matches("batch synced", r.stderr)
        assert.equals(0, r.code, r.stderr)
        -- the debug logs did say something about each workflow's work
        local all = ""
        for _, o in ipairs(outputs) do all = all .. o[2] end
        assert.matches('"level":"debug"', all)
        -- storage.exec.<op> are schema keys (they were warned about as unknown)
        assert.not_matches("unknown configuration key", all)
    end)

    it("SSH with a passphrase-protected key", function()
        local ssh_bare = gitsrv.bare(S, "sec-ssh")
        -- a configuration of its own: the HTTP one names a token
        local c = h.write(tmp .. "/vmdr-ssh.yaml", (h.read(cfg):gsub("  url: [^\n]+\n", "  url: "
            .. gitsrv.urls(S, "sec-ssh").ssh .. "\n"):gsub("  token_env: [^\n]+\n", string.format(
            "  ssh_key: %s\n  known_hosts: %s\n  ssh_passphrase_env: VMDR_SEC_SSH_PASS\n",
            S.ssh_key_pass, S.known_hosts)):gsub("/clone\n", "/clone-ssh\n")))
        local r = run("reconcile", {}, { VMDR_SEC_SSH_PASS = S.ssh_passphrase }, c)
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("vmdr reconcile", gitsrv.git(ssh_bare, "log -1 --format=%s main"))
        collect("ssh remote", gitsrv.git(ssh_bare, "log -p --all"))
    end)

    it("error paths: wrong password, wrong token, unreachable server, password in the URL", function()
        local wrong = "wrong-password-" .. S.token:sub(1, 6) .. "-xyz"
        add_secret("the wrong password", wrong)
        local r = run("reconcile", { "-e", "git.workdir=" .. tmp .. "/clone-wrong" },
            { VMDR_SEC_GIT_PAT = wrong })
        assert.equals(1, r.code)
        assert.matches("auth", r.stderr)

        local bad_kc = h.write(tmp .. "/kc-badtoken", (h.read(s.kubeconfig)
            :gsub("token: %S+", "token: not-the-token-5678")
            :gsub("\n%s*client%-certificate%-data: %S+", ""):gsub("\n%s*client%-key%-data: %S+", "")))
        add_secret("the wrong token", "not-the-token-5678")
        r = run("reconcile", { "-e", "source.kubeconfig=" .. bad_kc })
        assert.are_not.equal(0, r.code)
        assert.matches("unauthorized", r.stdout .. r.stderr)

        -- a port nobody listens on
        local port = tonumber(h.capture("python3 -c 'import socket; s=socket.socket(); "
            .. "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'"):match("%d+"))
        r = run("reconcile", { "-e", "git.url=http://127.0.0.1:" .. port .. "/git/sec.git",
            "-e", "git.workdir=" .. tmp .. "/clone-unreach" })
        assert.equals(1, r.code)
        assert.matches("unreachable: fetch failed: failed to connect to 127%.0%.0%.1", r.stderr)

        -- a URL carrying the password: refused, and the password not echoed
        -- (in the file: on vmdr-run's command line it would be the operator's own leak)
        local c = h.write(tmp .. "/vmdr-url.yaml", (h.read(cfg):gsub("  url: [^\n]+\n",
            "  url: http://vmdr:" .. S.token .. "@127.0.0.1:" .. S.http_port .. "/git/sec.git\n")
            :gsub("/clone\n", "/clone-url\n"):gsub("  token_env: [^\n]+\n", "")))
        r = run("reconcile", {}, {}, c)
        assert.are_not.equal(0, r.code)
        assert.matches("password", r.stderr)
    end)

    it("the remote, the clone and the children's argv and environment hold no secret", function()
        -- every commit message and every version of every file on the remote
        local log = gitsrv.git(bare, "log -p --all " .. h.q("--format=%H%n%an <%ae>%n%B"))
        assert.matches("vmdr reconcile", log)
        assert_clean("the remote's history", log)
        -- every plain file of the working clone (config, FETCH_HEAD, refs, logs, files)
        local files = h.capture("find " .. h.q(tmp .. "/clone") .. " -type f ! -path '*/objects/*'")
        local n = 0
        for f in files:gmatch("[^\n]+") do
            assert_clean(f, h.read(f) or "")
            n = n + 1
        end
        assert.is_true(n > 3)
        assert.matches("%[remote \"origin\"%]", h.read(tmp .. "/clone/.git/config")
            or h.read(tmp .. "/clone/config"))
        for _, o in ipairs(outputs) do assert_clean(o[1], o[2]) end

        -- the children: argv, environment, and vmdr-run's own command line
        local recs = h.capture("ls " .. h.q(rec))
        local kinds = { tool = 0, plugin = 0 }
        for f in recs:gmatch("[^\n]+") do
            local kind = f:match("^(%a+)%-")
            kinds[kind] = kinds[kind] + 1
            local text = h.read(rec .. "/" .. f)
            assert_clean(f, text)
            if f:match("%-env%.") then
                assert.is_nil(text:find("VMDR_SEC_GIT_PAT=", 1, true), f .. " got the Git token variable")
                assert.is_nil(text:find("VMDR_SEC_SSH_PASS=", 1, true), f)
                assert.is_not_nil(text:find("PATH=", 1, true), f)   -- the rest is inherited
            elseif f:match("%-parent%.") then
                assert.matches("vmdr%-run", text)
            end
        end
        assert.is_true(kinds.tool >= 8, "the storage commands ran " .. kinds.tool / 3 .. " times")
        assert.is_true(kinds.plugin >= 3, "the credential plugin never ran")
    end)

    it("shell metacharacters in an image name reach the command as one argv element", function()
        local seen = 0
        for f in h.capture("ls " .. h.q(rec)):gmatch("tool%-argv%.[^\n]+") do
            local args = {}
            for a in (h.read(rec .. "/" .. f) or ""):gmatch("([^%z]*)%z") do args[#args + 1] = a end
            if args[3] == evil then
                seen = seen + 1
                assert.equals(4, #args)
            else
                assert.equals("csi-vol-web1", args[3])
            end
        end
        assert.is_true(seen >= 3, "the evil image was passed " .. seen .. " times")
        for i = 1, 4 do
            assert.is_nil(h.read(tmp .. "/pwned" .. i), "a shell ran: pwned" .. i .. " exists")
        end
        -- and the exported PV holds it verbatim
        local pv = assert(yaml.decode(gitsrv.git(bare, "show main:vms/base/sec/pv-pv-db1.yaml")))
        assert.equals(evil, pv.spec.csi.volumeAttributes.imageName)
    end)
end)
