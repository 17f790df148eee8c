-- vmdr.kustomize: a sample tree built with the real `kubectl kustomize` (default load
-- restrictions, as Argo CD runs it), VMs validated against the KubeVirt schema, the
-- ApplicationSet against its CRD, and the control-panel editor byte for byte.
local h = require "support.helper"
local yaml = require "vmdr.yaml"
local layout = require "vmdr.layout"
local manifest = require "vmdr.manifest"
local kustomize = require "vmdr.kustomize"

local VALIDATE = [[
import sys, json, yaml, jsonschema
schema_file, kind = sys.argv[1], sys.argv[2]
L = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
doc = yaml.load(open(schema_file), Loader=L)
if doc.get("kind") == "CustomResourceDefinition":
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
elif "openAPIV3Schema" in doc:
    schema = doc["openAPIV3Schema"]
else:
    schema = doc
# a validator without the meta-schema check of jsonschema.validate (slow on big schemas)
v = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
n = 0
for d in yaml.load_all(sys.stdin, Loader=L):
    if d and (kind == "*" or d.get("kind") == kind):
        errs = sorted(v.iter_errors(d), key=lambda e: list(e.path))
        if errs:
            for e in errs[:5]:
                print("%s %s: %s" % (kind, "/".join(map(str, e.path)), e.message), file=sys.stderr)
            sys.exit(1)
        n += 1
print(n)
]]

local function fixture(rel)
  return assert(yaml.decode(assert(h.read(h.fixtures .. "/" .. rel))))
end

local function ls(dir)
  local out = {}
  local p = io.popen("ls -1 " .. h.q(dir))
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function build(dir)
  local r = h.exec { "kubectl", "kustomize", dir }
  assert.equals(0, r.code, "kubectl kustomize " .. dir .. ":\n" .. r.stderr)
  return r.stdout, assert(yaml.decode_all(r.stdout))
end

local function validate(schema, kind, text)
  local r = h.exec({ "python3", "-c", VALIDATE, schema, kind }, nil, text)
  assert.equals(0, r.code, "schema validation of " .. kind .. " failed:\n" .. r.stderr)
  return tonumber(r.stdout)
end

local function rejects(schema, kind, text)
  local r = h.exec({ "python3", "-c", VALIDATE, schema, kind }, nil, text)
  assert.not_equals(0, r.code, kind .. " accepted by " .. schema)
  return r.stderr
end

local function run_strategies(docs)
  local out = {}
  for _, d in ipairs(docs) do
    if d.kind == "VirtualMachine" then out[d.metadata.name] = d.spec.runStrategy end
  end
  return out
end

