-- One timed batch with per-image figures (bench/rbd/cpu drives it):
--   vmdr-run items.lua -- ENVFILE OP SITE N PREFIX PARALLEL [ENGINE [NUDGE]]
-- OP: promote (forced) | demote | enable. NUDGE: the batch's nudge option, in seconds, or
-- "off" (default: the batch's own). Prints the batch's wall time, its results, the
-- per-image seconds (min, median, p90, max, sum, how many over 3 s), promote attempts and
-- header notifications sent (nudges).
local ctx, args = ...
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"

local envfile, op, site = args[1], args[2], args[3]:upper()
local n, prefix = tonumber(args[4]), args[5]
local parallel, engine = tonumber(args[6] or "1"), args[7] or "threads"
local nudge = args[8]
if nudge == "off" then nudge = false elseif nudge then nudge = assert(tonumber(nudge)) end
local env = {}
for k, v in io.open(envfile):read("a"):gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
local c = assert(rbd.connect { conf = env["CEPH_" .. site .. "_CONF"],
  keyring = env["CEPH_" .. site .. "_KEYRING"], timeout = 60 })
local list = {}
for i = 1, n do list[i] = string.format("rbd/%s-%03d", prefix, i) end

local t0 = time.monotonic()
local res, sum = c:batch(op, list, { parallel = parallel, engine = engine,
  force = op == "promote", retry = op == "promote" and 30 or 0, nudge = nudge })
local wall = time.monotonic() - t0
local s, attempts, nudges, slow, total = {}, 0, 0, 0, 0
for i, r in ipairs(res) do
  s[i] = r.seconds or 0
  total = total + s[i]
  attempts = attempts + (r.attempts or 0)
  nudges = nudges + (r.nudges or 0)
  if s[i] > 3 then slow = slow + 1 end
  if r.result == "failed" then io.stderr:write(r.image, ": ", tostring(r.err), "\n") end
end
table.sort(s)
print(string.format("seconds=%.3f ok=%d already=%d failed=%d per-image min=%.2f med=%.2f "
  .. "p90=%.2f max=%.2f sum=%.1f over3s=%d attempts=%d nudges=%d", wall, sum.ok, sum.already,
  sum.failed, s[1], s[#s // 2 + 1], s[math.max(1, math.floor(#s * 0.9))], s[#s], total, slow,
  attempts, nudges))
return 0
