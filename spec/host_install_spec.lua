-- vmdr-run installed with `cmake --install` into a temp prefix: bin/ and share/vmdr/,
-- found without any environment variable, from any directory.
local h = require "support.helper"
local fs = require "vmdr.fs"
local proc = require "vmdr.proc"

describe("cmake --install", function()
  local prefix, elsewhere

  setup(function()
    h.need("cmake")
    local tmp = h.tmpdir("install")
    prefix = tmp .. "/prefix"
    elsewhere = tmp .. "/elsewhere"
    fs.mkdir(elsewhere)
    local r = assert(proc.run({ "cmake", "--install", h.build_dir, "--prefix", prefix },
      { timeout = 300 }))
    assert.equals(0, r.status, r.stdout .. r.stderr)
    -- a workflow as if it had shipped in lua/workflows/
    assert(fs.mkdir(prefix .. "/share/vmdr/lua/workflows"))
    assert(fs.write(prefix .. "/share/vmdr/lua/workflows/spec-hello.lua", [[
      local ctx, args = ...
      local where = package.searchpath("vmdr.config", package.path)
      io.write(ctx.vars.greeting, " ", args[1], "\n", where, "\n", package.path, "\n")
    ]]))
  end)

  it("puts vmdr-run in bin/ and the Lua tree in share/vmdr/", function()
    assert.equals("file", fs.stat(prefix .. "/bin/vmdr-run").type)
    assert.equals("file", fs.stat(prefix .. "/share/vmdr/lua/lib/vmdr/boot.lua").type)
    assert.equals("file", fs.stat(prefix .. "/share/vmdr/lua/lib/vmdr/config.lua").type)
  end)

  it("runs a workflow by name from another directory with an empty environment", function()
    local lua_dir = fs.realpath(prefix .. "/share/vmdr/lua")
    local r = assert(proc.run({ prefix .. "/bin/vmdr-run", "spec-hello", "-e", "greeting=hi",
      "--", "there" }, { cwd = elsewhere, env_clear = true, env = { PATH = "/usr/bin:/bin" } }))
    assert.equals(0, r.status, r.stderr)
    local line1, where, path = r.stdout:match("^(.-)\n(.-)\n(.-)\n$")
    assert.equals("hi there", line1)
    assert.equals(lua_dir .. "/lib/vmdr/config.lua", where)
    -- nothing from the source tree, nothing relative
    for entry in path:gmatch("[^;]+") do
      assert.equals(lua_dir .. "/lib/", entry:sub(1, #lua_dir + 5))
    end
    -- "workflows/NAME.lua" names the same installed workflow
    r = assert(proc.run({ prefix .. "/bin/vmdr-run", "workflows/spec-hello.lua", "-e", "greeting=yo",
      "--", "x" }, { cwd = elsewhere, env_clear = true }))
    assert.equals(0, r.status, r.stderr)
    assert.matches("^yo x\n", r.stdout)
  end)

  it("loads the lazy native modules from the installed lib/vmdr/", function()
    local s = h.write(elsewhere .. "/lazy.lua", [[
      local loaded = {}
      for _, m in ipairs { "git", "k8s", "rbd" } do
        if package.preload["vmdr." .. m] then
          assert(type(require("vmdr." .. m)) == "table")
          loaded[#loaded + 1] = m
        end
      end
      local f = assert(io.open("/proc/self/maps")); local maps = f:read("a"); f:close()
      local paths, seen = {}, {}
      for path in maps:gmatch("(/%S+/vmdr/[%w_]+%.so)") do
        if not seen[path] then seen[path] = true; paths[#paths + 1] = path end
      end
      table.sort(paths)
      io.write(table.concat(loaded, " "), "\n", table.concat(paths, " "), "\n")
    ]])
    local r = assert(proc.run({ prefix .. "/bin/vmdr-run", s }, { cwd = elsewhere, env_clear = true }))
    assert.equals(0, r.status, r.stderr)
    local mods = {}
    for _, m in ipairs { "git", "k8s", "rbd" } do
      if fs.exists(h.source_dir .. "/runtime/" .. m .. ".c") then mods[#mods + 1] = m end
    end
    local loaded, paths = r.stdout:match("^(.-)\n(.-)\n$")
    assert.equals(table.concat(mods, " "), loaded)
    -- each one mapped from the prefix's <libdir>/vmdr/, none from the build tree
    local real = fs.realpath(prefix) .. "/"
    local got = {}
    for path in paths:gmatch("%S+") do
      assert.equals(real, path:sub(1, #real))
      got[#got + 1] = path:match("/vmdr/([%w_]+)%.so$")
    end
    assert.same(mods, got)
  end)

  it("lists the installed workflows when a name is unknown", function()
    local r = assert(proc.run({ prefix .. "/bin/vmdr-run", "no-such" }, { cwd = elsewhere }))
    assert.equals(2, r.status)
    assert.matches("no such script or workflow 'no%-such'", r.stderr)
    assert.matches("spec%-hello", r.stderr)
  end)
end)
