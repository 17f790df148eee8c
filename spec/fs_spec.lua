-- vmdr.fs on the real file system: atomic writes, listings, errors from errno, locks.
local h = require "support.helper"
local fs = require "vmdr.fs"

--- Names in dir that look like an atomic write's temp file.
local function temps(dir)
  local out = {}
  for _, e in ipairs(assert(fs.walk(dir))) do
    if e.path:find(".vmdr-tmp-", 1, true) then out[#out + 1] = e.path end
  end
  return out
end

--- Starts a vmdr-run process that takes fs.lock(path) and sleeps; returns its pid once it
--- holds the lock (files for it go in dir).
local function lock_holder(dir, path)
  local ready = dir .. "/ready"
  local holder = h.write(dir .. "/holder.lua", string.format([[
    local fs = require "vmdr.fs"
    local l = assert(fs.lock(%q))
    assert(fs.write(%q, "held"))
    require("vmdr.time").sleep(60)
  ]], path, ready))
  local pidfile = dir .. "/pid"
  assert(h.sh(h.q(h.vmdr_run) .. " " .. h.q(holder) .. " >/dev/null 2>&1 </dev/null & echo $! >"
    .. h.q(pidfile)) == 0)
  local t = require "vmdr.time"
  local deadline = t.monotonic() + 30
  while not fs.exists(ready) do
    assert(t.monotonic() < deadline, "holder never took the lock")
    t.sleep(0.02)
  end
  return h.read(pidfile):match("%d+")
end

describe("vmdr.fs", function()
  local tmp
  before_each(function() tmp = h.tmpdir("fs") end)

  describe("read and write", function()
    it("round-trips bytes, NULs and all, and replaces an existing file", function()
      local p = tmp .. "/a.bin"
      local data = "line1\n\0binary\255\r\n" .. string.rep("x", 100000)
      assert.is_true(fs.write(p, data))
      assert.equals(data, fs.read(p))
      assert.is_true(fs.write(p, "short"))
      assert.equals("short", fs.read(p))
      assert.equals("short", h.read(p))
      assert.same({}, temps(tmp))
    end)

    it("writes an empty file", function()
      assert.is_true(fs.write(tmp .. "/empty", ""))
      assert.equals("", fs.read(tmp .. "/empty"))
      assert.equals(0, fs.stat(tmp .. "/empty").size)
    end)

    it("sets the mode asked for, keeps an existing file's mode, else 0644", function()
      local p = tmp .. "/m"
      fs.write(p, "x", { mode = tonumber("600", 8) })
      assert.equals(tonumber("600", 8), fs.stat(p).mode)
      fs.write(p, "y")
      assert.equals(tonumber("600", 8), fs.stat(p).mode)
      fs.write(tmp .. "/new", "z")
      assert.equals(tonumber("644", 8), fs.stat(tmp .. "/new").mode)
    end)

    it("reports not_found, is_dir and not_dir from errno, and leaves no temp file", function()
      local v, err = fs.read(tmp .. "/missing")
      assert.is_nil(v)
      assert.equals("not_found", err.code)
      assert.matches("missing", tostring(err))
      assert.matches("^not_found: ", tostring(err))

      v, err = fs.read(tmp)
      assert.is_nil(v); assert.equals("is_dir", err.code)

      v, err = fs.write(tmp .. "/no/such/dir/f", "x")
      assert.is_nil(v); assert.equals("not_found", err.code)

      h.write(tmp .. "/file", "x")
      v, err = fs.write(tmp .. "/file/f", "x")
      assert.is_nil(v); assert.equals("not_dir", err.code)

      -- the rename fails after the temp file was written: it must be removed
      fs.mkdir(tmp .. "/adir")
      v, err = fs.write(tmp .. "/adir", "x")
      assert.is_nil(v); assert.equals("is_dir", err.code)
      assert.same({}, temps(tmp))
    end)

    it("reports permission", function()
      local p
      if h.capture("id -u"):match("^0") then
        -- root ignores mode bits; sysfs refuses new files even to root
        p = "/sys/vmdr-fs-spec"
      else
        fs.mkdir(tmp .. "/ro")
        assert(h.sh("chmod 500 " .. h.q(tmp .. "/ro")) == 0)
        p = tmp .. "/ro/f"
      end
      local v, err = fs.write(p, "x")
      assert.is_nil(v)
      assert.equals("permission", err.code)
    end)

    it("raises on misuse", function()
      assert.has_error(function() fs.read(nil) end)
      assert.has_error(function() fs.read("") end)
      assert.has_error(function() fs.read("a\0b") end)
      assert.has_error(function() fs.write(tmp .. "/x", {}) end)
      assert.has_error(function() fs.write(tmp .. "/x", "y", { mode = "0644" }) end)
      assert.has_error(function() fs.remove(tmp .. "/x", { recursive = "yes" }) end)
    end)
  end)

  describe("listing", function()
    before_each(function()
      h.write(tmp .. "/t/b.yaml", "b")
      h.write(tmp .. "/t/a.yaml", "a")
      h.write(tmp .. "/t/.hidden", "h")
      h.write(tmp .. "/t/sub/z.yaml", "z")
      h.write(tmp .. "/t/sub/deeper/y", "y")
      h.write(tmp .. "/outside/secret", "s")
      assert(h.sh("ln -s ../outside " .. h.q(tmp .. "/t/link")) == 0)
    end)

    it("list gives sorted names of one directory", function()
      assert.same({ ".hidden", "a.yaml", "b.yaml", "link", "sub" }, fs.list(tmp .. "/t"))
      assert.same({}, fs.list((fs.mkdir(tmp .. "/void") and tmp .. "/void")))
      local v, err = fs.list(tmp .. "/t/a.yaml")
      assert.is_nil(v); assert.equals("not_dir", err.code)
      v, err = fs.list(tmp .. "/none")
      assert.is_nil(v); assert.equals("not_found", err.code)
    end)

    it("walk is recursive, sorted, relative, typed, and does not follow symlinks", function()
      assert.same({
        { path = ".hidden", type = "file" },
        { path = "a.yaml", type = "file" },
        { path = "b.yaml", type = "file" },
        { path = "link", type = "link" },
        { path = "sub", type = "dir" },
        { path = "sub/deeper", type = "dir" },
        { path = "sub/deeper/y", type = "file" },
        { path = "sub/z.yaml", type = "file" },
      }, fs.walk(tmp .. "/t"))
    end)
  end)

  describe("directories and paths", function()
    it("mkdir makes parents, accepts an existing directory, refuses a file", function()
      assert.is_true(fs.mkdir(tmp .. "/a/b/c"))
      assert.is_true(fs.mkdir(tmp .. "/a/b/c/"))
      assert.equals("dir", fs.stat(tmp .. "/a/b/c").type)
      h.write(tmp .. "/f", "x")
      local v, err = fs.mkdir(tmp .. "/f/g")
      assert.is_nil(v); assert.equals("not_dir", err.code)
      v, err = fs.mkdir(tmp .. "/f")
      assert.is_nil(v); assert.equals("not_dir", err.code)
    end)

    it("remove deletes files, empty dirs, and trees only when recursive", function()
      h.write(tmp .. "/d/x/y", "1")
      h.write(tmp .. "/keep/k", "k")
      assert(h.sh("ln -s ../keep " .. h.q(tmp .. "/d/lnk")) == 0)
      local v, err = fs.remove(tmp .. "/d")
      assert.is_nil(v); assert.equals("not_empty", err.code)
      assert.is_true(fs.remove(tmp .. "/d/x/y"))
      assert.is_true(fs.remove(tmp .. "/d/x"))
      assert.is_true(fs.remove(tmp .. "/d", { recursive = true }))
      assert.is_false(fs.exists(tmp .. "/d"))
      -- the symlink went, its target did not
      assert.equals("k", fs.read(tmp .. "/keep/k"))
      v, err = fs.remove(tmp .. "/d")
      assert.is_nil(v); assert.equals("not_found", err.code)
    end)

    it("exists and stat use lstat: a symlink is a link", function()
      h.write(tmp .. "/f", "12345")
      assert(h.sh("ln -s f " .. h.q(tmp .. "/l") .. " && ln -s nowhere " .. h.q(tmp .. "/dangling")) == 0)
      assert.is_true(fs.exists(tmp .. "/f"))
      assert.is_true(fs.exists(tmp .. "/dangling"))
      assert.is_false(fs.exists(tmp .. "/none"))
      assert.is_false(fs.exists(tmp .. "/f/under-a-file"))
      local st = fs.stat(tmp .. "/f")
      assert.equals("file", st.type)
      assert.equals(5, st.size)
      assert.is_true(math.abs(st.mtime - os.time()) < 3600)
      assert.equals("link", fs.stat(tmp .. "/l").type)
      local v, err = fs.stat(tmp .. "/none")
      assert.is_nil(v); assert.equals("not_found", err.code)
    end)

    it("realpath resolves symlinks and dots", function()
      h.write(tmp .. "/real/f", "x")
      assert(h.sh("ln -s real " .. h.q(tmp .. "/alias")) == 0)
      local want = fs.realpath(tmp) .. "/real/f"
      assert.equals(want, fs.realpath(tmp .. "/alias/../real/./f"))
      assert.equals(want, fs.realpath(tmp .. "/alias/f"))
      local v, err = fs.realpath(tmp .. "/none")
      assert.is_nil(v); assert.equals("not_found", err.code)
    end)
  end)

  describe("clear_tmp", function()
    it("removes what a killed write left, and nothing else", function()
      local target = tmp .. "/cache.json"
      h.write(target, "old")
      -- what a writer killed between its temp file and the rename leaves (nobody holds it)
      h.write(tmp .. "/.cache.json.vmdr-tmp-Ab12Cd", "half")
      h.write(tmp .. "/.cache.json.vmdr-tmp-zzzzzz", "")
      -- not ours: another target's, a wrong length, a link, a directory, a FIFO
      local keep = { ".other.json.vmdr-tmp-Ab12Cd", ".cache.json.vmdr-tmp-Ab12C",
        ".cache.json.vmdr-tmp-Ab12Cde", "cache.json.vmdr-tmp-Ab12Cd" }
      for _, k in ipairs(keep) do h.write(tmp .. "/" .. k, "x") end
      h.write(tmp .. "/victim", "v")
      assert(h.sh("ln -s victim " .. h.q(tmp .. "/.cache.json.vmdr-tmp-link01")) == 0)
      assert(h.sh("mkfifo " .. h.q(tmp .. "/.cache.json.vmdr-tmp-fifo01")) == 0)
      fs.mkdir(tmp .. "/.cache.json.vmdr-tmp-dir001")
      assert.equals(2, fs.clear_tmp(target))
      assert.is_false(fs.exists(tmp .. "/.cache.json.vmdr-tmp-Ab12Cd"))
      assert.is_false(fs.exists(tmp .. "/.cache.json.vmdr-tmp-zzzzzz"))
      for _, k in ipairs(keep) do assert.equals("x", h.read(tmp .. "/" .. k)) end
      assert.equals("link", fs.stat(tmp .. "/.cache.json.vmdr-tmp-link01").type)
      assert.equals("v", h.read(tmp .. "/victim"))
      assert.equals("other", fs.stat(tmp .. "/.cache.json.vmdr-tmp-fifo01").type)
      assert.equals("dir", fs.stat(tmp .. "/.cache.json.vmdr-tmp-dir001").type)
      assert.equals("old", h.read(target))
      assert.equals(0, fs.clear_tmp(target))
      -- a directory that does not exist holds no temp file
      assert.equals(0, fs.clear_tmp(tmp .. "/none/cache.json"))
      local v, err = fs.clear_tmp(tmp .. "/")
      assert.is_nil(v); assert.equals("invalid", err.code)
    end)

    it("leaves a temp file its writer still holds", function()
      local live = tmp .. "/.c.json.vmdr-tmp-LIVE01"
      -- a live writer holds its temp file with flock, as vmdr.fs.lock does
      local pid = lock_holder(tmp, live)
      assert.equals(0, fs.clear_tmp(tmp .. "/c.json"))
      assert.is_true(fs.exists(live))
      assert(h.sh("kill -9 " .. pid) == 0)
      -- dead: its lock went with it (the kernel may take a moment)
      local t = require "vmdr.time"
      local n = 0
      local deadline = t.monotonic() + 30
      repeat
        n = assert(fs.clear_tmp(tmp .. "/c.json"))
        if n == 0 then t.sleep(0.02) end
      until n > 0 or t.monotonic() > deadline
      assert.equals(1, n)
      assert.is_false(fs.exists(live))
    end)

    -- "" : O_TMPFILE, locked before it has a name; "0": mkostemp + flock, where a cleaner can
    -- take the file between the two and the writer starts again under a new name
    for _, knob in ipairs { "", "0" } do
      local how = knob == "" and "O_TMPFILE" or "mkostemp (VMDR_FS_TMPFILE=0)"
      it("never takes a temp file from a writer at work, of another process: " .. how, function()
        local target = tmp .. "/busy.json"
        local done = tmp .. "/done"
        local writer = h.write(tmp .. "/writer.lua", string.format([[
          local fs = require "vmdr.fs"
          local failed = 0
          for i = 1, 3000 do
            local ok, err = fs.write(%q, string.rep("w", 4096) .. i)
            if not ok then failed = failed + 1; io.stderr:write(tostring(err), "\n") end
          end
          -- the modes come out the same either way
          assert(fs.write(%q, "x", { mode = 384 }))
          assert(fs.write(%q, tostring(failed) .. " " .. string.format("%%o", fs.stat(%q).mode)))
        ]], target, tmp .. "/m600", done, tmp .. "/m600"))
        assert(h.sh("VMDR_FS_TMPFILE=" .. knob .. " " .. h.q(h.vmdr_run) .. " " .. h.q(writer)
          .. " >/dev/null 2>" .. h.q(tmp .. "/werr") .. " </dev/null &") == 0)
        local t = require "vmdr.time"
        local deadline, rounds = t.monotonic() + 120, 0
        while not fs.exists(done) do
          assert(t.monotonic() < deadline, "the writer never finished: " .. (h.read(tmp .. "/werr") or ""))
          assert(fs.clear_tmp(target))
          rounds = rounds + 1
        end
        assert.equals("0 600", h.read(done), h.read(tmp .. "/werr"))
        assert.equals(string.rep("w", 4096) .. "3000", h.read(target))
        assert.same({}, temps(tmp))
        assert.is_true(rounds > 0)
      end)
    end
  end)

  describe("lock", function()
    it("excludes a second holder until closed, and closes idempotently", function()
      local p = tmp .. "/run.lock"
      local a = assert(fs.lock(p))
      assert.matches("vmdr.fs.Lock %(.*run%.lock%)", tostring(a))
      assert.equals(p, a:path())
      local b, err = fs.lock(p)
      assert.is_nil(b); assert.equals("busy", err.code)
      b, err = fs.lock(p, { timeout = 0.1 })
      assert.is_nil(b); assert.equals("timeout", err.code)
      assert.is_true(a:close())
      assert.is_true(a:close())
      assert.matches("closed", tostring(a))
      assert.has_error(function() a:path() end, "attempt to use a closed vmdr.fs.Lock")
      do
        local c <close> = assert(fs.lock(p))
      end
      assert.truthy(fs.lock(p)) -- the <close> released it
    end)

    it("is taken over from a holder that was killed", function()
      local p = tmp .. "/stale.lock"
      local pid = lock_holder(tmp, p)
      local v, err = fs.lock(p)
      assert.is_nil(v); assert.equals("busy", err.code)
      assert.equals(pid, h.read(p):match("%d+"))
      assert(h.sh("kill -9 " .. pid) == 0)
      -- the kernel drops the flock when the holder dies; wait for that, bounded
      local l, lerr = fs.lock(p, { timeout = 30 })
      assert.is_truthy(l, lerr and tostring(lerr))
      l:close()
    end)

    it("a wait for a lock ends with 'interrupted' on SIGINT", function()
      local s = h.write(tmp .. "/wait.lua", string.format([[
        local fs = require "vmdr.fs"
        local mine = assert(fs.lock(%q))
        io.stdout:write("ready\n"); io.stdout:flush()
        local l, err = fs.lock(%q, { timeout = 60 })
        io.stdout:write(tostring(l), " ", err and err.code or "", "\n")
        return l and 0 or 1
      ]], tmp .. "/w.lock", tmp .. "/w.lock"))
      local r = h.run_signalled({ s }, "INT", "ready")
      assert.equals(130, r.code)
      assert.matches("nil interrupted", r.stdout)
    end)
  end)
end)
