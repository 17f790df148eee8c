--- vmdr.storage: the storage-driver interface the workflows use, and the loader.
---
--- A driver replicates the disks behind PersistentVolumes. Workflows never call
--- librbd or a site's tools directly; they call a driver made by
--- `storage.open(ctx, site)` (site = "source" or "dr"), which is one of:
---   ceph  vmdr.storage.ceph over vmdr.rbd (librbd), the default
---   exec  a site's own commands, as argv templates (never a shell)
---   none  no storage step (Git-only DR, tests of the Git side)
---   a table returned by the site hooks' `storage_driver(ctx, site)`
---
--- Every driver has these methods; `refs` is a list of image references from
--- `driver:image_of(pv)`, and every batch method returns one result per ref, in
--- order: `{ ref = ref, ok = true, already = bool, detail = "..." }` or
--- `{ ref = ref, ok = false, err = {code=, message=} }`.
---   driver:image_of(pv)            -> ref | false, reason (not ours) | nil, err (ours but broken)
---   driver:enable(refs)            mirroring on (idempotent)
---   driver:disable(refs)           mirroring off (never for an image primary on the other site)
---   driver:promote(refs, {force=}) make writable here; graceful first
---   driver:demote(refs)
---   driver:resync(refs)
---   driver:status(refs)            results carry .status = { primary=, state=, last_snapshot= }
---   driver:close()
local proc = require "vmdr.proc"

local M = {}

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }
local function mkerr(code, fmt, ...)
    return setmetatable({ code = code, message = string.format(fmt, ...) }, err_mt)
end
M.mkerr = mkerr

