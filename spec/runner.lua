-- Runs busted inside vmdr-run, so specs load the real native modules:
--   vmdr-run spec/runner.lua -- [busted options] spec/some_spec.lua
-- The runner, not the host, adds the test-only paths: spec/ for support modules,
-- and Debian's Lua trees for busted and its C dependencies.
local _, args = ...
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$")
package.path = table.concat({ package.path, spec_dir .. "/?.lua", spec_dir .. "/?/init.lua",
  "/usr/share/lua/5.4/?.lua", "/usr/share/lua/5.4/?/init.lua" }, ";")
package.cpath = "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
arg = { [0] = "spec/runner.lua" }
for i, a in ipairs(args) do arg[i] = a end
require "busted.runner" { standalone = false, output = spec_dir .. "/support/output.lua" }
