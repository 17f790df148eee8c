-- Hostile repository content (issue 8, "Bad input"): a hand-edited control panel that
-- is not valid YAML, a VM file naming another VM, a VM file that does not parse, symlinks
-- (out of the repository, inside it, over a machine-owned file, a namespace directory),
-- huge files. Expected: a clear error naming the file, nothing destroyed, nothing read or
-- written through a link. Regression spec of:
--   * "gc, event_sync: ... keep claims of unreadable VM files" (settling a namespace
--     deleted the pvc-/pv- files of a VM file that did not parse);
--   * "activate: a control panel that is not valid YAML is refused naming the file" (an
--     active block in a broken file was reported "already active");
--   * "gc, failover: exit 1 when a VM file could not be read" (it was only logged), and
--     "status: exit 1 when a VM file could not be read";
--   * "failback: a control panel it cannot read is not 'group inactive'".
-- Real components: vmdr-sim, a smart-HTTP Git server with a token (spec/support/gitsrv.lua),
-- the git CLI as the operator's editor, the exec storage driver recording its argv.
local h = require "support.helper"
local sim = require "support.sim"
local gitexec = require "support.gitexec"
local yaml = require "vmdr.yaml"
local vm_yaml = require("support.objects").vm_disk_yaml

local PANEL = "vms/overlays/dr-east/components/failover-control/kustomization.yaml"

