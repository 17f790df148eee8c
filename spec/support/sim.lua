-- Starts and drives a vmdr-sim for a spec: a real server on 127.0.0.1 with a free port.
--
--   local sim = require "support.sim"
--   local s = sim.start { tls = true, token = true, generate = 20 }
--   -- s.url, s.kubeconfig, s.token, s.ca_file, s.dir, s.pid, s.stdout_file, s.stderr_file
--   s.admin { fail = { count = 2, status = 503 } }    -- POST /_sim/faults, returns the faults
--   s.state()                                         -- GET /_sim/state, decoded
--   s.curl { method = "GET", path = "/api/v1/namespaces" } -- {code=, body=, headers=}
--   s.stop()
--
-- Options of sim.start (all optional):
--   fixtures   directory (or list of them) to load; default the shared fixtures; false = none
--   tls        serve HTTPS with a generated CA (s.ca_file holds the CA PEM)
--   token      a bearer token string, or true for a random one (s.token)
--   client_ca  PEM file: accept client certificates signed by it (implies tls)
--   client_cert, client_key  PEM files to put in the kubeconfig as client-certificate-data
--   generate   N synthetic DR-enabled VMs with their PVCs and PVs
--   state      state file (--state)
--   faults     a table applied at start (--faults)
--   bookmark_interval  seconds between watch BOOKMARKs (default 5)
--   args       extra argv for vmdr-sim
-- Test code only: it shells out to vmdr-sim and curl through support.helper.
local h = require "support.helper"
local t = require "vmdr.time"

local M = {}

local json
do
  local ok, j = pcall(require, "vmdr.json")
  if ok then json = j else json = require "cjson" end
end

local function encode(v) return json.encode(v) end
local function decode(s)
  local ok, v = pcall(json.decode, s)
  if ok then return v end
  return nil
end
M.decode, M.encode = decode, encode

local function random_token()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(16)
  f:close()
  return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Running and not a zombie (the sim is reparented when its sh exits).
