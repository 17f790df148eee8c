--- vmdr.dr: what every workflow sets up the same way: site hooks, the repository
--- layout, the Kubernetes clients, the storage drivers, the VM selector.
--- Each function takes ctx (as vmdr-run builds it) and caches on it.
local config = require "vmdr.config"
local fs = require "vmdr.fs"
local layout = require "vmdr.layout"
local selector = require "vmdr.selector"

local M = {}

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }

--- An error table like the native modules return.
---@return table
function M.err(code, fmt, ...)
    return setmetatable({ code = code, message = string.format(fmt, ...) }, err_mt)
end

--- The site hooks: `<site_dir>/hooks.lua` returns a table of functions (see
--- docs/customizing.md); no site directory or no file means no hooks.
---@param ctx table
---@return table hooks
function M.hooks(ctx)
    if ctx.hooks then return ctx.hooks end
    local hooks = {}
    if ctx.site_dir then
        local path = ctx.site_dir .. "/hooks.lua"
        if fs.exists(path) then
            local chunk, err = loadfile(path, "t")
            if not chunk then config.error("site hooks %s: %s", path, err) end
            local ok, res = pcall(chunk, ctx)
            if not ok then config.error("site hooks %s failed: %s", path, tostring(res)) end
            if type(res) ~= "table" then config.error("site hooks %s must return a table", path) end
            hooks = res
        end
    end
    ctx.hooks = hooks
    return hooks
end

--- Checks, before a workflow does anything, that the Git settings are usable: the
--- secrets they name (token, passphrase: environment variable or file) and the files
--- (ssh_key, ssh_pubkey, known_hosts, ca_file) can be read. Raises a config error
--- naming the key (vmdr-run exits 2), instead of a late failure after the API was read.
---@param ctx table
function M.check_git(ctx)
    local _, err = require("vmdr.repo").git_options(ctx.config)
    if err then config.error("%s", err.message) end
end

--- The manifests-repository layout for this DR cluster.
---@param ctx table
---@return table layout
function M.layout(ctx)
    if ctx.layout then return ctx.layout end
    config.require_keys(ctx.config, { "cluster_name" }, "this workflow")
    local lay, err = layout.new { root = ctx.config.git.root, cluster = ctx.config.cluster_name }
    if not lay then config.error("cluster_name / git.root: %s", err.message) end
    ctx.layout = lay
    return lay
end

