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

return M
