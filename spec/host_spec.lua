-- The vmdr-run host: argv, script lookup, ctx, exit codes, logging, secrets.
local h = require "support.helper"

describe("vmdr-run", function()
  local tmp
  setup(function() tmp = h.tmpdir("host") end)

  it("prints its version", function()
    local r = h.run { "--version" }
    assert.equals(0, r.code)
    assert.matches("^vmdr%-run %d+%.%d+%.%d+", r.stdout)
  end)

  it("exits 2 on an unknown option and names it", function()
    local r = h.run { "--bogus", "x.lua" }
    assert.equals(2, r.code)
    assert.matches("unknown option '%-%-bogus'", r.stderr)
  end)

  it("exits 2 without a script", function()
    assert.equals(2, h.run {}.code)
  end)

  it("exits 2 for a workflow it cannot find, listing none that is not there", function()
    local r = h.run { "no-such-workflow" }
    assert.equals(2, r.code)
    assert.matches("no such script or workflow 'no%-such%-workflow'", r.stderr)
  end)

  it("passes ctx and the arguments after -- to the script", function()
    local s = h.write(tmp .. "/args.lua", [[
      local ctx, args = ...
      io.write(ctx.vars.name, "|", ctx.config.git.branch, "|", tostring(ctx.dry_run), "|",
        table.concat(args, ","))
    ]])
    -- options before and after SCRIPT, as operators type them
    local r = h.run { "-e", "name=a=b", s, "--dry-run", "-e", "git.branch=dr", "--", "x", "-e", "y" }
    assert.equals(0, r.code, r.stderr)
    assert.equals("a=b|dr|true|x,-e,y", r.stdout)
  end)

  it("maps script results to exit codes", function()
    assert.equals(0, h.run { h.write(tmp .. "/ok.lua", "return true") }.code)
    assert.equals(1, h.run { h.write(tmp .. "/false.lua", "return false") }.code)
    local r = h.run { h.write(tmp .. "/nilerr.lua", "return nil, 'storage step failed'") }
    assert.equals(1, r.code)
    assert.matches("storage step failed", r.stderr)
    assert.equals(7, h.run { h.write(tmp .. "/seven.lua", "return 7") }.code)
  end)

  it("exits 3 with a traceback naming the file on an uncaught error", function()
    local r = h.run { h.write(tmp .. "/boom.lua", "local function f() error('kaboom') end\nf()") }
    assert.equals(3, r.code)
    assert.matches("kaboom", r.stderr)
    assert.matches("boom%.lua:1", r.stderr)
    assert.matches("stack traceback", r.stderr)
  end)

  it("finds a workflow by name in the site directory before the installed tree", function()
    local site = tmp .. "/site"
    h.write(site .. "/workflows/hello.lua", "io.write('site hello')")
    h.write(site .. "/lib/sitemod.lua", "return { v = 'from site lib' }")
    local r = h.run({ "hello" }, { VMDR_SITE_DIR = site })
    assert.equals(0, r.code, r.stderr)
    assert.equals("site hello", r.stdout)
    r = h.run({ "workflows/hello.lua" }, { VMDR_SITE_DIR = site })
    assert.equals("site hello", r.stdout)
    local s = h.write(tmp .. "/usesite.lua", "io.write(require('sitemod').v)")
    r = h.run({ s }, { VMDR_SITE_DIR = site })
    assert.equals("from site lib", r.stdout)
  end)

  it("has no relative entries in package.path and an empty cpath", function()
    local s = h.write(tmp .. "/path.lua", "io.write(package.path, '\\n', package.cpath)")
    local r = h.run({ s }, { LUA_PATH = "./?.lua", LUA_CPATH = "./?.so" })
    assert.equals(0, r.code, r.stderr)
    local path, cpath = r.stdout:match("^(.-)\n(.*)$")
    assert.equals("", cpath)
    for entry in path:gmatch("[^;]+") do
      assert.equals("/", entry:sub(1, 1), "relative entry " .. entry)
    end
  end)

  it("rejects a malformed -e", function()
    local r = h.run { "-e", "novalue", h.write(tmp .. "/x.lua", "") }
    assert.equals(2, r.code)
    assert.matches("expected KEY=VALUE", r.stderr)
  end)

  it("never prints a secret named by a *_env setting, even in an error", function()
    local s = h.write(tmp .. "/leak.lua", [[
      local ctx = ...
      ctx.log.info("connecting", { url = "https://x", user = "vmdr" })
      ctx.log.info("token is " .. os.getenv("MY_TOKEN"))
      error("failed with " .. os.getenv("MY_TOKEN"))
    ]])
    local r = h.run({ "-e", "git.token_env=MY_TOKEN", s }, { MY_TOKEN = "s3cr3t-t0ken-value" })
    assert.equals(3, r.code)
    assert.not_matches("s3cr3t", r.stdout .. r.stderr)
    assert.matches("token is %*%*%*", r.stderr)
  end)

  it("logs JSON lines with --log-format json and hides fields named as secrets", function()
    local s = h.write(tmp .. "/json.lua", [[
      local ctx = ...
      ctx.log.info("synced", { vm = "ns/a b", count = 3, ok = true, password = "hunter22" })
    ]])
    local r = h.run { "--log-format", "json", s }
    assert.equals(0, r.code, r.stderr)
    local line = r.stderr:match("[^\n]+")
    assert.matches('"level":"info"', line)
    assert.matches('"msg":"synced"', line)
    assert.matches('"count":3', line)
    assert.matches('"ok":true', line)
    assert.matches('"vm":"ns/a b"', line)
    assert.matches('"password":"%*%*%*"', line)
    assert.not_matches("hunter22", r.stderr)
  end)

  it("debug lines appear only with -v, info lines disappear with -q", function()
    local s = h.write(tmp .. "/lv.lua", "local c = ... c.log.debug('dbg') c.log.info('inf') c.log.warn('wrn')")
    local r = h.run { s }
    assert.not_matches("dbg", r.stderr); assert.matches("inf", r.stderr)
    r = h.run { "-v", s }
    assert.matches("dbg", r.stderr)
    r = h.run { "-q", s }
    assert.not_matches("inf", r.stderr); assert.matches("wrn", r.stderr)
  end)

  it("ends with 130 on SIGTERM and runs to-be-closed handlers", function()
    local marker = tmp .. "/closed"
    local s = h.write(tmp .. "/loop.lua", string.format([[
      local t <close> = setmetatable({}, { __close = function()
        local f = io.open(%q, "w"); f:write("closed"); f:close() end })
      io.stdout:write("ready\n"); io.stdout:flush()
      while true do end
    ]], marker))
    local r = h.run_signalled({ s }, "TERM", "ready")
    assert.equals(130, r.code)
    assert.equals("closed", h.read(marker))
  end)

  it("interrupts time.sleep on SIGINT", function()
    local s = h.write(tmp .. "/sleep.lua", [[
      local t = require "vmdr.time"
      io.stdout:write("ready\n"); io.stdout:flush()
      local ok, err = t.sleep(30)
      io.stdout:write(tostring(ok), " ", err and err.code or "", "\n")
      return ok or 1
    ]])
    local r = h.run_signalled({ s }, "INT", "ready")
    assert.equals(130, r.code)
    assert.matches("nil interrupted", r.stdout)
  end)
  it("draws a progress bar on a terminal only", function()
    local s = h.write(tmp .. "/progress.lua", "local c = ... for i = 1, 4 do c.log.progress('cleaning VMs', i, 4) end")
    local plain = h.run { s }
    assert.equals(0, plain.code, plain.stderr)
    assert.equals("", plain.stderr)
    h.need("script")
    local tty = h.exec { "script", "-qec", h.q(h.vmdr_run) .. " " .. h.q(s), "/dev/null" }
    assert.equals(0, tty.code, tty.stderr)
    assert.matches("\rcleaning VMs %[#+%.+%] 1/4", tty.stdout)
    assert.matches("cleaning VMs %[#+%] 4/4", tty.stdout)
  end)
end)
