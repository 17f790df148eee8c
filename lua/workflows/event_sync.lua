-- event_sync: bring one VM's DR copy up to date after a change event.
--
--   vmdr-run event_sync -e namespace=NS -e name=NAME [--dry-run]
--
-- The event only says which VM; its content is read fresh from the API
-- (vmdr.sync.export_vms, which the monitor runs for a whole batch).
-- * Still there and DR-enabled: export it as reconcile would (its claims listed
--   in its namespace, its volumes read by name), mirroring enabled, one commit.
-- * Gone (404), or no longer carrying the DR label: removed from the repository
--   as gc would, its mirroring disabled. The GET is the confirmation: a
--   label-selected watch reports "unlabelled" as DELETED too.
-- Any other API error stops the run without touching anything.
local ctx = ...
local config = require "vmdr.config"
local dr = require "vmdr.dr"
local layout = require "vmdr.layout"
local sync = require "vmdr.sync"

local log = ctx.log
config.require_keys(ctx.config, { "cluster_name", "git.url", "git.workdir", "namespace", "name" },
    "event_sync")
dr.check_git(ctx)
local ns, name = ctx.config.namespace, ctx.config.name
if not layout.is_dns_label(ns) or not layout.is_dns_subdomain(name) then
    config.error("namespace/name %q/%q are not Kubernetes names", tostring(ns), tostring(name))
end
dr.hooks(ctx)
local src, cerr = dr.client(ctx, "source")
if not src then return nil, "source cluster: " .. tostring(cerr) end
local key = ns .. "/" .. name

local result, err = sync.export_vms(ctx, src, { key }, {
    message = function(s)
        if #s.removed > 0 then return "vmdr event_sync: remove " .. key end
        return "vmdr event_sync: " .. key
    end,
})
dr.close(ctx)
if not result then return nil, key .. ": " .. tostring(err) end
if #result.failed > 0 then return nil, string.format("VM %s not synced: %s", key, result.failed[1].err) end
if #result.removed > 0 then
    log.info("removed from the repository", { vm = key, commit = result.commit or nil })
elseif #result.written > 0 then
    log.info("VM synced", { vm = key, commit = result.commit or nil })
else
    log.info("VM unchanged", { vm = key })
end
return true
