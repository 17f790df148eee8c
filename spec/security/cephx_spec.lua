-- Least privilege on Ceph (docs/security.md): the vmdr.storage.ceph driver runs every
-- operation the workflows use as a cephx user with only the caps the doc gives,
--   mon 'profile rbd'  osd 'profile rbd pool=rbd'
-- on both sites: enable, mirror snapshot, wait for the peer, status, demote, graceful and
-- forced promote (a forced promote breaks the peer's exclusive lock, which needs the
-- blocklist right of mon 'profile rbd'), resync, disable. The same user is refused an
-- image in another pool, and a read-only user is refused enable: the caps are what
-- decides, not an admin key. Real components: the shared Ceph pair (cephx on).
-- needs: ceph
local h = require "support.helper"
local ceph = require "support.ceph"
local driver = require "vmdr.storage.ceph"
local rbd = require "vmdr.rbd"

local MiB = 1024 * 1024

describe("vmdr.storage.ceph with least-privilege cephx users", function()
    local tmp, a, b, d, user, ro_user
    local sites = {}      -- "a"/"b" -> { conf=, keyring=, user= } of the vmdr user
    local images = {}     -- { pool, name }

    local function ceph_cli(s, args)
        local site = ceph.site(s)
        return h.capture("ceph -c " .. h.q(site.conf) .. " --keyring " .. h.q(site.keyring)
            .. " --id " .. h.q(site.user) .. " --connect-timeout 20 " .. args .. " 2>&1")
    end
    local function make_user(s, name, osd_caps)
        local kr = tmp .. "/" .. s .. "-" .. name .. ".keyring"
        ceph_cli(s, "auth get-or-create client." .. name .. " mon 'profile rbd' osd "
            .. h.q(osd_caps) .. " -o " .. h.q(kr))
        return { conf = ceph.site(s).conf, keyring = kr, user = name, timeout = 20 }
    end
    local function pv_for(pool, name)
        return { metadata = { name = "pv-" .. name }, spec = { csi = {
            driver = "openshift-storage.rbd.csi.ceph.com",
            volumeHandle = "0001-0011-openshift-storage-0000000000000001-" .. name,
            volumeAttributes = { pool = pool, imageName = name } } } }
    end
    local function make(pool)
        local n = ceph.name("cephx")
        assert(a:create_image(pool, n, MiB, { features = "layering,exclusive-lock" }))
        images[#images + 1] = { pool, n }
        return assert(d:volume(pv_for(pool, n)))
    end
    local function ok(rep, what)
        for _, e in ipairs(rep) do
            assert.equals("ok", e.result, what .. ": " .. tostring(e.err))
        end
        return rep
    end

    setup(function()
        h.need("ceph")
        tmp = h.tmpdir("cephx")
        a, b = ceph.connect("a"), ceph.connect("b")
        user = "vmdr-" .. h.pid()
        ro_user = "vmdr-ro-" .. h.pid()
        for _, s in ipairs { "a", "b" } do
            sites[s] = make_user(s, user, "profile rbd pool=rbd")
            make_user(s, ro_user, "profile rbd-read-only pool=rbd")
        end
        -- the caps as the cluster holds them: exactly the documented ones
        local caps = ceph_cli("a", "auth get client." .. user)
        assert.matches('caps mon = "profile rbd"', caps)
        assert.matches('caps osd = "profile rbd pool=rbd"', caps)
        assert.not_matches("caps mgr", caps)
        d = assert(driver.new { config = { storage = { ceph = { source = sites.a, dr = sites.b,
            timeout = 20, promote_retry = 2 } } } })
    end)

    teardown(function()
        if d then d:close() end
        ceph.drop(images, a, b)
        if a then a:close() end
        if b then b:close() end
        if user then
            for _, s in ipairs { "a", "b" } do
                pcall(ceph_cli, s, "auth rm client." .. user)
                pcall(ceph_cli, s, "auth rm client." .. ro_user)
            end
        end
    end)

    it("enable, snapshot, wait for the peer, status", function()
        local v = make("rbd")
        ok(d:enable({ v }), "enable")
        local snap = ok(d:snapshot({ v }), "snapshot")[1].snap_id
        ceph.image_when_there(b, "rbd", v.image):close()
        assert.equals(1, d:wait_synced({ v }, { snap }, { site = "dr", timeout = 60 }).summary.ok)
        local st = ok(d:status({ v }), "status")[1]
        assert.equals("source", st.primary_site)
        assert.is_number(st.last_sync_age)
    end)

    it("forced promote, resync back, relocate home (demote, wait, graceful promote), disable", function()
        local v = make("rbd")
        ok(d:enable({ v }), "enable")
        local snap = ok(d:snapshot({ v }), "snapshot")[1].snap_id
        ceph.image_when_there(b, "rbd", v.image):close()
        assert.equals(1, d:wait_synced({ v }, { snap }, { site = "dr", timeout = 60 }).summary.ok)
        -- failover by force while the source is still primary: breaks rbd-mirror's lock on
        -- the DR copy (the blocklist right of mon 'profile rbd')
        local pro = ok(d:promote({ v }, { force = true }), "forced promote")[1]
        assert.is_true(pro.forced)
        -- failback order: demote the old primary, resync it from DR, wait for DR's snapshot
        ok(d:demote({ v }), "demote on the source")
        ok(d:resync({ v }), "resync on the source")
        local s2 = ok(d:snapshot({ v }, { site = "dr" }), "snapshot on DR")[1].snap_id
        assert.equals(1, d:wait_synced({ v }, { s2 }, { site = "source", timeout = 60 }).summary.ok)
        -- planned move home: demote DR, wait for that snapshot, promote gracefully
        local dem = ok(d:demote({ v }, { site = "dr" }), "demote on DR")[1]
        assert.equals(1, d:wait_synced({ v }, { dem.snap_id }, { site = "source", timeout = 60 }).summary.ok)
        pro = ok(d:promote({ v }, { site = "source", no_force = true }), "graceful promote")[1]
        assert.is_nil(pro.forced)
        ok(d:disable({ v }), "disable")
    end)

    it("is refused an image of another pool, and a read-only user is refused enable", function()
        local other = make("plain")
        local rep = d:enable({ other })
        assert.equals("failed", rep[1].result)
        assert.equals("permission", rep[1].err.code, tostring(rep[1].err))
        local ro = assert(driver.new { config = { storage = { ceph = {
            source = { conf = sites.a.conf, keyring = tmp .. "/a-" .. ro_user .. ".keyring",
                user = ro_user, timeout = 20 },
            dr = { conf = sites.b.conf, keyring = tmp .. "/b-" .. ro_user .. ".keyring",
                user = ro_user, timeout = 20 } } } } })
        local v = make("rbd")
        rep = ro:enable({ v })
        assert.equals("failed", rep[1].result)
        assert.equals("permission", rep[1].err.code, tostring(rep[1].err))
        ro:close()
    end)

    it("mirror snapshot schedules need mgr caps: refused without, set with them", function()
        local c = assert(rbd.connect(sites.a))
        local r, err = c:mirror_snapshot_schedule("rbd", "1000d")
        c:close()
        assert.is_nil(r)
        assert.equals("permission", err.code, tostring(err))
        assert.matches("mgr caps", err.message)
        local kr = tmp .. "/a-" .. user .. "-mgr.keyring"
        ceph_cli("a", "auth get-or-create client." .. user .. "-mgr mon 'profile rbd' "
            .. "osd 'profile rbd pool=rbd' mgr 'profile rbd pool=rbd' -o " .. h.q(kr))
        local ok_, e2 = pcall(function()
            local m = assert(rbd.connect { conf = sites.a.conf, keyring = kr,
                user = user .. "-mgr", timeout = 20 })
            -- 1000d: fires at multiples of 1000 days since the epoch (next in July 2027)
            assert.is_true(m:mirror_snapshot_schedule("rbd", "1000d"))
            m:close()
        end)
        pcall(ceph.rbd_cli, "a", "mirror snapshot schedule rm --pool rbd 1000d")
        pcall(ceph_cli, "a", "auth rm client." .. user .. "-mgr")
        assert(ok_, e2)
    end)
end)
