--- vmdr.storage.ceph: the `ceph` storage driver: RBD snapshot mirroring of the images behind
--- PersistentVolumes, across a source and a DR Ceph cluster (DOMAIN.md 3.2, 3.3).
---
---   local ceph = require "vmdr.storage.ceph"
---   local d = assert(ceph.new(ctx))         -- ctx = { config=, log=, dry_run= }
---   local vol = assert(d:volume(pv))        -- PV -> { pool=, namespace=, image=, spec= }
---   local report = d:promote({ vol, ... })  -- on the DR site: graceful, then force if needed
---   d:close()
---
--- Config (ctx.config.storage): ceph.source / ceph.dr = { conf=, keyring=, user=, timeout= },
--- ceph.mirror_mode ("snapshot"), ceph.parallel (16), ceph.timeout (30 s),
--- ceph.peer_timeout (5 s: how long the peer gets to answer before it counts as unreachable),
--- ceph.promote_retry (5 s: a promote is retried on read_only, a graceful one on busy too),
--- ceph.reconnect_after (30 s: a failed connection is not tried again for that long; operations
--- fail at once with its error meanwhile, so a long-running monitor recovers from an outage),
--- csi_drivers
--- ({".rbd.csi.ceph.com"}, matched as suffixes; the bare name without the dot matches too).
---
--- Every operation takes a list of volumes and returns a report, one entry per volume in
--- order: { image = "pool/ns/name", pv = <name>, site = "source"|"dr",
---   result = "ok"|"already"|"failed"|"refused"|"dry_run", err = {code=, message=}, ... }
--- plus report.summary = { ok=, already=, failed=, refused=, dry_run= }. A connection that
--- cannot be made fails every entry with that error (nothing is skipped silently).
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"

local M = {}

M.DEFAULT_CSI_DRIVERS = { ".rbd.csi.ceph.com" }

local err_mt = {
  __tostring = function(e) return tostring(e.code) .. ": " .. tostring(e.message) end,
}

local function mkerr(code, fmt, ...)
  return setmetatable({ code = code, message = string.format(fmt, ...), status = 0 }, err_mt)
end

local null_log = setmetatable({}, { __index = function() return function() end end })

local Driver = {}
Driver.__index = Driver

--- Creates the driver. Connections are made on first use.
---@param ctx table { config = <whole config>, log = <vmdr.log>, dry_run = boolean }
---@return table|nil driver
---@return table|nil err
function M.new(ctx)
  if type(ctx) ~= "table" then error("vmdr.storage.ceph.new: ctx must be a table", 2) end
  local storage = (ctx.config or {}).storage or {}
  local cfg = storage.ceph or {}
  if type(cfg) ~= "table" then return nil, mkerr("config", "storage.ceph must be a mapping") end
  local drivers = storage.csi_drivers or M.DEFAULT_CSI_DRIVERS
  if type(drivers) == "string" then drivers = { drivers } end
  if type(drivers) ~= "table" then
    return nil, mkerr("config", "storage.csi_drivers must be a list of driver-name suffixes")
  end
  local mode = cfg.mirror_mode or "snapshot"
  if mode ~= "snapshot" and mode ~= "journal" then
    return nil, mkerr("config", "storage.ceph.mirror_mode must be snapshot or journal, not '%s'",
      tostring(mode))
  end
  return setmetatable({
    ctx = ctx,
    log = ctx.log or null_log,
    dry_run = ctx.dry_run and true or false,
    cfg = cfg,
    csi_drivers = drivers,
    mode = mode,
    parallel = tonumber(cfg.parallel) or 16,
    timeout = tonumber(cfg.timeout) or 30,
    peer_timeout = tonumber(cfg.peer_timeout) or 5,
    promote_retry = tonumber(cfg.promote_retry) or 5,
    reconnect_after = tonumber(cfg.reconnect_after) or 30,
    clusters = {},
    conn_err = {},
    conn_failed_at = {},
  }, Driver)
end

local function other(site) return site == "source" and "dr" or "source" end

