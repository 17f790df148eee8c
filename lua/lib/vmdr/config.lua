--- vmdr.config: the configuration keys of DESIGN.md "Configuration": their defaults,
--- their types, the coercion of `-e key=value` strings, per-workflow required keys, and
--- secrets read from the environment or files the configuration names.
---
--- Every error raised here is {code="config", message=...}; vmdr-run prints the message
--- and exits 2. Keys not in the schema are kept (a site's hooks may read their own) but
--- logged as a warning when they sit inside a section vmdr owns (a likely typo).
local log = require "vmdr.log"

local M = {}

--- A key's type: "string" | "number" | "integer" | "boolean" | "list" (of strings) |
--- "map", or an enum given as a list of allowed strings. min/max bound numbers.
---@alias vmdr.config.Spec { type: string|string[], min?: number, max?: number, doc?: string, check?: fun(v: any): boolean, string? }

---@type table<string, vmdr.config.Spec>
M.schema = {
  cluster_name = { type = "string", doc = "name of the DR overlay (vms/overlays/<cluster_name>)" },
  label_selector = { type = "string", doc = "selects the protected VMs",
    -- sent to the API as is: an empty one would select every VM of the cluster, and a
    -- malformed one fails late (exit 1) or, for event_sync, raises
    check = function(v)
      local sel, err = require("vmdr.selector").parse(v)
      if sel then return true end
      return false, err and err.message or "not a label selector"
    end },
  source = { type = "map" },
  ["source.kubeconfig"] = { type = "string" },
  ["source.context"] = { type = "string" },
  ["source.timeout"] = { type = "number", min = 0.05, max = 3600,
    doc = "seconds per API call (vmdr.k8s timeout, default 30)" },
  ["source.retries"] = { type = "integer", min = 0, max = 100,
    doc = "retries of a failed idempotent API call (default 4)" },
  ["source.page_size"] = { type = "integer", min = 0, max = 100000,
    doc = "items per list page (limit/continue; 0: one request; default 500)" },
  dr = { type = "map" },
  ["dr.kubeconfig"] = { type = "string" },
  ["dr.context"] = { type = "string" },
  ["dr.timeout"] = { type = "number", min = 0.05, max = 3600 },
  ["dr.retries"] = { type = "integer", min = 0, max = 100 },
  ["dr.page_size"] = { type = "integer", min = 0, max = 100000 },
  git = { type = "map" },
  ["git.url"] = { type = "string", doc = "file://, https:// or ssh:// URL of the manifests repo" },
  ["git.branch"] = { type = "string" },
  ["git.root"] = { type = "string" },
  ["git.workdir"] = { type = "string" },
  ["git.author"] = { type = "map" },
  ["git.author.name"] = { type = "string" },
  ["git.author.email"] = { type = "string" },
  ["git.token_env"] = { type = "string", doc = "environment variable holding the HTTPS token" },
  ["git.token_file"] = { type = "string", doc = "file holding the HTTPS token" },
  ["git.ssh_key"] = { type = "string" },
  ["git.known_hosts"] = { type = "string" },
  ["git.user"] = { type = "string", doc = "HTTPS user name, or the ssh user" },
  ["git.ssh_pubkey"] = { type = "string" },
  ["git.ssh_passphrase_env"] = { type = "string" },
  ["git.ssh_passphrase_file"] = { type = "string" },
  ["git.accept_unknown_host_key"] = { type = "boolean" },
  ["git.ca_file"] = { type = "string" },
  ["git.max_attempts"] = { type = "integer", min = 1, max = 100,
    doc = "push attempts: a rejected push is redone on the new remote state" },
  ["git.backoff"] = { type = "number", min = 0, doc = "first retry delay, seconds (doubles)" },
  ["git.worktree"] = { type = "boolean", doc = "keep a work tree in the clone (false: faster)" },
  ["git.cache"] = { type = "boolean",
    doc = "reconcile skips re-rendering VMs whose objects did not change (vmdr.rendercache)" },
  ["git.cache_file"] = { type = "string",
    doc = "the render cache's file (default: vmdr-render-cache.json in the clone's git dir)" },
  ["git.lock_file"] = { type = "string" },
  ["git.lock_timeout"] = { type = "number", min = 0 },
  ["git.max_packs"] = { type = "integer", min = 1, max = 10000,
    doc = "packs the clone may hold before a push merges the small ones (default 10)" },
  relocate = { type = "map" },
  ["relocate.stop_timeout"] = { type = "number", min = 0, doc = "seconds for the source VMs to stop" },
  ["relocate.sync_timeout"] = { type = "number", min = 0, doc = "seconds for the last snapshot" },
  failback = { type = "map" },
  ["failback.sync_timeout"] = { type = "number", min = 0, doc = "seconds for the source to catch up" },
  argocd = { type = "map" },
  ["argocd.namespace"] = { type = "string" },
  ["argocd.destination"] = { type = "string" },
  ["argocd.project"] = { type = "string" },
  storage = { type = "map" },
  ["storage.driver"] = { type = { "ceph", "exec", "none" } },
  ["storage.ceph"] = { type = "map" },
  ["storage.ceph.source"] = { type = "map" },
  ["storage.ceph.source.conf"] = { type = "string" },
  ["storage.ceph.source.keyring"] = { type = "string" },
  ["storage.ceph.source.user"] = { type = "string" },
  ["storage.ceph.dr"] = { type = "map" },
  ["storage.ceph.dr.conf"] = { type = "string" },
  ["storage.ceph.dr.keyring"] = { type = "string" },
  ["storage.ceph.dr.user"] = { type = "string" },
  ["storage.ceph.source.timeout"] = { type = "number", min = 0 },
  ["storage.ceph.dr.timeout"] = { type = "number", min = 0 },
  ["storage.ceph.parallel"] = { type = "integer", min = 1, max = 1024,
    doc = "worker threads for batch promote/demote/enable" },
  ["storage.ceph.timeout"] = { type = "number", min = 0, doc = "seconds per Ceph operation" },
  ["storage.ceph.peer_timeout"] = { type = "number", min = 0,
    doc = "seconds before the peer counts as unreachable" },
  ["storage.ceph.promote_retry"] = { type = "number", min = 0 },
  ["storage.ceph.mirror_mode"] = { type = { "snapshot", "journal" } },
  ["storage.csi_drivers"] = { type = "list", doc = "CSI driver names, matched as suffixes" },
  gc = { type = "map" },
  ["gc.max_delete_fraction"] = { type = "number", min = 0, max = 1 },
  ["gc.force"] = { type = "boolean", doc = "remove more than max_delete_fraction anyway" },
  site_dir = { type = "string" },
  -- workflow variables, usually given with -e
  vm_selector = { type = "string", doc = "the group a failover/activate/relocate acts on" },
  all = { type = "boolean", doc = "act on every protected VM instead of a vm_selector" },
  force = { type = "boolean", doc = "force promote (failover) / override gc brakes" },
  namespace = { type = "string", doc = "limit to one namespace; event_sync: the VM's namespace" },
  name = { type = "string", doc = "event_sync: the VM's name" },
  format = { type = { "table", "json", "prometheus" }, doc = "output format of status" },
  ["storage.ceph.parallel"] = { type = "integer", min = 1, max = 256 },
  ["storage.ceph.timeout"] = { type = "number", min = 0 },
  ["storage.ceph.peer_timeout"] = { type = "number", min = 0 },
  ["storage.exec"] = { type = "map" },
  ["storage.exec.timeout"] = { type = "number", min = 0, doc = "seconds per command" },
  monitor = { type = "map" },
  ["monitor.debounce"] = { type = "number", min = 0, max = 86400,
    doc = "quiet period (seconds) after a VM's last event before it is synced" },
  ["monitor.resync_interval"] = { type = "number", min = 1,
    doc = "seconds between full reconciles of the monitor (safety net)" },
  ["monitor.lease_name"] = { type = "string", doc = "the monitor's leader-election Lease" },
  ["monitor.lease_namespace"] = { type = "string",
    doc = "namespace of the Lease (default: the source context's namespace)" },
  ["monitor.lease_duration"] = { type = "number", min = 1, max = 3600,
    doc = "seconds without renewal after which another monitor takes over" },
  ["monitor.identity"] = { type = "string", doc = "holder identity (default hostname/pid)" },
  ["monitor.trim_interval"] = { type = "number", min = 0.1, max = 86400,
    doc = "at most every so many seconds after a batch, freed memory is given back" },
  status = { type = "map" },
  ["status.max_rpo"] = { type = "number", min = 0,
    doc = "seconds: VMs whose measured RPO is larger are flagged (status exits 1)" },
}

-- the exec driver's commands: an argv template per storage operation
for _, op in ipairs { "enable", "disable", "promote", "demote", "resync", "snapshot",
    "wait_synced", "status" } do
  M.schema["storage.exec." .. op] = { type = "list",
    doc = "argv of the " .. op .. " command ({pool} {namespace} {image} {spec} {pv} {site} {force})" }
end

local DEFAULTS = {
  label_selector = "dr.demojam.com/enabled=true",
  git = { branch = "main", root = "vms", author = { name = "vmdr", email = "vmdr@localhost" },
    max_attempts = 8, worktree = false },
  argocd = { namespace = "openshift-gitops", project = "default" },
  storage = {
    driver = "ceph",
    ceph = { source = { user = "admin" }, dr = { user = "admin" }, mirror_mode = "snapshot" },
    csi_drivers = { ".rbd.csi.ceph.com" },
  },
  gc = { max_delete_fraction = 0.5, force = false },
  monitor = { debounce = 10, resync_interval = 3600, lease_name = "vmdr-monitor",
    lease_duration = 15, trim_interval = 5 },
  status = { max_rpo = 3600 },
}

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }

