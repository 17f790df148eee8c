--- vmdr.rendercache: lets an idle reconcile skip cleaning and encoding VMs that did not
--- change (issue 6: at 10,000 VMs that was half of the run).
---
--- Rendering is a pure function of a VM's bundle (the VM, its PVCs and PVs) and of
--- everything else that shapes the bytes: the clean rules, the site's hooks and lib
--- code, the configuration, vmdr's own Lua tree and binary. The cache remembers, per
--- VM, the identity of its inputs (uid and resourceVersion of every object of the
--- bundle, which the API server changes on every write) and the blob ids the files
--- had in the tree that was pushed. A VM is skipped only when
---   * the fingerprint of everything else is the one the cache was written with,
---   * the uid and resourceVersion of the VM and of every PVC and PV (the same set)
---     are the recorded ones, and
---   * every file of the VM in the repository still has the recorded blob id
---     (someone may have edited or removed it in Git; then the VM is rendered again
---     and the file repaired).
--- Under those conditions rendering would give exactly the bytes already stored, so
--- skipping it changes nothing: the tree is the same with and without the cache.
---
--- The file (`git.cache_file`, default `vmdr-render-cache.json` in the clone's git
--- directory, so removing the clone removes it) is replaced atomically, only after a
--- transaction that pushed (or had nothing to push), never in a dry run. A missing,
--- unreadable, corrupt or other-format file means a full run, with a log line.
--- `git.cache: false` turns it off.
local fs = require "vmdr.fs"
local json = require "vmdr.json"
local manifest = require "vmdr.manifest"

local M = {}

M.FORMAT = 1

-- Configuration keys that choose WHAT a run covers, never how a VM is rendered: a
-- reconcile of one namespace must not throw away the entries of the others.
local NOT_RENDERING = { namespace = true, name = true, vm_selector = true, all = true,
    force = true, ["git.cache"] = true, ["git.cache_file"] = true }

local function log(ctx, level, msg, fields)
    local l = ctx.log
    if l and l[level] then l[level](msg, fields) end
end

--- Whether the cache is on for this configuration (`git.cache`, default true).
---@param cfg table
---@return boolean
function M.enabled(cfg)
    local g = cfg.git or {}
    return g.cache ~= false and g.cache ~= "false"
end

--- Where the cache file lives: `git.cache_file`, else inside the clone's git directory.
---@param cfg table
---@return string
function M.path(cfg)
    local g = cfg.git or {}
    if type(g.cache_file) == "string" and g.cache_file ~= "" then return g.cache_file end
    local wd = g.workdir:gsub("/+$", "")
    -- git.worktree: the clone is <workdir>/.git; without one it is a bare repository
    local gitdir = g.worktree == true and wd .. "/.git" or wd
    return gitdir .. "/vmdr-render-cache.json"
end

