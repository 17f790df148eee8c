-- vmdr.k8s watch against vmdr-sim (HTTPS, token): the iterator contract (STYLE rule 5),
-- RESYNC at the start and after 410 Gone, resume from the last resourceVersion across
-- dropped streams and a server restart, BOOKMARKs, IDLE, label-selected DELETED, and
-- fatal errors raised.
local h = require "support.helper"
local kt = require "support.k8stest"
local k8s = require "vmdr.k8s"
local time = require "vmdr.time"

local function fixtures(dir)
  local parts = {}
  for i = 1, 6 do
    parts[#parts + 1] = string.format([[
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: w-%d
  namespace: %s
  labels: {dr.demojam.com/enabled: "%s"}
spec:
  runStrategy: Halted
  template: {spec: {domain: {devices: {}}}}
]], i, i % 2 == 0 and "even" or "odd", i <= 4 and "true" or "false")
  end
  h.write(dir .. "/vms.yaml", table.concat(parts))
  return dir
end

local SEL = "dr.demojam.com/enabled=true"

describe("vmdr.k8s watch against vmdr-sim", function()
  local dir, s, c, n = nil, nil, nil, 0

  setup(function()
    dir = h.tmpdir("k8s-watch")
    s = kt.sim { fixtures = fixtures(dir .. "/fixtures"), tls = true, token = "watch-token-12345" }
    c = assert(k8s.client { kubeconfig = s.kubeconfig, retries = 3, backoff = 0.01,
      backoff_max = 0.05 })
  end)
  teardown(function()
    if c then c:close() end
    if s then s.stop() end
  end)
  after_each(function() s.admin { clear = true } end)

  local function touch(ns, name)
    n = n + 1
    return assert(c:patch("vm", ns, name,
      { metadata = { annotations = { ["vmdr.test/touch"] = tostring(n) } } }))
  end

  it("starts with a RESYNC of the full set, then delivers changes in order", function()
    local it, _, _, w = c:watch("vm", { labelSelector = SEL })
    local t, list = it()
    assert.equals("RESYNC", t)
    assert.equals(4, #list.items)
    assert.is_string(list.metadata.resourceVersion)
    touch("odd", "w-1")
    touch("even", "w-2")
    local t1, o1 = it()
    local t2, o2 = it()
    assert.equals("MODIFIED", t1)
    assert.equals("w-1", o1.metadata.name)
    assert.equals("MODIFIED", t2)
    assert.equals("w-2", o2.metadata.name)
    assert.equals(o2.metadata.resourceVersion, w:resource_version())
    assert.is_true(w:close())
    assert.is_nil(it()) -- a closed watch ends the loop
  end)

  it("works as a for loop whose 4th value closes the stream", function()
    local got = {}
    local handle
    do
      local it, a, b, w = c:watch("vm", { namespace = "odd" })
      handle = w
      for t, obj in it, a, b, w do
        got[#got + 1] = t
        if t == "RESYNC" then
          touch("odd", "w-3")
        else
          assert.equals("w-3", obj.metadata.name)
          break
        end
      end
    end
    assert.same({ "RESYNC", "MODIFIED" }, got)
    assert.matches("closed", tostring(handle))
  end)

  it("reports ADDED and DELETED, and an object leaving the selector as DELETED", function()
    local it, _, _, w = c:watch("vm", { labelSelector = SEL })
    assert.equals("RESYNC", (it()))
    local src = assert(c:get("vm", "odd", "w-5"))
    local obj = { apiVersion = src.apiVersion, kind = src.kind, spec = src.spec,
      metadata = { name = "w-new", namespace = "odd",
        labels = { ["dr.demojam.com/enabled"] = "true" } } }
    assert(c:create("vm", obj))
    assert(c:patch("vm", "even", "w-4",
      { metadata = { labels = { ["dr.demojam.com/enabled"] = "false" } } }))
    assert(c:delete("vm", "odd", "w-new"))
    local seen = {}
    for _ = 1, 3 do
      local t, o = it()
      seen[#seen + 1] = t .. ":" .. o.metadata.name
    end
    w:close()
    assert.same({ "ADDED:w-new", "DELETED:w-4", "DELETED:w-new" }, seen)
    assert(c:patch("vm", "even", "w-4",
      { metadata = { labels = { ["dr.demojam.com/enabled"] = "true" } } }))
  end)

  it("yields IDLE after opts.idle seconds without an event, and never a BOOKMARK", function()
    s.admin { bookmark_interval = 0.1 }
    local it, _, _, w = c:watch("vm", { idle = 0.5 })
    assert.equals("RESYNC", (it()))
    local rv0 = w:resource_version()
    local t = it()
    assert.equals("IDLE", t)
    touch("odd", "w-1")
    local t2, o = it()
    assert.equals("MODIFIED", t2)
    assert.equals("w-1", o.metadata.name)
    -- bookmarks arrive every 0.1 s and move the resourceVersion without reaching the loop
    assert.equals("IDLE", (it()))
    assert.are_not.equal(rv0, w:resource_version())
    w:close()
  end)

  it("resumes from the last resourceVersion when the server drops the stream", function()
    s.admin { drop_watch_after = 1 }
    local it, _, _, w = c:watch("vm", { labelSelector = SEL })
    assert.equals("RESYNC", (it()))
    for _ = 1, 4 do touch("odd", "w-1") end
    local rvs = {}
    for i = 1, 4 do
      local t, o = it()
      assert.equals("MODIFIED", t)
      assert.equals(tostring(n - 4 + i), o.metadata.annotations["vmdr.test/touch"])
      rvs[#rvs + 1] = o.metadata.resourceVersion
    end
    w:close()
    for i = 2, #rvs do assert.are_not.equal(rvs[i - 1], rvs[i]) end
  end)

  it("re-lists after 410 Gone and hands over a RESYNC with the full set", function()
    local list = assert(c:list("vm", { labelSelector = SEL }))
    local old = list.metadata.resourceVersion
    touch("odd", "w-1")
    touch("odd", "w-3")
    s.admin { compact = true }
    local it, _, _, w = c:watch("vm", { labelSelector = SEL, resourceVersion = old })
    local t, full = it()
    assert.equals("RESYNC", t)
    assert.equals(4, #full.items)
    assert.are_not.equal(old, full.metadata.resourceVersion)
    touch("even", "w-2")
    local t2, o = it()
    assert.equals("MODIFIED", t2)
    assert.equals("w-2", o.metadata.name)
    w:close()
  end)

  it("rides out a server restart and delivers the next change", function()
    local it, _, _, w = c:watch("vm", { idle = 0.3, backoff = 0.1, backoff_max = 0.3 })
    assert.equals("RESYNC", (it()))
    s.admin { restart = 1 }
    local quick = assert(k8s.client { kubeconfig = s.kubeconfig, retries = 0 })
    local changed, got = false, nil
    for t, o in it do
      if t == "IDLE" and not changed then
        -- fails while the server is down; succeeds once it is back
        changed = quick:patch("vm", "odd", "w-5",
          { metadata = { labels = { restarted = "yes" } } }) ~= nil
      elseif t == "MODIFIED" then
        got = o
        break
      end
    end
    quick:close()
    w:close()
    assert.is_true(changed)
    assert.equals("w-5", got.metadata.name)
    assert.equals("yes", got.metadata.labels.restarted)
  end)

  it("gives back the buffer a big event grew once it is consumed", function()
    local it, _, _, w = c:watch("vm", { labelSelector = SEL, idle = 0.3 })
    assert.equals("RESYNC", (it()))
    -- one event line of ~150 KB (a VM with a big annotation) must grow the buffer
    local pad = string.rep("x", 150 * 1024)
    assert(c:patch("vm", "odd", "w-1", { metadata = { annotations = { ["vmdr.test/pad"] = pad } } }))
    local t, obj
    repeat t, obj = it() until t ~= "IDLE"
    assert.equals("MODIFIED", t)
    assert.equals(pad, obj.metadata.annotations["vmdr.test/pad"])
    assert.equals("IDLE", (it())) -- waited on the stream again: the line is consumed
    local after = w:buffered()
    assert.is_true(after <= 16384, "buffer kept at " .. after .. " after the event")
    assert(c:patch("vm", "odd", "w-1", { metadata = { annotations = { ["vmdr.test/pad"] = "" } } }))
    touch("odd", "w-3")
    local seen = {}
    while #seen < 2 do
      t, obj = it()
      if t ~= "IDLE" then seen[#seen + 1] = t .. " " .. obj.metadata.name end
    end
    assert.same({ "MODIFIED w-1", "MODIFIED w-3" }, seen)
    w:close()
  end)

  it("retries a watch the server fails with 503", function()
    s.admin { fail = { count = 2, status = 503 } }
    local it, _, _, w = c:watch("vm", { labelSelector = SEL, backoff = 0.01 })
    assert.equals("RESYNC", (it()))
    w:close()
  end)

  it("raises the err table on a fatal error instead of ending the loop", function()
    s.admin { reject_auth = true }
    local ok, err = pcall(function()
      for _ in c:watch("vm", { labelSelector = SEL }) do end
    end)
    assert.is_false(ok)
    assert.equals("unauthorized", err.code)
    s.admin { clear = true }
    ok, err = pcall(c.watch, c, "nosuchthings")
    assert.is_false(ok)
    assert.equals("not_found", err.code)
  end)

  it("gives up after max_failures when the server stays away", function()
    local quick = assert(k8s.client { kubeconfig = s.kubeconfig, retries = 0 })
    local it, _, _, w = quick:watch("vm", { max_failures = 2, backoff = 0.01, backoff_max = 0.02 })
    assert.equals("RESYNC", (it()))
    s.admin { restart = 3 }
    local ok, err = pcall(it)
    w:close()
    quick:close()
    assert.is_false(ok)
    assert.equals("unreachable", err.code)
    assert.matches("failures in a row", err.message)
    -- the server is still away (3 s): let it come back before after_each talks to it
    local deadline = time.monotonic() + 30
    while s.curl { path = "/version" }.code == 0 and time.monotonic() < deadline do time.sleep(0.1) end
  end)
end)
