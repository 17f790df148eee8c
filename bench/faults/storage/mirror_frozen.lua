-- One round of the "DR rbd-mirror hung or dead" measurement (bench/faults/storage/run):
--   vmdr-run mirror_frozen.lua -- ENVFILE N stop|kill
-- Creates N images on site a, mirrors them to b (complete copy), then SIGSTOPs (stop) or
-- SIGKILLs (kill) b's rbd-mirror and force-promotes the N copies on b through the storage
-- driver with storage.ceph.timeout 3. Prints
--   "mode=<stop|kill> seconds=<promote wall time> ok=<n> failed=<n> forced=<n>"
-- The caller thaws or restarts rbd-mirror (its PID file is DIR/b/pids/rbd-mirror).
local _, args = ...
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"
local ceph = require "vmdr.storage.ceph"

local envfile, n, mode = args[1], tonumber(args[2]), args[3]
assert(envfile and n and (mode == "stop" or mode == "kill"), "usage: ENVFILE N stop|kill")
local env = {}
for k, v in assert(io.open(envfile)):read("a"):gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
local function site(s)
    local S = s:upper()
    return { conf = env["CEPH_" .. S .. "_CONF"], keyring = env["CEPH_" .. S .. "_KEYRING"],
        user = env["CEPH_" .. S .. "_USER"] }
end
local function connect(s)
    local o = site(s)
    o.timeout = 30
    return assert(rbd.connect(o))
end
local a, b = connect("a"), connect("b")
local vols = {}
for i = 1, n do
    local name = string.format("mf-%d-%d", os.time(), i)
    assert(a:create_image("rbd", name, 4 * 1024 * 1024, { features = "layering,exclusive-lock" }))
    local ia = assert(a:image("rbd", name))
    assert(ia:mirror_enable("snapshot"))
    local sid = assert(ia:mirror_snapshot())
    ia:close()
    local deadline = time.monotonic() + 120
    local ib
    repeat
        ib = b:image("rbd", name)
        if not ib then time.sleep(0.1) end
    until ib or time.monotonic() > deadline
    assert(ib, "the copy of " .. name .. " never appeared on b")
    assert(ib:wait_synced(sid, 120))
    ib:close()
    vols[i] = { pool = "rbd", image = name, spec = "rbd/" .. name, pv = "pv-" .. name }
end
local pidfile = env.CEPH_B_DIR .. "/pids/rbd-mirror"
local pid = assert(io.open(pidfile)):read("l")
os.execute((mode == "kill" and "kill -KILL " or "kill -STOP ") .. pid)
local d = assert(ceph.new { config = { storage = { ceph = { source = site("a"), dr = site("b"),
    timeout = 3, promote_retry = 1 } } } })
local t0 = time.monotonic()
local rep = d:promote(vols, { force = true })
local t = time.monotonic() - t0
local forced = 0
for _, e in ipairs(rep) do
    if e.forced then forced = forced + 1 end
    if e.err then io.stderr:write(e.image, ": ", tostring(e.err), "\n") end
end
print(string.format("mode=%s seconds=%.2f ok=%d failed=%d forced=%d", mode, t, rep.summary.ok,
    rep.summary.failed, forced))
d:close()
