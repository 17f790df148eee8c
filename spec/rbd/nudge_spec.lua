-- A forced promote of an image that rbd-mirror replays waits in librbd for rbd-mirror to let
-- go; the batch and img:promote notify the image's header while it waits ("nudge", core.c),
-- in both engines. The promoted copies are primary and hold A's data (issue 4).
-- needs: ceph
local ceph = require "support.ceph"

describe("nudging forced promotes", function()
  local a, b, names = nil, nil, {}

  local function spec(i) return "rbd/" .. names[i] end

  setup(function()
    a = ceph.connect("a")
    b = ceph.connect("b")
    local base = ceph.name("nudge")
    for i = 1, 5 do
      names[i] = string.format("%s-%d", base, i)
      assert(a:create_image("rbd", names[i], 1024 * 1024))
      local img = assert(a:image("rbd", names[i]))
      assert(img:write(0, string.rep(string.char(64 + i), 4096)))
      assert.equals("ok", img:mirror_enable("snapshot"))
      img:close()
    end
    -- each copy on B complete and replaying: rbd-mirror holds it open when the promote starts
    for i = 1, 5 do ceph.synced(a, b, names[i], 60) end
  end)

  teardown(function()
    -- both sites are primary after the forced promotes: disable and remove on each
    ceph.drop(names, b, a)
    if b then b:close() end
    if a then a:close() end
  end)

  local function check_primary_copy(i)
    local img = assert(b:image("rbd", names[i]))
    assert.is_true(assert(img:mirror_info()).primary)
    assert.equals(string.rep(string.char(64 + i), 4096), assert(img:read(0, 4096)))
    img:close()
  end

  for k, engine in ipairs({ "threads", "aio" }) do
    it("notifies the header of a waiting forced promote (" .. engine .. " engine)", function()
      -- librbd re-checks rbd-mirror on a 1 s timer, so a nudge due after 0.05 s is sent
      local r, sum = b:batch("promote", { spec(k) }, { force = true, nudge = 0.05,
        engine = engine, retry = 30 })
      assert.equals(1, sum.ok, r[1].err and tostring(r[1].err))
      assert.is_true(math.type(r[1].nudges) == "integer" and r[1].nudges >= 1,
        "no nudge sent: " .. tostring(r[1].nudges))
      check_primary_copy(k)
    end)
  end

  it("sends none with nudge = false, and none to an image that is already primary", function()
    local r, sum = b:batch("promote", { spec(3) }, { force = true, nudge = false, retry = 30 })
    assert.equals(1, sum.ok, r[1].err and tostring(r[1].err))
    assert.is_nil(r[1].nudges)
    check_primary_copy(3)
    r, sum = b:batch("promote", { spec(3) }, { force = true, nudge = 0.05 })
    assert.equals(1, sum.already)
    assert.is_nil(r[1].nudges)
  end)

  it("img:promote(true) promotes a replaying copy, with the default nudge", function()
    local img = assert(b:image("rbd", names[4]))
    assert.equals("ok", img:promote(true))
    img:close()
    check_primary_copy(4)
  end)

  it("refuses a nudge that is not false or 0..3600 seconds", function()
    for _, bad in ipairs({ -1, 3601, "soon" }) do
      local ok, err = pcall(b.batch, b, "promote", { spec(5) }, { force = true, nudge = bad })
      assert.is_false(ok)
      assert.matches("nudge", tostring(err))
    end
    local img = assert(b:image("rbd", names[5]))
    assert.is_false(assert(img:mirror_info()).primary)
    img:close()
  end)
end)