--- Whether a PV belongs to one of the configured CSI drivers (matched as suffixes,
--- so "openshift-storage.rbd.csi.ceph.com" and "rook-ceph.rbd.csi.ceph.com" both
--- match ".rbd.csi.ceph.com").
---@param pv table
---@param suffixes string[]
---@return boolean
function M.csi_driver_matches(pv, suffixes)
    local csi = pv.spec and pv.spec.csi
    if type(csi) ~= "table" or type(csi.driver) ~= "string" then return false end
    for _, sfx in ipairs(suffixes) do
        if csi.driver == sfx or (#csi.driver > #sfx and csi.driver:sub(-#sfx) == sfx) then
            return true
        end
    end
    return false
end

--- The generic image reference of a ceph-csi style PV: pool, radosNamespace and
--- imageName from spec.csi.volumeAttributes (DOMAIN.md §3.2).
---@return table|false|nil ref, table|string|nil why
function M.csi_image_ref(pv, suffixes)
    local name = pv.metadata and pv.metadata.name or "?"
    if not M.csi_driver_matches(pv, suffixes) then
        if pv.spec and pv.spec.rbd then
            return nil, mkerr("unsupported", "PV %s is an in-tree rbd volume (spec.rbd): migrate it "
                .. "to ceph-csi before protecting it with vmdr", name)
        end
        return false, "not a volume of a configured CSI driver"
    end
    local attrs = pv.spec.csi.volumeAttributes or {}
    local handle = pv.spec.csi.volumeHandle
    local pool, image = attrs.pool, attrs.imageName
    if (image == nil or image == "") and type(handle) == "string" then
        if attrs.staticVolume == "true" then
            image = handle -- a static PV names its image directly
        else
            -- ceph-csi before 3.1 had no imageName: csi-vol-<uuid>, the uuid being the
            -- handle's last 36 characters (0001-<len>-<clusterID>-<poolID>-<uuid>)
            local uuid = handle:match("%-(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)$")
            if uuid then image = "csi-vol-" .. uuid end
        end
    end
    if type(pool) ~= "string" or pool == "" or type(image) ~= "string" or image == "" then
        return nil, mkerr("invalid", "PV %s has no pool and image in spec.csi (volumeAttributes "
            .. "pool/imageName or a ceph-csi volumeHandle)", name)
    end
    local ns = attrs.radosNamespace
    if ns == "" then ns = nil end
    return {
        pv = name,
        pool = pool,
        namespace = ns,
        image = image,
        id = pool .. "/" .. (ns and (ns .. "/") or "") .. image,
        volume_handle = pv.spec.csi.volumeHandle,
    }
end

-- ---------------------------------------------------------------- none ----
local none = {}
none.__index = none

function none:image_of(pv) return false, "storage driver 'none'" end
local function none_batch(_, refs)
    local out = {}
    for i, r in ipairs(refs) do out[i] = { ref = r, ok = true, already = true, detail = "storage driver 'none'" } end
    return out
end
none.enable, none.disable, none.promote, none.demote, none.resync, none.status =
    none_batch, none_batch, none_batch, none_batch, none_batch, none_batch
function none:close() return true end

-- ---------------------------------------------------------------- exec ----
-- storage.exec.<op>: an argv list whose elements may hold {pool} {namespace}
-- {image} {pv} {id} {volume_handle} {site} {force}; each image runs once.
-- Exit 0 = ok; the status op may print JSON {primary=, state=, last_snapshot=}.
local exec = {}
exec.__index = exec

local function expand(argv, ref, extra)
    local out = {}
    for i, a in ipairs(argv) do
        out[i] = (a:gsub("{([%w_]+)}", function(k)
            local v = extra[k]
            if v == nil then v = ref[k] end
            return v ~= nil and tostring(v) or ""
        end))
    end
    return out
end

function exec:image_of(pv)
    return M.csi_image_ref(pv, self.suffixes)
end

function exec:run(op, refs, opts)
    local argv = self.commands[op]
    local out = {}
    for i, ref in ipairs(refs) do
        if type(argv) ~= "table" or #argv == 0 then
            out[i] = { ref = ref, ok = false, err = mkerr("config", "storage.exec.%s is not configured", op) }
        else
            local r, err = proc.run(expand(argv, ref, { site = self.site, force = opts and opts.force and "true" or "false" }),
                { timeout = self.timeout })
            if not r then
                out[i] = { ref = ref, ok = false, err = err }
            elseif r.status ~= 0 then
                local msg = (r.stderr ~= "" and r.stderr or r.stdout):gsub("%s+$", "")
                out[i] = { ref = ref, ok = false, err = mkerr("failed", "%s %s exited %s: %s", op, ref.id,
                    tostring(r.status or r.signal), msg) }
            else
                out[i] = { ref = ref, ok = true, detail = (r.stdout:gsub("%s+$", "")) }
                if op == "status" then
                    local okj, json = pcall(require, "vmdr.json")
                    local st = okj and json.decode(r.stdout)
                    if type(st) == "table" then out[i].status = st end
                end
            end
        end
    end
    return out
end
for _, op in ipairs { "enable", "disable", "promote", "demote", "resync", "status" } do
    exec[op] = function(self, refs, opts) return self:run(op, refs, opts) end
end
function exec:close() return true end

-- -------------------------------------------------------------- loader ----

--- Opens the storage driver the configuration names, for one site.
---@param ctx table
---@param site "source"|"dr"
---@return table|nil driver, table|nil err
function M.open(ctx, site)
    local cfg = ctx.config.storage or {}
    local suffixes = cfg.csi_drivers or { ".rbd.csi.ceph.com" }
    if ctx.hooks and type(ctx.hooks.storage_driver) == "function" then
        local d, err = ctx.hooks.storage_driver(ctx, site)
        if d ~= nil or err ~= nil then return d, err end
    end
    local name = cfg.driver or "ceph"
    if name == "none" then
        return setmetatable({ site = site }, none)
    elseif name == "exec" then
        local commands = cfg.exec or {}
        return setmetatable({ site = site, commands = commands, suffixes = suffixes,
            timeout = tonumber(commands.timeout) or 300 }, exec)
    elseif name == "ceph" then
        local ceph = require "vmdr.storage.ceph"
        return ceph.open(ctx, site)
    end
    return nil, mkerr("config", "storage.driver must be ceph, exec or none (got %q)", tostring(name))
end

return M
