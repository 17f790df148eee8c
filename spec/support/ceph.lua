-- The shared Ceph pair for specs that say `-- needs: ceph` (spec/support/ceph-fixture).
-- Reads the fixture's env file; fails (never skips) when the pair is not there.
local h = require "support.helper"
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"

local M = {}

M.dir = h.build_dir .. "/fixtures/ceph"

--- The fixture's env file as a table (CEPH_A_CONF = ..., ...).
function M.env()
  local text = h.read(M.dir .. "/env")
  if not text then
    error("the Ceph pair is not up (no " .. M.dir .. "/env): run the spec through ctest, "
      .. "which starts spec/support/ceph-fixture first", 2)
  end
  local env = {}
  for k, v in text:gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
  return env
end

--- Site settings as the storage config takes them: { conf=, keyring=, user= }.
function M.site(s)
  local env = M.env()
  local S = s:upper()
  return { conf = env["CEPH_" .. S .. "_CONF"], keyring = env["CEPH_" .. S .. "_KEYRING"],
    user = env["CEPH_" .. S .. "_USER"] }
end

--- A connected cluster handle for site "a" or "b".
function M.connect(s, timeout)
  local site = M.site(s)
  site.timeout = timeout or 20
  return assert(rbd.connect(site))
end

local seq = 0
--- A name no other spec (or earlier run) uses.
function M.name(prefix)
  seq = seq + 1
  return string.format("%s-%d-%d-%d", prefix, h.pid(), os.time() % 100000, seq)
end

--- Polls f() every 50 ms until it returns a truthy value or `timeout` s pass; returns
--- its values, or raises with `what`.
function M.eventually(what, timeout, f)
  local deadline = time.monotonic() + timeout
  local last
  while true do
    local r = table.pack(f())
    if r[1] then return table.unpack(r, 1, r.n) end
    last = r[2]
    if time.monotonic() > deadline then
      error(string.format("%s: not after %g s (last: %s)", what, timeout, tostring(last)), 2)
    end
    time.sleep(0.05)
  end
end

--- Opens pool/name on cluster c once it exists (rbd-mirror creates the peer's copy).
function M.image_when_there(c, pool, name, opts, timeout)
  return M.eventually("image " .. pool .. "/" .. name .. " appears", timeout or 30, function()
    return c:image(pool, name, opts)
  end)
end

--- `rbd` CLI on site s (an independent client); returns stdout, raises on failure.
function M.rbd_cli(s, args)
  local site = M.site(s)
  local cmd = "rbd -c " .. h.q(site.conf) .. " --keyring " .. h.q(site.keyring)
    .. " --id " .. h.q(site.user) .. " --rados-mon-op-timeout 20 --rados-osd-op-timeout 20 "
    .. args .. " 2>&1"
  return h.capture(cmd)
end

--- A Ceph pair of the spec's own, for destructive cases (a monitor stopped, a site frozen)
--- that must not disturb the shared pair other specs use. Started with ceph-fixture up in a
--- fresh directory (15-25 s on the loaded machine); ALWAYS call pair.down() in teardown.
--- Returns { dir=, env=, site(s), connect(s, timeout), pid(s, daemon), freeze(s, daemons),
--- thaw(s, daemons), kill(s, daemon), restart(s, daemon), down() } where s is "a" or "b"
--- and a daemon is "mon.a", "osd.0" or "rbd-mirror".
function M.own_pair(name)
  local fixture = h.source_dir .. "/spec/support/ceph-fixture"
  local dir = h.tmpdir(name or "ownpair")
  local p = { dir = dir }
  local r = h.exec({ fixture, "up", dir })
  if r.code ~= 0 then
    h.exec({ fixture, "down", dir })
    error("ceph-fixture up " .. dir .. " failed:\n" .. r.stdout .. r.stderr, 2)
  end
  p.env = {}
  for k, v in assert(h.read(dir .. "/env")):gmatch("([%w_]+)=([^\n]*)") do p.env[k] = v end
  function p.site(s)
    local S = s:upper()
    return { conf = p.env["CEPH_" .. S .. "_CONF"], keyring = p.env["CEPH_" .. S .. "_KEYRING"],
      user = p.env["CEPH_" .. S .. "_USER"] }
  end
  function p.connect(s, timeout)
    local site = p.site(s)
    site.timeout = timeout or 20
    return assert(rbd.connect(site))
  end
  --- the current PID of a daemon (a restart changes it)
  function p.pid(s, daemon)
    return assert(tostring(h.read(dir .. "/" .. s .. "/pids/" .. daemon)):match("%d+"),
      "no pid file for " .. daemon .. " of site " .. s)
  end
  local function signal(sig, s, daemons)
    if type(daemons) == "string" then daemons = { daemons } end
    for _, d in ipairs(daemons) do
      assert(h.sh("kill -" .. sig .. " " .. p.pid(s, d)) == 0, "kill -" .. sig .. " " .. d)
    end
  end
  --- SIGSTOP: the daemon hangs (a hung host or a partition: nothing refuses, nothing answers)
  function p.freeze(s, daemons) signal("STOP", s, daemons) end
  function p.thaw(s, daemons) signal("CONT", s, daemons) end
  --- SIGKILL: the daemon is gone (connections are refused)
  function p.kill(s, daemon)
    local pid = p.pid(s, daemon)
    signal("KILL", s, daemon)
    M.eventually(daemon .. " of site " .. s .. " exits", 10, function()
      local st = h.read("/proc/" .. pid .. "/stat")
      return st == nil or st:match("^%d+ %b() Z") ~= nil
    end)
  end
  --- started again with its first command (a running one is stopped cleanly first)
  function p.restart(s, daemon)
    local rr = h.exec({ fixture, "restart", dir, s, daemon })
    assert(rr.code == 0, "ceph-fixture restart " .. s .. " " .. daemon .. ": " .. rr.stderr)
  end
  function p.down()
    if p.dir then
      -- a frozen daemon still dies by SIGKILL; nothing of ours is left running
      h.exec({ fixture, "down", p.dir })
      p.dir = nil
    end
  end
  return p
end

return M