--- The cluster handle of a site ("source" or "dr"), connected on first use.
---@param site string
---@param timeout number|nil overrides storage.ceph.timeout for this connection attempt
---@return userdata|nil cluster
---@return table|nil err
function Driver:cluster(site, timeout)
  if site ~= "source" and site ~= "dr" then
    error("site must be 'source' or 'dr', got " .. tostring(site), 2)
  end
  if self.clusters[site] then return self.clusters[site] end
  -- a failure is remembered so that one run does not wait out the timeout per operation, but
  -- only for a while: `vmdr-run monitor` keeps its driver for days
  if self.conn_err[site] and time.monotonic() - self.conn_failed_at[site] < self.reconnect_after
  then
    return nil, self.conn_err[site]
  end
  local s = self.cfg[site]
  if type(s) ~= "table" then
    return nil, mkerr("config", "storage.ceph.%s is not configured ({conf=, keyring=, user=})",
      site)
  end
  local c, err = rbd.connect {
    conf = s.conf, keyring = s.keyring, user = s.user, cluster = s.cluster,
    timeout = tonumber(s.timeout) or timeout or self.timeout,
  }
  if not c then
    self.log.warn("cannot connect to the " .. site .. " Ceph cluster", { err = tostring(err) })
    self.conn_err[site] = err
    self.conn_failed_at[site] = time.monotonic()
    return nil, err
  end
  self.conn_err[site] = nil
  self.clusters[site] = c
  return c
end

--- Closes both connections.
function Driver:close()
  for site, c in pairs(self.clusters) do
    c:close()
    self.clusters[site] = nil
  end
  self.conn_err = {}
  self.conn_failed_at = {}
  return true
end
Driver.__close = Driver.close
Driver.__gc = Driver.close

