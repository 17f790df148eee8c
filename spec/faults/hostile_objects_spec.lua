-- Hostile objects from the API (issue 8, "Bad input"): names that are not DNS-1123,
-- look-alike and control characters, names too long for a file, 1 MB annotations, deeply
-- nested specs, a PVC pointing at another namespace's PV, PVs with no csi block or an
-- in-tree spec.rbd, a disk shared by two VMs. Each must give a clear error for its VM
-- (or be exported intact), the others synced, nothing written outside the repository.
-- Regression spec of:
--   * "layout: refuse names whose file would exceed NAME_MAX" (a 253-character name made
--     a 261-byte file name: no checkout of the repository could hold it);
--   * "gc, event_sync: never disable mirroring of a disk another VM uses";
--   * "log: escape control characters in text-format messages and field values";
--   * "reconcile, event_sync: warn about a disk the storage driver does not replicate".
-- Real components: vmdr-sim (objects a real API server would refuse are loaded from
-- fixture files, which the sim takes as they are; the others are created through the
-- API with curl), a smart-HTTP Git server with a token (spec/support/gitsrv.lua), the
-- exec storage driver running a script that records its argv.
local h = require "support.helper"
local sim = require "support.sim"
local gitexec = require "support.gitexec"
local objects = require "support.objects"
local json = require "vmdr.json"
local yaml = require "vmdr.yaml"

local vm, pvc, pv, csi = objects.vm, objects.pvc, objects.pv, objects.csi
local vm_with_disk = objects.vm_with_disk
local LABEL = objects.LABEL

local function nested(depth)
    local top = {}
    local cur = top
    for _ = 1, depth do cur.x = {}; cur = cur.x end
    return top
end

local CYRILLIC_GOOD = "g\u{43e}\u{43e}d" -- "good" with two Cyrillic o
local LONG = string.rep("a", 63) .. "." .. string.rep("b", 63) .. "." .. string.rep("c", 63) .. "."
    .. string.rep("d", 61) -- 253 characters: a valid name, but vm-<name>.yaml is 261 bytes
local ESCAPE = "../../../../../../hostile-escape-marker"

