--- vmdr.storage: the storage-driver interface the workflows use, and the loader.
---
--- A driver replicates the disks behind PersistentVolumes between the source and
--- the DR site. Workflows never call librbd or a site's tools themselves; they
--- call the driver `storage.open(ctx)` returns, chosen by `storage.driver`:
---   ceph  vmdr.storage.ceph over vmdr.rbd (librbd), the default
---   exec  a site's own commands, as argv templates (never a shell)
---   none  no storage step (Git-only DR; tests of the Git side)
--- or the table a site's hooks return from `storage_driver(ctx)`.
---
--- Every driver has these methods (vmdr.storage.ceph is the reference):
---   d:volume(pv)                 -> vol {pool=, namespace=, image=, spec=, pv=} | nil, err
---                                   (err.code "not_rbd": not a volume this driver protects)
---   d:enable(vols, {site=})      mirroring on (idempotent), default site "source"
---   d:disable(vols, {site=})     never for an image primary on the other site ("refused")
---   d:promote(vols, {site=, force=})  graceful, then forced when the peer is unreachable
---   d:demote(vols, {site=})      entries carry snap_id (the demotion snapshot)
---   d:resync(vols, {site=})
---   d:snapshot(vols, {site=})    entries carry snap_id
---   d:wait_synced(vols, snap_ids, {site=, timeout=})
---   d:status(vols)               entries: source=, dr=, primary_site=, last_sync_age=
---   d:close()
--- Batch methods return a report: one entry per vol, in order,
---   { image = vol.spec, pv =, site =, result = "ok"|"already"|"failed"|"refused"|"dry_run",
---     err = {code=, message=}, forced =, snap_id = }
--- and report.summary = { ok=, already=, failed=, refused=, dry_run= }. A driver honours
--- ctx.dry_run itself (result "dry_run", nothing changed).
local proc = require "vmdr.proc"

local M = {}

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }
local function mkerr(code, fmt, ...)
    return setmetatable({ code = code, message = string.format(fmt, ...) }, err_mt)
end

local function summarize(report)
    local s = { ok = 0, already = 0, failed = 0, refused = 0, dry_run = 0 }
    for _, e in ipairs(report) do s[e.result] = (s[e.result] or 0) + 1 end
    report.summary = s
    return report
end
M.summarize = summarize

-- ---------------------------------------------------------------- none ----
local none = {}
none.__index = none

function none:volume(pv)
    return nil, mkerr("not_rbd", "storage driver 'none' protects no volume (PV %s)",
        tostring(pv.metadata and pv.metadata.name))
end
local function none_batch() return summarize({}) end
for _, op in ipairs { "enable", "disable", "promote", "demote", "resync", "snapshot", "wait_synced", "status" } do
    none[op] = none_batch
end
function none:close() return true end

-- ---------------------------------------------------------------- exec ----
-- storage.exec.<op>: an argv list whose elements may hold {pool} {namespace}
-- {image} {spec} {pv} {site} {force}; it runs once per image, exit 0 = ok, and
-- exit 3 = "already" (nothing to do). The ceph driver's PV mapping is reused.
local exec = {}
exec.__index = exec

local function expand(argv, vol, extra)
    local out = {}
    for i, a in ipairs(argv) do
        out[i] = (a:gsub("{([%w_]+)}", function(k)
            local v = extra[k]
            if v == nil then v = vol[k] end
            return v ~= nil and tostring(v) or ""
        end))
    end
    return out
end

function exec:volume(pv) return self.mapper:volume(pv) end

function exec:run(op, vols, opts, default_site)
    opts = opts or {}
    local site = opts.site or default_site
    local argv = self.commands[op]
    local report = {}
    for i, vol in ipairs(vols) do
        local e = { image = vol.spec, pv = vol.pv, site = site }
        report[i] = e
        if type(argv) ~= "table" or #argv == 0 then
            e.result, e.err = "failed", mkerr("config", "storage.exec.%s is not configured", op)
        else
            local cmd = expand(argv, vol, { site = site, force = opts.force and "true" or "false" })
            if self.dry_run then
                e.result = "dry_run"
                self.log.info("dry run: would run", { argv = table.concat(cmd, " ") })
            else
                local r, err = proc.run(cmd, { timeout = self.timeout })
                if not r then
                    e.result, e.err = "failed", err
                elseif r.status == 0 then
                    e.result = "ok"
                elseif r.status == 3 then
                    e.result = "already"
                else
                    local msg = (r.stderr ~= "" and r.stderr or r.stdout):gsub("%s+$", "")
                    e.result, e.err = "failed", mkerr("failed", "%s %s exited %s: %s", op, vol.spec,
                        tostring(r.status or ("signal " .. tostring(r.signal))), msg)
                end
            end
        end
    end
    return summarize(report)
end
local defaults = { enable = "source", disable = "source", promote = "dr", demote = "source",
    resync = "source", snapshot = "source", status = "dr" }
for op, site in pairs(defaults) do
    exec[op] = function(self, vols, opts) return self:run(op, vols, opts, site) end
end
function exec:wait_synced(vols, _, opts) return self:run("wait_synced", vols, opts, "dr") end
function exec:close() return true end

-- -------------------------------------------------------------- loader ----

--- Opens the storage driver the configuration names.
---@param ctx table
---@return table|nil driver, table|nil err
function M.open(ctx)
    local cfg = ctx.config.storage or {}
    if ctx.hooks and type(ctx.hooks.storage_driver) == "function" then
        local d, err = ctx.hooks.storage_driver(ctx)
        if d ~= nil or err ~= nil then return d, err end
    end
    local name = cfg.driver or "ceph"
    if name == "none" then
        return setmetatable({}, none)
    elseif name == "exec" then
        local ceph = require "vmdr.storage.ceph"
        local mapper, err = ceph.new(ctx) -- only its PV -> image mapping is used
        if not mapper then return nil, err end
        local commands = cfg.exec or {}
        return setmetatable({ commands = commands, mapper = mapper, dry_run = ctx.dry_run,
            log = ctx.log, timeout = tonumber(commands.timeout) or 300 }, exec)
    elseif name == "ceph" then
        return require("vmdr.storage.ceph").new(ctx)
    end
    return nil, mkerr("config", "storage.driver must be ceph, exec or none (got %q)", tostring(name))
end

return M