describe("vmdr.kustomize", function()
  local tmp, repo, lay
  local kubevirt_schema = h.fixtures .. "/schemas/kubevirt/virtualmachine-openapiv3schema-kubevirt-v1.9.0.yaml"
  local kubevirt_schema_16 = h.fixtures .. "/schemas/kubevirt/virtualmachine-openapiv3schema-kubevirt-v1.6.3.yaml"
  local appset_crd = h.fixtures .. "/schemas/argocd/applicationset-crd-argo-cd-v3.5.1.yaml"

  local function put(path, bytes) return h.write(repo .. "/" .. path, bytes) end

  setup(function()
    h.need("kubectl")
    h.need("python3")
    tmp = h.tmpdir("kustomize")
    repo = tmp .. "/repo"
    lay = assert(layout.new { cluster = "ocp-dr" })
    -- a sample tree: namespace db (two database VMs, one with a PVC+PV, one with a
    -- dataVolumeTemplate) and namespace web (a web VM and an unlabelled one)
    local vms = {
      { "db", "pg-0", { ["app-tier"] = "database" }, "vms/kubevirt-examples--vm-alpine-multipvc.yaml" },
      { "db", "pg-1", { ["app-tier"] = "database", env = "prod" },
        "vms/kubevirt-examples--vm-alpine-datavolume.yaml" },
      { "web", "nginx", { ["app-tier"] = "web" }, "vms/user-guide--macvtap-multus.yaml" },
      { "web", "tools", nil, "vms/kubevirt-examples--vm-cirros-instancetype-preference.yaml" },
    }
    for _, v in ipairs(vms) do
      local vm = fixture(v[4])
      vm.metadata.namespace, vm.metadata.name, vm.metadata.labels = v[1], v[2], v[3]
      put(assert(lay:vm(v[1], v[2])), manifest.encode(assert(manifest.clean_vm(nil, vm))))
    end
    local pvc = fixture("storage/pvc/deckhouse--pvc-ceph-csi-rbd-bound.yaml")
    pvc.metadata.namespace = "db"
    put(assert(lay:pvc("db", pvc.metadata.name)), manifest.encode(assert(manifest.clean_pvc(nil, pvc))))
    local pv = fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml")
    pv.spec.claimRef.namespace = "db"
    put(assert(lay:pv("db", pv.metadata.name)), manifest.encode(assert(manifest.clean_pv(nil, pv))))
    for _, ns in ipairs { "db", "web" } do
      local dir = repo .. "/" .. assert(lay:base_dir(ns))
      put(assert(lay:base_kustomization(ns)), kustomize.base_kustomization(ls(dir)))
      put(assert(lay:overlay_kustomization(ns)), assert(kustomize.overlay_kustomization(lay, ns)))
    end
    for _, f in ipairs(assert(kustomize.layout_files(lay, { repo_url = "https://git.example.com/dr.git",
      destination = "ocp-dr" }))) do
      put(f.path, f.bytes)
    end
  end)

  it("lists a base directory's manifests sorted, and nothing else", function()
    local k = kustomize.base_kustomization { "vm-b.yaml", "kustomization.yaml", "pv-a.yaml", "README.md",
      "pvc-a.yaml", "vm-a.yaml", "vm-../../x.yaml", { name = "pvc-0.yaml" } }
    assert.equals(table.concat({
      "# Generated by vmdr from the files of this directory; do not edit.",
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      "resources:",
      "  - pv-a.yaml",
      "  - pvc-0.yaml",
      "  - pvc-a.yaml",
      "  - vm-a.yaml",
      "  - vm-b.yaml",
      "" }, "\n"), k)
    -- the same listing in another order gives the same bytes
    assert.equals(k, kustomize.base_kustomization { "vm-a.yaml", "pvc-a.yaml", "vm-b.yaml", "pv-a.yaml",
      "pvc-0.yaml" })
    assert.same({}, yaml.decode(kustomize.base_kustomization {}).resources)
  end)

  it("builds every overlay with kubectl kustomize: all VMs Halted, storage included", function()
    local all = 0
    for _, ns in ipairs { "db", "web" } do
      local text, docs = build(repo .. "/" .. lay:overlay_dir(ns))
      local kinds = {}
      for _, d in ipairs(docs) do kinds[d.kind] = (kinds[d.kind] or 0) + 1 end
      assert.equals(2, kinds.VirtualMachine)
      for name, rs in pairs(run_strategies(docs)) do assert.equals("Halted", rs, name) end
      for _, d in ipairs(docs) do
        assert.is_nil(d.spec.running)
        if d.kind ~= "VirtualMachine" then
          assert.equals("-1", d.metadata.annotations["argocd.argoproj.io/sync-wave"])
        end
      end
      if ns == "db" then
        assert.equals(1, kinds.PersistentVolumeClaim)
        assert.equals(1, kinds.PersistentVolume)
      end
      all = all + validate(kubevirt_schema, "VirtualMachine", text)
      validate(kubevirt_schema_16, "VirtualMachine", text)
    end
    assert.equals(4, all)
  end)

  it("builds and validates every VM fixture once cleaned, all Halted", function()
    -- one namespace holding every real VM fixture (the fuzzed API round-trip object
    -- is placeholders only, and templates carry ${NAME}: both are not deployable)
    local dir = repo .. "/" .. lay:base_dir("fixtures")
    local p = io.popen("ls " .. h.q(h.fixtures .. "/vms") .. "/*.yaml")
    local names = {}
    for f in p:lines() do
      if not f:match("fuzzed") then
        local vm = assert(yaml.decode(assert(h.read(f))))
        local name = f:match("([^/]+)%.yaml$"):lower():gsub("[^a-z0-9-]", "-")
        vm.metadata.name, vm.metadata.namespace = name, "fixtures"
        put(assert(lay:vm("fixtures", name)), manifest.encode(assert(manifest.clean_vm(nil, vm))))
        names[#names + 1] = name
      end
    end
    p:close()
    assert.truthy(#names >= 20, #names .. " fixtures")
    put(assert(lay:base_kustomization("fixtures")), kustomize.base_kustomization(ls(dir)))
    put(assert(lay:overlay_kustomization("fixtures")), assert(kustomize.overlay_kustomization(lay, "fixtures")))
    local text, docs = build(repo .. "/" .. lay:overlay_dir("fixtures"))
    local rs = run_strategies(docs)
    for _, n in ipairs(names) do assert.equals("Halted", rs[n], n) end
    assert.equals(#names, validate(kubevirt_schema, "VirtualMachine", text))
    assert.equals(#names, validate(kubevirt_schema_16, "VirtualMachine", text))
    assert.equals(0, h.sh("rm -rf " .. h.q(dir) .. " " .. h.q(repo .. "/" .. lay:overlay_dir("fixtures"))))
  end)

  it("powers on exactly the activated group, and off again", function()
    local cpath = repo .. "/" .. lay:component_kustomization()
    local original = h.read(cpath)
    local on = assert(kustomize.activate(original, "app-tier=database"))
    h.write(cpath, on)
    local dbtext, db = build(repo .. "/" .. lay:overlay_dir("db"))
    local _, web = build(repo .. "/" .. lay:overlay_dir("web"))
    assert.same({ ["pg-0"] = "Always", ["pg-1"] = "Always" }, run_strategies(db))
    assert.equals(2, validate(kubevirt_schema, "VirtualMachine", dbtext))
    assert.same({ nginx = "Halted", tools = "Halted" }, run_strategies(web))
    -- a second group with a set-based selector
    local on2 = assert(kustomize.activate(on, "env in (prod),app-tier"))
    h.write(cpath, on2)
    _, db = build(repo .. "/" .. lay:overlay_dir("db"))
    assert.same({ ["pg-0"] = "Always", ["pg-1"] = "Always" }, run_strategies(db))
    local off = assert(kustomize.deactivate(on2, "app-tier = database"))
    h.write(cpath, off)
    _, db = build(repo .. "/" .. lay:overlay_dir("db"))
    assert.same({ ["pg-0"] = "Halted", ["pg-1"] = "Always" }, run_strategies(db))
    local back = assert(kustomize.deactivate(off, "app-tier,env in (prod)"))
    assert.equals(original, back)
    h.write(cpath, back)
    _, db = build(repo .. "/" .. lay:overlay_dir("db"))
    assert.same({ ["pg-0"] = "Halted", ["pg-1"] = "Halted" }, run_strategies(db))
  end)

  it("writes kustomization files that validate against the kustomization schema", function()
    local schema = h.fixtures .. "/schemas/kustomize/kustomization.schemastore.json"
    local n = 0
    local p = io.popen("find " .. h.q(repo) .. " -name kustomization.yaml | sort")
    for f in p:lines() do
      n = n + validate(schema, "*", h.read(f))
    end
    p:close()
    assert.equals(5, n) -- two bases, two overlays, the component
    rejects(schema, "*", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: 5\n")
  end)

  it("has schema checks that reject a broken VM and a broken ApplicationSet", function()
    local err = rejects(kubevirt_schema, "VirtualMachine",
      "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: x}\nspec: {runStrategy: 5}\n")
    assert.matches("runStrategy", err)
    local text = h.read(repo .. "/" .. lay:applicationset())
    err = rejects(appset_crd, "ApplicationSet",
      (text:gsub("preserveResourcesOnDeletion: true", "preserveResourcesOnDeletion: \"yes\"")))
    assert.matches("preserveResourcesOnDeletion", err)
  end)

  it("generates an ApplicationSet that validates against the Argo CD CRD", function()
    local text = h.read(repo .. "/" .. lay:applicationset())
    assert.equals(1, validate(appset_crd, "ApplicationSet", text))
    local a = yaml.decode(text)
    assert.is_true(a.spec.syncPolicy.preserveResourcesOnDeletion)
    local dirs = a.spec.generators[1].git.directories
    assert.equals("vms/overlays/ocp-dr/*", dirs[1].path)
    assert.equals("vms/overlays/ocp-dr/components", dirs[2].path)
    assert.is_true(dirs[2].exclude)
    assert.equals("ocp-dr", a.spec.template.spec.destination.name)
    -- deterministic, and a hostile URL stays one quoted string
    local odd = assert(kustomize.applicationset(lay, { repo_url = 'https://x/"a": b\n# c' }))
    assert.equals('https://x/"a": b\n# c', yaml.decode(odd).spec.template.spec.source.repoURL)
    assert.equals(1, validate(appset_crd, "ApplicationSet", odd))
    assert.equals(odd, kustomize.applicationset(lay, { repo_url = 'https://x/"a": b\n# c' }))
    local srv = yaml.decode(assert(kustomize.applicationset(lay, { repo_url = "u",
      destination = "https://api.dr:6443", automated = false })))
    assert.equals("https://api.dr:6443", srv.spec.template.spec.destination.server)
    assert.is_nil(srv.spec.template.spec.syncPolicy.automated)
    local r, err = kustomize.applicationset(lay, {})
    assert.is_nil(r)
    assert.equals("invalid", err.code)
  end)

  it("takes its ApplicationSet options from the configuration", function()
    local o = kustomize.options_from_config { cluster_name = "ocp-dr", git = { url = "ssh://g/r", branch = "dr" },
      argocd = { namespace = "argocd", project = "vms", automated = "false" } }
    assert.same({ repo_url = "ssh://g/r", revision = "dr", namespace = "argocd", project = "vms",
      destination = "ocp-dr", automated = false }, o)
    local a = yaml.decode(assert(kustomize.applicationset(lay, o)))
    assert.equals("argocd", a.metadata.namespace)
    assert.equals("dr", a.spec.template.spec.source.targetRevision)
    assert.is_nil(a.spec.template.spec.syncPolicy.automated)
  end)

  it("marks the component files as create-only and the ApplicationSet as generated", function()
    local files = assert(kustomize.layout_files(lay, { repo_url = "u" }))
    local ow = {}
    for _, f in ipairs(files) do ow[f.path] = f.overwrite end
    assert.is_true(ow[lay:applicationset()])
    assert.is_false(ow[lay:component_kustomization()])
    assert.is_false(ow[lay:power_on_patch()])
    assert.is_false(ow[lay:power_off_patch()])
  end)
end)

describe("the control-panel editor", function()
  local lay = assert(layout.new { cluster = "ocp-dr" })
  local fresh = kustomize.component_kustomization(lay)

  -- an operator's file: own comments, blank lines, quoting styles, another group
  -- active, a hash-in-column-0 commented block, and a key after patches
  local hand = table.concat({
    "# DR control panel -- edited by the on-call team",
    "apiVersion: kustomize.config.k8s.io/v1alpha1",
    "kind: Component",
    "patches:  # order matters",
    "  - path: patches/power-off.yaml",
    "    target:",
    "      group: kubevirt.io",
    "      kind: VirtualMachine",
    "",
    "  # finance, activated 2026-03-01 (INC-4711)",
    "  - path: patches/power-on.yaml",
    "    target:",
    "      kind: VirtualMachine",
    "      labelSelector: 'team=finance'   ",
    "#   - path: patches/power-on.yaml",
    "#     target:",
    "#       labelSelector: team=legacy",
    "  # - path: patches/power-on.yaml",
    "  #   target:",
    "  #     kind: VirtualMachine",
    "  #     labelSelector: app-tier in (web, cache)",
    "",
    "labels:",
    "  - pairs:",
    "      dr.demojam.com/site: ocp-dr",
  }, "\n") .. "\n"

  it("starts from a file that parses, with the power-off patch and a commented example", function()
    local doc = yaml.decode(fresh)
    assert.equals("Component", doc.kind)
    assert.equals(1, #doc.patches)
    assert.equals("patches/power-off.yaml", doc.patches[1].path)
    assert.same({}, kustomize.active_selectors(fresh))
  end)

  it("uncomments the example block and comments it back byte for byte", function()
    local on, changed = kustomize.activate(fresh, "app-tier==database")
    assert.is_true(changed)
    assert.same({ "app-tier=database" }, kustomize.active_selectors(on))
    assert.not_matches(kustomize.MARKER, on, 1, true)
    local off = assert(kustomize.deactivate(on, "app-tier=database"))
    assert.equals(fresh, off)
  end)

  it("appends a marked block for a new group and removes it again, byte for byte", function()
    local on = assert(kustomize.activate(fresh, "dr.demojam.com/group=g1"))
    assert.truthy(on:find(kustomize.MARKER, 1, true))
    assert.equals(fresh, on:sub(1, #fresh))
    assert.equals(fresh, (assert(kustomize.deactivate(on, "dr.demojam.com/group=g1"))))
  end)

  it("is idempotent: activating an active group or deactivating an inactive one changes nothing", function()
    local on = assert(kustomize.activate(fresh, "a=b"))
    local again, changed = kustomize.activate(on, "a = b")
    assert.equals(on, again)
    assert.is_false(changed)
    local same, ch2 = kustomize.deactivate(fresh, "a=b")
    assert.equals(fresh, same)
    assert.is_false(ch2)
  end)

  it("keeps every other byte of a hand-edited file", function()
    assert.same({ "team=finance" }, kustomize.active_selectors(hand))
    -- uncomment the operator's set-based block (found by meaning, not spelling)
    local on = assert(kustomize.activate(hand, "app-tier in (cache,web)"))
    assert.same({ "team=finance", "app-tier in (cache,web)" }, kustomize.active_selectors(on))
    assert.equals(hand, assert(kustomize.deactivate(on, "app-tier in (web,cache)")))
    -- the column-0 style block
    local legacy = assert(kustomize.activate(hand, "team=legacy"))
    assert.same({ "team=finance", "team=legacy" }, kustomize.active_selectors(legacy))
    assert.truthy(legacy:find("\n  - path: patches/power-on.yaml\n    target:\n      labelSelector: team=legacy\n",
      1, true))
    -- a new group goes at the end of the patches list, before `labels:`
    local g = assert(kustomize.activate(hand, "app=new"))
    local doc = yaml.decode(g)
    assert.equals("app=new", doc.patches[#doc.patches].target.labelSelector)
    assert.same({ { pairs = { ["dr.demojam.com/site"] = "ocp-dr" } } }, doc.labels)
    assert.equals(hand, assert(kustomize.deactivate(g, "app=new")))
    -- the operator's own active block is commented out, then restored
    local off = assert(kustomize.deactivate(hand, "team=finance"))
    assert.same({}, kustomize.active_selectors(off))
    assert.truthy(off:find("  # - path: patches/power-on.yaml\n  #   target:\n", 1, true))
    assert.truthy(off:find("  # finance, activated 2026-03-01 (INC-4711)\n", 1, true))
    assert.equals(hand, assert(kustomize.activate(off, "team=finance")))
  end)

  it("edits a list written at column 0 in that style", function()
    local flat = table.concat({
      "kind: Component",
      "apiVersion: kustomize.config.k8s.io/v1alpha1",
      "patches:",
      "- path: patches/power-off.yaml",
      "  target:",
      "    kind: VirtualMachine",
      "- path: patches/power-on.yaml",
      "  target:",
      "    kind: VirtualMachine",
      "    labelSelector: tier=db",
      "---",
    }, "\n")
    assert.same({ "tier=db" }, kustomize.active_selectors(flat))
    local on = assert(kustomize.activate(flat, "tier=web"))
    assert.truthy(on:find("\n- path: patches/power-on.yaml\n  target:\n    group: kubevirt.io\n", 1, true))
    assert.same({ "tier=db", "tier=web" }, kustomize.active_selectors(on))
    assert.equals(flat, assert(kustomize.deactivate(on, "tier=web")))
    local off = assert(kustomize.deactivate(flat, "tier=db"))
    assert.truthy(off:find("\n# - path: patches/power-on.yaml\n#   target:\n", 1, true))
    assert.equals(flat, assert(kustomize.activate(off, "tier=db")))
  end)

  it("refuses a malformed selector and a control panel it cannot edit safely", function()
    local r, err = kustomize.activate(fresh, "app-tier in (")
    assert.is_nil(r)
    assert.equals("invalid", err.code)
    r, err = kustomize.activate(fresh, "")
    assert.is_nil(r)
    assert.equals("invalid", err.code)
    r, err = kustomize.activate("apiVersion: v1\nkind: Component\n", "a=b")
    assert.is_nil(r)
    assert.matches("patches", err.message)
    -- flow-style patches: the text edit would not produce the entry; caught by the parse check
    r, err = kustomize.activate("kind: Component\npatches:\n  [ {path: patches/power-off.yaml} ]\n", "a=b")
    assert.is_nil(r)
    assert.equals("invalid", err.code)
  end)
end)