-- A canonical text of a configuration value: sorted keys, typed scalars.
local function canon(v, prefix, out)
    local t = type(v)
    if t == "table" then
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = k end
        table.sort(keys, function(a, b)
            if type(a) ~= type(b) then return type(a) < type(b) end
            return a < b
        end)
        out[#out + 1] = "{"
        for _, k in ipairs(keys) do
            local key = prefix == "" and tostring(k) or prefix .. "." .. tostring(k)
            if not NOT_RENDERING[key] then
                out[#out + 1] = type(k) .. ":" .. #tostring(k) .. ":" .. tostring(k) .. "="
                canon(v[k], key, out)
            end
        end
        out[#out + 1] = "}"
    else
        -- json.null is a light userdata whose address changes from run to run
        local s = v == json.null and "null" or tostring(v)
        out[#out + 1] = t .. ":" .. #s .. ":" .. s .. ";"
    end
end

-- Every regular file under dir (recursively) as path and content, sorted by path.
local function tree(dir, parts)
    if not dir or not fs.exists(dir) then return end
    local entries = fs.walk(dir) or {}
    for _, e in ipairs(entries) do
        if e.type == "file" or e.type == "link" then
            local bytes = fs.read(dir .. "/" .. e.path) or "(unreadable)"
            parts[#parts + 1] = "file " .. dir .. "/" .. e.path
            parts[#parts + 1] = bytes
        end
    end
end

-- One VM with a disk and a DataVolume template, rendered with the site's hooks: any
-- change of the cleaner, the encoder (libyaml included) or what a hook does to such
-- objects changes these bytes, even when no file above changed.
local function canary(ctx)
    local vm = {
        apiVersion = "kubevirt.io/v1", kind = "VirtualMachine",
        metadata = { name = "canary", namespace = "canary-ns", uid = "u1", resourceVersion = "1",
            generation = 3, labels = { ["dr.demojam.com/enabled"] = "true", app = "x" },
            annotations = { ["kubemacpool.io/transaction-timestamp"] = "t", note = "0755" } },
        spec = { running = true,
            dataVolumeTemplates = { {
                metadata = { name = "canary-dv", creationTimestamp = json.null },
                spec = { storage = { resources = { requests = { storage = "1Gi" } } } } } },
            template = { metadata = { creationTimestamp = json.null, labels = { app = "x" } },
                spec = {
                    domain = { devices = { disks = { { name = "d", disk = { bus = "virtio" } } } },
                        resources = { requests = { memory = "1Gi" } } },
                    volumes = { { name = "d", dataVolume = { name = "canary-dv" } } } } } },
        status = { ready = true },
    }
    local pvc = {
        apiVersion = "v1", kind = "PersistentVolumeClaim",
        metadata = { name = "canary-dv", namespace = "canary-ns", uid = "u2", resourceVersion = "2",
            annotations = { ["pv.kubernetes.io/bind-completed"] = "yes" },
            ownerReferences = { { kind = "DataVolume", name = "canary-dv", uid = "u4" } } },
        spec = { accessModes = { "ReadWriteMany" }, volumeName = "pv-canary", volumeMode = "Block",
            resources = { requests = { storage = "1Gi" } } },
        status = { phase = "Bound" },
    }
    local pv = {
        apiVersion = "v1", kind = "PersistentVolume",
        metadata = { name = "pv-canary", uid = "u3", resourceVersion = "3",
            annotations = {
                ["pv.kubernetes.io/provisioned-by"] = "openshift-storage.rbd.csi.ceph.com" } },
        spec = { accessModes = { "ReadWriteMany" }, capacity = { storage = "1Gi" },
            claimRef = { kind = "PersistentVolumeClaim", name = "canary-dv",
                namespace = "canary-ns", uid = "u2" },
            csi = { driver = "openshift-storage.rbd.csi.ceph.com",
                volumeHandle = "0001-0011-openshift-storage-0000000000000001-"
                    .. "b0285c97-a0ce-11eb-8c66-0242ac110002",
                volumeAttributes = { clusterID = "openshift-storage", pool = "rbd",
                    imageName = "csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002" } },
            persistentVolumeReclaimPolicy = "Delete" },
    }
    local ok, enc, err = pcall(manifest.bundle, ctx, vm, { pvc }, { pv })
    if not ok then return "raised: " .. tostring(enc) end
    if not enc then return "failed: " .. tostring(err) end
    return enc.vm .. enc.pvcs["canary-dv"] .. enc.pvs["pv-canary"]
end

--- The fingerprint of everything besides a VM's own objects that shapes its files.
---@param ctx table
---@return string hex 32 hex digits
function M.fingerprint(ctx)
    local parts = { "vmdr-render-cache/" .. M.FORMAT, "version " .. tostring(ctx.version) }
    -- the binary (the cleaner and the YAML encoder are C): a rebuild changes size or mtime
    local exe = fs.realpath("/proc/self/exe")
    local st = exe and fs.stat(exe)
    parts[#parts + 1] = "exe " .. tostring(exe) .. " " .. tostring(st and st.size) .. " "
        .. tostring(st and st.mtime)
    -- vmdr's Lua tree, the site's lib and hooks, and the workflow script itself
    tree(ctx.lua_dir, parts)
    if ctx.site_dir then
        tree(ctx.site_dir .. "/lib", parts)
        parts[#parts + 1] = "hooks"
        parts[#parts + 1] = fs.read(ctx.site_dir .. "/hooks.lua") or "(none)"
    end
    parts[#parts + 1] = "script " .. tostring(ctx.script)
    parts[#parts + 1] = ctx.script and fs.read(ctx.script) or "(none)"
    local c = {}
    canon(ctx.config, "", c)
    parts[#parts + 1] = table.concat(c)
    parts[#parts + 1] = canary(ctx)
    -- two differently seeded 64-bit hashes: 128 bits
    local salted = { "second seed" }
    for i, p in ipairs(parts) do salted[i + 1] = p end
    return manifest.bundle_hash(parts) .. manifest.bundle_hash(salted)
end

local function ident(obj)
    local md = type(obj) == "table" and obj.metadata
    if type(md) ~= "table" then return nil end
    local uid, rv, name = md.uid, md.resourceVersion, md.name
    if type(uid) ~= "string" or uid == "" or type(rv) ~= "string" or rv == ""
        or type(name) ~= "string" then
        return nil
    end
    return #name .. ":" .. name .. #uid .. ":" .. uid .. #rv .. ":" .. rv
end

--- The identity of a bundle's inputs (uid and resourceVersion of the VM and of every
--- PVC and PV, in the bundle's order), or nil when an object has none (never cached).
--- Must be taken before rendering: cleaning removes these fields.
---@param b table bundle (vmdr.inventory)
---@return string|nil
function M.inputs(b)
    local out = {}
    local id = ident(b.vm)
    if not id then return nil end
    out[1] = "vm " .. id
    for _, part in ipairs { { "pvc ", b.pvcs }, { "pv ", b.pvs } } do
        for _, o in ipairs(part[2]) do
            id = ident(o)
            if not id then return nil end
            out[#out + 1] = part[1] .. id
        end
    end
    return table.concat(out, "\n")
end

local Cache = {}
Cache.__index = Cache

local function valid_entry(e)
    if type(e) ~= "table" or type(e["in"]) ~= "string" or type(e.files) ~= "table" then
        return false
    end
    local n = 0
    for p, id in pairs(e.files) do
        if type(p) ~= "string" or type(id) ~= "string" or not id:match("^%x+$") or #id ~= 40 then
            return false
        end
        n = n + 1
    end
    return n > 0
end

-- Reads the file; returns the table of entries or nil plus why (logged by the caller).
local function load(path, fingerprint)
    if not fs.exists(path) then return nil, nil end
    local text, rerr = fs.read(path)
    if not text then return nil, "unreadable: " .. tostring(rerr) end
    local doc, derr = json.decode(text)
    if type(doc) ~= "table" then return nil, "not JSON: " .. tostring(derr) end
    if doc.format ~= M.FORMAT then
        return nil, "format " .. tostring(doc.format) .. ", not " .. M.FORMAT
    end
    if type(doc.fingerprint) ~= "string" or type(doc.vms) ~= "table" then
        return nil, "no fingerprint or vms"
    end
    for k, e in pairs(doc.vms) do
        if type(k) ~= "string" or not valid_entry(e) then
            return nil, "bad entry " .. tostring(k)
        end
    end
    if doc.fingerprint ~= fingerprint then return {}, nil, true end
    return doc.vms
end

--- Opens the cache for this run. Always returns a cache object; when the cache is off
--- (`git.cache: false`) or its file cannot be used, it simply never hits.
--- opts.scope: the namespace this run covers (nil: all); entries of other namespaces
--- are kept when the file is saved.
---@param ctx table
---@param opts? {scope?: string}
---@return table cache
function M.open(ctx, opts)
    local c = setmetatable({ ctx = ctx, entries = {}, hits = 0, misses = 0,
        scope = opts and opts.scope }, Cache)
    c.on = M.enabled(ctx.config)
    if not c.on then
        log(ctx, "debug", "render cache off (git.cache: false)")
        return c
    end
    c.file = M.path(ctx.config)
    -- a run killed by SIGKILL while saving left its temp file: only such dead ones go
    if not ctx.dry_run then
        local n, cerr = fs.clear_tmp(c.file)
        if not n then
            log(ctx, "warn", "render cache: its old temp files cannot be listed",
                { file = c.file, reason = tostring(cerr) })
        elseif n > 0 then
            log(ctx, "info", "render cache: removed the temp file(s) of a killed run",
                { file = c.file, removed = n })
        end
    end
    c.fingerprint = M.fingerprint(ctx)
    local entries, why, stale = load(c.file, c.fingerprint)
    if entries and not stale then c.loaded_fingerprint = c.fingerprint end
    if why then
        log(ctx, "warn", "render cache ignored: every VM is rendered",
            { file = c.file, reason = why })
    elseif stale then
        log(ctx, "info", "render cache from another configuration, site code or vmdr build:"
            .. " every VM is rendered", { file = c.file })
    end
    c.entries = entries or {}
    return c
end

--- The files a VM had when its bundle last had these inputs: { [path] = blob id }, or
--- nil (a miss). The caller still checks the ids against the repository.
---@param ns string
---@param name string
---@param inputs string|nil from M.inputs
---@return table<string,string>|nil
function Cache:lookup(ns, name, inputs)
    local e = inputs and self.on and self.entries[ns .. "/" .. name]
    if e and e["in"] == inputs then
        self.hits = self.hits + 1
        return e.files
    end
    self.misses = self.misses + 1
    return nil
end

--- Writes the cache file atomically: `entries` (from sync.write: { ["ns/name"] =
--- {in=, files=} }) plus, when this run covered one namespace, the old entries of the
--- others. Never in a dry run. A failure is logged and returned, never fatal.
---@param entries table
---@return boolean|nil ok, string|nil err
function Cache:save(entries)
    if not self.on or self.ctx.dry_run then return false end
    local vms = {}
    if self.scope then
        local prefix = self.scope .. "/"
        for k, e in pairs(self.entries) do
            if k:sub(1, #prefix) ~= prefix then vms[k] = e end
        end
    end
    local n = 0
    for k, e in pairs(entries or {}) do vms[k] = e; n = n + 1 end
    -- an idle run verifies every entry and changes none: rewriting 5 MB would be a
    -- tenth of its time for nothing
    if self.loaded_fingerprint == self.fingerprint then
        local same, old_n = true, 0
        for _ in pairs(self.entries) do old_n = old_n + 1 end
        local new_n = 0
        for k, e in pairs(vms) do
            new_n = new_n + 1
            local old = self.entries[k]
            if not old or old["in"] ~= e["in"] or old.files ~= e.files then
                same = false
                break
            end
        end
        if same and new_n == old_n then
            log(self.ctx, "debug", "render cache unchanged", { file = self.file, vms = n })
            return true
        end
    end
    local text, jerr = json.encode({ format = M.FORMAT, fingerprint = self.fingerprint, vms = vms })
    if not text then
        log(self.ctx, "warn", "render cache not saved", { reason = tostring(jerr) })
        return nil, tostring(jerr)
    end
    local ok, werr = fs.write(self.file, text)
    if not ok then
        log(self.ctx, "warn", "render cache not saved",
            { file = self.file, reason = tostring(werr) })
        return nil, tostring(werr)
    end
    log(self.ctx, "debug", "render cache saved", { file = self.file, vms = n })
    return true
end

return M
