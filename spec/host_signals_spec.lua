-- SIGINT/SIGTERM while a workflow writes files: the run ends cleanly (130) and leaves
-- every file whole, old or new, never half-written, and no temp file behind.
local h = require "support.helper"
local fs = require "vmdr.fs"
local t = require "vmdr.time"

local SIZE = 8 * 1024 * 1024

--- A script that rewrites `target` with 8 MiB of "A", then "B", ... until stopped.
local function writer(dir, target)
  return h.write(dir .. "/writer.lua", string.format([[
    local fs = require "vmdr.fs"
    local a, b = string.rep("A", %d), string.rep("B", %d)
    assert(fs.write(%q, a))
    io.stdout:write("ready\n"); io.stdout:flush()
    local n = 0
    while true do
      n = n + 1
      assert(fs.write(%q, n %% 2 == 0 and a or b))
    end
  ]], SIZE, SIZE, target, target))
end

--- Checks that target is whole (all A or all B) and that dir holds no temp file.
local function assert_whole(dir, target)
  local data = assert(fs.read(target))
  assert.equals(SIZE, #data)
  assert.truthy(data == string.rep("A", SIZE) or data == string.rep("B", SIZE), "mixed content")
  for _, name in ipairs(assert(fs.list(dir))) do
    assert.falsy(name:find(".vmdr-tmp-", 1, true), "temp file left: " .. name)
  end
end

describe("vmdr-run interrupted while writing", function()
  it("exits 130 on SIGTERM leaving a whole file and no temp file", function()
    local dir = h.tmpdir("sigw")
    local target = dir .. "/state.yaml"
    local r = h.run_signalled({ writer(dir, target) }, "TERM", "ready")
    assert.equals(130, r.code)
    assert_whole(dir, target)
  end)

  it("exits 130 on SIGINT the same way", function()
    local dir = h.tmpdir("sigw")
    local target = dir .. "/state.yaml"
    local r = h.run_signalled({ writer(dir, target) }, "INT", "ready")
    assert.equals(130, r.code)
    assert_whole(dir, target)
  end)

  it("the same SIGTERM delivered twice at once (timeout(1): child, then its group) is one request", function()
    -- a workflow that acts on the stop (like the monitor's hand-over) and takes 0.3 s to
    -- finish: the repeat 50 ms after the first signal must not kill it
    local dir = h.tmpdir("sigw")
    local s = h.write(dir .. "/handover.lua", [[
      local signal = require "vmdr.signal"
      local t = require "vmdr.time"
      io.stdout:write("ready\n"); io.stdout:flush()
      assert(not t.sleep(30))
      signal.handled()
      local done = t.monotonic() + 0.3
      while t.monotonic() < done do end
      io.stdout:write("handed over\n")
      return true
    ]])
    local r = h.run_signalled({ s }, "TERM", "ready", nil, 0.05)
    assert.equals(0, r.code, r.stderr)
    assert.matches("handed over", r.stdout)
  end)

  it("a second, fatal SIGTERM during a write still leaves no temp file", function()
    local dir = h.tmpdir("sigw")
    local target = dir .. "/state.yaml"
    -- Like a to-be-closed handler saving state: after the first signal it keeps writing,
    -- so the second signal (default action: death) lands in the middle of a write.
    local s = h.write(dir .. "/stubborn.lua", string.format([[
      local fs = require "vmdr.fs"
      local a, b = string.rep("A", %d), string.rep("B", %d)
      local n = 0
      local function loop() while true do n = n + 1; assert(fs.write(%q, n %% 2 == 0 and a or b)) end end
      assert(fs.write(%q, a))
      io.stdout:write("ready\n"); io.stdout:flush()
      pcall(loop)
      io.stdout:write("interrupted\n"); io.stdout:flush()
      loop()
    ]], SIZE, SIZE, target, target))
    local run = dir .. "/run"
    fs.mkdir(run)
    assert(h.sh("(" .. h.q(h.vmdr_run) .. " " .. h.q(s) .. " >" .. h.q(run .. "/out") .. " 2>&1 </dev/null & "
      .. "echo $! >" .. h.q(run .. "/pid") .. "; wait $!; echo $? >" .. h.q(run .. "/rc") .. ") &") == 0)
    local deadline = t.monotonic() + 60
    local function wait_out(word)
      while not (h.read(run .. "/out") or ""):find(word, 1, true) do
        assert(t.monotonic() < deadline, "never printed " .. word)
        t.sleep(0.01)
      end
    end
    wait_out("ready")
    while not (h.read(run .. "/pid") or ""):match("%d") do t.sleep(0.01) end
    local pid = h.read(run .. "/pid"):match("%d+")
    assert(h.sh("kill -TERM " .. pid) == 0)
    wait_out("interrupted")
    -- past the 300 ms in which a repeat counts as the same request (host.c)
    t.sleep(0.5)
    assert(h.sh("kill -TERM " .. pid) == 0)
    while not (h.read(run .. "/rc") or ""):match("%d") do
      assert(t.monotonic() < deadline, "writer did not exit")
      t.sleep(0.02)
    end
    assert.equals(143, tonumber(h.read(run .. "/rc"):match("%d+"))) -- killed by the signal
    assert_whole(dir, target)
  end)
end)
