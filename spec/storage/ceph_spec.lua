-- vmdr.storage.ceph, the storage driver: PV -> image on real ceph-csi PV fixtures, then every
-- operation on the real pair (enable with flatten, promote graceful/forced/peer unreachable,
-- disable refused while primary elsewhere, status with the snapshot age, dry run).
-- needs: ceph
local h = require "support.helper"
local ceph = require "support.ceph"
local driver = require "vmdr.storage.ceph"

local MiB = 1024 * 1024

local function decode_file(path)
  local text = assert(h.read(path), path)
  if path:match("%.json$") then
    local ok, json = pcall(require, "vmdr.json")
    if not ok then json = require "cjson" end
    return json.decode(text)
  end
  local ok, yaml = pcall(require, "vmdr.yaml")
  if ok then return yaml.decode(text) end
  return require("lyaml").load(text)
end

local function pv_fixture(name)
  return decode_file(h.fixtures .. "/storage/pv/" .. name)
end

local function new(config, dry_run)
  return assert(driver.new { config = config, dry_run = dry_run })
end

describe("vmdr.storage.ceph volume()", function()
  local d = new({})

  it("maps a bound ceph-csi PV (driver rbd.csi.ceph.com) to pool/image", function()
    local v = assert(d:volume(pv_fixture("deckhouse--pv-ceph-csi-rbd-bound.yaml")))
    assert.equals("kube", v.pool)
    assert.is_nil(v.namespace)
    assert.equals("csi-vol-880ec27e-5b75-11ed-a252-fa163ee74632", v.image)
    assert.equals("kube/csi-vol-880ec27e-5b75-11ed-a252-fa163ee74632", v.spec)
    assert.equals("pvc-abdbb7ea-5da6-47f3-8b76-b968a93b7bc1", v.pv)
  end)

  it("maps a JSON PV and a Rook spec fragment (empty radosNamespace is none)", function()
    local v = assert(d:volume(pv_fixture("deckhouse--pv-ceph-csi-rbd-static-retain.json")))
    assert.equals("kube/csi-vol-162a2c43-568e-40ab-aedb-a4632a613ecd", v.spec)
    v = assert(d:volume(pv_fixture("ceph-csi-rbd-mirror-design--pv-spec-csi-fragment.yaml")))
    assert.equals("replicapool", v.pool)
    assert.is_nil(v.namespace)
    assert.equals("csi-vol-0c23de1c-18fb-11eb-a903-0242ac110005", v.image)
  end)

  it("uses radosNamespace, and derives the image from the handle when imageName is gone", function()
    local pv = pv_fixture("deckhouse--pv-ceph-csi-rbd-bound.yaml")
    pv.spec.csi.volumeAttributes.radosNamespace = "tenant-a"
    assert.equals("kube/tenant-a/csi-vol-880ec27e-5b75-11ed-a252-fa163ee74632",
      assert(d:volume(pv)).spec)
    pv.spec.csi.volumeAttributes.imageName = nil
    local v = assert(d:volume(pv))
    assert.equals("csi-vol-880ec27e-5b75-11ed-a252-fa163ee74632", v.image)
    assert.equals("csi-handle", v.source)
  end)

  it("takes a static PV's volumeHandle as the image name", function()
    local pv = pv_fixture("deckhouse--pv-ceph-csi-rbd-static-retain.json")
    pv.spec.csi.volumeAttributes = { pool = "kube", staticVolume = "true" }
    pv.spec.csi.volumeHandle = "legacy-disk-01"
    local v = assert(d:volume(pv))
    assert.equals("kube/legacy-disk-01", v.spec)
    assert.equals("csi-static", v.source)
  end)

  it("handles an in-tree spec.rbd PV", function()
    local v = assert(d:volume { metadata = { name = "old" }, spec = { rbd = {
      monitors = { "10.0.0.1:6789" }, pool = "vms", image = "disk-1", user = "admin" } } })
    assert.equals("vms/disk-1", v.spec)
    v = assert(d:volume { spec = { rbd = { image = "disk-2" } } })
    assert.equals("rbd/disk-2", v.spec) -- in-tree's default pool
  end)

  it("refuses other volumes with not_rbd, and broken ones with invalid", function()
    local v, err = d:volume(pv_fixture("kubectl-neat--pv-hostpath-released.yaml"))
    assert.is_nil(v)
    assert.equals("not_rbd", err.code)
    assert.matches("pvc%-54fad2fe", err.message)
    local pv = pv_fixture("deckhouse--pv-ceph-csi-rbd-bound.yaml")
    pv.spec.csi.driver = "ebs.csi.aws.com"
    v, err = d:volume(pv)
    assert.equals("not_rbd", err.code)
    assert.matches("ebs.csi.aws.com", tostring(err))
    pv = pv_fixture("deckhouse--pv-ceph-csi-rbd-bound.yaml")
    pv.spec.csi.volumeAttributes.pool = nil
    v, err = d:volume(pv)
    assert.equals("invalid", err.code)
    assert.has_error(function() d:volume("pv") end)
  end)

  it("matches drivers by the configured suffixes", function()
    local pv = pv_fixture("ceph-csi-rbd-mirror-design--pv-spec-csi-fragment.yaml")
    local only = new({ storage = { csi_drivers = { "openshift-storage.rbd.csi.ceph.com" } } })
    local v, err = only:volume(pv)
    assert.equals("not_rbd", err.code)
    pv.csi.driver = "openshift-storage.rbd.csi.ceph.com"
    assert(only:volume(pv))
    assert(d:volume(pv)) -- and the default suffix matches ODF's name too
  end)

  it("rejects a bad configuration clearly", function()
    local d2, err = driver.new { config = { storage = { ceph = { mirror_mode = "sync" } } } }
    assert.is_nil(d2)
    assert.equals("config", err.code)
  end)
end)