describe("hostile repository content", function()
    local tmp, s, gx, bare, exec_log, run, git, show, calls
    local edits = 0

    local function head() return (git("rev-parse main"):gsub("%s+$", "")) end
    local function tree() return git("ls-tree -r main") end
    -- an operator's commit, made with the git CLI: fn(dir) edits a fresh clone
    local function edit(msg, fn)
        edits = edits + 1
        local w = tmp .. "/edit-" .. edits
        h.capture("git clone -q " .. h.q(bare) .. " " .. h.q(w) .. " 2>&1")
        fn(w)
        h.capture("cd " .. h.q(w) .. " && git add -A && git -c user.name=op -c user.email=op@example.com"
            .. " commit -qm " .. h.q(msg) .. " && git push -q origin main 2>&1")
        h.sh("rm -rf " .. h.q(w))
    end
    -- every workflow, on the same hostile content: the exit codes and stderr
    local function all_workflows()
        return {
            reconcile = run("reconcile"),
            gc = run("gc"),
            failover = run("failover", "-e", "all=true"),
            activate = run("activate", "-e", "vm_selector=app=app1"),
            status = run("status"),
            event_sync = run("event_sync", "-e", "namespace=team1", "-e", "name=app1"),
        }
    end

    setup(function()
        h.need("git")
        tmp = h.tmpdir("hostile-repo")
        h.write(tmp .. "/fx/team1.yaml", vm_yaml("team1", "app1", "app1-root") .. "---\n"
            .. vm_yaml("team1", "app2", "app2-root"))
        h.write(tmp .. "/fx/team2.yaml", vm_yaml("team2", "db1", "db1-root"))
        s = sim.start { fixtures = tmp .. "/fx" }
        gx = gitexec.up(tmp)
        bare, exec_log = gx.bare, gx.exec_log
        run, git, show, calls = gx.run, gx.git, gx.show, gx.calls
        gx.config(s, { "enable", "disable", "promote", "status" }, { "{spec}" })
        local r = run("reconcile")
        assert(r.code == 0, r.stderr)
    end)

    teardown(function()
        if s then s.stop() end
        if gx then gx.down() end
    end)

    it("a control panel that is not valid YAML: kept byte for byte, activate refuses naming it", function()
        local broken = show(PANEL):gsub("patches:", "patches: [unclosed\n  oops: {", 1)
        -- an active power-on block too: activate must not answer "already active"
        broken = broken .. "  - path: patches/power-on.yaml\n    target:\n      group: kubevirt.io\n"
            .. "      kind: VirtualMachine\n      labelSelector: \"app=app1\"\n"
        edit("hand edit of the panel", function(w) h.write(w .. "/" .. PANEL, broken) end)
        local before = head()
        local r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(broken, show(PANEL))
        assert.equals(before, head())
        for _, wf in ipairs { "activate", "deactivate" } do
            r = run(wf, "-e", "vm_selector=app=app1")
            assert.equals(1, r.code, r.stdout .. r.stderr)
            assert.matches(PANEL:gsub("%p", "%%%0") .. ": the control panel is not valid YAML %(.*line %d+",
                r.stderr)
            assert.matches("fix it by hand first", r.stderr)
            assert.not_matches("already", r.stdout .. r.stderr)
            assert.equals(before, head())
        end
        -- failback cannot tell whether the group is powered on at the DR site: it refuses
        -- before any storage command
        h.write(exec_log, "")
        r = run("failback", "-e", "vm_selector=app=app1")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("cannot tell whether the group is powered on at the DR site: "
            .. PANEL:gsub("%p", "%%%0") .. ": invalid: the control panel is not valid YAML", r.stderr)
        assert.same({}, calls())
        assert.equals(before, head())
        -- the operator repairs it: activate works again
        edit("repair the panel", function(w)
            h.write(w .. "/" .. PANEL, (broken:gsub("patches: %[unclosed\n  oops: {", "patches:", 1)))
        end)
        r = run("activate", "-e", "vm_selector=app=app1")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.matches("already active", r.stdout)
    end)

    it("a VM file naming another VM: left alone by gc and failover, named, exit 1", function()
        edit("a file that lies about its VM", function(w)
            h.write(w .. "/vms/base/team1/vm-ghost.yaml", (h.read(w .. "/vms/base/team1/vm-app2.yaml")))
        end)
        local before = head()
        h.write(exec_log, "")
        local r = run("gc")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("not collected: the file is not what its name says file=vms/base/team1/vm%-ghost%.yaml "
            .. "reason=\"vms/base/team1/vm%-ghost%.yaml holds VirtualMachine \\\"team1\\\"/\\\"app2\\\", "
            .. "not team1/ghost\"", r.stderr)
        assert.matches("1 VM file%(s%) left alone", r.stderr)
        assert.equals(before, head())
        assert.same({}, calls())
        -- failover promotes every readable VM, and says which file it could not read
        r = run("failover", "-e", "all=true")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.same({ "promote rbd/img-app1", "promote rbd/img-app2", "promote rbd/img-db1" }, calls())
        assert.matches("team1%s+ghost%s+%-%s+FAILED%s+unreadable VM file vms/base/team1/vm%-ghost%.yaml", r.stdout)
        assert.matches("0 image%(s%) not promoted, 1 VM file%(s%) unreadable", r.stderr)
        assert.equals(before, head())
        -- status reports the others, and exits 1 for the file whose health it cannot know
        r = run("status")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("unreadable VM file skipped file=vms/base/team1/vm%-ghost%.yaml", r.stderr)
        assert.matches("1 VM file%(s%) unreadable %(see above%): their status is unknown", r.stderr)
        assert.matches("team2%s+db1", r.stdout)
        -- reconcile owns vm-<name>.yaml of live VMs: a lie in one of those is corrected
        edit("vm-app1 names app2", function(w)
            h.write(w .. "/vms/base/team1/vm-app1.yaml", (h.read(w .. "/vms/base/team1/vm-app2.yaml")))
        end)
        r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals("app1", yaml.decode(show("vms/base/team1/vm-app1.yaml")).metadata.name)
        edit("drop the ghost", function(w) os.remove(w .. "/vms/base/team1/vm-ghost.yaml") end)
    end)

    it("a VM file whose fields have the wrong types: no crash; read as what it is", function()
        -- labels a string, the template a number, volumes a map: each level of the wrong type
        edit("odd types", function(w)
            h.write(w .. "/vms/base/team2/vm-odd.yaml", "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\n"
                .. "metadata: {name: odd, namespace: team2, labels: just-a-string}\n"
                .. "spec: {template: 5, dataVolumeTemplates: {a: b}}\n")
            h.write(w .. "/vms/base/team2/vm-odd2.yaml", "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\n"
                .. "metadata: {name: odd2, namespace: team2, labels: [a, b]}\n"
                .. "spec: {template: {spec: {volumes: {x: 1}}}}\n")
            h.write(w .. "/vms/base/team2/vm-odd3.yaml", "apiVersion: v1\nkind: Secret\n"
                .. "metadata: {name: odd3, namespace: team2}\n")
        end)
        h.write(exec_log, "")
        local r = run("failover", "-e", "all=true")
        assert.equals(1, r.code, r.stdout .. r.stderr) -- vm-odd3 holds a Secret
        assert.not_matches("traceback", r.stderr)
        assert.matches("team2%s+odd3%s+%-%s+FAILED%s+unreadable VM file", r.stdout)
        assert.matches("vms/base/team2/vm%-odd3%.yaml holds a Secret, not a VirtualMachine", r.stderr)
        r = run("status")
        assert.not_matches("traceback", r.stderr)
        assert.equals(1, r.code, r.stderr) -- vm-odd3 holds a Secret
        -- gc: no live VM of those names, so odd and odd2 are orphans (files named as they
        -- say, nothing to disable); the Secret is left alone
        r = run("gc", "-e", "force=true")
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.not_matches("traceback", r.stderr)
        local t = tree()
        assert.not_matches("vm%-odd%.yaml", t)
        assert.not_matches("vm%-odd2%.yaml", t)
        assert.matches("vm%-odd3%.yaml", t)
        for _, c in ipairs(calls()) do assert.not_matches("^disable", c) end
        edit("drop the Secret", function(w) os.remove(w .. "/vms/base/team2/vm-odd3.yaml") end)
    end)

    it("a VM file that does not parse keeps its claim files when its namespace is settled", function()
        edit("break vm-app2", function(w)
            h.write(w .. "/vms/base/team1/vm-app2.yaml", "apiVersion: kubevirt.io/v1\nmetadata: {name: [\n")
        end)
        -- app2 leaves the DR set, and a new VM in team1 makes reconcile settle the namespace
        local k = s.kubectl { "label", "vm", "-n", "team1", "app2", "dr.demojam.com/enabled-" }
        assert.equals(0, k.code, k.stderr)
        k = s.kubectl({ "create", "-f", "-" }, vm_yaml("team1", "app3", "app3-root"))
        assert.equals(0, k.code, k.stderr)
        local r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        local t = tree()
        assert.matches("vms/base/team1/vm%-app3%.yaml", t)
        assert.matches("vms/base/team1/pvc%-app2%-root%.yaml", t)
        assert.matches("vms/base/team1/pv%-pv%-app2%.yaml", t)
        -- gc cannot judge it: nothing removed, mirroring untouched, exit 1 naming the file
        local before = head()
        h.write(exec_log, "")
        r = run("gc")
        assert.equals(1, r.code, r.stderr)
        assert.matches("cannot parse vms/base/team1/vm%-app2%.yaml: .*line", r.stderr)
        assert.equals(before, head())
        assert.same({}, calls())
        -- event_sync for it (the monitor's path) keeps it too, and says why
        r = run("event_sync", "-e", "namespace=team1", "-e", "name=app2")
        assert.equals(1, r.code, r.stderr)
        assert.matches("VM team1/app2 not synced: cannot parse vms/base/team1/vm%-app2%.yaml", r.stderr)
        assert.equals(before, head())
        assert.same({}, calls())
    end)

    it("a symlink out of the repository is refused by every workflow, naming it; nothing changes", function()
        local before = head()
        edit("a link to /etc/passwd", function(w)
            h.sh("ln -s /etc/passwd " .. h.q(w .. "/vms/base/team1/vm-evil.yaml"))
            h.sh("ln -s ../../../../../../../../etc " .. h.q(w .. "/vms/base/team2/pvc-etc.yaml"))
        end)
        local linked = head()
        assert.not_equals(before, linked)
        h.write(exec_log, "")
        local res = all_workflows()
        for wf, r in pairs(res) do
            assert.equals(1, r.code, wf .. ": " .. r.stdout .. r.stderr)
            assert.matches("hostile tree from the remote: symlink 'vms/base/team%d/[%w%-]+%.yaml' points "
                .. "outside the repository %(refused, nothing written%)", r.stderr, 1, false, wf)
            assert.not_matches("root:x:0:0", r.stdout .. r.stderr)
        end
        assert.equals(linked, head())
        -- nothing was read or written through the link: no copy of /etc/passwd, no link followed
        assert.equals(1, h.sh("grep -r -q -F 'root:x:0:0' " .. h.q(tmp .. "/clone") .. " 2>/dev/null"))
        for _, c in ipairs(calls()) do assert.not_matches("^disable", c) end
        edit("drop the links", function(w)
            os.remove(w .. "/vms/base/team1/vm-evil.yaml")
            os.remove(w .. "/vms/base/team2/pvc-etc.yaml")
        end)
    end)

    it("links inside the repository are never followed: read as what they are, replaced on write", function()
        edit("links inside", function(w)
            -- an alias of a VM file, a machine-owned file replaced by a link, a namespace link
            h.sh("ln -s vm-app1.yaml " .. h.q(w .. "/vms/base/team1/vm-alias.yaml"))
            os.remove(w .. "/vms/base/team2/vm-db1.yaml")
            h.sh("ln -s ../team1/pvc-app1-root.yaml " .. h.q(w .. "/vms/base/team2/vm-db1.yaml"))
            h.sh("ln -s team1 " .. h.q(w .. "/vms/base/team9"))
        end)
        local pvc_before = show("vms/base/team1/pvc-app1-root.yaml")
        h.write(exec_log, "")
        local r = run("gc")
        assert.equals(1, r.code, r.stderr)
        assert.matches("file=vms/base/team1/vm%-alias%.yaml reason=\"cannot parse vms/base/team1/vm%-alias%.yaml: "
            .. "not a YAML mapping but a string\"", r.stderr)
        assert.same({}, calls())
        -- reconcile writes the real VM over the link: a regular file, the link's target unchanged
        r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        local t = tree()
        assert.matches("100644 blob %x+\tvms/base/team2/vm%-db1%.yaml", t)
        assert.equals("db1", yaml.decode(show("vms/base/team2/vm-db1.yaml")).metadata.name)
        assert.equals(pvc_before, show("vms/base/team1/pvc-app1-root.yaml"))
        assert.matches("120000 blob %x+\tvms/base/team9\n", t)
        assert.matches("120000 blob %x+\tvms/base/team1/vm%-alias%.yaml", t)
        -- the work tree holds the link as a link, pointing where Git says
        assert.equals("vm-app1.yaml", h.capture("readlink " .. h.q(tmp .. "/clone/vms/base/team1/vm-alias.yaml"))
            :gsub("%s+$", ""))
        edit("drop the links", function(w)
            os.remove(w .. "/vms/base/team1/vm-alias.yaml")
            os.remove(w .. "/vms/base/team9")
        end)
    end)

    it("huge files: a 16 MiB VM file that is not YAML and a 4 MiB blob are left as they are", function()
        edit("huge files", function(w)
            -- bytes that are no YAML at all (NUL), and a blob beside the manifests
            h.sh("head -c 16777216 /dev/zero > " .. h.q(w .. "/vms/base/team2/vm-huge.yaml"))
            h.sh("head -c 4194304 /dev/urandom > " .. h.q(w .. "/vms/base/team2/blob.bin"))
        end)
        local before = head()
        local blob = git("rev-parse main:vms/base/team2/blob.bin")
        h.write(exec_log, "")
        local r = run("gc")
        assert.equals(1, r.code, r.stderr)
        assert.matches("cannot parse vms/base/team2/vm%-huge%.yaml", r.stderr)
        assert.equals(before, head())
        r = run("failover", "-e", "all=true")
        assert.equals(1, r.code, r.stderr)
        assert.matches("unreadable VM file vms/base/team2/vm%-huge%.yaml", r.stdout)
        r = run("reconcile")
        assert.equals(0, r.code, r.stderr)
        assert.equals(blob, git("rev-parse main:vms/base/team2/blob.bin"))
        assert.matches("vms/base/team2/vm%-huge%.yaml", tree())
        -- the kustomization lists the VM files it finds, never the blob
        assert.not_matches("blob", show("vms/base/team2/kustomization.yaml"))
        for _, c in ipairs(calls()) do assert.not_matches("^disable", c) end
    end)
end)