--- Raises {code="config", message=...}: the host prints it and exits 2.
---@param fmt string
function M.error(fmt, ...)
  error(setmetatable({ code = "config", message = string.format(fmt, ...) }, err_mt), 0)
end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v
end

local function is_map(v)
  return type(v) == "table" and (next(v) == nil or not is_list(v))
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

--- A fresh copy of the defaults.
---@return table
function M.defaults()
  return copy(DEFAULTS)
end

--- Deep-merges src into dst: maps merge key by key, anything else (lists too) replaces.
---@param dst table
---@param src table
---@return table dst
function M.merge(dst, src)
  for k, v in pairs(src) do
    if is_map(v) and next(v) ~= nil and is_map(dst[k]) then
      M.merge(dst[k], v)
    else
      dst[k] = copy(v)
    end
  end
  return dst
end

local function split(key)
  local parts = {}
  for p in key:gmatch("[^.]+") do parts[#parts + 1] = p end
  return parts
end

--- The value at a dotted key ("git.author.name"), or nil.
---@param cfg table
---@param key string
---@return any
function M.get(cfg, key)
  local v = cfg
  for _, p in ipairs(split(key)) do
    if type(v) ~= "table" then return nil end
    v = v[p]
  end
  return v
end

local function describe(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then return is_list(v) and next(v) and "a list" or "a mapping" end
  return tostring(v)
end

local function expected(spec)
  local t = spec.type
  if type(t) == "table" then return "one of " .. table.concat(t, ", ") end
  if t == "number" and spec.min and spec.max then
    return string.format("a number from %s to %s", spec.min, spec.max)
  end
  return ({ string = "a string", number = "a number", integer = "an integer",
    boolean = "true or false", list = "a list of strings", map = "a mapping" })[t]
end

local function valid(spec, v)
  local t = spec.type
  if type(t) == "table" then
    for _, allowed in ipairs(t) do if v == allowed then return true end end
    return false
  elseif t == "string" then return type(v) == "string"
  elseif t == "boolean" then return type(v) == "boolean"
  elseif t == "map" then return is_map(v)
  elseif t == "list" then
    if not is_list(v) then return false end
    for _, x in ipairs(v) do if type(x) ~= "string" then return false end end
    return true
  elseif t == "number" or t == "integer" then
    if type(v) ~= "number" or v ~= v then return false end
    if t == "integer" and math.type(v) ~= "integer" and v ~= math.floor(v) then return false end
    return (spec.min == nil or v >= spec.min) and (spec.max == nil or v <= spec.max)
  end
  return true
end

--- Turns a command-line string into the type the schema wants for key; a string
--- that does not fit raises a config error naming the key. Unknown keys stay strings.
---@param key string dotted key
---@param s string
---@return any
function M.coerce_value(key, s)
  local spec = M.schema[key]
  if spec == nil or type(s) ~= "string" then return s end
  local t = spec.type
  local v = s
  if t == "boolean" then
    if s == "true" then v = true elseif s == "false" then v = false end
  elseif t == "number" or t == "integer" then
    v = tonumber(s) or s
    if t == "integer" and type(v) == "number" then v = math.tointeger(v) or v end
  elseif t == "list" then
    v = {}
    for item in s:gmatch("[^,]+") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then v[#v + 1] = item end
    end
  end
  if not valid(spec, v) then
    M.error("-e %s=%s: %s must be %s", key, s, key, expected(spec))
  end
  return v
end

--- Coerces every string in a tree of -e variables (see coerce_value), in place.
---@param vars table nested, as boot.parse_vars builds it
---@return table vars
function M.coerce(vars)
  local function walk(t, prefix)
    for k, v in pairs(t) do
      local key = prefix .. tostring(k)
      if type(v) == "table" and is_map(v) then
        walk(v, key .. ".")
      elseif type(v) == "string" then
        t[k] = M.coerce_value(key, v)
      end
    end
  end
  walk(vars, "")
  return vars
end

--- Checks the type of every known key present in cfg; raises a config error naming
--- the key and `source` (a file name, or "-e") on the first bad one.
---@param cfg table
---@param source? string where cfg came from, for the message
---@return table cfg
function M.validate(cfg, source)
  local where = source and (" (" .. source .. ")") or ""
  local owned = {}
  for key in pairs(M.schema) do
    local top = key:match("^[^.]+")
    owned[top] = true
  end
  local function walk(t, prefix)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local v = t[k]
      if type(k) ~= "string" then
        M.error("configuration key %s%s is not a name%s", prefix, tostring(k), where)
      end
      local key = prefix .. k
      local spec = M.schema[key]
      if spec then
        if not valid(spec, v) then
          M.error("configuration key %s must be %s, got %s%s", key, expected(spec),
            describe(v), where)
        end
        if spec.check then
          local ok, why = spec.check(v)
          if not ok then
            M.error("configuration key %s: %s, got %s%s", key, tostring(why), describe(v), where)
          end
        end
        if spec.type == "map" then walk(v, key .. ".") end
      elseif prefix ~= "" and owned[prefix:match("^[^.]+")] then
        log.warn("unknown configuration key " .. key .. where)
      end
    end
  end
  if type(cfg) ~= "table" or not is_map(cfg) then
    M.error("the configuration must be a mapping%s", where)
  end
  walk(cfg, "")
  return cfg
end

--- The configuration a workflow sees: defaults, then the file's values, then the
--- (coerced) -e variables, each layer checked. Raises a config error naming the key.
---@param file_cfg table|nil what the configuration file holds
---@param vars table|nil the -e variables (strings are coerced per the schema)
---@param file_name string|nil the file's path, for error messages
---@return table cfg
function M.build(file_cfg, vars, file_name)
  local cfg = M.defaults()
  if file_cfg then M.merge(cfg, M.validate(file_cfg, file_name)) end
  if vars then M.merge(cfg, M.validate(M.coerce(vars), "-e")) end
  return cfg
end

--- Raises a config error unless every dotted key has a non-empty value, e.g.
--- `config.require_keys(ctx.config, { "git.url", "cluster_name" }, "reconcile")`.
---@param cfg table
---@param keys string[]
---@param who? string the workflow asking, for the message
---@return table cfg
function M.require_keys(cfg, keys, who)
  local missing = {}
  for _, key in ipairs(keys) do
    local v = M.get(cfg, key)
    if v == nil or v == "" then missing[#missing + 1] = key end
  end
  if #missing > 0 then
    M.error("missing key%s %s%s: set %s in the configuration file or with -e %s=VALUE",
      #missing > 1 and "s" or "", table.concat(missing, ", "),
      who and (" (needed by " .. who .. ")") or "",
      #missing > 1 and "them" or "it", missing[1])
  end
  return cfg
end

local SECRET_NAME = { "token", "password", "passwd", "secret", "passphrase", "credential",
  "key" }

local function secret_named(name)
  name = name:lower()
  for _, w in ipairs(SECRET_NAME) do
    if name:find(w, 1, true) then return true end
  end
  return false
end

--- Registers a secret value with the logger: the whole value, and each line of a
--- multi-line one (key material), so no output shows any of it.
local function register(value)
  log.secret(value)
  for line in value:gmatch("[^\r\n]+") do
    if #line >= 8 and not line:match("^%-%-%-%-%-") then log.secret(line) end
  end
end

local function read_secret_file(path, key)
  local f, err = io.open(path, "rb")
  local v
  -- io.open succeeds on a directory; only the read fails (EISDIR)
  if f then v, err = f:read("a"); f:close() end
  if not v then
    return nil, setmetatable({ code = "config",
      message = string.format("%s: cannot read secret file: %s", key,
        f and (path .. ": " .. tostring(err)) or err) }, err_mt)
  end
  return (v:gsub("%s+$", ""))
end
M.read_secret_file = read_secret_file

--- The secret behind a setting: for key "git.token", the environment variable named
--- by git.token_env, else the contents of the file named by git.token_file (trailing
--- whitespace dropped). The value is registered so it is never printed.
---@param cfg table
---@param key string dotted name without the _env/_file suffix
---@return string|false|nil value  false when neither setting is configured
---@return table|nil err {code="config"} when a setting names nothing usable
function M.secret(cfg, key)
  local env = M.get(cfg, key .. "_env")
  if type(env) == "string" and env ~= "" then
    local v = os.getenv(env)
    if v == nil or v == "" then
      return nil, setmetatable({ code = "config",
        message = string.format("%s_env: environment variable %s is not set", key, env) }, err_mt)
    end
    register(v)
    return v
  end
  local file = M.get(cfg, key .. "_file")
  if type(file) == "string" and file ~= "" then
    local v, err = read_secret_file(file, key .. "_file")
    if not v then return nil, err end
    if v == "" then
      return nil, setmetatable({ code = "config",
        message = string.format("%s_file: %s is empty", key, file) }, err_mt)
    end
    register(v)
    return v
  end
  return false
end

--- Registers, before anything is logged, every secret the configuration names: the
--- values of all *_env settings, and the contents of *_file settings and of files named
--- by key settings (ssh_key) whose names say they hold secrets. Unreadable ones are
--- left for the code that needs them to report.
---@param cfg table
function M.register_secrets(cfg)
  local function walk(t)
    for k, v in pairs(t) do
      if type(v) == "table" then
        walk(v)
      elseif type(k) == "string" and type(v) == "string" and v ~= "" then
        if k:match("_env$") then
          local val = os.getenv(v)
          if val and val ~= "" then register(val) end
        elseif (k:match("_file$") and secret_named(k:gsub("_file$", "")))
            or k:match("ssh_key$") then
          local val = read_secret_file(v, k)
          if val and val ~= "" then register(val) end
        end
      end
    end
  end
  walk(cfg)
end

return M