describe("hostile objects from the API", function()
    local tmp, s, gx, bare, exec_log, run, git, show, calls
    local r1 -- the first reconcile

    local function tree() return git("ls-tree -r --name-only main") end
    local function commits() return tonumber((git("rev-list --count main"):match("%d+"))) end
    -- text as it appears inside a quoted log field (reason="..."): " and \ escaped
    local function logged(text) return (text:gsub('[\\"]', '\\%0')) end
    local function in_log(r, text)
        assert.truthy(r.stderr:find(logged(text), 1, true), text .. "\nnot in:\n" .. r.stderr)
    end
    local function create(obj)
        local path = obj.kind == "VirtualMachine"
            and ("/apis/kubevirt.io/v1/namespaces/" .. obj.metadata.namespace .. "/virtualmachines")
            or obj.kind == "PersistentVolume" and "/api/v1/persistentvolumes"
            or ("/api/v1/namespaces/" .. obj.metadata.namespace .. "/persistentvolumeclaims")
        return s.curl { method = "POST", path = path, body = json.encode(obj) }
    end
    -- every file under dir, relative, sorted (directories omitted)
    local function files(dir)
        local out = {}
        for f in h.capture("cd " .. h.q(dir) .. " && find . -type f -o -type l | sort"):gmatch("[^\n]+") do
            out[#out + 1] = f:sub(3)
        end
        return out
    end

    setup(function()
        h.need("git"); h.need("kubectl")
        tmp = h.tmpdir("hostile-objects")
        local list = {}
        vm_with_disk(list, "team1", "good")
        vm_with_disk(list, "team1", "good2")
        vm_with_disk(list, "team2", "good3")
        -- names a real API server refuses (422), loaded from fixture files
        for _, n in ipairs { "Bad_Name", ESCAPE, "a/b", CYRILLIC_GOOD, "ctl\27[2J\rforged", LONG,
            string.rep("e", 254) } do
            list[#list + 1] = vm("team1", n)
        end
        list[#list + 1] = vm("../../hostile-ns-marker", "nsescape")
        list[#list + 1] = vm(string.rep("n", 64), "longns")
        -- a valid VM name whose claim or volume name is hostile
        list[#list + 1] = vm("team1", "evilclaim", { "../../../../hostile-claim-marker" })
        list[#list + 1] = pvc("team1", "../../../../hostile-claim-marker", "pv-evilclaim")
        list[#list + 1] = pv("pv-evilclaim", "team1", "../../../../hostile-claim-marker",
            csi("img-evilclaim"))
        list[#list + 1] = vm("team1", "evilpv", { "evilpv-root" })
        list[#list + 1] = pvc("team1", "evilpv-root", "../../hostile-pv-marker")
        list[#list + 1] = pv("../../hostile-pv-marker", "team1", "evilpv-root", csi("img-evilpv"))
        -- a claim in team3 bound to team1's volume: never follow it into someone else's disk
        list[#list + 1] = vm("team3", "thief", { "stolen" })
        list[#list + 1] = pvc("team3", "stolen", "pv-good")
        -- a PV with no csi block, and an in-tree RBD PV
        list[#list + 1] = vm("team2", "nocsi", { "nocsi-root" })
        list[#list + 1] = pvc("team2", "nocsi-root", "pv-nocsi")
        list[#list + 1] = pv("pv-nocsi", "team2", "nocsi-root", { hostPath = { path = "/var/lib/nocsi" } })
        list[#list + 1] = vm("team2", "intree", { "intree-root" })
        list[#list + 1] = pvc("team2", "intree-root", "pv-intree")
        list[#list + 1] = pv("pv-intree", "team2", "intree-root", { rbd = { monitors = { "192.0.2.1:6789" },
            pool = "rbd", image = "img-intree", user = "admin", secretRef = { name = "ceph" } } })
        -- a disk shared by two VMs (one RWX claim), each with its own root disk too
        list[#list + 1] = vm("shared", "node-a", { "quorum", "node-a-root" })
        list[#list + 1] = vm("shared", "node-b", { "quorum", "node-b-root" })
        list[#list + 1] = pvc("shared", "quorum", "pv-quorum")
        list[#list + 1] = pv("pv-quorum", "shared", "quorum", csi("img-quorum"))
        for _, n in ipairs { "node-a", "node-b" } do
            list[#list + 1] = pvc("shared", n .. "-root", "pv-" .. n)
            list[#list + 1] = pv("pv-" .. n, "shared", n .. "-root", csi("img-" .. n))
        end
        -- 1 MiB annotation: over the API server's 256 KiB limit, so from a fixture
        list[#list + 1] = vm("team2", "bigann", nil, function(o)
            o.metadata.annotations = { ["example.com/blob"] = string.rep("A", 1024 * 1024) }
        end)
        -- 400 levels of nesting (a real KubeVirt CRD prunes unknown fields; the sim keeps them)
        list[#list + 1] = vm("team2", "deep400", nil, function(o)
            o.spec.template.spec.domain.extra = nested(400)
        end)
        h.write(tmp .. "/fx/hostile.json", json.encode { apiVersion = "v1", kind = "List", items = list })

        s = sim.start { fixtures = tmp .. "/fx" }
        gx = gitexec.up(tmp)
        bare, exec_log = gx.bare, gx.exec_log
        run, git, show, calls = gx.run, gx.git, gx.show, gx.calls
        gx.config(s, { "enable", "disable", "promote" }, { "{spec}", "{pv}" })
    end)

    teardown(function()
        if s then s.stop() end
        if gx then gx.down() end
    end)

    it("refuses each VM whose names cannot be paths, naming it, and syncs the others", function()
        r1 = run("reconcile")
        assert.equals(1, r1.code, r1.stdout .. r1.stderr)
        local t = tree()
        for _, f in ipairs { "vms/base/team1/vm-good.yaml", "vms/base/team1/vm-good2.yaml",
            "vms/base/team2/vm-good3.yaml", "vms/base/team1/pv-pv-good.yaml" } do
            assert.matches(f:gsub("%p", "%%%0"), t)
        end
        -- every path is under the root and made of plain segments
        for path in t:gmatch("[^\n]+") do
            assert.matches("^vms/", path)
            assert.is_nil(path:find("..", 1, true), path)
            assert.is_nil(path:find("[^%w%./_-]"), path)
        end
        assert.not_matches("marker", t)
        assert.not_matches("Bad_Name", t)
        -- each refused VM is named in the log, with the reason
        for _, n in ipairs { "team1/Bad_Name", "team1/" .. ESCAPE, "team1/a/b", "team1/evilclaim",
            "team1/evilpv", "nsescape" } do
            assert.truthy(r1.stderr:find(n, 1, true), n .. " not named in:\n" .. r1.stderr)
        end
        in_log(r1, 'VirtualMachine name "Bad_Name" is not a DNS-1123 subdomain')
        in_log(r1, 'PersistentVolumeClaim name "../../../../hostile-claim-marker" is not a DNS-1123')
        in_log(r1, 'PersistentVolume name "../../hostile-pv-marker" is not a DNS-1123')
        in_log(r1, 'namespace "' .. string.rep("n", 64) .. '" is not a DNS-1123 label')
        in_log(r1, 'namespace "../../hostile-ns-marker" is not a DNS-1123 label')
        -- a refused VM gets no mirroring either
        assert.not_matches("img%-evil", table.concat(calls(), "\n"))
    end)

    it("wrote nothing outside the repository: the work tree holds exactly Git's files", function()
        local want = {}
        for path in tree():gmatch("[^\n]+") do want[#want + 1] = path end
        table.sort(want)
        local got = {}
        for _, f in ipairs(files(tmp .. "/clone")) do
            if not f:match("^%.git/") then got[#got + 1] = f end
        end
        assert.same(want, got)
        -- and beside the clone only what the spec itself made
        local mine = {}
        for _, f in ipairs(files(tmp)) do
            if not f:match("^clone/") then mine[#mine + 1] = f end
        end
        assert.same({ "clone.lock", "exec.log", "fx/hostile.json", "mirror-tool", "token", "vmdr.yaml" },
            mine)
        -- other specs create, mount and remove their directories beside ours meanwhile, so
        -- find may complain about some of them: only what it finds counts
        for _, dir in ipairs { tmp, tmp .. "/..", h.tmp_root } do
            assert.equals("", h.capture("find " .. h.q(dir)
                .. " -maxdepth 3 -name 'hostile-*-marker*' 2>/dev/null || true"))
        end
    end)

    it("a valid name too long for a file name is refused for its VM only", function()
        in_log(r1, 'VirtualMachine name "' .. LONG .. '" is 253 characters long')
        assert.matches("exceed the 255 bytes a file name may have", r1.stderr)
        assert.not_matches("dddd", tree())
        -- the repository checks out with the git CLI (as Argo CD's repo server does)
        local co = tmp .. "/../hostile-co-" .. h.pid()
        local r = h.exec { "git", "clone", "-q", bare, co }
        h.sh("rm -rf " .. h.q(co))
        assert.equals(0, r.code, r.stderr)
        in_log(r1, 'VirtualMachine name "' .. string.rep("e", 254) .. '" is not a DNS-1123 subdomain')
    end)

    it("shows look-alike and control characters escaped, never raw on the terminal", function()
        -- (inside a quoted log field, so each backslash of the message is doubled)
        assert.truthy(r1.stderr:find('\\"g\\\\xd0\\\\xbe\\\\xd0\\\\xbed\\" (non-ASCII characters)', 1, true),
            r1.stderr)
        assert.is_nil(r1.stderr:find("\27", 1, true), "a raw ESC reached stderr")
        assert.is_nil(r1.stderr:find("\r", 1, true), "a raw CR reached stderr")
        assert.truthy(r1.stderr:find("ctl\\\\x1b[2J\\\\x0dforged", 1, true), r1.stderr)
        assert.truthy(r1.stderr:find('vm="team1/ctl\\u001b[2J\\rforged"', 1, true), r1.stderr)
        -- no line of the log starts with the forged text
        for line in r1.stderr:gmatch("[^\n]+") do assert.not_matches("^forged", line) end
    end)

    it("exports a 1 MiB annotation and 400 levels of nesting byte for byte", function()
        local big = yaml.decode(show("vms/base/team2/vm-bigann.yaml"))
        assert.equals(string.rep("A", 1024 * 1024), big.metadata.annotations["example.com/blob"])
        local deep = yaml.decode(show("vms/base/team2/vm-deep400.yaml"))
        local d, n = deep.spec.template.spec.domain.extra, 0
        while d.x do d = d.x; n = n + 1 end
        assert.equals(400, n)
    end)

    it("keeps what a real API server accepts: 200 KiB and unicode annotations, via the API", function()
        local uni = "gr\u{fc}\u{df}e \u{41f}\u{440}\u{438}\u{432}\u{435}\u{442} \u{1f600} \u{202e}txt.exe \u{200b}"
        local o = vm("team2", "unicode", nil, function(x)
            x.metadata.annotations = { ["example.com/note"] = uni, ["example.com/blob"] = string.rep("z", 200 * 1024) }
        end)
        local c = create(o)
        assert.equals(201, c.code, c.body)
        local r = run("reconcile")
        assert.equals(1, r.code, r.stderr) -- the hostile VMs still fail
        local got = yaml.decode(show("vms/base/team2/vm-unicode.yaml"))
        assert.equals(uni, got.metadata.annotations["example.com/note"])
        assert.equals(200 * 1024, #got.metadata.annotations["example.com/blob"])
        -- an idle run changes nothing
        local before = commits()
        r = run("reconcile")
        assert.equals(1, r.code, r.stderr)
        assert.equals(before, commits())
    end)

    it("nesting over the decoder's limit fails the whole list clearly; nothing written or deleted", function()
        -- vmdr.json refuses to encode it: the JSON text is made by hand
        local body = json.encode(vm("team2", "deep600", nil, function(x)
            x.spec.template.spec.domain.extra = "@DEEP@"
        end)):gsub('"@DEEP@"', string.rep('{"x":', 600) .. "{}" .. string.rep("}", 600))
        local c = s.curl { method = "POST", path = "/apis/kubevirt.io/v1/namespaces/team2/virtualmachines",
            body = body }
        assert.equals(201, c.code, c.body)
        finally(function()
            s.curl { method = "DELETE", path = "/apis/kubevirt.io/v1/namespaces/team2/virtualmachines/deep600" }
        end)
        local before, t0 = commits(), tree()
        local r = run("reconcile")
        assert.equals(1, r.code, r.stderr)
        assert.matches("listing VirtualMachines: bad_response: the response is not valid JSON: "
            .. "items%[%d+%]: invalid JSON at line 1 column %d+: nesting deeper than 512", r.stderr)
        assert.equals(before, commits())
        r = run("gc", "-e", "force=true")
        assert.equals(1, r.code, r.stderr)
        assert.matches("nothing deleted", r.stderr)
        assert.equals(t0, tree())
    end)

    it("never follows a claim into another namespace's volume", function()
        assert.matches("PV pv%-good is claimed by team1/good%-root, not by team3/stolen: not exported",
            r1.stderr)
        assert.matches("vm=team3/thief", r1.stderr)
        assert.not_matches("team3", tree())
        -- event_sync says the same for that VM alone
        local r = run("event_sync", "-e", "namespace=team3", "-e", "name=thief")
        assert.equals(1, r.code, r.stderr)
        assert.matches("VM team3/thief not synced: PV pv%-good is claimed by team1/good%-root", r.stderr)
        assert.not_matches("team3", tree())
    end)

    it("exports a PV with no csi block with a warning, and maps an in-tree spec.rbd PV", function()
        assert.matches("WARN  disk not replicated: the DR copy of this VM has no data for it "
            .. "reason=\"PV pv%-nocsi is not a Ceph RBD volume", r1.stderr)
        assert.matches("vm=team2/nocsi", r1.stderr)
        assert.matches("vms/base/team2/pv%-pv%-nocsi%.yaml", tree())
        local c = calls()
        assert.not_matches("pv%-nocsi", table.concat(c, "\n"))
        assert.truthy(table.concat(c, "\n"):find("enable rbd/img-intree pv-intree", 1, true))
        local intree = yaml.decode(show("vms/base/team2/pv-pv-intree.yaml"))
        assert.equals("Retain", intree.spec.persistentVolumeReclaimPolicy)
        assert.equals("img-intree", intree.spec.rbd.image)
    end)

    it("gc of one VM of a shared disk keeps the shared disk mirrored", function()
        h.write(exec_log, "")
        local k = s.kubectl { "label", "vm", "-n", "shared", "node-a", LABEL .. "-" }
        assert.equals(0, k.code, k.stderr)
        local r = run("gc")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.same({ "disable rbd/img-node-a pv-node-a" }, calls())
        assert.matches("mirroring kept: the image is used by another VM image=rbd/img%-quorum "
            .. "used_by=shared/node%-b vm=shared/node%-a", r.stderr)
        local t = tree()
        assert.not_matches("vm%-node%-a%.yaml", t)
        assert.matches("vms/base/shared/pvc%-quorum%.yaml", t)
        assert.matches("vms/base/shared/pv%-pv%-quorum%.yaml", t)
        -- the last user going takes the shared disk with it (event_sync, as the monitor does)
        h.write(exec_log, "")
        k = s.kubectl { "label", "vm", "-n", "shared", "node-b", LABEL .. "-" }
        assert.equals(0, k.code, k.stderr)
        r = run("event_sync", "-e", "namespace=shared", "-e", "name=node-b")
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.same({ "disable rbd/img-node-b pv-node-b", "disable rbd/img-quorum pv-quorum" }, calls())
        assert.not_matches("vms/base/shared/", tree())
    end)

    it("event_sync refuses hostile names given on the command line (exit 2)", function()
        for _, nv in ipairs { { "team1", "../x" }, { "team1", "Bad_Name" }, { "../team1", "good" },
            { "team1", CYRILLIC_GOOD } } do
            local before = commits()
            local r = run("event_sync", "-e", "namespace=" .. nv[1], "-e", "name=" .. nv[2])
            assert.equals(2, r.code, r.stderr)
            assert.matches("are not Kubernetes names", r.stderr)
            assert.not_matches("traceback", r.stderr)
            assert.equals(before, commits())
        end
    end)
end)
