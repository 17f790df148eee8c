-- vmdr-run starts without mapping the heavy libraries (librados/librbd, libcurl,
-- libgit2): their modules are dlopen'ed by the first `require` (CMakeLists.txt
-- VMDR_LAZY_MODULES), which keeps the start-up under 5 ms (docs/bench/host.md).
local h = require "support.helper"


describe("vmdr-run lazy native modules", function()
  local tmp
  setup(function() tmp = h.tmpdir("lazy") end)

  it("maps none of the heavy libraries at start-up, and each on its module's require", function()
    local s = h.write(tmp .. "/maps.lua", [[
      local function mapped(lib)
        local f = assert(io.open("/proc/self/maps"))
        local m = f:read("a"); f:close()
        return m:find("/" .. lib, 1, true) ~= nil
      end
      local out = {}
      for _, lib in ipairs { "librados", "librbd", "libcurl", "libgit2" } do
        if mapped(lib) then out[#out + 1] = "start:" .. lib end
      end
      local heavy = { k8s = "libcurl", git = "libgit2", rbd = "librbd" }
      for mod, lib in pairs(heavy) do
        if package.preload["vmdr." .. mod] then
          local m = require("vmdr." .. mod)
          assert(type(m) == "table", "vmdr." .. mod .. " did not return its module table")
          assert(require("vmdr." .. mod) == m)
          out[#out + 1] = mod .. (mapped(lib) and ":loaded" or ":not-loaded")
        end
      end
      table.sort(out)
      io.write(table.concat(out, " "))
    ]])
    local r = h.run { s }
    assert.equals(0, r.code, r.stderr)
    assert.not_matches("start:", r.stdout)
    local want = {}
    for _, mod in ipairs { "git", "k8s", "rbd" } do
      if h.read(h.source_dir .. "/runtime/" .. mod .. ".c") then want[#want + 1] = mod .. ":loaded" end
    end
    assert.equals(table.concat(want, " "), r.stdout)
  end)
end)