local function matches_driver(name, list)
  if type(name) ~= "string" then return false end
  for _, suffix in ipairs(list) do
    if name == suffix or name:sub(-#suffix) == suffix then return true end
    -- ".rbd.csi.ceph.com" also names plain ceph-csi's own "rbd.csi.ceph.com"
    if suffix:sub(1, 1) == "." and name == suffix:sub(2) then return true end
  end
  return false
end

local function nonempty(s)
  if type(s) == "string" and s ~= "" then return s end
  return nil
end

-- ceph-csi volume handle: <ver 4 hex>-<len 4 hex>-<clusterID>-<poolID 16 hex>-<uuid 36>
local function handle_uuid(handle)
  if type(handle) ~= "string" then return nil end
  local h8, h4, h12 = ("%x"):rep(8), ("%x"):rep(4), ("%x"):rep(12)
  local pat = "%-(" .. h8 .. "%-" .. h4 .. "%-" .. h4 .. "%-" .. h4 .. "%-" .. h12 .. ")$"
  local uuid = handle:match(pat)
  if uuid and handle:match("^%x%x%x%x%-%x%x%x%x%-") then return uuid end
  return nil
end

local function mkvol(pool, ns, image, pvname, how)
  local spec = ns and (pool .. "/" .. ns .. "/" .. image) or (pool .. "/" .. image)
  return { pool = pool, namespace = ns, image = image, spec = spec, pv = pvname, source = how }
end

--- The RBD image behind a PV: ceph-csi (driver matched by suffix; spec.csi.volumeAttributes
--- pool / radosNamespace / imageName, or a static PV whose volumeHandle is the image name) or
--- in-tree spec.rbd. Accepts a whole PV or its spec.
---@param pv table decoded PersistentVolume (or its spec)
---@return table|nil vol { pool=, namespace=, image=, spec=, pv=, source= }
---@return table|nil err code "not_rbd" (another kind of volume) or "invalid"
function Driver:volume(pv)
  if type(pv) ~= "table" then error("volume: pv must be a decoded PersistentVolume", 2) end
  local spec = pv.spec or pv
  local name = pv.metadata and pv.metadata.name or "(unnamed PV)"
  local csi = spec.csi
  if type(csi) == "table" then
    if not matches_driver(csi.driver, self.csi_drivers) then
      return nil, mkerr("not_rbd", "PV %s uses CSI driver '%s', not a Ceph RBD driver (%s)", name,
        tostring(csi.driver), table.concat(self.csi_drivers, ", "))
    end
    local attrs = type(csi.volumeAttributes) == "table" and csi.volumeAttributes or {}
    local pool = nonempty(attrs.pool)
    if not pool then
      return nil, mkerr("invalid", "PV %s: spec.csi.volumeAttributes has no pool", name)
    end
    local ns = nonempty(attrs.radosNamespace)
    local image = nonempty(attrs.imageName)
    if image then return mkvol(pool, ns, image, name, "csi") end
    local handle = nonempty(csi.volumeHandle)
    if not handle then
      return nil, mkerr("invalid", "PV %s: neither volumeAttributes.imageName nor volumeHandle",
        name)
    end
    local uuid = handle_uuid(handle)
    if uuid and attrs.staticVolume ~= "true" then
      -- a dynamically provisioned volume that lost imageName: ceph-csi's default naming
      return mkvol(pool, ns, "csi-vol-" .. uuid, name, "csi-handle")
    end
    -- a static PV: ceph-csi takes the volumeHandle as the image name
    if handle:find("/", 1, true) then
      return nil, mkerr("invalid", "PV %s: static volumeHandle '%s' is not an image name", name,
        handle)
    end
    return mkvol(pool, ns, handle, name, "csi-static")
  end
  local intree = spec.rbd
  if type(intree) == "table" then
    local image = nonempty(intree.image)
    if not image then
      return nil, mkerr("invalid", "PV %s: in-tree spec.rbd has no image", name)
    end
    return mkvol(nonempty(intree.pool) or "rbd", nil, image, name, "in-tree")
  end
  return nil, mkerr("not_rbd", "PV %s is not a Ceph RBD volume (no spec.csi, no spec.rbd)", name)
end

local function entry(vol, site)
  return { image = vol.spec, pv = vol.pv, site = site }
end

-- the report summary every driver adds (lua/lib/vmdr/storage/init.lua)
local summarize = require("vmdr.storage").summarize

local function check_vols(vols)
  if type(vols) ~= "table" then error("expected a list of volumes", 3) end
  for i, v in ipairs(vols) do
    if type(v) ~= "table" or type(v.pool) ~= "string" or type(v.image) ~= "string" then
      error("volume " .. i .. " is not a volume from driver:volume()", 3)
    end
  end
end

local function specs_of(vols)
  local list = {}
  for i, v in ipairs(vols) do
    list[i] = { pool = v.pool, namespace = v.namespace, name = v.image }
  end
  return list
end

-- every entry failed with the connection's error
local function all_failed(vols, site, err)
  local report = {}
  for i, v in ipairs(vols) do
    local e = entry(v, site)
    e.result, e.err = "failed", err
    report[i] = e
  end
  return summarize(report)
end

local function dry(self, vols, site, action)
  local report = {}
  for i, v in ipairs(vols) do
    local e = entry(v, site)
    e.result, e.action = "dry_run", action
    report[i] = e
    self.log.info("dry run: would " .. action, { image = v.spec, site = site })
  end
  return summarize(report)
end

-- runs one batch op on a site and turns its results into report entries
function Driver:_batch(op, vols, site, opts)
  local c, err = self:cluster(site)
  if not c then return all_failed(vols, site, err) end
  opts = opts or {}
  opts.parallel = opts.parallel or self.parallel
  local results, sum = c:batch(op, specs_of(vols), opts)
  local report = {}
  for i, r in ipairs(results) do
    local e = entry(vols[i], site)
    e.result, e.err, e.seconds = r.result, r.err, r.seconds
    e.snap_id, e.status, e.flattened = r.snap_id, r.status, r.flattened
    report[i] = e
  end
  self.log.debug(op .. " batch", { site = site, ok = sum.ok, already = sum.already,
    failed = sum.failed, seconds = string.format("%.3f", sum.seconds) })
  return summarize(report)
end

--- Enables mirroring (storage.ceph.mirror_mode) on the source site; a clone is flattened
--- first. Idempotent: an enabled image is "already".
---@param vols table list of volumes
---@param opts table|nil { site = "source" }
---@return table report
function Driver:enable(vols, opts)
  check_vols(vols)
  local site = opts and opts.site or "source"
  if self.dry_run then return dry(self, vols, site, "enable " .. self.mode .. " mirroring") end
  return self:_batch("enable", vols, site, { mode = self.mode, flatten = true })
end

--- Disables mirroring on `site` (default source), never for an image that is primary on the
--- other site: those are "refused", and so is everything when the other site cannot be asked.
---@param vols table
---@param opts table|nil { site = "source", force = false (librbd's force, for non-primary copies) }
---@return table report
function Driver:disable(vols, opts)
  check_vols(vols)
  opts = opts or {}
  local site = opts.site or "source"
  local peer, perr = self:cluster(other(site))
  local report = {}
  local allowed, idx = {}, {}
  local peer_status = peer and select(1, peer:batch("status", specs_of(vols),
    { parallel = self.parallel })) or nil
  for i, v in ipairs(vols) do
    local e = entry(v, site)
    local ps = peer_status and peer_status[i]
    if not peer then
      e.result = "refused"
      e.err = mkerr("unreachable", "cannot check %s on the %s site (%s): not disabling", v.spec,
        other(site), tostring(perr))
    elseif ps.result ~= "failed" and ps.status and ps.status.state ~= "disabled"
        and ps.status.primary then
      e.result = "refused"
      e.err = mkerr("primary_elsewhere", "%s is primary on the %s site: not disabling", v.spec,
        other(site))
    elseif ps.result == "failed" and ps.err.code ~= "not_found" then
      e.result = "refused"
      e.err = mkerr(ps.err.code, "cannot check %s on the %s site (%s): not disabling", v.spec,
        other(site), ps.err.message)
    else
      allowed[#allowed + 1] = v
      idx[#allowed] = i
    end
    report[i] = e
  end
  if #allowed > 0 then
    local sub = self.dry_run and dry(self, allowed, site, "disable mirroring")
      or self:_batch("disable", allowed, site, { force = opts.force and true or false })
    for k, e in ipairs(sub) do report[idx[k]] = e end
  end
  for _, e in ipairs(report) do
    if e.result == "refused" then self.log.warn("not disabling mirroring", { image = e.image,
      reason = tostring(e.err) }) end
  end
  return summarize(report)
end

--- Promotes on `site` (default dr): graceful first (retried briefly on busy/read_only), then
--- forced for the images still refused when asked (opts.force) or when the other site cannot be
--- reached. A forced entry has forced = true (split-brain until the old primary is demoted and
--- resynced).
---@param vols table
---@param opts table|nil { site = "dr", force = false, no_force = false (never force, even
---   when the other site is unreachable) }
---@return table report
function Driver:promote(vols, opts)
  check_vols(vols)
  opts = opts or {}
  local site = opts.site or "dr"
  if self.dry_run then return dry(self, vols, site, "promote (graceful, then force if needed)") end
  -- graceful first; when force is asked there is nothing to wait for: one try, no retries
  -- (the retries wait out EBUSY/EROFS of an orderly hand-over, seconds per image)
  local report = self:_batch("promote", vols, site, { retry = opts.force and 0 or self.promote_retry })
  local again, idx = {}, {}
  for i, e in ipairs(report) do
    if e.result == "failed" and e.err and e.err.code == "busy" then
      again[#again + 1] = vols[i]
      idx[#again] = i
    end
  end
  if #again == 0 then return report end
  local force, why = opts.force, "asked to"
  -- opts.no_force: a planned move (relocate, failback) must never split the brain
  if not force and not opts.no_force then
    local _, perr = self:cluster(other(site), self.peer_timeout)
    if perr then
      force, why = true, "the " .. other(site) .. " site is unreachable (" .. perr.code .. ")"
    end
  end
  if not force then
    for _, i in ipairs(idx) do
      local e = report[i]
      e.err = mkerr("busy", "%s is still primary on the %s site (reachable): demote it there "
        .. "first, or promote with force", e.image, other(site))
    end
    return summarize(report)
  end
  self.log.warn("forcing promote", { images = #again, site = site, reason = why })
  local forced = self:_batch("promote", again, site, { force = true, retry = self.promote_retry })
  for k, e in ipairs(forced) do
    e.forced = true
    report[idx[k]] = e
  end
  return summarize(report)
end

--- Demotes on `site` (default source); entries carry the demotion snapshot's id (snap_id),
--- which the peer's wait_synced takes before a graceful promote there.
---@param vols table
---@param opts table|nil { site = "source" }
---@return table report
function Driver:demote(vols, opts)
  check_vols(vols)
  local site = opts and opts.site or "source"
  if self.dry_run then return dry(self, vols, site, "demote") end
  return self:_batch("demote", vols, site)
end

--- Flags the (demoted) copies on `site` (default source) for resync from the other site.
---@param vols table
---@param opts table|nil { site = "source" }
---@return table report
function Driver:resync(vols, opts)
  check_vols(vols)
  local site = opts and opts.site or "source"
  if self.dry_run then return dry(self, vols, site, "resync from the peer") end
  return self:_batch("resync", vols, site)
end

--- Waits until every volume's copy on `site` holds the snapshot ids given per volume (from
--- demote or snapshot reports). Returns a report (result "ok" or "failed" with timeout).
---@param vols table
---@param snap_ids table snap id per volume (same order)
---@param opts table|nil { site = "dr", timeout = 60 }
---@return table report
function Driver:wait_synced(vols, snap_ids, opts)
  check_vols(vols)
  opts = opts or {}
  local site = opts.site or "dr"
  local c, err = self:cluster(site)
  if not c then return all_failed(vols, site, err) end
  local report = {}
  local time = require "vmdr.time"
  local deadline = time.monotonic() + (opts.timeout or 60)
  for i, v in ipairs(vols) do
    local e = entry(v, site)
    local img, ierr = c:image(v.pool, v.image, { namespace = v.namespace })
    -- a resynced copy is deleted and recreated by rbd-mirror: absent for a while
    while not img and ierr.code == "not_found" and time.monotonic() < deadline do
      if not time.sleep(0.1) then break end
      img, ierr = c:image(v.pool, v.image, { namespace = v.namespace })
    end
    if not img then
      e.result, e.err = "failed", ierr
    elseif not snap_ids[i] then
      e.result, e.err = "failed", mkerr("invalid", "no snapshot id for %s", v.spec)
      img:close()
    else
      local ok, werr = img:wait_synced(snap_ids[i], math.max(0, deadline - time.monotonic()))
      img:close()
      if ok then e.result = "ok" else e.result, e.err = "failed", werr end
    end
    report[i] = e
  end
  return summarize(report)
end

--- Takes a mirror snapshot of each volume on `site` (default source); entries carry snap_id.
---@param vols table
---@param opts table|nil { site = "source" }
---@return table report
function Driver:snapshot(vols, opts)
  check_vols(vols)
  local site = opts and opts.site or "source"
  if self.dry_run then return dry(self, vols, site, "take a mirror snapshot") end
  return self:_batch("snapshot", vols, site)
end

-- newest complete copy on the non-primary side, and the primary's time for it
local function last_synced(primary_img, copy_img)
  local copies = copy_img and copy_img:mirror_snapshots() or {}
  local newest
  for i = #copies, 1, -1 do
    local s = copies[i]
    if (s.state == "non_primary" or s.state == "non_primary_demoted") and s.complete then
      newest = s
      break
    end
  end
  if not newest then return nil end
  local t = newest.time
  for _, s in ipairs(primary_img and primary_img:mirror_snapshots() or {}) do
    if s.id == newest.primary_snap_id then t = s.time end
  end
  return newest, t
end

--- Replication state per volume on both sites, with the age (seconds) of the newest mirror
--- snapshot that has completely reached the non-primary side: the measured RPO. A site that
--- cannot be reached is reported as such, the other still answers.
---@param vols table
---@return table report entries { image=, pv=, source={...}|nil, dr={...}|nil, primary_site=,
---   last_sync_age=, last_snap_id=, split_brain=, err= }
function Driver:status(vols)
  check_vols(vols)
  local sites = {}
  for _, site in ipairs({ "source", "dr" }) do
    local c, err = self:cluster(site)
    sites[site] = { c = c, err = err }
  end
  local now = os.time()
  local report = {}
  for i, v in ipairs(vols) do
    local e = entry(v, nil)
    e.result = "ok"
    local imgs = {}
    for _, site in ipairs({ "source", "dr" }) do
      local s = sites[site]
      if s.c then
        local img, ierr = s.c:image(v.pool, v.image, { namespace = v.namespace })
        if img then
          imgs[site] = img
          local st = img:mirror_status()
          e[site] = st or { state = "unknown" }
        else
          e[site] = { state = ierr.code == "not_found" and "absent" or "unknown", err = ierr }
        end
      else
        e[site] = { state = "unreachable", err = s.err }
      end
    end
    local sp, dp = e.source.primary, e.dr.primary
    e.split_brain = (sp and dp) or (e.source.split_brain or e.dr.split_brain) or false
    e.primary_site = sp and dp and "both" or sp and "source" or dp and "dr" or nil
    local prim = sp and imgs.source or dp and imgs.dr or nil
    local copy = sp and imgs.dr or dp and imgs.source or nil
    local snap, t = last_synced(prim, copy)
    if snap then
      e.last_snap_id = snap.primary_snap_id
      e.last_sync_time = t
      e.last_sync_age = t and math.max(0, now - t) or nil
    end
    for _, img in pairs(imgs) do img:close() end
    if e.source.state == "unreachable" and e.dr.state == "unreachable" then
      e.result, e.err = "failed", e.source.err
    end
    report[i] = e
  end
  return summarize(report)
end

return M
