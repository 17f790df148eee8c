-- deactivate: power a group off again at the DR site (the reverse of activate).
--
--   vmdr-run deactivate -e vm_selector=app-tier=database [--dry-run]
--
-- Removes the power-on block activate added, or comments out an operator's own
-- active block for the selector; everything else in the control panel stays
-- byte for byte. One commit.
local ctx, args = ...
ctx.action = "deactivate"
local path = ctx.lua_dir .. "/workflows/activate.lua"
if ctx.site_dir then
    local f = io.open(ctx.site_dir .. "/workflows/activate.lua", "r")
    if f then f:close(); path = ctx.site_dir .. "/workflows/activate.lua" end
end
return assert(loadfile(path, "t"))(ctx, args)
