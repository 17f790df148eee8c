-- Waits until the DR copy of each image holds a complete mirror snapshot taken now on
-- the primary (forced promotion needs one). Run by vmdr-run:
--   -- A_CONF A_KEYRING B_CONF B_KEYRING POOL IMAGE...
local _, args = ...
local rbd = require "vmdr.rbd"
local a = assert(rbd.connect { conf = args[1], keyring = args[2], user = "admin", timeout = 20 })
local b = assert(rbd.connect { conf = args[3], keyring = args[4], user = "admin", timeout = 20 })
local pool = args[5]
local time = require "vmdr.time"
for i = 6, #args do
    local img = assert(a:image(pool, args[i]))
    local sid = assert(img:mirror_snapshot())
    img:close()
    local peer
    local deadline = time.monotonic() + 60
    repeat
        peer = b:image(pool, args[i])
        if not peer then time.sleep(0.1) end
    until peer or time.monotonic() > deadline
    assert(peer, "the DR copy of " .. args[i] .. " never appeared")
    assert(peer:wait_synced(sid, 60))
    peer:close()
end
