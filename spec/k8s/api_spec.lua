-- vmdr.k8s verbs against vmdr-sim over HTTPS with a bearer token: discovery names,
-- get, list (selectors, all namespaces, pagination), create, update (409), patch (merge,
-- JSON, strategic), delete, request; and the sim's injected faults on plain calls.
local h = require "support.helper"
local kt = require "support.k8stest"
local k8s = require "vmdr.k8s"
local json = require "vmdr.json"

local function vm(ns, name, labels)
  return string.format([[
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: %s
  namespace: %s
  labels: {%s}
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        devices: {}
        resources: {requests: {memory: 64M}}
      volumes:
      - name: root
        persistentVolumeClaim: {claimName: %s-root}
]], name, ns, labels, name)
end

local function pvc(ns, name, pv)
  return string.format([[
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 10Gi}}
  storageClassName: ocs-storagecluster-ceph-rbd
  volumeMode: Block
  volumeName: %s
]], name, ns, pv)
end

local function pv(name)
  return string.format([[
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Delete
  csi:
    driver: openshift-storage.rbd.csi.ceph.com
    volumeHandle: 0001-0011-openshift-storage-0000000000000001-%s
    volumeAttributes: {pool: ocs-storagecluster-cephblockpool, imageName: csi-vol-%s}
]], name, name, name)
end