describe("vmdr.storage.ceph on the pair", function()
  local a, b, config, d
  local names = {}

  local function pv_for(name, ns)
    local pv = pv_fixture("deckhouse--pv-ceph-csi-rbd-bound.yaml")
    pv.metadata.name = "pv-" .. name
    pv.spec.csi.volumeAttributes.pool = "rbd"
    pv.spec.csi.volumeAttributes.radosNamespace = ns
    pv.spec.csi.volumeAttributes.imageName = name
    return pv
  end

  local function make(ns, size)
    local n = ceph.name("drv")
    assert(a:create_image("rbd", n, size or MiB, { namespace = ns }))
    names[#names + 1] = { "rbd", n, ns }
    return assert(d:volume(pv_for(n, ns)))
  end

  setup(function()
    a, b = ceph.connect("a"), ceph.connect("b")
    config = { storage = { driver = "ceph", ceph = { source = ceph.site("a"), dr = ceph.site("b"),
      timeout = 20, promote_retry = 2 } } }
    d = new(config)
  end)

  teardown(function()
    if d then d:close() end
    ceph.drop(names, a, b)
    if a then a:close() end
    if b then b:close() end
  end)

  -- enable on the source and wait for a complete copy on the DR site
  local function enable_synced(vols)
    local rep = d:enable(vols)
    for _, e in ipairs(rep) do assert.equals("ok", e.result, e.err and tostring(e.err)) end
    local snaps = d:snapshot(vols)
    local ids = {}
    for i, e in ipairs(snaps) do ids[i] = assert(e.snap_id) end
    for _, v in ipairs(vols) do
      ceph.image_when_there(b, v.pool, v.image, { namespace = v.namespace }):close()
    end
    local w = d:wait_synced(vols, ids, { site = "dr", timeout = 60 })
    assert.equals(#vols, w.summary.ok)
  end

  it("dry run changes nothing", function()
    local v = make(nil)
    local dd = new(config, true)
    local rep = dd:enable({ v })
    assert.equals("dry_run", rep[1].result)
    assert.equals(1, rep.summary.dry_run)
    local img = assert(a:image("rbd", v.image))
    assert.equals("disabled", img:mirror_info().state)
    img:close()
    dd:close()
  end)

  it("enables mirroring, flattening a clone first; again is already", function()
    local parent = make(nil, 2 * MiB)
    local pimg = assert(a:image("rbd", parent.image))
    assert(pimg:write(0, ("p"):rep(MiB)))
    pimg:close()
    ceph.rbd_cli("a", "snap create rbd/" .. parent.image .. "@s")
    ceph.rbd_cli("a", "snap protect rbd/" .. parent.image .. "@s")
    local clone_name = ceph.name("drvclone")
    ceph.rbd_cli("a", "clone rbd/" .. parent.image .. "@s rbd/" .. clone_name)
    names[#names + 1] = clone_name
    local clone = assert(d:volume(pv_for(clone_name)))
    local plain = make("ns1")
    local rep = d:enable({ clone, plain })
    assert.equals("ok", rep[1].result, rep[1].err and tostring(rep[1].err))
    assert.is_true(rep[1].flattened)
    assert.equals("ok", rep[2].result, rep[2].err and tostring(rep[2].err))
    assert.equals("source", rep[1].site)
    assert.equals("pv-" .. clone_name, rep[1].pv)
    local img = assert(a:image("rbd", clone_name))
    assert.is_nil(img:info().parent)
    assert.equals(("p"):rep(MiB), img:read(0, MiB))
    img:close()
    rep = d:enable({ clone, plain })
    assert.equals(2, rep.summary.already)
    -- the clone no longer needs its parent's snapshot
    ceph.rbd_cli("a", "snap unprotect rbd/" .. parent.image .. "@s")
    ceph.rbd_cli("a", "snap rm rbd/" .. parent.image .. "@s")
  end)

  it("reports status with the age of the newest synced mirror snapshot", function()
    local v = make("ns1")
    enable_synced({ v })
    local rep = d:status({ v })
    local e = rep[1]
    assert.equals("ok", e.result)
    assert.equals("source", e.primary_site)
    assert.is_true(e.source.primary)
    assert.is_false(e.dr.primary)
    assert.is_false(e.split_brain)
    assert.is_number(e.last_sync_age)
    assert.is_true(e.last_sync_age >= 0)
    assert.is_true(e.last_snap_id > 0)
  end)

  it("promote on DR: graceful refused while the source is primary and reachable", function()
    local v = make(nil)
    enable_synced({ v })
    local rep = d:promote({ v })
    assert.equals("failed", rep[1].result)
    assert.equals("busy", rep[1].err.code)
    assert.matches("still primary on the source site", rep[1].err.message)
    assert.is_nil(rep[1].forced)
    -- asked to force: it is forced
    rep = d:promote({ v }, { force = true })
    assert.equals("ok", rep[1].result, rep[1].err and tostring(rep[1].err))
    assert.is_true(rep[1].forced)
    -- now primary on DR: the source copy must not lose mirroring
    local dis = d:disable({ v })
    assert.equals("refused", dis[1].result)
    assert.equals("primary_elsewhere", dis[1].err.code)
    local img = assert(a:image("rbd", v.image))
    assert.equals("enabled", img:mirror_info().state)
    img:close()
    local st = d:status({ v })
    assert.equals("both", st[1].primary_site)
    assert.is_true(st[1].split_brain)
    -- failback order: demote the old primary and resync it from DR
    assert.equals("ok", d:demote({ v })[1].result)
    assert.equals("ok", d:resync({ v })[1].result)
    local snap = d:snapshot({ v }, { site = "dr" })[1].snap_id
    assert.equals(1, d:wait_synced({ v }, { snap }, { site = "source", timeout = 60 }).summary.ok)
  end)

  it("promote on DR forces by itself when the source site cannot be reached", function()
    local v = make(nil)
    enable_synced({ v })
    local dir = h.tmpdir("deadsite")
    local src = ceph.site("a")
    local dead = h.write(dir .. "/ceph.conf", (h.read(src.conf):gsub("mon host = [^\n]+",
      "mon host = 127.0.0.1:1")))
    local cfg = { storage = { ceph = { source = { conf = dead, keyring = src.keyring },
      dr = ceph.site("b"), peer_timeout = 2, promote_retry = 1 } } }
    local dd = new(cfg)
    local rep = dd:promote({ v })
    assert.equals("ok", rep[1].result, rep[1].err and tostring(rep[1].err))
    assert.is_true(rep[1].forced)
    -- disable from DR's point of view: the source cannot be asked, so nothing is disabled
    local dis = dd:disable({ v }, { site = "dr" })
    assert.equals("refused", dis[1].result)
    assert.equals("unreachable", dis[1].err.code)
    dd:close()
  end)

  it("relocates gracefully: demote source, wait for its demote snapshot on DR, promote", function()
    local v = make(nil)
    enable_synced({ v })
    local dem = d:demote({ v })
    assert.equals("ok", dem[1].result)
    assert.is_truthy(dem[1].snap_id)
    assert.equals(1, d:wait_synced({ v }, { dem[1].snap_id }).summary.ok)
    local rep = d:promote({ v })
    assert.equals("ok", rep[1].result, rep[1].err and tostring(rep[1].err))
    assert.is_nil(rep[1].forced)
  end)

  it("disables on the source when DR is not primary; a missing image fails alone", function()
    local v = make(nil)
    enable_synced({ v })
    local missing = assert(d:volume(pv_for("no-such-image-here")))
    local rep = d:disable({ v, missing })
    assert.equals("ok", rep[1].result, rep[1].err and tostring(rep[1].err))
    assert.equals("failed", rep[2].result)
    assert.equals("not_found", rep[2].err.code)
  end)
end)
