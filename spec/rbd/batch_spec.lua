-- cluster:batch on 50 real images: one result per image, in order; an injected missing image
-- fails alone; both engines (worker threads, librbd aio).
-- needs: ceph
local ceph = require "support.ceph"

local N = 50

describe("cluster:batch", function()
  local a, names, specs

  setup(function()
    a = ceph.connect("a")
    names, specs = {}, {}
    local base = ceph.name("batch")
    for i = 1, N do
      names[i] = string.format("%s-%02d", base, i)
      specs[i] = "rbd/" .. names[i]
      assert(a:create_image("rbd", names[i], 1024 * 1024))
    end
  end)

  teardown(function()
    if not a then return end
    a:batch("disable", specs, { parallel = 8, force = true })
    for _, n in ipairs(names) do a:remove_image("rbd", n) end
    a:close()
  end)

  local function with_missing()
    local list = {}
    for i = 1, N do
      list[#list + 1] = specs[i]
      if i == 17 then list[#list + 1] = "rbd/no-such-image-in-batch" end
    end
    return list
  end

  local function check(results, summary, want)
    assert.equals(N + 1, #results)
    for i, r in ipairs(results) do
      if i == 18 then
        assert.equals("rbd/no-such-image-in-batch", r.image)
        assert.equals("failed", r.result)
        assert.equals("not_found", r.err.code)
        assert.matches("does not exist", r.err.message)
      else
        local k = i < 18 and i or i - 1
        assert.equals(specs[k], r.image)
        assert.equals(want, r.result, r.err and tostring(r.err))
        assert.is_nil(r.err)
        assert.is_number(r.seconds)
      end
    end
    assert.equals(1, summary.failed)
    assert.equals(N, summary[want])
  end

  it("enables 50 images, with the missing one failing alone; again gives already", function()
    local results, summary = a:batch("enable", with_missing(), { parallel = 8 })
    check(results, summary, "ok")
    results, summary = a:batch("enable", with_missing(), { parallel = 8 })
    check(results, summary, "already")
  end)

  it("takes a mirror snapshot of each and gives their ids", function()
    local results, summary = a:batch("snapshot", specs, { parallel = 16 })
    assert.equals(N, summary.ok)
    for _, r in ipairs(results) do assert.is_true(r.snap_id > 0) end
  end)

  it("reports status per image", function()
    local results, summary = a:batch("status", with_missing(), { parallel = 4 })
    check(results, summary, "ok")
    for i, r in ipairs(results) do
      if i ~= 18 then
        assert.equals("enabled", r.status.state)
        assert.is_true(r.status.primary)
      end
    end
  end)

  for _, engine in ipairs({ "threads", "aio" }) do
    it("demotes and promotes 50 images with the " .. engine .. " engine", function()
      local results, summary = a:batch("demote", with_missing(), { parallel = 16, engine = engine })
      check(results, summary, "ok")
      results, summary = a:batch("demote", with_missing(), { parallel = 16, engine = engine })
      check(results, summary, "already")
      -- promoting the side that was just demoted: the peer never became primary
      results, summary = a:batch("promote", with_missing(), { parallel = 16, engine = engine,
        force = true })
      check(results, summary, "ok")
      local st = a:batch("status", specs, { parallel = 16 })
      for _, r in ipairs(st) do assert.is_true(r.status.primary, r.image) end
    end)
  end

  it("accepts {pool=, name=} entries and reports a malformed entry as its own failure", function()
    local results, summary = a:batch("status", { { pool = "rbd", name = names[1] }, "justaname" })
    assert.equals("ok", results[1].result)
    assert.equals("failed", results[2].result)
    assert.equals("invalid", results[2].err.code)
    assert.equals("justaname", results[2].image)
    assert.equals(1, summary.failed)
  end)

  it("gives an empty result for an empty list", function()
    local results, summary = a:batch("promote", {})
    assert.same({}, results)
    assert.equals(0, summary.ok + summary.failed + summary.already)
  end)
end)
