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
  openssl { "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vmdr-test-ca",
    "-keyout", p "ca.key", "-out", p "ca.crt" }
  h.write(p "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:k8s.test\n")
  openssl { "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", p "server.key",
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
    for _, a in ipairs { "--tls", opts.tls.server_crt, opts.tls.server_key } do argv[#argv + 1] = a end
    if opts.client_ca then argv[#argv + 1] = "--client-ca"; argv[#argv + 1] = opts.tls.ca_crt end
  end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = h.q(a) end
  local cmd = table.concat(parts, " ") .. " >" .. h.q(dir .. "/port") .. " 2>" .. h.q(dir .. "/stderr")
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

--- Starts vmdr-sim on a free loopback port: opts.fixtures (a dir or a list of dirs),
--- tls, token, client_ca (a certs table from M.certs: client certificates required, and
--- the kubeconfig it writes uses certs.client_*), generate (N synthetic VMs), args (more
--- argv). Returns { url=, kubeconfig=, token=, ca_pem=, stop=, admin(faults)=, state()= }.
function M.sim(opts)
  opts = opts or {}
  local d = h.tmpdir("sim")
  local argv = { h.vmdr_sim, "--listen", "127.0.0.1:0", "--kubeconfig-out", d .. "/kubeconfig" }
  local fx = opts.fixtures
  for _, f in ipairs(type(fx) == "table" and fx or { fx }) do
    argv[#argv + 1] = "--fixtures"; argv[#argv + 1] = f
  end
  if opts.tls or opts.client_ca then argv[#argv + 1] = "--tls" end
  if opts.token then argv[#argv + 1] = "--token"; argv[#argv + 1] = opts.token end
  if opts.client_ca then
    for _, a in ipairs { "--client-ca", opts.client_ca.ca_crt, "--kubeconfig-client-cert",
      opts.client_ca.client_crt, "--kubeconfig-client-key", opts.client_ca.client_key } do
      argv[#argv + 1] = a
    end
  end
  if opts.generate then argv[#argv + 1] = "--generate"; argv[#argv + 1] = tostring(opts.generate) end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = h.q(a) end
  local cmd = table.concat(parts, " ") .. " >" .. h.q(d .. "/out") .. " 2>" .. h.q(d .. "/err")
    .. " </dev/null & echo $! >" .. h.q(d .. "/pid")
  assert(h.sh("sh -c " .. h.q(cmd)) == 0)
  local deadline = time.monotonic() + 60
  local url
  repeat
    url = (h.read(d .. "/out") or ""):match("listening on (%S+)")
    if not url then
      if time.monotonic() > deadline then
        error("vmdr-sim did not start: " .. (h.read(d .. "/err") or ""))
      end
      time.sleep(0.02)
    end
  until url
  while not h.read(d .. "/kubeconfig") do time.sleep(0.02) end
  local s = { url = url, kubeconfig = d .. "/kubeconfig", token = opts.token, dir = d,
    pid = h.read(d .. "/pid"):match("%d+") }
  local kc = h.read(s.kubeconfig)
  local ca = kc:match("certificate%-authority%-data:%s*(%S+)")
  s.ca_pem = ca and require("vmdr.k8s")._raw.base64_decode(ca) or nil
  if s.ca_pem then h.write(d .. "/ca.crt", s.ca_pem) end
  local function curl(method, path, body)
    local a = { "curl", "-sS", "--max-time", "30", "-X", method }
    if s.ca_pem then a[#a + 1] = "--cacert"; a[#a + 1] = d .. "/ca.crt" end
    if opts.token then a[#a + 1] = "-H"; a[#a + 1] = "Authorization: Bearer " .. opts.token end
    if opts.client_ca then
      for _, x in ipairs { "--cert", opts.client_ca.client_crt, "--key", opts.client_ca.client_key } do
        a[#a + 1] = x
      end
    end
    if body then
      for _, x in ipairs { "-H", "Content-Type: application/json", "--data-binary", body } do
        a[#a + 1] = x
      end
    end
    a[#a + 1] = "-w"; a[#a + 1] = "\n%{http_code}"
    a[#a + 1] = url .. path
    local r, text, code
    local deadline2 = time.monotonic() + 30
    repeat
      -- the sim may be in a restart fault: wait for it to come back
      r = h.exec(a)
      text, code = r.stdout:match("^(.*)\n(%d+)$")
      if code ~= "000" or time.monotonic() > deadline2 then break end
      time.sleep(0.1)
    until false
    if r.code ~= 0 or not code or code:sub(1, 1) ~= "2" then
      error(string.format("vmdr-sim %s %s failed (%s): %s %s", method, path, tostring(code),
        r.stdout, r.stderr))
    end
    return text
  end
  --- Sets faults (POST /_sim/faults), e.g. { fail = { count = 2, status = 503 } }.
  function s.admin(faults) return json.decode(curl("POST", "/_sim/faults", json.encode(faults))) end
  --- GET /_sim/state: resourceVersion, requests, objects, faults.
  function s.state() return json.decode(curl("GET", "/_sim/state")) end
  function s.stop()
    if s.pid then
      h.sh("kill " .. s.pid .. " 2>/dev/null")
      s.pid = nil
    end
  end
  return s
end

return M
