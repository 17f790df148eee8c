-- git.map_limits: how much of a pack libgit2 keeps mapped (issue 8: by default libgit2 maps
-- a whole pack and keeps it, so the monitor's RSS followed the size of its clone's packs).
-- The setting is process-wide; this spec file is its own process. The pack is made by the
-- git CLI; what is mapped is read from /proc/self/smaps.
local h = require "support.helper"
local git = require "vmdr.git"

-- KiB of address space and of resident pages mapped from files named *.pack
local function pack_maps()
  local size, rss, cur = 0, 0, false
  for line in io.lines("/proc/self/smaps") do
    local path = line:match("^%x+%-%x+ %S+ %x+ %S+ %d+%s+(.*)$")
    if path then
      cur = path:match("%.pack$") ~= nil
    elseif cur then
      local k, v = line:match("^(%a+):%s+(%d+) kB")
      if k == "Size" then size = size + tonumber(v) end
      if k == "Rss" then rss = rss + tonumber(v) end
    end
  end
  return size, rss
end

describe("git.map_limits", function()
  it("keeps no more of a pack mapped than the limit while every file is read", function()
    h.need("git")
    local dir = h.tmpdir("maps") .. "/r"
    h.capture("git init -q -b main " .. h.q(dir))
    -- 240 files of 24 KiB of random bytes (base64: they do not compress much): a ~4.4 MB pack
    h.capture("cd " .. h.q(dir) .. " && for i in $(seq 1 240); do head -c 18432 /dev/urandom | base64 -w 76 > f$i.txt; done"
      .. " && git add -A && git -c user.name=t -c user.email=t@t commit -q -m seed && git repack -q -a -d"
      .. " && git init -q --bare ../remote.git && git remote add origin ../remote.git && git push -q origin main")
    local pack = h.capture("cd " .. h.q(dir) .. " && du -k .git/objects/pack/*.pack | cut -f1")
    local pack_kb = tonumber(pack:match("%d+"))
    assert.is_true(pack_kb > 4 * 1024, "premise: a pack of " .. tostring(pack_kb) .. " KiB")

    local window, mapped = 256 * 1024, 1024 * 1024
    assert.is_true(git.map_limits { window = window, mapped = mapped })
    local r = assert(git.open(dir))
    local most = 0
    for round = 1, 2 do
      for i = 1, 240 do
        local want = h.read(dir .. "/f" .. i .. ".txt")
        assert.equals(want, r:read("f" .. i .. ".txt", { head = true }), "f" .. i .. " round " .. round)
        local size = pack_maps()
        if size > most then most = size end
      end
    end
    r:close()
    -- the limit is checked before a window opens: at most the limit plus the new window
    assert.is_true(most <= (mapped + window) / 1024, "mapped up to " .. most .. " KiB of the pack")
    assert.is_true(most > 0, "the pack was read through maps")
  end)

  it("refuses sizes it cannot use", function()
    assert.has_error(function() git.map_limits { window = -1 } end)
    assert.has_error(function() git.map_limits { window = 4096 } end)
    assert.has_error(function() git.map_limits { window = 1048576, mapped = 65536 } end)
    assert.has_error(function() git.map_limits() end)
  end)
end)
