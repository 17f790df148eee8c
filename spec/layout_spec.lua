-- vmdr.layout: the repository paths, and refusal of names that could escape the tree.
local layout = require "vmdr.layout"

describe("vmdr.layout", function()
  local L = assert(layout.new { cluster = "ocp-dr" })

  it("puts every file where DESIGN.md says, under the default root vms/", function()
    assert.equals("vms/applicationset.yaml", L:applicationset())
    assert.equals("vms/base/db/kustomization.yaml", L:base_kustomization("db"))
    assert.equals("vms/base/db/vm-pg-0.yaml", L:vm("db", "pg-0"))
    assert.equals("vms/base/db/pvc-pg-0-data.yaml", L:pvc("db", "pg-0-data"))
    assert.equals("vms/base/db/pv-pvc-0a1b.yaml", L:pv("db", "pvc-0a1b"))
    assert.equals("vms/base/db/vm-a.b.yaml", L:object("VirtualMachine", "db", "a.b"))
    assert.equals("vms/overlays/ocp-dr/db/kustomization.yaml", L:overlay_kustomization("db"))
    assert.equals("vms/overlays/ocp-dr/components/failover-control/kustomization.yaml",
      L:component_kustomization())
    assert.equals("vms/overlays/ocp-dr/components/failover-control/patches/power-on.yaml",
      L:power_on_patch())
    assert.equals("vms/overlays/ocp-dr/components/failover-control/patches/power-off.yaml",
      L:power_off_patch())
    assert.equals("../../../base/db", L:overlay_to_base("db"))
    assert.equals("../components/failover-control", L:overlay_to_component())
    assert.equals("vms/overlays/ocp-dr/*", L:overlay_glob())
  end)

  it("takes a configured root, nested or the repository top", function()
    assert.equals("dr/site-a/base/db/vm-x.yaml", layout.new { root = "dr/site-a/", cluster = "c" }:vm("db", "x"))
    assert.equals("base/db/vm-x.yaml", layout.new { root = ".", cluster = "c" }:vm("db", "x"))
  end)

  local bad_roots = { "", "/vms", "../vms", "vms/../..", "a//b", "./vms", ".git", "vms/.hidden", "v m",
    "vms\0x" }
  for _, r in ipairs(bad_roots) do
    it("refuses the root " .. string.format("%q", r), function()
      local l, err = layout.new { root = r, cluster = "c" }
      assert.is_nil(l)
      assert.equals("invalid", err.code)
      assert.matches("git.root", err.message)
    end)
  end

  local bad_clusters = { "", "..", "a/b", "UPPER", "-x", "x-", "a..b", string.rep("a", 254) }
  for _, c in ipairs(bad_clusters) do
    it("refuses the cluster name " .. string.format("%q", c), function()
      local l, err = layout.new { cluster = c }
      assert.is_nil(l)
      assert.equals("invalid", err.code)
    end)
  end

  -- names an API server would never return, and a hostile one might
  local bad_ns = { "..", ".", "", "a/b", "../etc", "a.b", "Db", "-db", "db-", "db\0", "db\n",
    " db", string.rep("n", 64), "components", "~", "db/../x" }
  for _, ns in ipairs(bad_ns) do
    it("refuses the namespace " .. string.format("%q", ns), function()
      for _, f in ipairs { "base_dir", "base_kustomization", "overlay_dir", "overlay_kustomization",
        "overlay_to_base" } do
        local p, err = L[f](L, ns)
        assert.is_nil(p, f)
        assert.equals("invalid", err.code)
        assert.matches("namespace", err.message)
      end
      local p, err = L:vm(ns, "ok")
      assert.is_nil(p)
      assert.equals("invalid", err.code)
    end)
  end

  local bad_names = { "..", ".", "", "a/b", "../../x", "/etc/passwd", "a..b", ".a", "a.", "A",
    "a_b", "a b", "a\0b", "a\nb", string.rep("x", 254), "x.y.-z" }
  for _, n in ipairs(bad_names) do
    it("refuses the object name " .. string.format("%q", n), function()
      for _, f in ipairs { "vm", "pvc", "pv" } do
        local p, err = L[f](L, "db", n)
        assert.is_nil(p, f)
        assert.equals("invalid", err.code)
        assert.matches("DNS%-1123 subdomain", err.message)
      end
    end)
  end

  it("accepts the longest names whose file fits in a file name (255 bytes)", function()
    local ns = string.rep("n", 63)
    local base = string.rep("a", 63) .. "." .. string.rep("b", 63) .. "." .. string.rep("c", 63) .. "."
    -- vm-NAME.yaml and pv-NAME.yaml: 247 characters; pvc-NAME.yaml: 246
    local name = base .. string.rep("d", 55)
    assert.equals(247, #name)
    assert.equals("vms/base/" .. ns .. "/vm-" .. name .. ".yaml", L:vm(ns, name))
    assert.equals("vms/base/" .. ns .. "/pv-" .. name .. ".yaml", L:pv(ns, name))
    assert.is_nil(L:pvc(ns, name))
    assert.equals("vms/base/" .. ns .. "/pvc-" .. name:sub(2) .. ".yaml", L:pvc(ns, name:sub(2)))
  end)

  -- regression: a legal 253-character name made a 261-byte file name, which git stores
  -- but no checkout (Argo CD's included) can create
  it("refuses a legal name whose file name would exceed 255 bytes", function()
    local name = string.rep("a", 63) .. "." .. string.rep("b", 63) .. "." .. string.rep("c", 63) .. "."
      .. string.rep("d", 61)
    assert.equals(253, #name)
    for _, f in ipairs { "vm", "pvc", "pv" } do
      local p, err = L[f](L, "db", name)
      assert.is_nil(p, f)
      assert.equals("invalid", err.code)
      assert.matches("is 253 characters long: its file .* would exceed the 255 bytes", err.message)
    end
  end)

  it("shows look-alike and control characters escaped in its errors", function()
    local _, err = L:vm("db", "g\u{43e}\u{43e}d")
    assert.matches('name "g\\xd0\\xbe\\xd0\\xbed" %(non%-ASCII characters%) is not', err.message)
    _, err = L:vm("db", "a\27[2J\rb")
    assert.matches('name "a\\x1b%[2J\\x0db" is not', err.message)
    assert.is_nil(err.message:find("\27", 1, true))
  end)

  it("refuses an unknown kind", function()
    local p, err = L:object("Secret", "db", "x")
    assert.is_nil(p)
    assert.equals("invalid", err.code)
  end)

  it("classifies and parses only what it could have written", function()
    assert.same({ "VirtualMachine", "pg" }, { layout.classify("vm-pg.yaml") })
    assert.same({ "PersistentVolumeClaim", "x" }, { layout.classify("pvc-x.yaml") })
    assert.same({ "PersistentVolume", "c-x" }, { layout.classify("pv-c-x.yaml") })
    assert.same({ "PersistentVolume", "pvc-1" }, { layout.classify("pv-pvc-1.yaml") })
    for _, f in ipairs { "kustomization.yaml", "vm-.yaml", "vm-A.yaml", "vm-x.yml", "notes.md",
      "vm-../x.yaml", "pvc-a_b.yaml" } do
      assert.is_nil(layout.classify(f), f)
    end
    assert.same({ kind = "VirtualMachine", namespace = "db", name = "pg" }, L:parse("vms/base/db/vm-pg.yaml"))
    assert.same({ kind = "base-kustomization", namespace = "db" }, L:parse("vms/base/db/kustomization.yaml"))
    assert.same({ kind = "overlay-kustomization", namespace = "db" },
      L:parse("vms/overlays/ocp-dr/db/kustomization.yaml"))
    assert.is_nil(L:parse("vms/overlays/other/db/kustomization.yaml"))
    assert.is_nil(L:parse("vms/overlays/ocp-dr/components/kustomization.yaml"))
    assert.is_nil(L:parse("vms/base/Db/vm-pg.yaml"))
    assert.is_nil(L:parse("other/base/db/vm-pg.yaml"))
    assert.is_nil(L:parse("vms/base/db/sub/vm-pg.yaml"))
  end)

  it("comes from the configuration keys", function()
    local l = assert(layout.from_config { cluster_name = "dr2", git = { root = "fleet/vms" } })
    assert.equals("fleet/vms/overlays/dr2/db/kustomization.yaml", l:overlay_kustomization("db"))
    assert.equals("vms/applicationset.yaml", assert(layout.from_config { cluster_name = "c" }):applicationset())
    local r, err = layout.from_config {}
    assert.is_nil(r)
    assert.matches("cluster_name", err.message)
    r, err = layout.from_config { cluster_name = "c", git = { root = "../x" } }
    assert.is_nil(r)
    assert.matches("git.root", err.message)
  end)

  it("raises on misuse", function()
    assert.has_error(function() layout.new() end)
  end)
end)
