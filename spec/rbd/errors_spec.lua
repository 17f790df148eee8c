-- vmdr.rbd's expected failures against real Ceph: each returns nil, err with a stable code,
-- and none hangs: a stopped monitor and PGs with no OSD end within the client's bound.
-- needs: ceph
local h = require "support.helper"
local ceph = require "support.ceph"
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"
local json = require "vmdr.json"

local function fails(code, ok, err)
  assert.is_nil(ok)
  assert.is_table(err, "expected an error table")
  assert.equals(code, err.code, tostring(err))
  assert.is_string(err.message)
  assert.matches("^" .. code .. ": ", tostring(err))
  return err
end

describe("vmdr.rbd errors", function()
  local a, plain

  setup(function()
    a = ceph.connect("a")
    plain = ceph.name("plain")
    assert(a:create_image("rbd", plain, 1024 * 1024))
  end)

  teardown(function()
    if a then
      a:remove_image("rbd", plain)
      a:close()
    end
  end)

  it("image missing: not_found", function()
    local err = fails("not_found", a:image("rbd", "no-such-image"))
    assert.matches("rbd/no%-such%-image", err.message)
    assert.equals(2, err.status)
  end)

  it("pool missing: not_found naming the pool", function()
    local err = fails("not_found", a:image("no-such-pool", "x"))
    assert.matches("pool 'no%-such%-pool'", err.message)
    fails("not_found", a:mirror_mode("no-such-pool"))
  end)

  it("mirroring not enabled: not_mirrored for promote, demote, resync, snapshot", function()
    local img = assert(a:image("rbd", plain))
    assert.equals("disabled", assert(img:mirror_info()).state)
    fails("not_mirrored", img:promote(false))
    fails("not_mirrored", img:promote(true))
    fails("not_mirrored", img:demote())
    fails("not_mirrored", img:resync())
    fails("not_mirrored", img:mirror_snapshot())
    assert.equals("already", img:mirror_disable(false))
    img:close()
  end)

  it("enable in a pool whose mirror mode is disabled: invalid, saying why", function()
    local n = ceph.name("nomirror")
    assert(a:create_image("plain", n, 1024 * 1024))
    local img = assert(a:image("plain", n))
    local err = fails("invalid", img:mirror_enable("snapshot"))
    assert.matches("pool plain mirror mode is 'disabled'", err.message)
    img:close()
    assert(a:remove_image("plain", n))
  end)

  it("promote of an already-primary image: already", function()
    local n = ceph.name("prim")
    assert(a:create_image("rbd", n, 1024 * 1024))
    local img = assert(a:image("rbd", n))
    assert.equals("ok", img:mirror_enable())
    assert.equals("already", img:promote(false))
    assert.equals("already", img:promote(true))
    local r = a:batch("promote", { "rbd/" .. n })
    assert.equals("already", r[1].result)
    assert.equals("ok", img:mirror_disable(false))
    img:close()
    assert(a:remove_image("rbd", n))
  end)

  it("resync of a primary image: invalid", function()
    local n = ceph.name("rsprim")
    assert(a:create_image("rbd", n, 1024 * 1024))
    local img = assert(a:image("rbd", n))
    assert.equals("ok", img:mirror_enable())
    local err = fails("invalid", img:resync())
    assert.matches("primary", err.message)
    img:mirror_disable(false)
    img:close()
    assert(a:remove_image("rbd", n))
  end)

  it("wrong keyring: auth, and the key is never printed", function()
    local site = ceph.site("a")
    local key = h.capture("ceph-authtool --gen-print-key"):gsub("%s+", "")
    local dir = h.tmpdir("badkey")
    local kr = h.write(dir .. "/keyring", "[client.admin]\n\tkey = " .. key .. "\n")
    local err = fails("auth", rbd.connect { conf = site.conf, keyring = kr, timeout = 10 })
    assert.not_matches(key, err.message, 1, true)
    -- and a keyring that is not there is a config error before any network I/O
    fails("config", rbd.connect { conf = site.conf, keyring = dir .. "/missing", timeout = 10 })
    fails("config", rbd.connect { conf = dir .. "/missing.conf", timeout = 10 })
  end)

  it("a client without write caps: permission", function()
    local env = ceph.env()
    local c = assert(rbd.connect { conf = env.CEPH_A_CONF, keyring = env.CEPH_A_READER_KEYRING,
      user = "reader", timeout = 10 })
    -- opening for read-write takes a watch, which is a write
    local img, err = c:image("rbd", plain)
    if img then
      err = select(2, img:mirror_enable())
      img:close()
    end
    fails("permission", nil, err)
    fails("permission", c:create_image("rbd", ceph.name("nope"), 1024))
    c:close()
  end)

  for _, engine in ipairs { "threads", "aio" } do
    it("a batch retrying a refused promote retries, then stops on SIGINT (" .. engine .. ")",
      function()
      local n = ceph.name("intr")
      assert(a:create_image("rbd", n, 1024 * 1024))
      local img = assert(a:image("rbd", n))
      assert.equals("ok", img:mirror_enable())
      local snap = assert(img:mirror_snapshot())
      local b = ceph.connect("b")
      local peer = ceph.image_when_there(b, "rbd", n)
      assert.is_true(peer:wait_synced(snap, 30))
      peer:close()
      -- A is primary, so B's graceful promote is refused (busy) for as long as it is
      -- retried: every 0.1 s for `retry` seconds, then the last error stands
      local r = b:batch("promote", { "rbd/" .. n, "rbd/" .. n }, { parallel = 2, retry = 2,
        engine = engine })
      for _, x in ipairs(r) do
        assert.equals("failed", x.result)
        assert.equals("busy", x.err.code, tostring(x.err))
        assert.is_true(x.attempts >= 2, "attempts " .. tostring(x.attempts))
        assert.is_true(x.seconds >= 2, "seconds " .. tostring(x.seconds))
      end
      r = b:batch("promote", { "rbd/" .. n }, { retry = 0, engine = engine })
      assert.equals(1, r[1].attempts)
      assert.equals("busy", r[1].err.code)
      b:close()
      local site = ceph.site("b")
      local dir = h.tmpdir("intr")
      local s = h.write(dir .. "/batch.lua", string.format([[
        local rbd = require "vmdr.rbd"
        local c = assert(rbd.connect { conf = %q, keyring = %q, timeout = 20 })
        io.stdout:write("ready\n"); io.stdout:flush()
        local r = c:batch("promote", { "rbd/%s", "rbd/%s", "rbd/%s" },
          { parallel = 1, retry = 600, engine = %q })
        for _, x in ipairs(r) do io.stdout:write(x.result, " ", x.err and x.err.code or "", "\n") end
        return 1
      ]], site.conf, site.keyring, n, n, n, engine))
      local rs = h.run_signalled({ s }, "INT", "ready")
      assert.equals(130, rs.code, rs.stderr)
      assert.matches("failed busy\nfailed interrupted\nfailed interrupted\n", rs.stdout)
      assert.equals("ok", img:mirror_disable(false))
      img:close()
      assert(a:remove_image("rbd", n))
    end)
  end

  it("misuse raises", function()
    assert.has_error(function() rbd.connect("x") end)
    assert.has_error(function() rbd.connect { timeout = -1 } end)
    assert.has_error(function() a:image("rbd") end)
    assert.has_error(function() a:batch("explode", {}) end)
    assert.has_error(function() a:batch("promote", { 42 }) end)
    assert.has_error(function() a:mirror_snapshot_schedule("rbd", "soon") end)
    local img = assert(a:image("rbd", plain))
    assert.has_error(function() img:mirror_enable("sometimes") end)
    img:close()
    assert.is_true(img:close())
    assert.has_error(function() img:mirror_info() end, "attempt to use a closed vmdr.rbd.Image")
  end)

  it("mirror snapshot schedules through the ceph-mgr: set for a pool and a namespace", function()
    assert.equals("1", ceph.env().CEPH_A_MGR,
      "the shared pair runs a ceph-mgr per site (CEPH_FIXTURE_MGR=1, set by its ctest fixture)")
    -- schedules fire at multiples of their interval since the epoch: 1000d next fires in
    -- July 2027, so this one never snapshots the other specs' images; removed at the end
    -- the schedules rbd lists for rbd/ or rbd/ns/: exit 2 (ENOENT) is "none", any other
    -- failure fails the spec, so an empty list cannot come from a broken CLI call
    local function rbd_sched(verb, ns, extra)
      local argv = { "mirror", "snapshot", "schedule", verb, "--pool", "rbd" }
      if ns then argv[#argv + 1] = "--namespace"; argv[#argv + 1] = ns end
      for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
      return ceph.rbd_exec("a", argv)
    end
    local function listed(ns)
      local r = rbd_sched("ls", ns, { "--format", "json" })
      if r.code == 2 then return {} end
      assert(r.code == 0, "rbd mirror snapshot schedule ls: exit " .. r.code .. ": " .. r.stderr)
      return json.decode(r.stdout)
    end
    local ok, err = pcall(function()
      assert.is_true(a:mirror_snapshot_schedule("rbd", "1000d"))
      assert.is_true(a:mirror_snapshot_schedule("rbd", "1000d"), "adding it again is fine")
      assert.is_true(a:mirror_snapshot_schedule("rbd", "1000d", { namespace = "ns1" }))
      for _, ns in ipairs { false, "ns1" } do
        local l = listed(ns)
        assert.equals(1, #l, "schedules of rbd/" .. (ns or ""))
        assert.equals("1000d", l[1].interval)
      end
      local e = fails("not_found", a:mirror_snapshot_schedule("no-such-pool", "1h"))
      assert.matches("pool 'no%-such%-pool'", e.message)
      e = fails("invalid", a:mirror_snapshot_schedule("rbd", "1h", { namespace = "no-such-ns" }))
      assert.matches("namespace no%-such%-ns does not exist", e.message)
    end)
    -- removed whatever happened above (a failed step may have left one or both)
    for _, ns in ipairs { false, "ns1" } do rbd_sched("rm", ns, { "1000d" }) end
    assert(ok, err)
    assert.same({}, listed(false))
    assert.same({}, listed("ns1"))
  end)

  describe("against a lone monitor of its own", function()
    local dir, conf, keyring, pid

    setup(function()
      dir = h.tmpdir("lonemon")
      local fixture = h.q(h.source_dir .. "/spec/support/ceph-fixture")
      local out = h.capture(fixture .. " mon " .. h.q(dir))
      conf = out:match("MON_CONF=(%S+)")
      keyring = out:match("MON_KEYRING=(%S+)")
      pid = out:match("MON_PID=(%d+)")
      assert(conf and keyring and pid, out)
      -- a pool whose PGs can never become active: there is no OSD
      h.capture("ceph -c " .. h.q(conf)
        .. " --rados-mon-op-timeout 10 osd pool create nosd 8 8 2>&1")
    end)

    teardown(function()
      if pid then h.sh("kill -CONT " .. pid .. " 2>/dev/null") end
      if dir then
        h.sh(h.q(h.source_dir .. "/spec/support/ceph-fixture") .. " down " .. h.q(dir))
      end
    end)

    it("an OSD op that cannot be served ends with timeout, not a hang", function()
      local c = assert(rbd.connect { conf = conf, keyring = keyring, timeout = 2 })
      local t0 = time.monotonic()
      local err = fails("timeout", c:image("nosd", "x"))
      print(string.format("  (image open with no OSD: %s after %.1f s, bound 2 s)", err.code,
        time.monotonic() - t0))
      c:close()
    end)

    it("a stopped monitor: connect returns unreachable within its bound", function()
      assert.equals(0, h.sh("kill -STOP " .. pid))
      local t0 = time.monotonic()
      local err = fails("unreachable", rbd.connect { conf = conf, keyring = keyring, timeout = 2 })
      assert.matches("within 2 s", err.message)
      print(string.format("  (connect to a stopped mon: %s after %.1f s, bound 2 s)", err.code,
        time.monotonic() - t0))
      assert.equals(0, h.sh("kill -CONT " .. pid))
    end)

    it("a connect waiting on a stopped monitor ends at once on SIGINT: interrupted", function()
      assert.equals(0, h.sh("kill -STOP " .. pid))
      local s = h.write(dir .. "/connect.lua", string.format([[
        local rbd = require "vmdr.rbd"
        io.stdout:write("ready\n"); io.stdout:flush()
        local c, err = rbd.connect { conf = %q, keyring = %q, timeout = 120 }
        io.stdout:write(tostring(c), " ", err and err.code or "", "\n")
        return 1
      ]], conf, keyring))
      -- with a 120 s bound, only the interrupt can end this before run_signalled's 30 s limit
      local r = h.run_signalled({ s }, "INT", "ready")
      assert.equals(0, h.sh("kill -CONT " .. pid))
      assert.equals(130, r.code)
      assert.matches("nil interrupted", r.stdout)
    end)

    it("mirror snapshot schedules without a ceph-mgr: unavailable, at once", function()
      local c = assert(rbd.connect { conf = conf, keyring = keyring, timeout = 10 })
      local t0 = time.monotonic()
      local err = fails("unavailable", c:mirror_snapshot_schedule("nosd", "1h"))
      assert.matches("no active ceph%-mgr", err.message)
      -- a mgr command would wait the whole 10 s bound: mgr stat answers first
      print(string.format("  (schedule with no mgr: %s after %.2f s, bound 10 s)", err.code,
        time.monotonic() - t0))
      c:close()
    end)

    it("a monitor address where nothing listens: unreachable", function()
      local dead = h.write(dir .. "/dead.conf", (h.read(conf):gsub("mon host = [^\n]+",
        "mon host = 127.0.0.1:1")))
      fails("unreachable", rbd.connect { conf = dead, keyring = keyring, timeout = 2 })
    end)
  end)
end)
