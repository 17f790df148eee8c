-- vmdr-sim's REST semantics and fault injection, checked with curl (an independent client).
local h = require "support.helper"
local sim = require "support.sim"
local t = require "vmdr.time"

local VMS = "/apis/kubevirt.io/v1/namespaces/dr-app-000/virtualmachines"

local function events(body)
  local out = {}
  for l in body:gmatch("[^\n]+") do out[#out + 1] = assert(sim.decode(l), "not JSON: " .. l) end
  return out
end

describe("vmdr-sim API", function()
  local s
  setup(function()
    s = sim.start { tls = true, token = true, generate = 12, bookmark_interval = 0.2 }
  end)
  teardown(function() if s then s.stop() end end)

  local function get(path, extra) return s.curl { path = path, headers = extra } end
  local function list_rv()
    return get(VMS).json.metadata.resourceVersion
  end
  local function label(name, k, v)
    local r = s.curl { method = "PATCH", path = VMS .. "/" .. name,
      content_type = "application/merge-patch+json", body = { metadata = { labels = { [k] = v } } } }
    assert.equals(200, r.code, r.body)
    return r.json
  end
  -- a watch from rv that ends by itself after `secs`
  local function watch(path, rv, query, secs)
    return s.curl { path = path .. "?watch=1&resourceVersion=" .. rv .. "&timeoutSeconds=" ..
      (secs or 1) .. (query or ""), args = { "-N", "--max-time", "20" } }
  end

  describe("discovery", function()
    it("serves /version, /api, /apis and the group resource lists kubectl reads", function()
      assert.matches("^v1%.", get("/version").json.gitVersion)
      assert.equals("v1", get("/api").json.versions[1])
      local groups = {}
      for _, g in ipairs(get("/apis").json.groups) do groups[g.name] = g.preferredVersion.groupVersion end
      assert.equals("kubevirt.io/v1", groups["kubevirt.io"])
      assert.equals("coordination.k8s.io/v1", groups["coordination.k8s.io"])
      local vm
      for _, r in ipairs(get("/apis/kubevirt.io/v1").json.resources) do
        if r.name == "virtualmachines" then vm = r end
      end
      assert.same({ "vm", "vms" }, vm.shortNames)
      assert.equals("VirtualMachine", vm.kind)
      assert.is_true(vm.namespaced)
      local core = {}
      for _, r in ipairs(get("/api/v1").json.resources) do core[r.name] = r end
      assert.same({ "pvc" }, core.persistentvolumeclaims.shortNames)
      assert.is_false(core.persistentvolumes.namespaced)
      assert.truthy(core["namespaces/status"])
    end)

    it("answers aggregated discovery v2 when asked, plain JSON otherwise", function()
      local accept = "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
      local r = get("/apis", { accept })
      assert.matches("content%-type: application/json;g=apidiscovery.k8s.io;v=v2;as=apigroupdiscoverylist",
        r.headers:lower())
      assert.equals("APIGroupDiscoveryList", r.json.kind)
      local found
      for _, g in ipairs(r.json.items) do
        if g.metadata.name == "kubevirt.io" then found = g.versions[1].resources[1] end
      end
      assert.equals("virtualmachines", found.resource)
      assert.equals("Namespaced", found.scope)
      assert.equals("APIGroupList", get("/apis").json.kind)
    end)
  end)

  describe("reads", function()
    it("lists core items without apiVersion/kind and CR items with them", function()
      local pvcs = get("/api/v1/namespaces/dr-app-000/persistentvolumeclaims").json
      assert.equals("PersistentVolumeClaimList", pvcs.kind)
      assert.is_nil(pvcs.items[1].kind)
      local vms = get(VMS).json
      assert.equals("VirtualMachineList", vms.kind)
      assert.equals("kubevirt.io/v1", vms.apiVersion)
      assert.equals("VirtualMachine", vms.items[1].kind)
      assert.equals(12, #vms.items)
    end)

    it("pages with limit/continue on one resourceVersion, and expires tokens after compaction",
      function()
        local p1 = get(VMS .. "?limit=5").json
        assert.equals(5, #p1.items)
        assert.equals(7, p1.metadata.remainingItemCount)
        local p2 = get(VMS .. "?limit=5&continue=" .. p1.metadata.continue).json
        assert.equals(p1.metadata.resourceVersion, p2.metadata.resourceVersion)
        assert.equals("vm-00005", p2.items[1].metadata.name)
        local p3 = get(VMS .. "?limit=5&continue=" .. p2.metadata.continue).json
        assert.equals(2, #p3.items)
        assert.is_nil(p3.metadata.continue)
        label("vm-00010", "after-list", "1") -- history moves past the token's resourceVersion
        s.admin { compact = true }
        local r = get(VMS .. "?limit=5&continue=" .. p1.metadata.continue)
        assert.equals(410, r.code)
        assert.equals("Expired", r.json.reason)
        assert.equals(400, get(VMS .. "?limit=5&continue=garbage!").code)
      end)

    it("serves every page of a continued list from the first page's snapshot", function()
      local function vm(name)
        return { apiVersion = "kubevirt.io/v1", kind = "VirtualMachine", metadata = { name = name },
          spec = { runStrategy = "Halted" } }
      end
      assert.equals(201, s.curl { method = "POST", path = VMS, body = vm("vm-00007x") }.code)
      local p1 = get(VMS .. "?limit=4").json
      local names = {}
      for _, it in ipairs(p1.items) do names[#names + 1] = it.metadata.name end
      -- after the first page: a change, a deletion and a creation further down the list
      label("vm-00006", "snap", "after")
      assert.equals(200, s.curl { method = "DELETE", path = VMS .. "/vm-00007x" }.code)
      assert.equals(201, s.curl { method = "POST", path = VMS, body = vm("vm-00005a") }.code)
      local cont, seen6 = p1.metadata.continue, nil
      while cont do
        local p = get(VMS .. "?limit=4&continue=" .. cont).json
        assert.equals(p1.metadata.resourceVersion, p.metadata.resourceVersion)
        for _, it in ipairs(p.items) do
          names[#names + 1] = it.metadata.name
          if it.metadata.name == "vm-00006" then seen6 = it end
        end
        cont = p.metadata.continue
      end
      local set = {}
      for _, n in ipairs(names) do set[n] = true end
      assert.is_true(set["vm-00007x"]) -- deleted after the snapshot: still in it
      assert.is_nil(set["vm-00005a"]) -- created after: not in it
      assert.is_nil((seen6.metadata.labels or {}).snap) -- as it was
      assert.equals(13, #names)
      -- a new list sees the present
      local now = {}
      for _, it in ipairs(get(VMS).json.items) do now[it.metadata.name] = it end
      assert.is_nil(now["vm-00007x"])
      assert.truthy(now["vm-00005a"])
      assert.equals("after", now["vm-00006"].metadata.labels.snap)
      assert.equals(200, s.curl { method = "DELETE", path = VMS .. "/vm-00005a" }.code)
    end)

    it("returns Tables for kubectl's Accept header", function()
      local r = get(VMS .. "/vm-00001", { "Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json" })
      assert.equals("Table", r.json.kind)
      local names = {}
      for i, c in ipairs(r.json.columnDefinitions) do names[i] = c.name end
      assert.same({ "Name", "Age", "Status", "Ready" }, names)
      assert.equals("vm-00001", r.json.rows[1].cells[1])
      assert.equals("PartialObjectMetadata", r.json.rows[1].object.kind)
    end)
  end)

  describe("errors are Status objects with the API server's codes", function()
    it("404 NotFound with details", function()
      local r = get(VMS .. "/nope")
      assert.equals(404, r.code)
      assert.equals("Status", r.json.kind)
      assert.equals("NotFound", r.json.reason)
      assert.same({ name = "nope", group = "kubevirt.io", kind = "virtualmachines" }, r.json.details)
      assert.equals('virtualmachines.kubevirt.io "nope" not found', r.json.message)
      assert.equals(404, get("/apis/kubevirt.io/v1/widgets").code)
    end)

    it("400 for malformed JSON and a URL/body mismatch, 422 for an invalid name", function()
      local r = s.curl { method = "POST", path = VMS, body = "{not json" }
      assert.equals(400, r.code)
      assert.equals("BadRequest", r.json.reason)
      r = s.curl { method = "POST", path = VMS, body = { apiVersion = "kubevirt.io/v1",
        kind = "VirtualMachine", metadata = { name = "x", namespace = "elsewhere" }, spec = {} } }
      assert.equals(400, r.code)
      assert.matches("namespace of the provided object does not match", r.json.message)
      r = s.curl { method = "PUT", path = VMS .. "/vm-00001", body = { apiVersion = "kubevirt.io/v1",
        kind = "VirtualMachine", metadata = { name = "vm-00002", resourceVersion = "1" } } }
      assert.equals(400, r.code)
      assert.matches("does not match the name on the URL", r.json.message)
      r = s.curl { method = "POST", path = VMS, body = { apiVersion = "kubevirt.io/v1",
        kind = "VirtualMachine", metadata = { name = "Bad_Name" }, spec = {} } }
      assert.equals(422, r.code)
      assert.equals("Invalid", r.json.reason)
      assert.equals("metadata.name", r.json.details.causes[1].field)
    end)

    it("409 AlreadyExists, 409 Conflict on a stale resourceVersion, 422 without one for a CR", function()
      local vm = get(VMS .. "/vm-00003").json
      local r = s.curl { method = "POST", path = VMS, body = vm }
      assert.equals(409, r.code)
      assert.equals("AlreadyExists", r.json.reason)
      local stale = vm.metadata.resourceVersion
      label("vm-00003", "touched", "yes")
      vm.metadata.resourceVersion = stale
      r = s.curl { method = "PUT", path = VMS .. "/vm-00003", body = vm }
      assert.equals(409, r.code)
      assert.equals("Conflict", r.json.reason)
      vm.metadata.resourceVersion = nil
      r = s.curl { method = "PUT", path = VMS .. "/vm-00003", body = vm }
      assert.equals(422, r.code)
    end)

    it("401 without a token, 405 for an unsupported verb, 415 for SMP on a CR", function()
      local r = s.curl { path = VMS, token = false }
      assert.equals(401, r.code)
      assert.equals("Unauthorized", r.json.reason)
      assert.equals(405, s.curl { method = "DELETE", path = VMS }.code)
      r = s.curl { method = "PATCH", path = VMS .. "/vm-00001", content_type = "application/strategic-merge-patch+json",
        body = { metadata = { labels = { a = "b" } } } }
      assert.equals(415, r.code)
      assert.equals("UnsupportedMediaType", r.json.reason)
      assert.equals(404, s.curl { method = "POST", path = "/api/v1/namespaces/ghost/persistentvolumeclaims",
        body = { apiVersion = "v1", kind = "PersistentVolumeClaim", metadata = { name = "p" }, spec = {} } }.code)
    end)
  end)

  describe("writes", function()
    it("sets uid, creationTimestamp, generation, managedFields on create; drops status of a CR", function()
      local r = s.curl { method = "POST", path = VMS .. "?fieldManager=spec-test", body = {
        apiVersion = "kubevirt.io/v1", kind = "VirtualMachine",
        metadata = { name = "created-1", uid = "forged", labels = { a = "1" } },
        spec = { runStrategy = "Halted" }, status = { ready = true } } }
      assert.equals(201, r.code, r.body)
      local md = r.json.metadata
      assert.not_equals("forged", md.uid)
      assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", md.uid)
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+Z$", md.creationTimestamp)
      assert.equals(1, md.generation)
      assert.equals("spec-test", md.managedFields[1].manager)
      assert.equals("Update", md.managedFields[1].operation)
      assert.is_nil(r.json.status)
    end)

    it("bumps generation on spec changes only, and a no-op write keeps the resourceVersion", function()
      local v1 = label("vm-00004", "x", "1")
      local v2 = s.curl { method = "PATCH", path = VMS .. "/vm-00004", content_type = "application/json-patch+json",
        body = { { op = "replace", path = "/spec/runStrategy", value = "Always" } } }.json
      assert.equals(v1.metadata.generation + 1, v2.metadata.generation)
      local v3 = label("vm-00004", "x", "1")
      assert.equals(v2.metadata.resourceVersion, v3.metadata.resourceVersion)
      -- status is ignored by the main endpoint and set through /status
      local r = s.curl { method = "PATCH", path = VMS .. "/vm-00004", content_type = "application/merge-patch+json",
        body = { status = { printableStatus = "Bogus" } } }
      assert.equals(v2.status.printableStatus, r.json.status.printableStatus)
      r = s.curl { method = "PATCH", path = VMS .. "/vm-00004/status", content_type = "application/merge-patch+json",
        body = { status = { printableStatus = "Migrating" } } }
      assert.equals("Migrating", r.json.status.printableStatus)
      assert.equals(v2.metadata.generation, r.json.metadata.generation)
      local bad = s.curl { method = "PATCH", path = VMS .. "/vm-00004", content_type = "application/json-patch+json",
        body = { { op = "test", path = "/spec/runStrategy", value = "Never" } } }
      assert.equals(422, bad.code)
    end)

    it("deletes a CR returning the object, a core object returning a Status", function()
      local r = s.curl { method = "DELETE", path = VMS .. "/vm-00011" }
      assert.equals(200, r.code)
      assert.equals("VirtualMachine", r.json.kind)
      r = s.curl { method = "DELETE", path = "/api/v1/namespaces/dr-app-000/persistentvolumeclaims/vm-00011-rootdisk" }
      assert.equals("Status", r.json.kind)
      assert.equals("Success", r.json.status)
      assert.equals(404, s.curl { method = "DELETE", path = VMS .. "/vm-00011" }.code)
    end)
  end)

  describe("watch", function()
    it("replays events after a resourceVersion, ending at timeoutSeconds with a BOOKMARK", function()
      local rv = list_rv()
      label("vm-00005", "w", "1")
      label("vm-00006", "w", "1")
      local r = watch(VMS, rv, "&allowWatchBookmarks=true", 1)
      assert.equals(200, r.code)
      local ev = events(r.body)
      assert.equals("MODIFIED", ev[1].type)
      assert.equals("vm-00005", ev[1].object.metadata.name)
      assert.equals("vm-00006", ev[2].object.metadata.name)
      assert.equals("BOOKMARK", ev[#ev].type)
      assert.is_true(tonumber(ev[#ev].object.metadata.resourceVersion) >= tonumber(ev[2].object.metadata.resourceVersion))
    end)

    it("starts with synthetic ADDED events without a resourceVersion, then the initial-events bookmark",
      function()
        local r = s.curl { path = VMS .. "?watch=1&timeoutSeconds=1&sendInitialEvents=true&allowWatchBookmarks=true&labelSelector=app-tier%3Dweb",
          args = { "-N" } }
        local ev = events(r.body)
        local added = 0
        for _, e in ipairs(ev) do if e.type == "ADDED" then added = added + 1 end end
        assert.equals(4, added) -- web: i % 3 == 0 among the 12 (vm-00011 may be gone: 0,3,6,9)
        local marked = false
        for _, e in ipairs(ev) do
          if e.type == "BOOKMARK" and e.object.metadata.annotations then
            marked = e.object.metadata.annotations["k8s.io/initial-events-end"] == "true"
          end
        end
        assert.is_true(marked)
      end)

    it("reports leaving and entering a label selection as DELETED and ADDED", function()
      local rv = list_rv()
      label("vm-00007", "sel", "in")
      label("vm-00007", "sel", "out")
      label("vm-00007", "sel", "in")
      local ev = events(watch(VMS, rv, "&labelSelector=sel%3Din", 1).body)
      assert.same({ "ADDED", "DELETED", "ADDED" }, { ev[1].type, ev[2].type, ev[3].type })
      -- DELETED carries the previous state (still labelled in) at the new resourceVersion
      assert.equals("in", ev[2].object.metadata.labels.sel)
    end)

    it("sends an ERROR 410 Expired event for a compacted resourceVersion", function()
      local rv = list_rv()
      label("vm-00008", "c", "1")
      s.admin { compact = true }
      local r = watch(VMS, rv, "", 5)
      assert.equals(200, r.code)
      local ev = events(r.body)
      assert.equals(1, #ev)
      assert.equals("ERROR", ev[1].type)
      assert.equals(410, ev[1].object.code)
      assert.equals("Expired", ev[1].object.reason)
    end)
  end)

  describe("faults", function()
    after_each(function() s.admin { clear = true } end)

    it("fails the next N requests with a status, by verb and path prefix, with Retry-After", function()
      s.admin { fail = { count = 2, status = 503, verb = "GET", path_prefix = "/apis/kubevirt.io", retry_after = 3 } }
      assert.equals(200, get("/api/v1/namespaces").code) -- another prefix: untouched
      local r = get(VMS)
      assert.equals(503, r.code)
      assert.equals("ServiceUnavailable", r.json.reason)
      assert.matches("retry%-after: 3", r.headers:lower())
      assert.equals(503, get(VMS).code)
      assert.equals(200, get(VMS).code)
      s.admin { fail = { count = 1, status = 429 } }
      assert.equals(429, get("/api/v1/namespaces").code)
    end)

    it("drops watch streams after N events", function()
      local rv = list_rv()
      for i = 1, 3 do label("vm-00009", "d", tostring(i)) end
      s.admin { drop_watch_after = 2 }
      local r = watch(VMS, rv, "", 5)
      local ev = events(r.body)
      assert.equals(2, #ev)
      assert.not_equals(0, r.exit) -- the chunked stream ended without its last chunk
    end)

    it("delays responses", function()
      s.admin { delay_ms = 3000 }
      local r = s.curl { path = "/version", args = { "--max-time", "1" } }
      assert.equals(28, r.exit) -- curl: operation timed out
    end)

    it("rejects auth for everything but the admin endpoint", function()
      s.admin { reject_auth = true }
      assert.equals(401, get(VMS).code)
      assert.is_true(s.state().faults.reject_auth)
      s.admin { reject_auth = false }
      assert.equals(200, get(VMS).code)
    end)

    it("sends malformed replies: truncated JSON, HTML with 200, a wrong content type", function()
      s.admin { garble = { mode = "truncate", count = 1 } }
      local r = get(VMS)
      assert.equals(200, r.code)
      assert.is_nil(r.json)
      s.admin { garble = { mode = "html", count = 1, path_prefix = "/apis" } }
      r = get(VMS)
      assert.equals(200, r.code)
      assert.matches("content%-type: text/html", r.headers:lower())
      s.admin { garble = { mode = "content-type", count = 1 } }
      r = get(VMS)
      assert.matches("content%-type: text/plain", r.headers:lower())
      assert.equals(200, get(VMS).code)
      assert.is_table(get(VMS).json)
    end)

    it("closes the listener for S seconds, ending open watches, then serves again", function()
      -- a watch open across the restart: it must be cut, not left hanging
      local d = h.tmpdir("restart-watch")
      local cmd = "curl -sN --max-time 60 --cacert " .. h.q(s.ca_file) .. " -H " ..
        h.q("Authorization: Bearer " .. s.token) .. " " .. h.q(s.url .. VMS .. "?watch=1") ..
        " >" .. h.q(d .. "/out") .. "; echo $? >" .. h.q(d .. "/rc")
      assert.equals(0, h.sh("sh -c " .. h.q(cmd) .. " >/dev/null 2>&1 &"))
      local deadline = t.monotonic() + 20
      while not (h.read(d .. "/out") or ""):find("ADDED", 1, true) do -- the watch is streaming
        assert.is_true(t.monotonic() < deadline, "the watch never started")
        t.sleep(0.05)
      end
      s.admin { restart = 2 }
      local deadline = t.monotonic() + 10
      local refused = false
      while t.monotonic() < deadline do
        local r = s.curl { path = "/version", args = { "--max-time", "2" } }
        if r.exit == 7 then refused = true break end -- connection refused
        t.sleep(0.05)
      end
      assert.is_true(refused)
      deadline = t.monotonic() + 20
      local back
      repeat
        back = s.curl { path = "/version", args = { "--max-time", "2" } }
        if back.code ~= 200 then t.sleep(0.1) end
      until back.code == 200 or t.monotonic() > deadline
      assert.equals(200, back.code)
      assert.equals(12 - 1 + 1, #get(VMS).json.items) -- objects survive: 12 - deleted + created
      local rc = tonumber((h.read(d .. "/rc") or ""):match("%d+"))
      assert.equals(18, rc) -- curl: transfer closed with outstanding read data (a cut stream)
    end)

    it("validates fault documents and changes nothing on a bad one", function()
      local r = s.curl { method = "POST", path = "/_sim/faults", body = { fail = { status = "x" } } }
      assert.equals(400, r.code)
      r = s.curl { method = "POST", path = "/_sim/faults", body = { nonsense = 1 } }
      assert.equals(400, r.code)
      assert.matches("unknown key", r.json.message)
      assert.equals(0, s.state().faults.fail.count)
      assert.equals(401, s.curl { path = "/_sim/state", token = false }.code)
    end)
  end)
end)

describe("vmdr-sim persistence", function()
  it("saves to --state and resumes from it", function()
    local dir = h.tmpdir("state")
    local state = dir .. "/site.json"
    local s = sim.start { fixtures = false, generate = 2, state = state }
    local r = s.curl { method = "POST", path = "/api/v1/namespaces", body = {
      apiVersion = "v1", kind = "Namespace", metadata = { name = "kept" } } }
    assert.equals(201, r.code)
    r = s.curl { method = "DELETE", path = VMS .. "/vm-00001" }
    assert.equals(200, r.code)
    s.stop()
    local s2 = sim.start { fixtures = false, state = state }
    finally(function() s2.stop() end)
    assert.equals(200, s2.curl { path = "/api/v1/namespaces/kept" }.code)
    assert.equals(404, s2.curl { path = VMS .. "/vm-00001" }.code)
    assert.equals(200, s2.curl { path = VMS .. "/vm-00000" }.code)
    assert.matches("state resumed", h.read(s2.stderr_file))
  end)

  it("refuses a state file that is not one, naming it", function()
    local dir = h.tmpdir("state")
    h.write(dir .. "/bad.json", "[1,2,3]")
    local r = h.exec { h.vmdr_sim, "--state", dir .. "/bad.json", "--listen", "127.0.0.1:0" }
    assert.equals(1, r.code)
    assert.matches("bad%.json is not a vmdr%-sim state", r.stderr)
  end)
end)

describe("vmdr-sim client certificates", function()
  it("accepts a certificate signed by --client-ca and refuses others", function()
    h.need("openssl")
    local d = h.tmpdir("certs")
    local function ossl(args)
      local r = h.exec(args)
      assert.equals(0, r.code, r.stderr)
    end
    local function ca(name)
      ossl { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", d .. "/" .. name .. ".key", "-out", d .. "/" .. name .. ".crt",
        "-days", "2", "-subj", "/CN=" .. name }
    end
    local function client(name, signer)
      ossl { "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", d .. "/" .. name .. ".key", "-out", d .. "/" .. name .. ".csr",
        "-subj", "/CN=" .. name .. "/O=system:masters" }
      h.write(d .. "/ext.cnf", "extendedKeyUsage=clientAuth\n")
      ossl { "openssl", "x509", "-req", "-in", d .. "/" .. name .. ".csr", "-CA", d .. "/" .. signer .. ".crt",
        "-CAkey", d .. "/" .. signer .. ".key", "-CAcreateserial", "-out", d .. "/" .. name .. ".crt",
        "-days", "2", "-extfile", d .. "/ext.cnf" }
    end
    ca("ca"); ca("rogue-ca")
    client("admin", "ca"); client("rogue", "rogue-ca")
    local s = sim.start { fixtures = false, generate = 1, client_ca = d .. "/ca.crt",
      client_cert = d .. "/admin.crt", client_key = d .. "/admin.key" }
    finally(function() s.stop() end)
    local path = "/apis/kubevirt.io/v1/virtualmachines"
    local ok = s.curl { path = path, args = { "--cert", d .. "/admin.crt", "--key", d .. "/admin.key" } }
    assert.equals(200, ok.code, ok.stderr)
    assert.equals(1, #ok.json.items)
    assert.equals(401, s.curl { path = path }.code)
    local rogue = s.curl { path = path, args = { "--cert", d .. "/rogue.crt", "--key", d .. "/rogue.key" } }
    assert.equals(401, rogue.code)
    -- and kubectl with the kubeconfig the sim wrote (client-certificate-data embedded)
    local r = s.kubectl { "get", "vm", "-A", "-o", "name" }
    assert.equals(0, r.code, r.stderr)
    assert.equals("virtualmachine.kubevirt.io/vm-00000\n", r.stdout)
  end)
end)

describe("vmdr-sim fixtures", function()
  it("loads multi-document YAML, kind: List files and JSON, skipping kinds it does not serve", function()
    local dir = h.tmpdir("fixtures")
    h.write(dir .. "/multi.yaml", [[
---
# a comment before the first document
apiVersion: kubevirt.io/v1alpha3
kind: VirtualMachine
metadata: { name: old-api, namespace: legacy, selfLink: /apis/kubevirt.io/v1alpha3/x }
spec: { running: false }
---
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: { name: not-served }
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: no-namespace }
spec: { accessModes: [ReadWriteOnce] }
]])
    h.write(dir .. "/sub/list.yaml", [[
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: PersistentVolume
  metadata: { name: pv-a }
  spec: { capacity: { storage: 1Gi } }
- apiVersion: kubevirt.io/v1
  kind: VirtualMachineList
  items:
  - apiVersion: kubevirt.io/v1
    kind: VirtualMachine
    metadata: { name: nested, namespace: legacy }
    spec: {}
]])
    h.write(dir .. "/lease.json", [[{"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
      "metadata":{"name":"vmdr-leader","namespace":"kube-system"},"spec":{"holderIdentity":"a"}}]])
    local s = sim.start { fixtures = dir }
    finally(function() s.stop() end)
    local vm = s.curl { path = "/apis/kubevirt.io/v1/namespaces/legacy/virtualmachines/old-api" }.json
    assert.equals("kubevirt.io/v1", vm.apiVersion) -- served as v1, as KubeVirt converts it
    assert.is_nil(vm.metadata.selfLink)
    assert.equals(200, s.curl { path = "/apis/kubevirt.io/v1/namespaces/legacy/virtualmachines/nested" }.code)
    assert.equals(200, s.curl { path = "/api/v1/namespaces/default/persistentvolumeclaims/no-namespace" }.code)
    assert.equals(200, s.curl { path = "/api/v1/persistentvolumes/pv-a" }.code)
    assert.equals("a", s.curl { path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/vmdr-leader" }
      .json.spec.holderIdentity)
    assert.equals(200, s.curl { path = "/api/v1/namespaces/legacy" }.code) -- made for its objects
    assert.matches("5 objects loaded, 1 skipped", h.read(s.stderr_file))
  end)

  it("refuses a malformed fixture, naming the file and the line", function()
    local dir = h.tmpdir("fixtures")
    h.write(dir .. "/good.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: { name: fine }\n")
    h.write(dir .. "/broken.yaml", "apiVersion: v1\nkind: [Namespace\nmetadata: {}\n")
    local r = h.exec { h.vmdr_sim, "--fixtures", dir, "--listen", "127.0.0.1:0" }
    assert.equals(1, r.code)
    assert.matches("broken%.yaml: YAML error at line %d+", r.stderr)
    r = h.exec { h.vmdr_sim, "--fixtures", dir .. "/missing" }
    assert.equals(1, r.code)
    assert.matches("missing", r.stderr)
    r = h.exec { h.vmdr_sim, "--listen", "nonsense" }
    assert.equals(2, r.code)
    assert.matches("%-%-listen wants HOST:PORT", r.stderr)
  end)
end)

describe("vmdr-sim --gzip", function()
  it("gzips responses from 128 KiB to clients that accept it, as kube-apiserver does", function()
    local s = sim.start { fixtures = false, generate = 200, args = { "--gzip" } }
    finally(function() s.stop() end)
    local all = "/apis/kubevirt.io/v1/virtualmachines"
    local r = s.curl { path = all, args = { "--compressed" } }
    assert.matches("content%-encoding: gzip", r.headers:lower())
    assert.equals(200, #r.json.items) -- curl decoded it
    local raw = s.curl { path = all, headers = { "Accept-Encoding: gzip" } }
    assert.is_nil(raw.json) -- compressed bytes on the wire
    assert.is_true(#raw.body < #r.body / 4)
    r = s.curl { path = all .. "?limit=2", args = { "--compressed" } } -- small: sent as is
    assert.not_matches("content%-encoding", r.headers:lower())
    assert.not_matches("content%-encoding", s.curl { path = all }.headers:lower()) -- not asked
    s.admin { gzip = false }
    assert.not_matches("content%-encoding", s.curl { path = all, args = { "--compressed" } }.headers:lower())
  end)
end)
