-- vmdr.yaml.clean: rules as data, applied in C, in place (docs/yaml-clean.md).
local yaml = require "vmdr.yaml"
local h = require "support.helper"
local null, array_mt = yaml.null, yaml.array_mt

local function obj(text) return assert(yaml.decode(text)) end
local function yml(v) return assert(yaml.encode(v)) end

describe("vmdr.yaml.clean", function()
  local vm_text = [[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: db
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
    kubevirt.io/latest-observed-api-version: v1
    keep.me/please: "yes"
  labels: {app: db}
  managedFields: [{manager: kubectl}]
spec:
  running: true
  template:
    spec:
      volumes:
      - name: root
        dataVolume: {name: db-root}
      - name: cloudinit
        cloudInitNoCloud: {userData: "#cloud-config"}
      - name: data
        dataVolume: {name: db-data}
status:
  ready: true
]]

  -- { name, rules, function making the expected value, "once" if not idempotent }
  local cases = {
    { "removes top-level and nested paths",
      { { remove = "status" }, { remove = "metadata.managedFields" } },
      function(v) v.status = nil; v.metadata.managedFields = nil; return v end },
    { "removes keys by prefix",
      { { remove_keys = "metadata.annotations", prefix = "kubectl.kubernetes.io/" } },
      function(v) v.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"] = nil; return v end },
    { "removes keys by several prefixes and names",
      { { remove_keys = "metadata.annotations", prefix = { "kubevirt.io/", "nope/" },
          names = { "keep.me/please" } } },
      function(v)
        v.metadata.annotations["kubevirt.io/latest-observed-api-version"] = nil
        v.metadata.annotations["keep.me/please"] = nil
        return v
      end },
    { "leaves an emptied map without prune_empty",
      { { remove_keys = "metadata.annotations", prefix = "" } },
      function(v) v.metadata.annotations = {}; return v end },
    { "prunes an emptied map with prune_empty",
      { { remove_keys = "metadata.annotations", prefix = "", prune_empty = true } },
      function(v) v.metadata.annotations = nil; return v end },
    { "prunes after remove of the last key",
      { { remove = "metadata.labels.app", prune_empty = true } },
      function(v) v.metadata.labels = nil; return v end },
    { "goes through lists with [*]",
      { { remove = "spec.template.spec.volumes[*].dataVolume" } },
      function(v)
        for _, vol in ipairs(v.spec.template.spec.volumes) do vol.dataVolume = nil end
        return v
      end },
    { "goes through maps with *",
      { { remove = "spec.template.spec.volumes[*].*.name" } },
      function(v)
        v.spec.template.spec.volumes[1].dataVolume.name = nil
        v.spec.template.spec.volumes[3].dataVolume.name = nil
        return v
      end },
    { "prunes list elements it emptied, without skipping any",
      { { remove = "spec.template.spec.volumes[*].*", prune_empty = true } },
      function(v) v.spec.template.spec.volumes = setmetatable({}, array_mt); return v end },
    { "removes a list element by index, shifting the rest",
      { { remove = "spec.template.spec.volumes[1]" } },
      function(v) table.remove(v.spec.template.spec.volumes, 2); return v end, "once" },
    { "uses quoted keys with dots",
      { { remove = 'metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]' },
        { remove = "metadata.annotations['keep.me/please']" } },
      function(v)
        v.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"] = nil
        v.metadata.annotations["keep.me/please"] = nil
        return v
      end },
    { "sets a value, creating maps on the way",
      { { set = "spec.runStrategy", value = "Halted" }, { set = "a.b.c", value = { 1, 2 } } },
      function(v) v.spec.runStrategy = "Halted"; v.a = { b = { c = { 1, 2 } } }; return v end },
    { "sets only where present with if_present",
      { { set = "spec.running", value = false, if_present = true },
        { set = "spec.runStrategy", value = "Halted", if_present = true } },
      function(v) v.spec.running = false; return v end },
    { "sets every element with [*] and an element by index",
      { { set = "spec.template.spec.volumes[*].name", value = "x", if_present = true },
        { set = "spec.template.spec.volumes[0]", value = { name = "first" } },
        { set = "spec.template.spec.volumes[9]", value = { name = "never" } } },
      function(v)
        local vols = v.spec.template.spec.volumes
        for _, vol in ipairs(vols) do vol.name = "x" end
        vols[1] = { name = "first" }
        return v
      end },
    { "sets null",
      { { set = "spec.running", value = null } },
      function(v) v.spec.running = null; return v end },
    { "applies a rule only when its condition holds",
      { { remove = "status", when = { kind = "PersistentVolume" } },
        { remove = "spec.running", when = { kind = "VirtualMachine", ["metadata.name"] = "db" } },
        { remove = "metadata.labels", when = { ["status.ready"] = true } },
        { remove = "metadata.name", when = { ["spec.template.spec.volumes[1].name"] = "nope" } } },
      function(v) v.spec.running = nil; v.metadata.labels = nil; return v end },
    { "ignores paths that match nothing or cross the wrong type",
      { { remove = "nothing.here" }, { remove = "kind.sub" }, { remove = "spec[0]" },
        { remove = "spec.template.spec.volumes.name" },
        { remove_keys = "spec.template.spec.volumes", prefix = "n" } },
      function(v) return v end },
  }

  for _, c in ipairs(cases) do
    it(c[1], function()
      local v = obj(vm_text)
      local want = yml(c[3](obj(vm_text)))
      assert.equals(v, yaml.clean(v, c[2]))
      assert.equals(want, yml(v))
      -- idempotent: a second run changes nothing more (removing [N] is not, by nature)
      if c[4] ~= "once" then
        yaml.clean(v, c[2])
        assert.equals(want, yml(v))
      end
    end)
  end

  it("copies a set value, so objects never share it", function()
    local value = { a = { 1 } }
    local a, b = obj(vm_text), obj(vm_text)
    local rules = { { set = "x", value = value } }
    yaml.clean(a, rules)
    yaml.clean(b, rules)
    a.x.a[1] = 2
    assert.equals(1, b.x.a[1])
    assert.equals(1, value.a[1])
  end)

  -- { rules, message pattern }
  local misuse = {
    { { { remvoe = "status" } }, "rule 1: unknown field remvoe" },
    { { { remove = "a" }, "x" }, "rule 2: a rule must be a table" },
    { { {} }, "rule 1: no action" },
    { { { remove = "a", set = "b", value = 1 } }, "rule 1: more than one action" },
    { { { remove = 1 } }, "rule 1: remove must be a path string" },
    { { { remove = "" } }, "rule 1: path '' at column 1: empty path" },
    { { { remove = "a..b" } }, "rule 1: path 'a..b' at column 3: empty segment" },
    { { { remove = "a[x]" } }, "expected %*, an index or a quoted key" },
    { { { remove = 'a["b' } }, "unterminated quoted key" },
    { { { remove = "a[1" } }, "expected ']'" },
    { { { remove = "a." } }, "empty segment at the end" },
    { { { remove = "a.[1]" } }, "'%[' cannot follow '%.'" },
    { { { remove_keys = "a" } }, "remove_keys needs 'prefix' or 'names'" },
    { { { remove_keys = "a", prefix = { 1 } } }, "'prefix' must be a string or a list" },
    { { { remove_keys = "a", names = "b" } }, "'names' must be a list of strings" },
    { { { remove = "a", prefix = "x" } }, "'prefix' goes with remove_keys" },
    { { { set = "a" } }, "set needs a 'value'" },
    { { { set = "a", value = print } }, "'value' must be data" },
    { { { remove = "a", value = 1 } }, "'value' goes with set" },
    { { { remove = "a", if_present = true } }, "'if_present' is a boolean that goes with set" },
    { { { set = "a", value = 1, prune_empty = true } }, "'prune_empty' is a boolean" },
    { { { remove = "a", when = "kind" } }, "'when' must be a table" },
    { { { remove = "a", when = { ["a[*]"] = 1 } } }, "'when' paths cannot hold wildcards" },
    { { { remove = "a", when = { a = {} } } }, "'when' values must be strings" },
  }
  for i, c in ipairs(misuse) do
    it("raises on misuse case " .. i .. " naming the rule", function()
      local v = obj(vm_text)
      local before = yml(v)
      local ok, err = pcall(yaml.clean, v, c[1])
      assert.is_false(ok)
      assert.matches(c[2], tostring(err))
      assert.equals(before, yml(v)) -- nothing applied
    end)
  end

  it("checks every rule before applying any", function()
    local v = obj(vm_text)
    local before = yml(v)
    local cyclic = {}
    cyclic.self = cyclic
    assert.has_error(function()
      yaml.clean(v, { { remove = "status" }, { set = "x", value = cyclic } })
    end)
    assert.equals(before, yml(v))
    assert.has_error(function() yaml.clean(v, { { remove = "status" }, { bogus = 1 } }) end)
    assert.equals(before, yml(v))
  end)

  it("raises on arguments that are not tables", function()
    assert.has_error(function() yaml.clean("x", {}) end)
    assert.has_error(function() yaml.clean({}, nil) end)
  end)

  it("cleans every VM fixture without error, idempotently", function()
    local rules = {
      { remove = "status" }, { remove = "metadata.managedFields" },
      { remove = "metadata.resourceVersion" }, { remove = "metadata.uid" },
      { remove_keys = "metadata.annotations", prefix = { "kubectl.kubernetes.io/", "kubevirt.io/" },
        prune_empty = true },
      { remove = "spec.template.spec.volumes[*].dataVolume.hotpluggable" },
    }
    local p = assert(io.popen("ls " .. h.q(h.fixtures .. "/vms") .. "/*.yaml"))
    local n = 0
    for f in p:lines() do
      local v = obj(h.read(f))
      yaml.clean(v, rules)
      assert.is_nil(v.status, f)
      assert.is_nil((v.metadata or {}).managedFields, f)
      local once = yml(v)
      yaml.clean(v, rules)
      assert.equals(once, yml(v))
      n = n + 1
    end
    p:close()
    assert.is_true(n > 5)
  end)
end)