--- The vmdr.k8s.client options for "source" or "dr" from the configuration section:
--- kubeconfig, context, timeout, retries, page_size (unset: the client's defaults).
---@param ctx table
---@param site "source"|"dr"
---@return table opts
function M.client_opts(ctx, site)
    local sec = ctx.config[site] or {}
    return { kubeconfig = sec.kubeconfig, context = sec.context, timeout = tonumber(sec.timeout),
        retries = math.tointeger(tonumber(sec.retries)),
        page_size = math.tointeger(tonumber(sec.page_size)) }
end

--- A Kubernetes client for "source" or "dr" (config `source:` / `dr:`; in-cluster
--- when the section names no kubeconfig).
---@param ctx table
---@param site "source"|"dr"
---@return table|nil client, table|nil err
function M.client(ctx, site)
    ctx.clients = ctx.clients or {}
    if ctx.clients[site] then return ctx.clients[site] end
    local k8s = require "vmdr.k8s"
    local sec = ctx.config[site] or {}
    local c, err = k8s.client(M.client_opts(ctx, site))
    if not c then
        -- a configured kubeconfig that cannot be read or used is the configuration's fault:
        -- exit 2 (none configured and not in a pod stays the workflow's call: failback
        -- -e force=true proceeds without the DR cluster)
        if type(err) == "table" and err.code == "config" and sec.kubeconfig then
            config.error("%s.kubeconfig: %s", site, tostring(err.message))
        end
        return nil, err
    end
    ctx.clients[site] = c
    return c
end

--- The storage driver (both sites; operations take {site=}).
---@return table|nil driver, table|nil err
function M.storage(ctx)
    if ctx.driver then return ctx.driver end
    M.hooks(ctx)
    local d, err = require("vmdr.storage").open(ctx)
    if not d then return nil, err end
    ctx.driver = d
    return d
end

--- Closes what the helpers above opened.
function M.close(ctx)
    if ctx.driver and ctx.driver.close then ctx.driver:close() end
    for _, c in pairs(ctx.clients or {}) do if c.close then c:close() end end
    ctx.driver, ctx.clients = nil, nil
end

--- The group a workflow acts on: `-e vm_selector=...` (full Kubernetes selector
--- syntax), or every VM with `-e all=true`. A malformed or missing selector is a
--- configuration error (exit 2), never "match everything".
---@param ctx table
---@return table|nil sel parsed selector (nil with all=true), string text
function M.vm_selector(ctx)
    local text = ctx.config.vm_selector
    local all = ctx.config.all == true or ctx.config.all == "true"
    if all and text then config.error("give either vm_selector or all=true, not both") end
    if all then return nil, "(all)" end
    if type(text) ~= "string" or text == "" then
        config.error("vm_selector is required (e.g. -e vm_selector=app-tier=database), "
            .. "or -e all=true for every protected VM")
    end
    local sel, err = selector.parse(text)
    if not sel then config.error("vm_selector %q: %s", text, err.message or tostring(err)) end
    return sel, text
end

--- The group a storage workflow acts on, read from Git alone (the source site may
--- be gone): the stored VMs matching the selector, their claims and volumes, and
--- the storage driver's volumes for them.
--- Returns { sel=, text=, bundles=, vols=, by_vm=, problems=, unreadable=, stale= }
--- or nil, err (err is a string for people).
---@param ctx table
---@return table|nil group, string|nil err
function M.group(ctx)
    local repo = require "vmdr.repo"
    local sync = require "vmdr.sync"
    local lay = M.layout(ctx)
    local sel, text = M.vm_selector(ctx)
    local snap, serr = repo.snapshot(ctx)
    if not snap then return nil, "reading the manifests repository: " .. tostring(serr) end
    local g = { sel = sel, text = text, bundles = {}, unreadable = {}, stale = snap.stale }
    for _, e in ipairs(sync.stored_vms(snap, lay)) do
        if e.err then
            g.unreadable[#g.unreadable + 1] = e
        elseif not sel or selector.match(sel, M.labels(e.vm)) then
            g.bundles[#g.bundles + 1] = sync.stored_bundle(snap, lay, e)
        end
    end
    snap:close()
    for _, e in ipairs(g.unreadable) do
        ctx.log.error("unreadable VM file skipped", { file = e.path, reason = e.err })
    end
    if #g.bundles == 0 then
        return nil, string.format("no VM in Git matches %s (check the selector)", text)
    end
    local driver, derr = M.storage(ctx)
    if not driver then return nil, "storage: " .. tostring(derr) end
    g.vols, g.by_vm, g.problems = sync.images(driver, g.bundles)
    for _, b in ipairs(g.bundles) do
        for _, p in ipairs(b.problems) do
            g.problems[#g.problems + 1] = { vm = b.ns .. "/" .. b.name, err = p }
        end
    end
    return g
end

--- Whether a storage report entry is a failure.
function M.failed(e)
    return e == nil or e.result == "failed" or e.result == "refused"
end

--- An object's labels as a table ({} when missing or, in a hand-edited file, not a map).
---@param obj table
---@return table labels
function M.labels(obj)
    local md = type(obj) == "table" and obj.metadata
    local labels = type(md) == "table" and md.labels
    return type(labels) == "table" and labels or {}
end

--- Whether err (from a GET of ns/name) confirms that the object does not exist: a 404
--- whose Status names it, as kube-apiserver's NotFound for an object does
--- (details.name). A 404 that names nothing ("the server could not find the requested
--- resource": the API group not served during an upgrade, a proxy's error page) says
--- nothing about the object, and taking it for "gone" would delete a protected VM.
---@param err table|nil
---@param name string
---@return boolean
function M.confirmed_gone(err, name)
    return type(err) == "table" and err.code == "not_found" and type(err.details) == "table"
        and err.details.name == name
end

--- Whether a VM object matches the DR label selector of the configuration.
function M.is_protected(ctx, vm)
    ctx._dr_sel = ctx._dr_sel or assert(selector.parse(ctx.config.label_selector))
    return selector.match(ctx._dr_sel, M.labels(vm))
end

return M