--- Writes the fixtures: 12 VMs across 3 namespaces, each with a PVC and a PV.
local function fixtures(dir)
  local parts = {}
  local tiers = { "db", "web", "cache" }
  for i = 1, 12 do
    local ns = ({ "prod-a", "prod-b", "dev" })[(i - 1) % 3 + 1]
    local name = string.format("vm-%02d", i)
    local labels = string.format('"app.kubernetes.io/tier": %s, "vmdr.test/index": "%d"%s',
      tiers[(i - 1) % 3 + 1], i, i <= 8 and ', "dr.demojam.com/enabled": "true"' or "")
    parts[#parts + 1] = vm(ns, name, labels)
    parts[#parts + 1] = pvc(ns, name .. "-root", "pv-" .. name)
    parts[#parts + 1] = pv("pv-" .. name)
  end
  h.write(dir .. "/objects.yaml", table.concat(parts))
  return dir
end

local function names(list)
  local out = {}
  for _, it in ipairs(list.items) do out[#out + 1] = it.metadata.name end
  table.sort(out)
  return out
end

describe("vmdr.k8s against vmdr-sim (HTTPS, token)", function()
  local dir, s, c

  setup(function()
    dir = h.tmpdir("k8s-api")
    s = kt.sim { fixtures = fixtures(dir .. "/fixtures"), tls = true,
      token = "sim-token-abcdef123" }
    c = assert(k8s.client { kubeconfig = s.kubeconfig, retries = 3, backoff = 0.01,
      backoff_max = 0.05 })
  end)
  teardown(function()
    if c then c:close() end
    if s then s.stop() end
  end)
  after_each(function() s.admin { clear = true } end)

  it("resolves resource names as kubectl takes them", function()
    local want = {
      vm = { "kubevirt.io", "virtualmachines", true }, vms = { "kubevirt.io", "virtualmachines",
        true },
      ["virtualmachines.kubevirt.io"] = { "kubevirt.io", "virtualmachines", true },
      virtualmachine = { "kubevirt.io", "virtualmachines", true },
      pvc = { "", "persistentvolumeclaims", true }, pv = { "", "persistentvolumes", false },
      persistentvolumes = { "", "persistentvolumes", false }, ns = { "", "namespaces", false },
      ["leases.coordination.k8s.io"] = { "coordination.k8s.io", "leases", true },
      ["virtualmachines.v1.kubevirt.io"] = { "kubevirt.io", "virtualmachines", true },
    }
    for name, w in pairs(want) do
      local r = assert(c:resource(name))
      assert.equals(w[1], r.group, name)
      assert.equals(w[2], r.resource, name)
      assert.equals(w[3], r.namespaced, name)
    end
    local r, err = c:resource("widgets.example.com")
    assert.is_nil(r)
    assert.equals("not_found", err.code)
    assert.matches('resource type "widgets.example.com"', err.message)
  end)

  it("gets one object, and names what is missing", function()
    local obj = assert(c:get("vm", "prod-a", "vm-01"))
    assert.equals("VirtualMachine", obj.kind)
    assert.equals("vm-01", obj.metadata.name)
    assert.is_string(obj.metadata.uid)
    assert.is_string(obj.metadata.resourceVersion)
    local p = assert(c:get("pv", nil, "pv-vm-01"))
    assert.equals("csi-vol-pv-vm-01", p.spec.csi.volumeAttributes.imageName)
    local none, err = c:get("vm", "prod-a", "nope")
    assert.is_nil(none)
    assert.equals("not_found", err.code)
    assert.equals(404, err.status)
    assert.equals("NotFound", err.reason)
    assert.matches('"nope" not found', err.message)
  end)

  it("lists across all namespaces, in one namespace, and with a resourceVersion", function()
    local all = assert(c:list("vm"))
    assert.equals(12, #all.items)
    assert.is_string(all.metadata.resourceVersion)
    assert.equals("VirtualMachineList", all.kind)
    local one = assert(c:list("virtualmachines.kubevirt.io", { namespace = "dev" }))
    assert.same({ "vm-03", "vm-06", "vm-09", "vm-12" }, names(one))
    assert.equals(12, #assert(c:list("pv")).items)
    assert.equals(12, #assert(c:list("pvc")).items)
  end)

  it("filters with every label selector form and with field selectors", function()
    local cases = {
      ["dr.demojam.com/enabled=true"] = 8, ["dr.demojam.com/enabled==true"] = 8,
      ["dr.demojam.com/enabled!=true"] = 4, ["app.kubernetes.io/tier in (db,cache)"] = 8,
      ["app.kubernetes.io/tier notin (db)"] = 8, ["dr.demojam.com/enabled"] = 8,
      ["!dr.demojam.com/enabled"] = 4,
        ["dr.demojam.com/enabled=true,app.kubernetes.io/tier=web"] = 3,
    }
    for sel, n in pairs(cases) do
      local l = assert(c:list("vm", { labelSelector = sel }))
      assert.equals(n, #l.items, sel)
    end
    local l = assert(c:list("vm", { fieldSelector = "metadata.name=vm-05" }))
    assert.same({ "vm-05" }, names(l))
    l = assert(c:list("vm", { fieldSelector = "metadata.namespace=prod-b" }))
    assert.equals(4, #l.items)
  end)

  it("follows continue across pages to the whole list", function()
    local before = s.state().requests
    local l = assert(c:list("vm", { limit = 5 }))
    local all = names(l)
    assert.equals(12, #all)
    for i = 2, #all do assert.are_not.equal(all[i - 1], all[i]) end -- no duplicates
    assert.equals(3, s.state().requests - before) -- 3 pages (admin calls are not counted)
    assert.is_nil(l.metadata["continue"])
    l = assert(c:list("vm", { limit = 3, labelSelector = "dr.demojam.com/enabled=true" }))
    assert.equals(8, #l.items)
  end)

  it("fails a list whose pages fail, never returning a partial list", function()
    -- the second page fails more often than the client retries
    local l1 = assert(c:list("vm", { limit = 5 }))
    assert.equals(12, #l1.items)
    s.admin { fail = { count = 10, status = 500,
      path_prefix = "/apis/kubevirt.io/v1/virtualmachines" } }
    local l, err = c:list("vm", { limit = 5 })
    assert.is_nil(l)
    assert.equals("unavailable", err.code)
    assert.equals(500, err.status)
  end)

  it("creates, refuses a duplicate with conflict, updates with optimistic concurrency", function()
    local obj = json.decode(json.encode(assert(c:get("vm", "prod-a", "vm-01"))))
    obj.metadata = { name = "vm-new", namespace = "prod-a", labels = { x = "1" } }
    obj.status = nil
    local created = assert(c:create("vm", obj))
    assert.equals("vm-new", created.metadata.name)
    local dup, err = c:create("vm", obj)
    assert.is_nil(dup)
    assert.equals("conflict", err.code)
    assert.equals("AlreadyExists", err.reason)

    created.metadata.labels.x = "2"
    local updated = assert(c:update("vm", created))
    assert.equals("2", updated.metadata.labels.x)
    assert.are_not.equal(created.metadata.resourceVersion, updated.metadata.resourceVersion)
    -- a second writer with the old resourceVersion loses
    created.metadata.labels.x = "3"
    local stale
    stale, err = c:update("vm", created)
    assert.is_nil(stale)
    assert.equals("conflict", err.code)
    assert.equals(409, err.status)
    assert(c:delete("vm", "prod-a", "vm-new"))
  end)

  it("patches with merge, JSON and strategic merge patches", function()
    local p = assert(c:patch("vm", "prod-b", "vm-02",
      { metadata = { labels = { patched = "merge" } } }))
    assert.equals("merge", p.metadata.labels.patched)
    p = assert(c:patch("vm", "prod-b", "vm-02", {
      { op = "replace", path = "/metadata/labels/patched", value = "json" } }, { type = "json" }))
    assert.equals("json", p.metadata.labels.patched)
    p = assert(c:patch("pvc", "prod-b", "vm-02-root", { metadata = { labels = { s = "yes" } } },
      { type = "strategic" }))
    assert.equals("yes", p.metadata.labels.s)
    -- a custom resource refuses strategic merge, as a real API server does
    local no, err = c:patch("vm", "prod-b", "vm-02", { metadata = { labels = { s = "no" } } },
      { type = "strategic" })
    assert.is_nil(no)
    assert.equals("unsupported", err.code)
    assert.equals(415, err.status)
    -- the string form is sent as is
    p = assert(c:patch("vm", "prod-b", "vm-02", '{"metadata":{"labels":{"patched":null}}}'))
    assert.is_nil(p.metadata.labels.patched)
  end)

  it("deletes, then the object is gone", function()
    assert(c:delete("pvc", "dev", "vm-12-root"))
    local gone, err = c:get("pvc", "dev", "vm-12-root")
    assert.is_nil(gone)
    assert.equals("not_found", err.code)
    local again
    again, err = c:delete("pvc", "dev", "vm-12-root")
    assert.is_nil(again)
    assert.equals("not_found", err.code)
  end)

  it("request() reaches any path", function()
    local v = assert(c:request("GET", "/version"))
    assert.is_string(v.gitVersion)
    local apis = assert(c:request("GET", "/apis"))
    assert.equals("APIGroupList", apis.kind)
    local none, err = c:request("GET", "/apis/kubevirt.io/v1/namespaces/dev/virtualmachines/none")
    assert.is_nil(none)
    assert.equals("not_found", err.code)
  end)

  describe("faults", function()
    it("retries requests the server fails, within its budget", function()
      s.admin { fail = { count = 2, status = 503, retry_after = 0 } }
      assert(c:get("vm", "prod-a", "vm-01"))
      s.admin { fail = { count = 2, status = 500 } }
      assert(c:get("vm", "prod-a", "vm-01"))
    end)

    it("does not retry a failed create", function()
      local obj = json.decode(json.encode(assert(c:get("vm", "prod-a", "vm-01"))))
      obj.metadata = { name = "vm-fail", namespace = "prod-a" }
      obj.status = nil
      s.admin { fail = { count = 1, status = 500, verb = "POST" } }
      local r, err = c:create("vm", obj)
      assert.is_nil(r)
      assert.equals("unavailable", err.code)
      assert.equals(500, err.status)
      assert.is_nil((c:get("vm", "prod-a", "vm-fail")))
    end)

    it("times a slow server out with code timeout", function()
      local slow = assert(k8s.client { kubeconfig = s.kubeconfig, timeout = 0.3, retries = 0 })
      slow:resource("vm") -- discovery before the delay
      s.admin { delay_ms = 3000 }
      local r, err = slow:get("vm", "prod-a", "vm-01")
      s.admin { clear = true }
      slow:close()
      assert.is_nil(r)
      assert.equals("timeout", err.code)
    end)

    it("reports rejected credentials as unauthorized", function()
      s.admin { reject_auth = true }
      local r, err = c:get("vm", "prod-a", "vm-01")
      assert.is_nil(r)
      assert.equals("unauthorized", err.code)
      assert.equals(401, err.status)
    end)

    it("reports a wrong token as unauthorized", function()
      local bad = assert(k8s.client { server = s.url, ca_data = s.ca_pem,
        token = "wrong-token-zzz" })
      local r, err = bad:get({ group = "kubevirt.io", version = "v1", resource = "virtualmachines",
        namespaced = true }, "prod-a", "vm-01")
      bad:close()
      assert.is_nil(r)
      assert.equals("unauthorized", err.code)
    end)

    it("turns malformed replies into bad_response errors", function()
      for _, mode in ipairs { "truncate", "html", "content-type" } do
        s.admin { garble = { mode = mode, count = 10 } }
        local r, err = c:get("vm", "prod-a", "vm-01")
        s.admin { clear = true }
        assert.is_nil(r, mode)
        assert.equals("bad_response", err.code, mode .. ": " .. tostring(err))
      end
    end)

    it("reports a server that went away as unreachable, and recovers when it is back", function()
      s.admin { restart = 2 }
      -- the sim closes its listener soon after answering the admin call
      local quick = assert(k8s.client { kubeconfig = s.kubeconfig, retries = 0 })
      local r, err
      for _ = 1, 200 do
        r, err = quick:get("vm", "prod-a", "vm-01")
        if not r then break end
        require("vmdr.time").sleep(0.01)
      end
      quick:close()
      assert.is_nil(r)
      assert.equals("unreachable", err.code, tostring(err))
      -- with enough retries the same call rides out the restart
      local patient = assert(k8s.client { kubeconfig = s.kubeconfig, retries = 20, backoff = 0.2,
        backoff_max = 0.5 })
      assert(patient:get("vm", "prod-a", "vm-01"))
      patient:close()
    end)
  end)
  local _ = kt
end)

-- A sim of its own for one case: fn(c, s) with a client on it; both closed however fn ends.
local function on_own_sim(opts, fn)
  local s = kt.sim(opts)
  local c = assert(k8s.client { kubeconfig = s.kubeconfig })
  local ok, err = pcall(fn, c, s)
  c:close()
  s.stop()
  assert(ok, err)
end

describe("vmdr.k8s request buffers", function()
  it("keeps no big body buffer once the body was used", function()
    on_own_sim({ generate = 300, tls = true, token = "buf-token-12345" }, function(c)
      local keep = 256 * 1024
      -- a plain request: its body (about 640 KB) is the caller's until the next request
      local plain = assert(c:request("GET", "/apis/kubevirt.io/v1/virtualmachines"))
      assert.equals(300, #plain.items)
      assert.is_true(c._conn:buffered() > keep, "premise: " .. c._conn:buffered())
      assert(c:get("vm", plain.items[1].metadata.namespace, plain.items[1].metadata.name))
      assert.is_true(c._conn:buffered() <= keep, "after a get: " .. c._conn:buffered())
      -- a list is consumed as it arrives: its buffer goes when the list is done
      for _, limit in ipairs { 0, 120 } do
        local all = assert(c:list("vm", { limit = limit }))
        assert.equals(300, #all.items)
        assert.is_true(c._conn:buffered() <= keep, "after a list: " .. c._conn:buffered())
      end
    end)
  end)
end)

-- A list asks the Lua state's pool to map and fault in its memory ahead, on another CPU
-- (runtime/alloc.h vmdr_pool_prefault), from the body's announced length; each list runs
-- in a fresh vmdr-run so the pool starts empty. Without a pool (sanitizer builds,
-- VMDR_LUA_ALLOC=malloc) there is nothing to ask.
describe("vmdr.k8s prefaults the pool for a list", function()
  local script = [[
    local k8s = require "vmdr.k8s"
    local mem = require "vmdr.mem"
    local ctx = ...
    local c = assert(k8s.client { kubeconfig = ctx.args[1] })
    local l = assert(c:list("vm", { limit = tonumber(ctx.args[2]) }))
    local p = mem.stats().pool
    if not p then print(#l.items, "nopool") return end
    print(#l.items, p.asked, p.prefaulted, p.ready, p.regions)
  ]]
  local function run(s, limit)
    local f = h.tmpdir("pf") .. "/list.lua"
    h.write(f, script)
    local r = h.run({ f, "--", s.kubeconfig, tostring(limit) })
    assert.equals(0, r.code, r.stderr)
    local n, asked, pre, ready, regions = r.stdout:match("^(%d+)%s+(%S+)%s*(%d*)%s*(%d*)%s*(%d*)")
    return tonumber(n), asked, tonumber(pre), tonumber(ready), tonumber(regions)
  end
  local cpus = tonumber((h.capture("nproc"):gsub("%s+$", "")))

  for _, gz in ipairs { false, true } do
    it(gz and "not for a compressed body, whose length says nothing" or
      "from the body's length, one request and pages alike; nothing made ahead is left", function()
      local s = kt.sim { generate = 2000, tls = true, token = "pf-token-12345", args = gz and { "--gzip" } or nil }
      local ok, err = pcall(function()
        -- the JSON of one request: about 4.2 MB, so the list asks for some 11 MB
        for _, limit in ipairs { 0, 250 } do
          local n, asked, pre, ready, regions = run(s, limit)
          assert.equals(2000, n)
          if asked ~= "nopool" then
            asked = tonumber(asked)
            if gz or cpus < 2 then
              assert.equals(0, asked) -- (one CPU: the faults would only move, not overlap)
            else
              -- 2.75x the JSON in 2 MiB regions, less the pool's free room: about 6 for one
              -- request; for pages, each page's share as it comes
              assert.is_true(asked >= (limit == 0 and 3 or 1) and asked <= 10, "asked " .. asked)
              assert.is_true(regions >= asked - 2, "asked " .. asked .. " of " .. regions .. " regions")
            end
            assert.is_true(pre <= asked)
            assert.equals(0, ready) -- what was made ahead and not taken went back
          else
            -- no pool: only where the spec's own state has none either
            assert.is_nil(require("vmdr.mem").stats().pool)
          end
        end
      end)
      s.stop()
      assert(ok, err)
    end)
  end
end)

describe("vmdr.k8s against vmdr-sim --gzip", function()
  it("lists, gets and watches through compressed responses", function()
    on_own_sim({ generate = 300, tls = true, token = "gzip-token-12345", args = { "--gzip" } },
    function(c, s)
      local all = assert(c:list("vm", { limit = 0 }))
      assert.equals(300, #all.items)
      -- streamed in batches, the items are those of a plain decode, in order
      local plain = assert(c:request("GET", "/apis/kubevirt.io/v1/virtualmachines"))
      assert.equals(#plain.items, #all.items)
      for i = 1, #plain.items do assert.equals(plain.items[i].metadata.uid, all.items[i].metadata.uid) end
      assert.equals(plain.metadata.resourceVersion, all.metadata.resourceVersion)
      local paged = assert(c:list("vm", { limit = 120,
        labelSelector = "dr.demojam.com/enabled=true" }))
      assert.equals(300, #paged.items)
      local one = assert(c:get("vm", all.items[7].metadata.namespace, all.items[7].metadata.name))
      assert.equals(all.items[7].metadata.uid, one.metadata.uid)
      -- and the same bytes arrive compressed on the wire
      local r = s.curl { path = "/apis/kubevirt.io/v1/virtualmachines",
        headers = { "Accept-Encoding: gzip" } }
      assert.matches("[Cc]ontent%-[Ee]ncoding: gzip", r.headers)
    end)
  end)
end)
