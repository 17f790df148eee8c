--- vmdr.k8s: the Kubernetes client, the Lua half (STYLE rule 6, thin C, thick Lua).
---
--- runtime/k8s.c gives the transport (one curl multi per client: keep-alive pool, TLS,
--- gzip, interruptible waits, JSON decoded straight into tables, line streams); this
--- file is everything with a policy in it: kubeconfig loading and merging, in-cluster
--- config, auth (token, token file, client certificates, basic, exec plugins), API
--- discovery for kubectl-style resource names, retries, pagination, error mapping and
--- the watch state machine. `require "vmdr.k8s"` returns the module built here.
---
--- Errors are the DESIGN table { code=, message=, status= } (+ reason= from the API's
--- Status). Codes: not_found, conflict, gone, forbidden, unauthorized, invalid,
--- unavailable (429/5xx after retries), not_allowed (405), unsupported (415),
--- bad_response (the server's reply is not what the API sends), unreachable, timeout,
--- tls, interrupted, config (a kubeconfig problem), too_large.
local json = require "vmdr.json"
local log = require "vmdr.log"
local time = require "vmdr.time"

---@param raw table the native primitives (runtime/k8s.c)
return function(raw)
  local M = {}
  M._raw = raw

  local CLIENT_NAME <const> = "vmdr.k8s.Client"

  local function mkerr(code, status, fmt, ...)
    local e = raw.error(code, string.format(fmt, ...), status or 0)
    return e
  end

  local function fail(code, status, fmt, ...)
    return nil, mkerr(code, status, fmt, ...)
  end

  local function is_table(v) return type(v) == "table" end
  local function str(v) if type(v) == "string" and v ~= "" then return v end return nil end

  ---------------------------------------------------------------------------
  -- kubeconfig
  ---------------------------------------------------------------------------

  local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("a")
    f:close()
    return s
  end

  local function dirname(path)
    return path:match("^(.*)/[^/]*$") or "."
  end

  local function resolve_path(base_dir, p)
    if p == nil or p:sub(1, 1) == "/" then return p end
    if p:sub(1, 2) == "~/" then return (os.getenv("HOME") or "") .. p:sub(2) end
    return base_dir .. "/" .. p
  end

  local function decode_config(text, path)
    local ok, yaml = pcall(require, "vmdr.yaml")
    local v, err
    if ok then
      v, err = yaml.decode(text)
    else
      v, err = json.decode(text)
    end
    if v == nil and err then
      return fail("config", 0, "kubeconfig '%s': %s", path, tostring(err.message or err))
    end
    if v == nil or v == json.null then v = {} end
    if not is_table(v) then return fail("config", 0, "kubeconfig '%s' is not a mapping", path) end
    return v
  end

  -- Fields holding file paths, per section, resolved against the kubeconfig's directory.
  local PATH_FIELDS <const> = {
    clusters = { "certificate-authority" },
    users = { "client-certificate", "client-key", "tokenFile" },
  }

  --- Loads and merges kubeconfig files like kubectl: for each named cluster, user and
  --- context, and for current-context, the first file that sets it wins.
  local function load_kubeconfig(paths, explicit)
    local merged = { clusters = {}, users = {}, contexts = {}, files = {} }
    local found = 0
    for _, path in ipairs(paths) do
      local text, rerr = read_file(path)
      if not text then
        if explicit then
          return fail("config", 0, "kubeconfig '%s' cannot be read: %s", path, tostring(rerr))
        end
      else
        found = found + 1
        merged.files[#merged.files + 1] = path
        local doc, err = decode_config(text, path)
        if not doc then return nil, err end
        local base = dirname(path)
        if str(doc["current-context"]) and not merged.current then
          merged.current = doc["current-context"]
        end
        for _, section in ipairs { "clusters", "users", "contexts" } do
          local list = doc[section]
          if list ~= nil and list ~= json.null and not is_table(list) then
            return fail("config", 0, "kubeconfig '%s': %s must be a list", path, section)
          end
          local item = section:sub(1, -2)
          for i, entry in ipairs(is_table(list) and list or {}) do
            if not is_table(entry) or not str(entry.name) then
              return fail("config", 0, "kubeconfig '%s': %s[%d] has no name", path, section, i)
            end
            local body = entry[item]
            if not is_table(body) then body = {} end
            if not merged[section][entry.name] then
              local copy = {}
              for k, v in pairs(body) do copy[k] = v end
              for _, f in ipairs(PATH_FIELDS[section] or {}) do
                if str(copy[f]) then copy[f] = resolve_path(base, copy[f]) end
              end
              local cmd = is_table(copy.exec) and str(copy.exec.command)
              if cmd and cmd:find("/", 1, true) and cmd:sub(1, 1) ~= "/" then
                -- client-go: a relative command with a slash is relative to the kubeconfig
                local e = {}
                for k, v in pairs(copy.exec) do e[k] = v end
                e.command = resolve_path(base, e.command)
                copy.exec = e
              end
              copy._file = path
              merged[section][entry.name] = copy
            end
          end
        end
      end
    end
    if found == 0 then
      return fail("config", 0, "no kubeconfig file found (looked for %s)",
        table.concat(paths, ", "))
    end
    return merged
  end

  local function b64field(tbl, field, where)
    local v = tbl[field]
    if v == nil or v == json.null then return nil end
    if type(v) ~= "string" then
      return nil, mkerr("config", 0, "%s.%s must be a string", where, field)
    end
    local bytes, err = raw.base64_decode(v)
    if not bytes then
      return nil, mkerr("config", 0, "%s.%s: %s", where, field, err.message)
    end
    return bytes
  end

  --- Builds the connection settings from a merged kubeconfig and a context name.
  local function from_kubeconfig(kc, context_name)
    local files = table.concat(kc.files, ":")
    local name = context_name or kc.current
    if not name then
      return fail("config", 0, "kubeconfig %s has no current-context and no context was given",
        files)
    end
    local ctx = kc.contexts[name]
    if not ctx then
      return fail("config", 0, "context \"%s\" not found in kubeconfig %s", name, files)
    end
    local cluster = kc.clusters[ctx.cluster or ""]
    if not cluster then
      return fail("config", 0, "context \"%s\": cluster \"%s\" not found in kubeconfig %s", name,
        tostring(ctx.cluster), files)
    end
    local user = {}
    if str(ctx.user) then
      user = kc.users[ctx.user]
      if not user then
        return fail("config", 0, "context \"%s\": user \"%s\" not found in kubeconfig %s", name,
          ctx.user, files)
      end
    end
    if not str(cluster.server) then
      return fail("config", 0, "cluster \"%s\" has no server in kubeconfig %s", ctx.cluster, files)
    end
    local cw = string.format("clusters[\"%s\"]", ctx.cluster)
    local uw = string.format("users[\"%s\"]", tostring(ctx.user))
    local s = { server = cluster.server, namespace = str(ctx.namespace) or "default",
      context = name }
    local err
    s.ca_data, err = b64field(cluster, "certificate-authority-data", cw)
    if err then return nil, err end
    s.ca_file = str(cluster["certificate-authority"])
    s.insecure = cluster["insecure-skip-tls-verify"] == true
    s.tls_server_name = str(cluster["tls-server-name"])
    s.proxy = str(cluster["proxy-url"])
    s.cert_data, err = b64field(user, "client-certificate-data", uw)
    if err then return nil, err end
    s.key_data, err = b64field(user, "client-key-data", uw)
    if err then return nil, err end
    if s.key_data then log.secret(s.key_data) end
    s.cert_file = str(user["client-certificate"])
    s.key_file = str(user["client-key"])
    s.token = str(user.token)
    s.token_file = str(user.tokenFile)
    s.username = str(user.username)
    s.password = str(user.password)
    if is_table(user.exec) then
      s.exec = user.exec
      if not str(user.exec.command) then
        return fail("config", 0, "%s.exec has no command", uw)
      end
    end
    if is_table(user["auth-provider"]) then
      return fail("config", 0, "%s uses auth-provider '%s', which vmdr does not support (use exec)",
        uw, tostring(user["auth-provider"].name))
    end
    if (s.cert_file or s.cert_data) and not (s.key_file or s.key_data) then
      return fail("config", 0, "%s has a client certificate but no client key", uw)
    end
    return s
  end

  local SA_DIR <const> = "/var/run/secrets/kubernetes.io/serviceaccount"

  local function from_in_cluster(opts)
    local dir = opts.serviceaccount_dir or SA_DIR
    local host = opts.service_host or os.getenv("KUBERNETES_SERVICE_HOST")
    local port = opts.service_port or os.getenv("KUBERNETES_SERVICE_PORT") or "443"
    if not host or host == "" then
      return fail("config", 0, "not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    end
    if host:find(":", 1, true) then host = "[" .. host .. "]" end
    local s = { server = "https://" .. host .. ":" .. port, token_file = dir .. "/token",
      ca_file = dir .. "/ca.crt", context = "in-cluster" }
    local ns = read_file(dir .. "/namespace")
    s.namespace = ns and ns:gsub("%s+$", "") or "default"
    if not read_file(s.token_file) then
      return fail("config", 0, "in-cluster token file %s cannot be read", s.token_file)
    end
    return s
  end

  local function split_paths(s)
    local t = {}
    for p in s:gmatch("[^:]+") do t[#t + 1] = p end
    return t
  end

  --- Chooses where the settings come from: explicit fields, kubeconfig(s), in-cluster.
  local function settings(opts)
    if opts.server then
      local s = {}
      for k, v in pairs(opts) do s[k] = v end
      s.namespace = opts.namespace or "default"
      if s.key_data then log.secret(s.key_data) end
      return s
    end
    local paths, explicit
    if opts.kubeconfig then
      paths = type(opts.kubeconfig) == "table" and opts.kubeconfig or { opts.kubeconfig }
      explicit = true
    elseif (os.getenv("KUBECONFIG") or "") ~= "" then
      paths = split_paths(os.getenv("KUBECONFIG"))
    elseif opts.in_cluster ~= false
        and (opts.in_cluster or (os.getenv("KUBERNETES_SERVICE_HOST") or "") ~= "") then
      return from_in_cluster(opts)
    else
      local home = os.getenv("HOME") or ""
      paths = { home .. "/.kube/config" }
    end
    local kc, err = load_kubeconfig(paths, explicit)
    if not kc then return nil, err end
    local s
    s, err = from_kubeconfig(kc, opts.context)
    if not s then return nil, err end
    if opts.namespace then s.namespace = opts.namespace end
    return s
  end
  M._settings = settings

  ---------------------------------------------------------------------------
  -- auth
  ---------------------------------------------------------------------------

  local TOKEN_FILE_TTL <const> = 60 -- seconds; client-go re-reads a token file every minute

  local function read_token_file(self, force)
    local a = self._auth
    local now = time.monotonic()
    if not force and a.file_token and now - a.file_read < TOKEN_FILE_TTL then
      return a.file_token
    end
    local text, rerr = read_file(a.token_file)
    if not text then
      return fail("unauthorized", 0, "token file %s cannot be read: %s", a.token_file,
        tostring(rerr))
    end
    local tok = text:gsub("^%s+", ""):gsub("%s+$", "")
    if tok == "" then return fail("unauthorized", 0, "token file %s is empty", a.token_file) end
    log.secret(tok)
    a.file_token, a.file_read = tok, now
    return tok
  end

  local EXEC_INFO_V1 <const> = '{"apiVersion":"client.authentication.k8s.io/v1",'
    .. '"kind":"ExecCredential","spec":{"interactive":false}}'

  local function run_exec(self)
    local ex = self._auth.exec
    local argv = { ex.command }
    for _, a in ipairs(is_table(ex.args) and ex.args or {}) do argv[#argv + 1] = tostring(a) end
    local env = { "KUBERNETES_EXEC_INFO=" .. EXEC_INFO_V1 }
    for _, e in ipairs(is_table(ex.env) and ex.env or {}) do
      if is_table(e) and str(e.name) then
        env[#env + 1] = e.name .. "=" .. tostring(e.value or "")
      end
    end
    local r, err = raw.exec(argv, env, self.exec_timeout or 60)
    if not r then
      if err.code == "not_found" and str(ex.installHint) then
        err.message = err.message .. " (" .. ex.installHint .. ")"
      end
      if err.code ~= "interrupted" then err.code = "unauthorized" end
      err.message = "exec credential plugin: " .. err.message
      return nil, err
    end
    if r.status ~= 0 then
      return fail("unauthorized", 0, "exec credential plugin '%s' exited with %d: %s", ex.command,
        r.status, log.redact((r.stderr or ""):sub(1, 400)))
    end
    local cred, derr = json.decode(r.stdout)
    if not is_table(cred) then
      return fail("unauthorized", 0, "exec credential plugin '%s' printed no ExecCredential JSON%s",
        ex.command, derr and (": " .. tostring(derr.message)) or "")
    end
    if str(ex.apiVersion) and cred.apiVersion ~= ex.apiVersion then
      return fail("unauthorized", 0,
        "exec credential plugin '%s' answered apiVersion %s, expected %s",
        ex.command, tostring(cred.apiVersion), ex.apiVersion)
    end
    local st = is_table(cred.status) and cred.status or {}
    local c = { expires = nil }
    if str(st.expirationTimestamp) then
      c.expires = time.parse(st.expirationTimestamp)
      if not c.expires then
        return fail("unauthorized", 0, "exec credential plugin '%s': bad expirationTimestamp '%s'",
          ex.command, st.expirationTimestamp)
      end
    end
    if str(st.token) then
      log.secret(st.token)
      c.token = st.token
    elseif str(st.clientCertificateData) and str(st.clientKeyData) then
      log.secret(st.clientKeyData)
      c.cert, c.key = st.clientCertificateData, st.clientKeyData
      local ok, serr = self._conn:set_client_cert(c.cert, c.key)
      if not ok then return nil, serr end
    else
      return fail("unauthorized", 0, "exec credential plugin '%s' gave neither a token nor a "
        .. "client certificate and key", ex.command)
    end
    self._auth.exec_cred = c
    return c
  end

  --- The Authorization header for the next request (nil: none, or client certificates).
  local function auth_header(self, force)
    local a = self._auth
    if a.exec then
      local c = a.exec_cred
      if force or not c or (c.expires and time.now() >= c.expires) then
        local err
        c, err = run_exec(self)
        if not c then return nil, err end
      end
      return c.token and ("Bearer " .. c.token) or false
    end
    if a.token then return "Bearer " .. a.token end
    if a.token_file then
      local tok, err = read_token_file(self, force)
      if not tok then return nil, err end
      return "Bearer " .. tok
    end
    if a.basic then return a.basic end
    return false
  end

  ---------------------------------------------------------------------------
  -- requests, errors, retries
  ---------------------------------------------------------------------------

  local STATUS_CODES <const> = {
    [400] = "invalid", [401] = "unauthorized", [403] = "forbidden", [404] = "not_found",
    [405] = "not_allowed", [406] = "bad_response", [409] = "conflict", [410] = "gone",
    [413] = "too_large", [415] = "unsupported", [422] = "invalid", [429] = "unavailable",
  }

  local function snippet(s)
    s = (s or ""):sub(1, 200):gsub("[%c]+", " ")
    return s
  end

  --- The error for a non-2xx response, carrying the API Status's reason and message.
  local function status_error(method, path, status, body, info)
    local code = STATUS_CODES[status] or (status >= 500 and "unavailable") or "error"
    local msg, reason
    if is_table(body) and body.kind == "Status" then
      reason = str(body.reason)
      msg = str(body.message)
    end
    if not msg then
      msg = string.format("HTTP %d", status)
      if info and info.raw and info.raw ~= "" then msg = msg .. ": " .. snippet(info.raw) end
    end
    local e = mkerr(code, status, "%s %s: %s%s", method, path:match("^[^?]*"),
      reason and (reason .. ": ") or "", msg)
    e.reason = reason
    if is_table(body) and is_table(body.details) then e.details = body.details end
    return e
  end

  local function is_json(ctype)
    return ctype and ctype:find("json", 1, true) ~= nil
  end

  local IDEMPOTENT <const> = { GET = true, HEAD = true, PUT = true, DELETE = true }
  local TRANSIENT <const> = { unreachable = true, timeout = true }

  local function backoff_delay(self, attempt, retry_after)
    if retry_after and retry_after >= 0 then
      return math.min(retry_after, self.retry_after_max)
    end
    local d = math.min(self.backoff_max, self.backoff * 2 ^ (attempt - 1))
    return d / 2 + math.random() * d / 2 -- jitter: between half and all of it
  end

  --- One API call with auth, retries and error mapping: body | nil, err.
  --- ro: body, content_type, accept, timeout, raw, stream_list, expect_json (default true).
  local function call(self, method, path, ro)
    ro = ro or {}
    local attempt, reauthed = 0, false
    while true do
      attempt = attempt + 1
      local authz, aerr = auth_header(self, false)
      if authz == nil then return nil, aerr end
      local status, body, info = self._conn:request(method, path, {
        body = ro.body, content_type = ro.content_type, accept = ro.accept,
        authorization = authz or nil, timeout = ro.timeout or self.timeout, raw = ro.raw,
        stream_list = ro.stream_list,
      })
      local err, retry_after
      if not status then
        err = body
        if not (TRANSIENT[err.code] and IDEMPOTENT[method]) then return nil, err end
      elseif status >= 200 and status < 300 then
        if ro.expect_json == false then return body, status, info end
        if body == nil and (info.raw or "") == "" and not info.decode_error then
          return true, status, info -- 204 No Content and other empty successes
        end
        if info.decode_error then
          return fail("bad_response", status, "%s %s: the response is not valid JSON: %s", method,
            path:match("^[^?]*"), info.decode_error.message)
        end
        if not is_json(info.content_type) then
          return fail("bad_response", status, "%s %s: expected JSON, the server sent %s%s", method,
            path:match("^[^?]*"),
            info.content_type ~= "" and info.content_type or "no content type",
            info.raw and info.raw ~= "" and (": " .. snippet(info.raw)) or "")
        end
        return body, status, info
      else
        err = status_error(method, path, status, body, info)
        retry_after = info.retry_after
        if status == 401 and not reauthed and (self._auth.token_file or self._auth.exec) then
          -- a rotated token file or an expired exec credential: fetch anew, once
          reauthed = true
          local a2, e2 = auth_header(self, true)
          if a2 == nil then return nil, e2 end
          attempt = attempt - 1
          err = nil
        elseif not (status == 429 or (status >= 500 and IDEMPOTENT[method])) then
          return nil, err
        end
      end
      if err then
        if attempt > self.retries then return nil, err end
        local d = backoff_delay(self, attempt, retry_after)
        log.debug("k8s: retrying", { method = method, path = path:match("^[^?]*"),
          error = err.code, attempt = attempt, delay = d })
        local ok, serr = time.sleep(d)
        if not ok then return nil, serr end
      end
    end
  end

  ---------------------------------------------------------------------------
  -- discovery: kubectl resource names
  ---------------------------------------------------------------------------

  local function add_resources(list, gv, out)
    local group, version = gv:match("^(.*)/([^/]+)$")
    if not group then group, version = "", gv end
    for _, r in ipairs(is_table(list) and is_table(list.resources) and list.resources or {}) do
      if str(r.name) and not r.name:find("/", 1, true) then
        out[#out + 1] = { group = group, version = version, resource = r.name,
          singular = str(r.singularName) or (r.kind and r.kind:lower()) or "",
          kind = r.kind, namespaced = r.namespaced == true,
          short = is_table(r.shortNames) and r.shortNames or {} }
      end
    end
  end

  local function matches(e, name, rest)
    if rest ~= "" and rest ~= e.group and rest ~= (e.version .. "." .. e.group)
        and not (e.group == "" and rest == e.version) then
      return false
    end
    if name == e.resource or name == e.singular or (e.kind and name == e.kind:lower()) then
      return true
    end
    for _, s in ipairs(e.short) do if s == name then return true end end
    return false
  end

  local function disc_core(self)
    local d = self._disc
    if not d.core then
      local body, err = call(self, "GET", "/api/v1")
      if not body then return nil, err end
      d.core = {}
      add_resources(body, "v1", d.core)
    end
    return d.core
  end

  local function disc_groups(self, rest)
    local d = self._disc
    if not d.groups then
      local body, err = call(self, "GET", "/apis")
      if not body then return nil, err end
      d.groups = {}
      for _, g in ipairs(is_table(body.groups) and body.groups or {}) do
        local pv = is_table(g.preferredVersion) and g.preferredVersion.groupVersion
          or (is_table(g.versions) and is_table(g.versions[1]) and g.versions[1].groupVersion)
        if str(g.name) and str(pv) then d.groups[#d.groups + 1] = { name = g.name, gv = pv } end
      end
      d.by_gv = {}
    end
    local out = {}
    for _, g in ipairs(d.groups) do
      if rest == "" or rest == g.name or rest:sub(-#g.name - 1) == "." .. g.name then
        if not d.by_gv[g.gv] then
          local body, err = call(self, "GET", "/apis/" .. g.gv)
          if not body and err.code ~= "not_found" then return nil, err end
          d.by_gv[g.gv] = {}
          add_resources(body, g.gv, d.by_gv[g.gv])
        end
        for _, e in ipairs(d.by_gv[g.gv]) do out[#out + 1] = e end
      end
    end
    return out
  end

  local function resolve_uncached(self, res)
    local name, rest = res:lower():match("^([^.]+)%.?(.*)$")
    if not name then return fail("invalid", 0, "bad resource name '%s'", res) end
    if rest == "" or rest == "v1" then
      local core, err = disc_core(self)
      if not core then return nil, err end
      for _, e in ipairs(core) do if matches(e, name, rest) then return e end end
    end
    local entries, err = disc_groups(self, rest)
    if not entries then return nil, err end
    for _, e in ipairs(entries) do if matches(e, name, rest) then return e end end
    return nil
  end

  --- Resolves a kubectl-style name ("vm", "virtualmachines.kubevirt.io", "pvc") or a table
  --- { group=, version=, resource=, namespaced= } to a discovery entry.
  local function resolve(self, res)
    if is_table(res) then
      if not (str(res.resource) and res.version) then
        error("resource table needs resource= and version=", 3)
      end
      res.group = res.group or ""
      return res
    end
    if type(res) ~= "string" then error("resource must be a string or a table", 3) end
    local hit = self._resolved[res]
    if hit then return hit end
    local e, err = resolve_uncached(self, res)
    if err then return nil, err end
    if not e then
      -- a resource installed since the cache was filled: look once more
      self._disc = {}
      e, err = resolve_uncached(self, res)
      if err then return nil, err end
      if not e then
        return fail("not_found", 0, "the server doesn't have a resource type \"%s\"", res)
      end
    end
    self._resolved[res] = e
    return e
  end

  local function urlenc(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
    end))
  end

  local function query(params)
    local keys, parts = {}, {}
    for k in pairs(params) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. urlenc(params[k]) end
    return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
  end

  local function res_path(e, ns, name)
    local p = e.group == "" and ("/api/" .. e.version) or ("/apis/" .. e.group .. "/" .. e.version)
    if e.namespaced and ns then p = p .. "/namespaces/" .. urlenc(ns) end
    p = p .. "/" .. e.resource
    if name then p = p .. "/" .. urlenc(name) end
    return p
  end

  ---------------------------------------------------------------------------
  -- the client
  ---------------------------------------------------------------------------

  ---@class vmdr.k8s.Client
  local Client = {}
  local client_mt = { __index = Client, __name = CLIENT_NAME }

  local function check(self)
    if getmetatable(self) ~= client_mt then error("expected a " .. CLIENT_NAME, 3) end
    if not self._conn then error("attempt to use a closed " .. CLIENT_NAME, 3) end
    return self
  end

  local function close_client(self)
    if self._conn then
      self._conn:close()
      self._conn = nil
    end
    return true
  end
  client_mt.__close = close_client
  client_mt.__gc = close_client
  client_mt.__tostring = function(self)
    if not self._conn then return CLIENT_NAME .. " (closed)" end
    return string.format("%s (%s, context %s)", CLIENT_NAME, self.server, self.context or "-")
  end

  --- Creates a client.
  --- opts: kubeconfig (path or list; else $KUBECONFIG, else in-cluster, else ~/.kube/config),
  --- context, namespace, or the settings themselves (server, token, token_file, ca_file,
  --- ca_data, cert_file, cert_data, key_file, key_data, username, password, insecure,
  --- tls_server_name, proxy, exec); in_cluster (force), serviceaccount_dir; timeout (seconds per
  --- call, 30), retries (4), backoff (0.2 s), backoff_max (5 s), page_size (500).
  ---@param opts table|nil
  ---@return vmdr.k8s.Client|nil, table|nil
  local insecure_warned = {}   -- server -> true once its warning is logged

  function M.client(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("k8s.client: opts must be a table", 2) end
    local s, err = settings(opts)
    if not s then return nil, err end
    if s.insecure and not insecure_warned[s.server] then
      -- once per server and process: the monitor opens two clients, a workflow may reopen
      insecure_warned[s.server] = true
      log.warn("k8s: TLS certificate verification is disabled (insecure-skip-tls-verify)",
        { server = s.server, context = s.context })
    end
    if s.token then log.secret(s.token) end
    if s.password then log.secret(s.password) end
    local conn
    conn, err = raw.connect {
      server = s.server, ca_file = s.ca_file, ca_data = s.ca_data, cert_file = s.cert_file,
      cert_data = s.cert_data, key_file = s.key_file, key_data = s.key_data,
      insecure = s.insecure or false, tls_server_name = s.tls_server_name, proxy = s.proxy,
      connect_timeout = opts.connect_timeout,
    }
    if not conn then return nil, err end
    local self = setmetatable({
      _conn = conn, server = s.server, namespace = s.namespace, context = s.context,
      timeout = opts.timeout or 30, retries = opts.retries or 4, backoff = opts.backoff or 0.2,
      backoff_max = opts.backoff_max or 5, retry_after_max = opts.retry_after_max or 30,
      page_size = opts.page_size or 500, exec_timeout = opts.exec_timeout,
      _disc = {}, _resolved = {},
      _auth = { token = s.token, token_file = s.token_file, exec = s.exec },
    }, client_mt)
    if s.username and s.password then
      self._auth.basic = "Basic " .. raw.base64_encode(s.username .. ":" .. s.password)
      log.secret(self._auth.basic:sub(7))
    end
    return self
  end

  --- Closes the client's connections. Idempotent.
  ---@return boolean
  function Client:close() return close_client(self) end

  --- Resolves a kubectl-style resource name through discovery (cached per client).
  ---@param res string|table
  ---@return table|nil, table|nil
  function Client:resource(res)
    check(self)
    return resolve(self, res)
  end

  local function ns_for(self, e, ns)
    if not e.namespaced then return nil end
    return ns or self.namespace
  end

  --- get(res, ns, name) -> object | nil, err. ns nil: the context's namespace.
  ---@param res string|table
  ---@param ns string|nil
  ---@param name string
  function Client:get(res, ns, name)
    check(self)
    if type(name) ~= "string" then error("get: name must be a string", 2) end
    local e, err = resolve(self, res)
    if not e then return nil, err end
    return call(self, "GET", res_path(e, ns_for(self, e, ns), name))
  end

  --- list(res, opts) -> list | nil, err. opts: namespace (nil: all namespaces),
  --- labelSelector, fieldSelector, limit (page size; 0: one request). Follows continue
  --- to the end: the list holds every item or the call fails. list.metadata.resourceVersion
  --- is the snapshot's resourceVersion (for a watch).
  ---@param res string|table
  ---@param opts table|nil
  function Client:list(res, opts)
    check(self)
    opts = opts or {}
    local e, err = resolve(self, res)
    if not e then return nil, err end
    local base = res_path(e, e.namespaced and opts.namespace or nil)
    local limit = opts.limit or self.page_size
    local restarted = false
    ::again::
    local params = { labelSelector = opts.labelSelector, fieldSelector = opts.fieldSelector }
    if limit and limit > 0 then params.limit = limit end
    local result, items
    while true do
      local page
      -- each page is decoded while it downloads (the whole body is never held)
      page, err = call(self, "GET", base .. query(params), { stream_list = true })
      if not page then
        if err.code == "gone" and params.continue and not restarted then
          -- the continue token expired: one fresh start, else an error (never partial)
          restarted = true
          goto again
        end
        return nil, err
      end
      if not is_table(page.items) and page.items ~= nil and page.items ~= json.null then
        return fail("bad_response", 200, "GET %s: the list has no items array", base)
      end
      if not result then
        result = page
        items = is_table(page.items) and page.items or setmetatable({}, json.array_mt)
        result.items = items
      else
        local n = #items
        for i, it in ipairs(page.items or {}) do items[n + i] = it end
      end
      local md = is_table(page.metadata) and page.metadata or {}
      if str(md["continue"]) then
        params.continue = md["continue"]
      else
        break
      end
    end
    if is_table(result.metadata) then result.metadata["continue"] = nil end
    return result
  end

  local function obj_ns_name(self, e, obj, ns)
    local md = is_table(obj) and obj.metadata
    if not is_table(md) then error("object has no metadata", 3) end
    return ns_for(self, e, ns or md.namespace), md.name
  end

  --- create(res, obj [, opts]) -> created object | nil, err (409 AlreadyExists: conflict)
  ---@param res string|table
  ---@param obj table
  ---@param opts table|nil  { namespace=, dryRun= }
  function Client:create(res, obj, opts)
    check(self)
    opts = opts or {}
    local e, err = resolve(self, res)
    if not e then return nil, err end
    local ns = obj_ns_name(self, e, obj, opts.namespace)
    local q = query { dryRun = opts.dryRun and "All" or nil }
    return call(self, "POST", res_path(e, ns) .. q, { body = obj })
  end

  --- update(res, obj) -> object | nil, err. PUT with obj.metadata.resourceVersion as the
  --- precondition: a stale one is code "conflict".
  ---@param res string|table
  ---@param obj table
  function Client:update(res, obj, opts)
    check(self)
    opts = opts or {}
    local e, err = resolve(self, res)
    if not e then return nil, err end
    local ns, name = obj_ns_name(self, e, obj, opts.namespace)
    if not str(name) then error("update: object has no metadata.name", 2) end
    return call(self, "PUT", res_path(e, ns, name), { body = obj })
  end

  local PATCH_TYPES <const> = {
    merge = "application/merge-patch+json",
    json = "application/json-patch+json",
    strategic = "application/strategic-merge-patch+json",
  }

  --- patch(res, ns, name, patch [, opts]) -> object | nil, err
  --- opts.type: "merge" (default), "json" (a JSON patch list), "strategic".
  ---@param patch table|string
  function Client:patch(res, ns, name, patch, opts)
    check(self)
    opts = opts or {}
    local ctype = PATCH_TYPES[opts.type or "merge"]
    if not ctype then error("patch: type must be merge, json or strategic", 2) end
    if type(patch) ~= "table" and type(patch) ~= "string" then
      error("patch: the patch must be a table or a JSON string", 2)
    end
    if opts.type == "json" and type(patch) == "table" and getmetatable(patch) == nil then
      setmetatable(patch, json.array_mt)
    end
    local e, err = resolve(self, res)
    if not e then return nil, err end
    return call(self, "PATCH", res_path(e, ns_for(self, e, ns), name),
      { body = patch, content_type = ctype })
  end

  --- delete(res, ns, name [, opts]) -> the server's answer (object or Status) | nil, err
  --- opts: propagationPolicy, gracePeriodSeconds, preconditions { resourceVersion=, uid= }.
  function Client:delete(res, ns, name, opts)
    check(self)
    opts = opts or {}
    if type(name) ~= "string" then error("delete: name must be a string", 2) end
    local e, err = resolve(self, res)
    if not e then return nil, err end
    local body
    if opts.propagationPolicy or opts.gracePeriodSeconds or opts.preconditions then
      body = { apiVersion = "v1", kind = "DeleteOptions",
        propagationPolicy = opts.propagationPolicy, gracePeriodSeconds = opts.gracePeriodSeconds,
        preconditions = opts.preconditions }
    end
    return call(self, "DELETE", res_path(e, ns_for(self, e, ns), name), { body = body })
  end

  --- request(method, path [, body [, opts]]) -> decoded body, status | nil, err
  --- For anything the verbs do not cover. A non-2xx answer is an error; opts.accept,
  --- opts.content_type, opts.timeout; opts.raw = true returns the bytes (any content type).
  function Client:request(method, path, body, opts)
    check(self)
    if type(method) ~= "string" or type(path) ~= "string" then
      error("request: method and path must be strings", 2)
    end
    opts = opts or {}
    local r, status, info = call(self, method:upper(), path, { body = body,
      content_type = opts.content_type, accept = opts.accept, timeout = opts.timeout,
      raw = opts.raw, expect_json = not opts.raw })
    if r == nil and type(status) == "table" then return nil, status end
    if opts.raw then return info and info.raw or "", status end
    return r, status
  end

  ---------------------------------------------------------------------------
  -- watch
  ---------------------------------------------------------------------------

  local WATCH_TRANSIENT <const> = {
    unreachable = true, timeout = true, unavailable = true, eof = true, bad_response = true,
  }

  --- watch(res, opts) -> iter, nil, nil, watch (STYLE rule 5):
  ---   for type, obj in c:watch("vm", { labelSelector = ... }) do ... end
  --- type is ADDED, MODIFIED, DELETED; RESYNC (obj: the full list, after the start without
  --- opts.resourceVersion and after a 410 Gone: replace your view with it); IDLE (obj nil)
  --- when opts.idle seconds passed without an event. Resumes from the last
  --- resourceVersion (BOOKMARKs update it), reconnects with backoff; a fatal error, or
  --- opts.max_failures (30) failures in a row, RAISES the err table.
  --- opts: namespace, labelSelector, fieldSelector, resourceVersion, idle, timeout (the
  --- server's timeoutSeconds per connection, 300-600 s at random), backoff (0.5 s),
  --- backoff_max (30 s).
  ---@param res string|table
  ---@param opts table|nil
  function Client:watch(res, opts)
    check(self)
    opts = opts or {}
    local e, rerr = resolve(self, res)
    if not e then error(rerr, 2) end
    local self_ = self
    local w = {
      rv = opts.resourceVersion, stream = nil, failures = 0, reauthed = false, closed = false,
      -- client-go's spread: 5-10 minutes, so many watchers do not reconnect in step
      idle = opts.idle, server_timeout = opts.timeout or (300 + math.random(0, 300)),
      backoff = opts.backoff or 0.5, backoff_max = opts.backoff_max or 30,
      max_failures = opts.max_failures or 30, last = time.monotonic(),
    }
    local ns = e.namespaced and opts.namespace or nil
    local base = res_path(e, ns)

    local function drop()
      if w.stream then w.stream:close(); w.stream = nil end
    end

    local handle_mt = { __name = "vmdr.k8s.Watch" }
    handle_mt.__index = {
      close = function() drop(); w.closed = true; return true end,
      resource_version = function() return w.rv end,
      -- the open stream's buffer: bytes allocated, bytes not yet consumed (0, 0: none open)
      buffered = function()
        if w.stream then return w.stream:buffered() end
        return 0, 0
      end,
    }
    handle_mt.__close = function() drop(); w.closed = true end
    handle_mt.__gc = handle_mt.__close
    handle_mt.__tostring = function()
      return "vmdr.k8s.Watch (" .. base .. (w.closed and ", closed)" or ")")
    end
    local handle = setmetatable({}, handle_mt)

    -- A failure: transient ones schedule a retry after a backoff, others (or too many) raise.
    local function failed(err)
      drop()
      if err.code == "eof" and w.failures == 0 then
        -- the server ended a stream that made progress (its timeoutSeconds, or a drop):
        -- resume at once; a stream that ends again without an event backs off
        w.failures = 1
        return
      end
      if err.code == "interrupted" or not WATCH_TRANSIENT[err.code] then error(err, 0) end
      w.failures = w.failures + 1
      if w.failures > w.max_failures then
        err.message = err.message .. string.format(" (%d failures in a row)", w.failures)
        error(err, 0)
      end
      local d = math.min(w.backoff_max, w.backoff * 2 ^ (w.failures - 1))
      d = d / 2 + math.random() * d / 2
      log.debug("k8s: watch reconnecting", { path = base, error = err.code, delay = d })
      w.retry_at = time.monotonic() + d
    end

    local function open()
      local authz, aerr = auth_header(self_, false)
      if authz == nil then error(aerr, 0) end
      local params = { watch = "true", allowWatchBookmarks = "true",
        timeoutSeconds = tostring(w.server_timeout), resourceVersion = w.rv,
        labelSelector = opts.labelSelector, fieldSelector = opts.fieldSelector }
      local path = base .. query(params)
      local s, err = self_._conn:stream(path, { authorization = authz or nil,
        timeout = self_.timeout, stall = w.server_timeout + 60 })
      if not s then return failed(err) end
      local status, ctype = s:status()
      if status ~= 200 then
        local rest = s:rest(self_.timeout) or ""
        s:close()
        local body = is_json(ctype) and json.decode(rest) or nil
        err = status_error("GET", path, status, body, { raw = rest })
        if status == 410 then
          w.rv = nil -- re-list
          return
        end
        if status == 401 and not w.reauthed and (self_._auth.token_file or self_._auth.exec) then
          w.reauthed = true
          local a2, e2 = auth_header(self_, true)
          if a2 == nil then error(e2, 0) end
          return
        end
        if status == 429 or status >= 500 then err.code = "unavailable" end
        return failed(err)
      end
      if not is_json(ctype) then
        s:close()
        error(mkerr("bad_response", status,
          "GET %s: expected a JSON watch stream, the server sent %s", base,
          ctype ~= "" and ctype or "no content type"), 0)
      end
      w.stream = s
    end

    local function iter()
      while not w.closed do
        local now = time.monotonic()
        if w.idle and now >= w.last + w.idle then
          -- also while reconnecting: a debounce in the loop must not wait for the server
          w.last = now
          return "IDLE", nil
        end
        if w.retry_at and now < w.retry_at then
          local d = w.retry_at - now
          if w.idle then d = math.min(d, w.last + w.idle - now) end
          local ok, serr = time.sleep(d)
          if not ok then error(serr, 0) end
        elseif w.rv == nil then
          w.retry_at = nil
          local list, err = self_:list(e, { namespace = ns, labelSelector = opts.labelSelector,
            fieldSelector = opts.fieldSelector })
          if not list then
            failed(err)
          else
            w.rv = is_table(list.metadata) and str(list.metadata.resourceVersion) or nil
            if not w.rv then
              error(mkerr("bad_response", 200, "GET %s: the list has no resourceVersion", base), 0)
            end
            w.last = time.monotonic()
            return "RESYNC", list
          end
        elseif not w.stream then
          w.retry_at = nil
          open()
        else
          -- at least 1 ms: stream:next(0) means "no time limit", and a wait that rounds
          -- down to 0 ms would block until the server's next bytes (a BOOKMARK, a minute)
          local wait = w.idle and math.max(0.001, w.last + w.idle - now) or 0
          local ev, err = w.stream:next(wait)
          if ev == false then
            -- no line within the idle time: the top of the loop yields IDLE
          elseif ev == nil then
            failed(err)
          elseif not is_table(ev) or type(ev.type) ~= "string" then
            failed(mkerr("bad_response", 200, "GET %s: a watch event without a type", base))
          elseif ev.type == "ERROR" then
            local st = is_table(ev.object) and ev.object or {}
            if st.code == 410 then
              drop()
              w.rv = nil
            else
              local code = math.tointeger(st.code) or 500
              local ferr = status_error("GET", base, code, st)
              if code >= 500 or code == 429 then ferr.code = "unavailable" end
              failed(ferr)
            end
          else
            local obj = ev.object
            local md = is_table(obj) and is_table(obj.metadata) and obj.metadata or {}
            if str(md.resourceVersion) then w.rv = md.resourceVersion end
            w.failures, w.reauthed = 0, false
            if ev.type ~= "BOOKMARK" then
              w.last = time.monotonic()
              return ev.type, obj
            end
          end
        end
      end
      return nil
    end
    return iter, nil, nil, handle
  end

  M.Client = Client
  return M
end
