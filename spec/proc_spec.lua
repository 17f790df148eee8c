-- vmdr.proc with real programs: argv intact (never a shell), pipes, timeouts, signals.
local h = require "support.helper"
local proc = require "vmdr.proc"
local fs = require "vmdr.fs"
local t = require "vmdr.time"

--- True while a process with this pid exists (and is not a zombie of ours).
local function alive(pid)
  local st = h.read("/proc/" .. pid .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end

--- Waits (bounded) until pid is gone; returns whether it went.
local function gone(pid)
  local deadline = t.monotonic() + 10
  while alive(pid) do
    if t.monotonic() > deadline then return false end
    t.sleep(0.02)
  end
  return true
end

describe("vmdr.proc.run", function()
  local tmp
  before_each(function() tmp = h.tmpdir("proc") end)

  it("passes argv elements intact: no shell ever sees them", function()
    local marker = tmp .. "/x"
    fs.write(marker, "still here")
    local args = { "; rm -rf " .. marker, "$(id)", "`id`", "a'b\"c", "l1\nl2", "*", "$HOME",
      "", " spaced ", "&&", "|", ">" .. marker }
    local argv = { "printf", "[%s]" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local r = assert(proc.run(argv, { cwd = tmp }))
    assert.equals(0, r.status)
    assert.equals("[" .. table.concat(args, "][") .. "]", r.stdout)
    assert.equals("still here", fs.read(marker))
  end)

  it("feeds stdin and captures stdout, stderr and the exit status", function()
    local r = assert(proc.run({ "sh", "-c", "cat; echo oops >&2; exit 3" }, { stdin = "in\0put" }))
    assert.same({ status = 3, signal = 0, stdout = "in\0put", stderr = "oops\n" }, r)
    r = assert(proc.run({ "cat" }))
    assert.equals("", r.stdout) -- stdin is /dev/null by default, not ours
  end)

  it("does not deadlock on large output on both pipes and large input", function()
    local r = assert(proc.run({ "sh", "-c",
      "head -c 8000000 /dev/zero; head -c 6000000 /dev/zero >&2; head -c 5000000 /dev/zero" }))
    assert.equals(0, r.status)
    assert.equals(13000000, #r.stdout)
    assert.equals(6000000, #r.stderr)
    local big = string.rep("0123456789abcdef", 1024 * 1024) -- 16 MiB through cat
    r = assert(proc.run({ "cat" }, { stdin = big }))
    assert.equals(#big, #r.stdout)
    assert.is_true(r.stdout == big)
  end)

  it("reports the signal that ended the child", function()
    local r = assert(proc.run({ "sh", "-c", "kill -KILL $$" }))
    assert.equals(9, r.signal)
    assert.equals(137, r.status)
  end)

  it("gives the child default signal dispositions (SIGPIPE is not ignored)", function()
    local r = assert(proc.run({ "sh", "-c", "yes | head -n 1" }))
    assert.equals("y\n", r.stdout)
    assert.equals("", r.stderr) -- with SIGPIPE ignored, yes would complain of EPIPE
  end)

  it("kills the child and what it started on timeout, keeping partial output", function()
    local r, err = proc.run({ "sh", "-c", "sleep 60 & echo $!; echo $$; wait" }, { timeout = 0.5 })
    assert.is_nil(r)
    assert.equals("timeout", err.code)
    local child, shell = err.stdout:match("^(%d+)\n(%d+)\n$")
    assert.truthy(child, err.stdout)
    assert.is_true(gone(shell))
    assert.is_true(gone(child))
  end)

  it("sends SIGKILL after the grace period to a child that ignores SIGTERM", function()
    local r, err = proc.run({ "sh", "-c", "trap '' TERM; echo $$; sleep 60; sleep 60" },
      { timeout = 0.3, grace = 0.3 })
    assert.is_nil(r)
    assert.equals("timeout", err.code)
    assert.is_true(gone(err.stdout:match("%d+")))
  end)

  it("reports a missing program, a missing cwd and a non-executable file", function()
    local r, err = proc.run { "vmdr-no-such-program" }
    assert.is_nil(r); assert.equals("not_found", err.code)
    assert.matches("vmdr%-no%-such%-program", tostring(err))
    r, err = proc.run { tmp .. "/nope" }
    assert.is_nil(r); assert.equals("not_found", err.code)
    r, err = proc.run({ "true" }, { cwd = tmp .. "/none" })
    assert.is_nil(r); assert.equals("not_found", err.code)
    assert.matches("cwd", err.message)
    fs.write(tmp .. "/script", "#!/bin/sh\necho hi\n", { mode = tonumber("644", 8) })
    r, err = proc.run { tmp .. "/script" }
    assert.is_nil(r); assert.equals("permission", err.code)
  end)

  it("adds, overrides, removes and clears environment variables", function()
    local r = assert(proc.run({ "sh", "-c", 'printf "%s|%s|%s" "$VMDR_A" "${HOME-unset}" "$PATH"' },
      { env = { VMDR_A = "x y", HOME = false, PATH = "/usr/bin:/bin" } }))
    assert.equals("x y|unset|/usr/bin:/bin", r.stdout)
    r = assert(proc.run({ "/usr/bin/env" }, { env_clear = true, env = { ONLY = "1" } }))
    assert.equals("ONLY=1\n", r.stdout)
    -- the program is looked up in the child's PATH
    fs.mkdir(tmp .. "/bin")
    fs.write(tmp .. "/bin/vmdr-spec-tool", "#!/bin/sh\necho tool\n", { mode = tonumber("755", 8) })
    r = assert(proc.run({ "vmdr-spec-tool" }, { env = { PATH = tmp .. "/bin:/usr/bin:/bin" } }))
    assert.equals("tool\n", r.stdout)
  end)

  it("runs in the cwd asked for", function()
    local r = assert(proc.run({ "pwd" }, { cwd = tmp }))
    assert.equals(fs.realpath(tmp) .. "\n", r.stdout)
  end)

  it("raises on misuse", function()
    assert.has_error(function() proc.run("ls -l") end)
    assert.has_error(function() proc.run({}) end)
    assert.has_error(function() proc.run({ "" }) end)
    assert.has_error(function() proc.run({ "echo", 1 }) end)
    assert.has_error(function() proc.run({ "echo", "a\0b" }) end)
    assert.has_error(function() proc.run({ "true" }, { timeout = 0 }) end)
    assert.has_error(function() proc.run({ "true" }, { env = { A = {} } }) end)
    assert.has_error(function() proc.run({ "true" }, { env = { ["A=B"] = "1" } }) end)
    assert.has_error(function() proc.run({ "true" }, { stdin = 5 }) end)
  end)

  it("stops the child and returns 'interrupted' on SIGINT", function()
    local pidfile = tmp .. "/child.pid"
    local s = h.write(tmp .. "/int.lua", string.format([[
      local proc = require "vmdr.proc"
      local r, err = proc.run({ "sh", "-c", "echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 60" },
        { timeout = 120 })
      io.stdout:write(tostring(r), " ", err and err.code or "", "\n")
      return r and 0 or 1
    ]], pidfile, pidfile, pidfile))
    -- signal vmdr-run only once its child is running
    local d = tmp .. "/run"
    fs.mkdir(d)
    assert(h.sh("(" .. h.q(h.vmdr_run) .. " " .. h.q(s) .. " >" .. h.q(d .. "/out") .. " 2>&1 </dev/null & "
      .. "echo $! >" .. h.q(d .. "/pid") .. "; wait $!; echo $? >" .. h.q(d .. "/rc") .. ") &") == 0)
    local deadline = t.monotonic() + 30
    while not fs.exists(pidfile) do
      assert(t.monotonic() < deadline, "child never started")
      t.sleep(0.02)
    end
    while not (h.read(d .. "/pid") or ""):match("%d") do t.sleep(0.01) end
    local child = h.read(pidfile):match("%d+")
    assert.is_true(alive(child))
    assert(h.sh("kill -INT " .. h.read(d .. "/pid"):match("%d+")) == 0)
    while not (h.read(d .. "/rc") or ""):match("%d") do
      assert(t.monotonic() < deadline, "vmdr-run did not exit after SIGINT")
      t.sleep(0.02)
    end
    assert.equals(130, tonumber(h.read(d .. "/rc"):match("%d+")))
    assert.matches("nil interrupted", h.read(d .. "/out"))
    assert.is_true(gone(child))
  end)
end)
