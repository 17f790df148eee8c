-- vmdr-run's command line and environment, beyond host_spec.lua: help, LUA_INIT and
-- LUA_PATH ignored, colour only on a TTY, a stale $PWD, options after SCRIPT.
local h = require "support.helper"
local proc = require "vmdr.proc"
local fs = require "vmdr.fs"

describe("vmdr-run command line", function()
  local tmp
  setup(function() tmp = h.tmpdir("cli") end)

  it("--help prints the usage and exits 0", function()
    local r = h.run { "--help" }
    assert.equals(0, r.code)
    assert.matches("^usage: vmdr%-run %[options%] SCRIPT", r.stdout)
    assert.matches("%-e, %-%-extra%-vars", r.stdout)
    assert.matches("130 interrupted", r.stdout)
  end)

  it("ignores LUA_INIT and LUA_PATH", function()
    h.write(tmp .. "/evil/vmdr/config.lua", "error('loaded from LUA_PATH')")
    local s = h.write(tmp .. "/init.lua", "require 'vmdr.config'; io.write(tostring(rawget(_G, 'INJECTED')))")
    local r = h.run({ s }, { LUA_INIT = "INJECTED = true", LUA_INIT_5_4 = "INJECTED = true",
      LUA_PATH = tmp .. "/evil/?.lua", LUA_PATH_5_4 = tmp .. "/evil/?.lua" })
    assert.equals(0, r.code, r.stderr)
    assert.equals("nil", r.stdout)
  end)

  it("colours log lines only on a terminal", function()
    h.need("script")
    local s = h.write(tmp .. "/log.lua", "local c = ... c.log.warn('careful')")
    local r = h.run { s }
    assert.matches("careful", r.stderr)
    assert.is_nil(r.stderr:find("\27[", 1, true))
    -- script(1) gives the child a pseudo-terminal
    local p = assert(proc.run({ "script", "-qec", h.q(h.vmdr_run) .. " " .. h.q(s), "/dev/null" },
      { env = { NO_COLOR = false, TERM = "xterm" } }))
    assert.equals(0, p.status, p.stdout .. p.stderr)
    assert.matches("careful", p.stdout)
    assert.truthy(p.stdout:find("\27[", 1, true), "no colour on a TTY: " .. p.stdout)
    p = assert(proc.run({ "script", "-qec", h.q(h.vmdr_run) .. " " .. h.q(s), "/dev/null" },
      { env = { NO_COLOR = "1" } }))
    assert.is_nil(p.stdout:find("\27[", 1, true))
  end)

  it("resolves a relative SCRIPT against the real cwd, not a stale $PWD", function()
    local dir = tmp .. "/work"
    h.write(dir .. "/wf.lua", "local ctx = ... io.write(ctx.script)")
    local p = assert(proc.run({ h.vmdr_run, "wf.lua" }, { cwd = dir, env = { PWD = "/nonexistent" } }))
    assert.equals(0, p.status, p.stderr)
    assert.equals(fs.realpath(dir) .. "/wf.lua", p.stdout)
  end)

  it("takes options after SCRIPT and passes only what follows -- to the script", function()
    local s = h.write(tmp .. "/opts.lua", [[
      local ctx, args = ...
      io.write(tostring(ctx.dry_run), " ", ctx.log.level(), " ", #args, " ", args[1] or "")
    ]])
    local r = h.run { s, "-q", "--dry-run", "--", "--dry-run" }
    assert.equals(0, r.code, r.stderr)
    assert.equals("true warn 1 --dry-run", r.stdout)
    r = h.run { s, "extra" }
    assert.equals(2, r.code)
    assert.matches("unexpected argument 'extra'", r.stderr)
  end)
end)
