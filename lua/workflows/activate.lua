-- activate: power a failed-over group on at the DR site, through Git.
--
--   vmdr-run activate -e vm_selector=app-tier=database [--dry-run]
--
-- Adds (or uncomments) the power-on block for the selector in the one hand-edited
-- file, overlays/<cluster>/components/failover-control/kustomization.yaml; the
-- operator's comments and other blocks stay byte for byte. One commit; Argo CD
-- then sets runStrategy: Always on the group's VMs. Run it after `failover`.
-- `vmdr-run deactivate` (the same script) takes the block out again.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local kustomize = require "vmdr.kustomize"
local repo = require "vmdr.repo"
local selector = require "vmdr.selector"

local action = ctx.action or "activate"
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir" }, action)
dr.check_git(ctx)
local lay = dr.layout(ctx)
local sel, sel_text = dr.vm_selector(ctx)
if not sel then config.error("%s needs a vm_selector (all=true is not a group)", action) end
local canon = selector.canonical(sel)

local changed
local result, err = repo.transaction(ctx, function(tx)
    local path = lay:component_kustomization()
    local text = tx:read(path)
    if not text then
        return nil, dr.err("not_found", "%s does not exist: run reconcile first to create the layout", path)
    end
    local new, did = kustomize[action](text, sel)
    if not new then return nil, dr.err(did.code or "invalid", "%s: %s", path, did.message or tostring(did)) end
    changed = did
    if did then tx:write(path, new) end
    tx:set_message(string.format("vmdr %s: %s", action, canon))
    return true
end)
if not result then return nil, action .. " " .. sel_text .. ": " .. tostring(err) end
if not changed then
    io.stdout:write(string.format("%s: the group %s is already %s; nothing changed\n", action, canon,
        action == "activate" and "active" or "inactive"))
elseif ctx.dry_run then
    io.stdout:write(string.format("%s %s: dry run, nothing committed\n", action, canon))
else
    io.stdout:write(string.format("%s %s: committed %s; Argo CD will set runStrategy %s on the group\n",
        action, canon, tostring(result.commit), action == "activate" and "Always" or "Halted"))
end
return true
