-- Support for the vmdr.k8s specs: test certificates (openssl), the scripted server
-- (spec/support/script-server.py) and kubeconfig files. Test code only.
local h = require "support.helper"
local json = require "vmdr.json"
local time = require "vmdr.time"

local M = {}

local function openssl(args)
  h.need "openssl"
  local argv = { "openssl" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = h.exec(argv)
  if r.code ~= 0 then error("openssl " .. table.concat(args, " ") .. ": " .. r.stderr) end
end

--- Makes a CA, a server certificate for 127.0.0.1/localhost/k8s.test and a client
--- certificate (CN vmdr-test, O system:masters) in dir; returns their paths and PEMs.
function M.certs(dir)
  local c = { dir = dir }
  local function p(n) return dir .. "/" .. n end
  openssl { "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
    "/CN=vmdr-test-ca",
    "-keyout", p "ca.key", "-out", p "ca.crt" }
  h.write(p "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:k8s.test\n")
  openssl { "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
    p "server.key",
    "-out", p "server.csr" }
  openssl { "x509", "-req", "-in", p "server.csr", "-CA", p "ca.crt", "-CAkey", p "ca.key",
    "-CAcreateserial", "-days", "2", "-extfile", p "san.ext", "-out", p "server.crt" }
  openssl { "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=vmdr-test",
    "-keyout", p "client.key", "-out", p "client.csr" }
  openssl { "x509", "-req", "-in", p "client.csr", "-CA", p "ca.crt", "-CAkey", p "ca.key",
    "-CAcreateserial", "-days", "2", "-out", p "client.crt" }
  -- a CA the server does not use, for "wrong CA" cases
  openssl { "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other-ca",
    "-keyout", p "other.key", "-out", p "other.crt" }
  for _, n in ipairs { "ca", "server", "client", "other" } do
    c[n .. "_crt"] = p(n .. ".crt")
    c[n .. "_key"] = p(n .. ".key")
  end
  c.ca_pem = h.read(c.ca_crt)
  c.client_pem = h.read(c.client_crt)
  c.client_key_pem = h.read(c.client_key)
  return c
end

local function b64(s) return require("vmdr.k8s")._raw.base64_encode(s) end
M.b64 = b64

--- Writes a kubeconfig (JSON, which is YAML too) from a Lua table; returns its path.
function M.kubeconfig(path, t)
  t.apiVersion = t.apiVersion or "v1"
  t.kind = t.kind or "Config"
  return h.write(path, json.encode(t))
end

--- Starts the scripted server: routes as in script-server.py; opts.tls = certs (from
--- M.certs), opts.client_ca = true to require client certificates.
function M.script_server(dir, routes, opts)
  opts = opts or {}
  h.need "python3"
  local srv = { dir = dir, script = dir .. "/script.json", log = dir .. "/requests.jsonl" }
  h.write(srv.script, json.encode { routes = routes })
  h.write(srv.log, "")
  local argv = { "python3", h.source_dir .. "/spec/support/script-server.py", srv.script, srv.log }
  if opts.tls then
    for _, a in ipairs { "--tls", opts.tls.server_crt,
      opts.tls.server_key } do argv[#argv + 1] = a end
    if opts.client_ca then argv[#argv + 1] = "--client-ca"; argv[#argv + 1] = opts.tls.ca_crt end
  end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = h.q(a) end
  local cmd = table.concat(parts, " ")
    .. " >" .. h.q(dir .. "/port") .. " 2>" .. h.q(dir .. "/stderr")
    .. " </dev/null & echo $! >" .. h.q(dir .. "/pid")
  assert(h.sh("sh -c " .. h.q(cmd)) == 0)
  local deadline = time.monotonic() + 20
  while not (h.read(dir .. "/port") or ""):match("%d+\n") do
    if time.monotonic() > deadline then
      error("script server did not start: " .. (h.read(dir .. "/stderr") or ""))
    end
    time.sleep(0.02)
  end
  srv.port = tonumber(h.read(dir .. "/port"):match("%d+"))
  srv.pid = h.read(dir .. "/pid"):match("%d+")
  srv.url = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. srv.port
  local gen = 0
  function srv.set(new_routes)
    gen = gen + 1
    h.write(srv.script, json.encode { gen = gen, routes = new_routes })
  end
  function srv.requests()
    local out = {}
    for line in (h.read(srv.log) or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
    return out
  end
  function srv.stop()
    if srv.pid then h.sh("kill " .. srv.pid .. " 2>/dev/null"); srv.pid = nil end
  end
  return srv
end

--- A JSON reply.
function M.reply(status, obj, extra)
  local r = { status = status, headers = { ["Content-Type"] = "application/json" },
    body = type(obj) == "string" and obj or json.encode(obj) }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

--- A Status reply as the API server sends it.
function M.status(code, reason, message)
  return M.reply(code, { kind = "Status", apiVersion = "v1", metadata = {}, status = "Failure",
    reason = reason, message = message, code = code })
end

--- Starts vmdr-sim through spec/support/sim.lua (free loopback port): opts.fixtures,
--- tls, token, client_ca (a certs table from M.certs: client certificates required, and
--- the kubeconfig it writes uses certs.client_*), generate, args. Adds s.ca_pem, and an
--- admin() that waits out a restart fault (the server is briefly gone).
function M.sim(opts)
  local sim = require "support.sim"
  local o = { fixtures = opts.fixtures or false, tls = opts.tls, token = opts.token,
    generate = opts.generate, args = opts.args, bookmark_interval = opts.bookmark_interval }
  if opts.client_ca then
    o.client_ca = opts.client_ca.ca_crt
    o.client_cert = opts.client_ca.client_crt
    o.client_key = opts.client_ca.client_key
  end
  local s = sim.start(o)
  if s.ca_file then s.ca_pem = h.read(s.ca_file) end
  local function retrying(f)
    return function(...)
      local deadline = time.monotonic() + 30
      while true do
        local ok, r = pcall(f, ...)
        if ok then return r end
        if not tostring(r):match(": 0 ") or time.monotonic() > deadline then error(r, 2) end
        time.sleep(0.1)
      end
    end
  end
  s.admin = retrying(s.admin)
  s.state = retrying(s.state)
  return s
end

return M
