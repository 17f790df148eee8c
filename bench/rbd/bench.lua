-- One step of the rbd benchmark (bench/rbd/run drives it):
--   vmdr-run bench.lua -- ENVFILE setup N PREFIX          create N images on A, enable, sync to B
--   vmdr-run bench.lua -- ENVFILE promote|demote SITE N PREFIX PARALLEL ENGINE [force]
--   vmdr-run bench.lua -- ENVFILE restore N PREFIX        resync B's demoted copies from A
--   vmdr-run bench.lua -- ENVFILE create|enable|remove SITE N PREFIX [PARALLEL ENGINE]
-- Prints "seconds=<wall time of the batch call> ok=<n> already=<n> failed=<n>".
-- Only the batch call is timed (the connection is made before).
local ctx, args = ...
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"

local envfile, what = args[1], args[2]
local env = {}
for k, v in io.open(envfile):read("a"):gmatch("([%w_]+)=([^\n]*)") do env[k] = v end

local function connect(site)
  local S = site:upper()
  return assert(rbd.connect { conf = env["CEPH_" .. S .. "_CONF"],
    keyring = env["CEPH_" .. S .. "_KEYRING"], timeout = 60 })
end

local function specs(n, prefix)
  local l = {}
  for i = 1, n do l[i] = string.format("rbd/%s-%03d", prefix, i) end
  return l
end

local function report(t, sum)
  print(string.format("seconds=%.3f ok=%d already=%d failed=%d", t, sum.ok, sum.already,
    sum.failed))
  return 0 -- a failed image is reported in the figures line, the run goes on
end

local function timed_batch(c, op, list, opts)
  local t0 = time.monotonic()
  local res, sum = c:batch(op, list, opts)
  local t = time.monotonic() - t0
  for _, r in ipairs(res) do
    if r.result == "failed" then io.stderr:write(r.image, ": ", tostring(r.err), "\n") break end
  end
  return t, sum, res
end

-- Waits until B holds a complete copy of a fresh mirror snapshot of every image. Under load
-- rbd-mirror sometimes misses the new-snapshot notification and leaves an image idle on an
-- older copy; another snapshot on A notifies it again, so a wait that times out re-snapshots.
local function sync_all(a, b, list, budget)
  local t0 = time.monotonic()
  local res = a:batch("snapshot", list, { parallel = 16 })
  local resnaps = 0
  for i, s in ipairs(list) do
    local name = s:match("/(.*)")
    local id = assert(res[i].snap_id, "snapshot failed: " .. tostring(res[i].err))
    while true do
      assert(time.monotonic() - t0 < budget, "images never synced to B")
      local img = b:image("rbd", name)
      if img then
        local ok = img:wait_synced(id, 15)
        img:close()
        if ok then break end
        local ia = assert(a:image("rbd", name))
        id = assert(ia:mirror_snapshot())
        ia:close()
        resnaps = resnaps + 1
      else
        time.sleep(0.1)
      end
    end
  end
  return time.monotonic() - t0, resnaps
end

if what == "setup" then
  local n, prefix = tonumber(args[3]), args[4]
  local a, b = connect("a"), connect("b")
  for _, s in ipairs(specs(n, prefix)) do
    assert(a:create_image("rbd", s:match("/(.*)"), 4 * 1024 * 1024))
  end
  local _, sum = timed_batch(a, "enable", specs(n, prefix), { parallel = 16 })
  assert(sum.ok == n, "enable failed")
  local t, resnaps = sync_all(a, b, specs(n, prefix), 900)
  print(string.format("setup: %d images mirrored and synced in %.1f s (%d re-snapshots)", n, t,
    resnaps))
  return 0
end

if what == "restore" then
  -- B is demoted and split from A after a forced promote: resync it from A, so the next
  -- forced promote meets a copy rbd-mirror is replaying into, as in a real failover
  local n, prefix = tonumber(args[3]), args[4]
  local a, b = connect("a"), connect("b")
  local t0 = time.monotonic()
  local _, rs = b:batch("resync", specs(n, prefix), { parallel = 16 })
  assert(rs.failed == 0, "resync failed")
  local t, resnaps = sync_all(a, b, specs(n, prefix), 900)
  print(string.format("restore: %d images resynced in %.1f s (%d re-snapshots)", n,
    time.monotonic() - t0, resnaps))
  return 0
end

local site, n, prefix = args[3], tonumber(args[4]), args[5]
local parallel, engine = tonumber(args[6] or "1"), args[7] or "threads"
local c = connect(site)
if what == "promote" or what == "demote" then
  -- retry: a forced promote can meet EROFS while rbd-mirror still holds the image's lock
  return report(timed_batch(c, what, specs(n, prefix), { parallel = parallel, engine = engine,
    force = args[8] == "force", retry = what == "promote" and 30 or 0 }))
elseif what == "create" then
  for _, s in ipairs(specs(n, prefix)) do
    assert(c:create_image("rbd", s:match("/(.*)"), 4 * 1024 * 1024))
  end
  return 0
elseif what == "enable" then
  return report(timed_batch(c, "enable", specs(n, prefix), { parallel = parallel,
    engine = engine }))
elseif what == "remove" then
  c:batch("disable", specs(n, prefix), { parallel = 16, force = true })
  for _, s in ipairs(specs(n, prefix)) do c:remove_image("rbd", s:match("/(.*)")) end
  return 0
end
error("unknown step " .. tostring(what))