local function alive(pid)
  local st = h.read("/proc/" .. pid .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end

--- Starts vmdr-sim; raises with its stderr if it does not come up within 30 s.
---@param opts table|nil
---@return table server
function M.start(opts)
  opts = opts or {}
  h.need("curl")
  local dir = h.tmpdir("sim")
  local s = { dir = dir, kubeconfig = dir .. "/kubeconfig", stdout_file = dir .. "/stdout",
    stderr_file = dir .. "/stderr" }
  local argv = { h.vmdr_sim, "--listen", "127.0.0.1:0", "--kubeconfig-out", s.kubeconfig }
  local fixtures = opts.fixtures
  if fixtures == nil then fixtures = h.fixtures end
  if fixtures then
    if type(fixtures) ~= "table" then fixtures = { fixtures } end
    for _, f in ipairs(fixtures) do argv[#argv + 1] = "--fixtures"; argv[#argv + 1] = f end
  end
  if opts.tls or opts.client_ca then argv[#argv + 1] = "--tls" end
  if opts.token then
    s.token = opts.token == true and random_token() or opts.token
    -- a file, not argv: argv is visible to every user in ps
    h.write(dir .. "/token", s.token)
    argv[#argv + 1] = "--token-file"; argv[#argv + 1] = dir .. "/token"
  end
  if opts.client_ca then argv[#argv + 1] = "--client-ca"; argv[#argv + 1] = opts.client_ca end
  if opts.client_cert then
    argv[#argv + 1] = "--kubeconfig-client-cert"; argv[#argv + 1] = opts.client_cert
    argv[#argv + 1] = "--kubeconfig-client-key"; argv[#argv + 1] = opts.client_key
  end
  if opts.generate then argv[#argv + 1] = "--generate"; argv[#argv + 1] = tostring(opts.generate) end
  if opts.state then argv[#argv + 1] = "--state"; argv[#argv + 1] = opts.state end
  if opts.faults then argv[#argv + 1] = "--faults"; argv[#argv + 1] = encode(opts.faults) end
  if opts.bookmark_interval then
    argv[#argv + 1] = "--bookmark-interval"; argv[#argv + 1] = tostring(opts.bookmark_interval)
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = h.q(a) end
  local inner = table.concat(parts, " ") .. " >" .. h.q(s.stdout_file) .. " 2>" .. h.q(s.stderr_file)
    .. " </dev/null & echo $! >" .. h.q(dir .. "/pid")
  assert(h.sh("sh -c " .. h.q(inner)) == 0, "cannot start vmdr-sim")
  s.pid = assert(h.read(dir .. "/pid"):match("%d+"), "no pid for vmdr-sim")
  local deadline = t.monotonic() + 30
  while true do
    local out = h.read(s.stdout_file) or ""
    s.url = out:match("vmdr%-sim listening on (%S+)")
    if s.url then break end
    if not alive(s.pid) or t.monotonic() > deadline then
      if alive(s.pid) then h.sh("kill -9 " .. s.pid) end
      error("vmdr-sim did not start: " .. (h.read(s.stderr_file) or ""), 2)
    end
    t.sleep(0.02)
  end
  s.port = tonumber(s.url:match(":(%d+)$"))
  if s.url:match("^https") then
    local kc = h.read(s.kubeconfig)
    local b64 = kc:match("certificate%-authority%-data: (%S+)")
    s.ca_file = dir .. "/ca.crt"
    assert(h.sh("printf %s " .. h.q(b64) .. " | base64 -d > " .. h.q(s.ca_file)) == 0)
  end

  --- curl against the server: {method=, path=, body=, headers={...}, token=(false: none),
  --- content_type=, args={extra curl args}} -> {code=, body=, headers=}
  function s.curl(req)
    local d = h.tmpdir("curl")
    local a = { "curl", "-sS", "-o", d .. "/body", "-D", d .. "/headers", "-w", "%{http_code}",
      "-X", req.method or "GET" }
    if s.ca_file then a[#a + 1] = "--cacert"; a[#a + 1] = s.ca_file end
    local tok = req.token
    if tok == nil then tok = s.token end
    if tok then a[#a + 1] = "-H"; a[#a + 1] = "Authorization: Bearer " .. tok end
    for _, hd in ipairs(req.headers or {}) do a[#a + 1] = "-H"; a[#a + 1] = hd end
    if req.body then
      h.write(d .. "/req", type(req.body) == "table" and encode(req.body) or req.body)
      a[#a + 1] = "--data-binary"; a[#a + 1] = "@" .. d .. "/req"
      a[#a + 1] = "-H"; a[#a + 1] = "Content-Type: " .. (req.content_type or "application/json")
    end
    for _, x in ipairs(req.args or {}) do a[#a + 1] = x end
    a[#a + 1] = s.url .. req.path
    local r = h.exec(a)
    local res = { code = tonumber(r.stdout:match("(%d+)%s*$")) or 0, body = h.read(d .. "/body") or "",
      headers = h.read(d .. "/headers") or "", stderr = r.stderr, exit = r.code }
    res.json = decode(res.body)
    h.sh("rm -rf " .. h.q(d))
    return res
  end

  --- Sets faults (POST /_sim/faults); returns the faults now in force. Raises on a 4xx/5xx.
  function s.admin(faults)
    local r = s.curl { method = "POST", path = "/_sim/faults", body = encode(faults) }
    if r.code ~= 200 then error("vmdr-sim /_sim/faults: " .. r.code .. " " .. r.body, 2) end
    -- a token rotation applies to this endpoint too: use the new one from now on
    if type(faults.token) == "string" then s.token = faults.token end
    return r.json
  end

  --- GET /_sim/state, decoded.
  function s.state()
    local r = s.curl { path = "/_sim/state" }
    if r.code ~= 200 then error("vmdr-sim /_sim/state: " .. r.code .. " " .. r.body, 2) end
    return r.json
  end

  --- Stops the server (SIGTERM, then SIGKILL after 10 s); idempotent. Raises if the server
  --- logged a sanitizer report (ASan/UBSan/LSan builds): a silent memory error is a failure.
  function s.stop()
    if s.stopped then return end
    s.stopped = true
    h.sh("kill -TERM " .. s.pid .. " 2>/dev/null")
    local deadline = t.monotonic() + 10
    while alive(s.pid) do
      if t.monotonic() > deadline then
        h.sh("kill -KILL " .. s.pid .. " 2>/dev/null")
        error("vmdr-sim did not exit on SIGTERM within 10 s", 2)
      end
      t.sleep(0.02)
    end
    local log = h.read(s.stderr_file) or ""
    if log:find("Sanitizer") or log:find("runtime error:") then
      error("vmdr-sim reported a memory or UB error:\n" .. log, 2)
    end
  end

  --- Environment for kubectl against this server.
  s.env = { KUBECONFIG = s.kubeconfig, HOME = dir }
  --- Runs kubectl with argv (a list); returns {code, stdout, stderr}.
  function s.kubectl(args, stdin)
    local a = { "kubectl" }
    for _, x in ipairs(args) do a[#a + 1] = x end
    return h.exec(a, s.env, stdin)
  end
  return s
end

return M
