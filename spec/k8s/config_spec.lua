-- vmdr.k8s configuration: kubeconfig files (merged like kubectl), contexts, in-cluster,
-- every auth form (token, token file, client certificate file/data, basic, exec plugin)
-- and TLS settings, checked on the wire against a TLS server with test certificates
-- (openssl) that records what the client sent (spec/support/script-server.py).
local h = require "support.helper"
local kt = require "support.k8stest"
local k8s = require "vmdr.k8s"
local time = require "vmdr.time"

local PODS = { group = "", version = "v1", resource = "pods", namespaced = true }
local POD = { kind = "Pod", apiVersion = "v1", metadata = { name = "p", namespace = "ns",
  resourceVersion = "1" } }

describe("vmdr.k8s configuration", function()
  local dir, certs, srv, mtls, n = nil, nil, nil, nil, 0

  local routes = {
    { path = "/api/v1/namespaces/", prefix = true, replies = { kt.reply(200, POD) } } }

  setup(function()
    dir = h.tmpdir("k8s-config")
    certs = kt.certs(dir)
    srv = kt.script_server(dir .. "/tls", routes, { tls = certs })
    mtls = kt.script_server(h.tmpdir("k8s-mtls"), routes, { tls = certs, client_ca = true })
  end)
  teardown(function()
    if srv then srv.stop() end
    if mtls then mtls.stop() end
  end)

  -- a kubeconfig with one context "t" for server url, user u
  local function kc(cluster, user, extra)
    n = n + 1
    local t = { clusters = { { name = "c", cluster = cluster } },
      users = { { name = "u", user = user } },
      contexts = { { name = "t", context = { cluster = "c", user = "u", namespace = "ns" } } },
      ["current-context"] = "t" }
    for k, v in pairs(extra or {}) do t[k] = v end
    return kt.kubeconfig(string.format("%s/kc%d/config", dir, n), t)
  end

  local function last_auth(s)
    local reqs = s.requests()
    return reqs[#reqs].headers.Authorization
  end

  local function get_through(path_or_opts)
    local opts = type(path_or_opts) == "table" and path_or_opts or { kubeconfig = path_or_opts }
    local c, err = k8s.client(opts)
    if not c then return nil, err end
    local obj, gerr = c:get(PODS, nil, "p")
    c:close()
    return obj, gerr
  end

  describe("TLS", function()
    it("verifies the server with certificate-authority-data and sends the token", function()
      local p = kc({ server = srv.url, ["certificate-authority-data"] = kt.b64(certs.ca_pem) },
        { token = "tok-ca-data-1234" })
      local obj = assert(get_through(p))
      assert.equals("p", obj.metadata.name)
      assert.equals("Bearer tok-ca-data-1234", last_auth(srv))
      local reqs = srv.requests()
      assert.equals("/api/v1/namespaces/ns/pods/p", reqs[#reqs].path) -- the context's namespace
    end)

    it("reads certificate-authority relative to the kubeconfig's directory", function()
      local p = kc({ server = srv.url, ["certificate-authority"] = "ca.crt" },
        { token = "tok-ca-file-1" })
      h.write(p:match("^(.*)/") .. "/ca.crt", certs.ca_pem)
      assert(get_through(p))
    end)

    it("refuses a server its CA did not sign: code tls", function()
      local p = kc({ server = srv.url, ["certificate-authority"] = certs.other_crt },
        { token = "tok-x-1234" })
      local obj, err = get_through(p)
      assert.is_nil(obj)
      assert.equals("tls", err.code)
    end)

    it("checks the tls-server-name instead of the URL's host", function()
      local good = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt,
        ["tls-server-name"] = "k8s.test" }, { token = "tok-sni-1234" })
      assert(get_through(good))
      local bad = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt,
        ["tls-server-name"] = "wrong.test" }, { token = "tok-sni-1234" })
      local obj, err = get_through(bad)
      assert.is_nil(obj)
      assert.equals("tls", err.code)
    end)

    it("insecure-skip-tls-verify connects without a CA and logs a warning", function()
      local p = kc({ server = srv.url, ["insecure-skip-tls-verify"] = true },
        { token = "tok-insec-1" })
      local s = h.write(dir .. "/insecure.lua", string.format([[
        local k8s = require "vmdr.k8s"
        local c = assert(k8s.client { kubeconfig = %q })
        assert(c:get({ group = "", version = "v1", resource = "pods", namespaced = true }, nil,
          "p"))
        -- a second client to the same server: the warning is not repeated
        local c2 = assert(k8s.client { kubeconfig = %q })
        c2:close()
        io.stdout:write("ok\n")
      ]], p, p))
      local r = h.run { s }
      assert.equals(0, r.code, r.stderr)
      assert.equals("ok\n", r.stdout)
      assert.matches("WARN.*TLS certificate verification is disabled", r.stderr)
      local _, n = r.stderr:gsub("TLS certificate verification is disabled", "")
      assert.equals(1, n)
    end)
  end)

  describe("auth", function()
    it("authenticates with a client certificate and key from files", function()
      local p = kc({ server = mtls.url, ["certificate-authority"] = certs.ca_crt },
        { ["client-certificate"] = certs.client_crt, ["client-key"] = certs.client_key })
      assert(get_through(p))
      assert.is_nil(last_auth(mtls))
    end)

    it("authenticates with client-certificate-data and client-key-data", function()
      local p = kc({ server = mtls.url, ["certificate-authority-data"] = kt.b64(certs.ca_pem) },
        { ["client-certificate-data"] = kt.b64(certs.client_pem),
          ["client-key-data"] = kt.b64(certs.client_key_pem) })
      assert(get_through(p))
    end)

    it("fails cleanly when the server wants a client certificate and gets none", function()
      local p = kc({ server = mtls.url, ["certificate-authority"] = certs.ca_crt },
        { token = "tok-nocert" })
      local obj, err = get_through(p)
      assert.is_nil(obj)
      assert.is_truthy(err.code == "tls" or err.code == "unreachable", err.code)
    end)

    it("sends HTTP basic credentials", function()
      local p = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
        { username = "admin", password = "pa:ss word" })
      assert(get_through(p))
      assert.equals("Basic " .. kt.b64("admin:pa:ss word"), last_auth(srv))
    end)

    it("re-reads a rotated token file when the server answers 401", function()
      local tf = h.write(dir .. "/token", "tok-one-1234\n")
      srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = {
        kt.reply(200, POD), kt.status(401, "Unauthorized", "Unauthorized"), kt.reply(200, POD) } } }
      local p = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
        { tokenFile = tf })
      local c = assert(k8s.client { kubeconfig = p })
      assert(c:get(PODS, nil, "p"))
      assert.equals("Bearer tok-one-1234", last_auth(srv))
      h.write(tf, "tok-two-5678\n")
      assert(c:get(PODS, nil, "p"))
      assert.equals("Bearer tok-two-5678", last_auth(srv))
      c:close()
      srv.set(routes)
    end)

    describe("exec plugin", function()
      local function plugin(name, body)
        local p = h.write(dir .. "/" .. name, "#!/bin/sh\n" .. body)
        assert(h.sh("chmod +x " .. h.q(p)) == 0)
        return p
      end

      it("runs the command with its args and env, caches the token until it expires", function()
        local count = dir .. "/exec-count"
        local seen = dir .. "/exec-seen"
        local p = plugin("cred.sh", string.format([[
echo run >> %q
printf '%%s|%%s|%%s|%%s\n' "$1" "$2" "$PLUGIN_MODE" "$KUBERNETES_EXEC_INFO" > %q
cat <<EOF
{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
 "status":{"token":"exec-token-abc123","expirationTimestamp":"2099-01-01T00:00:00Z"}}
EOF
]], count, seen))
        local cfg = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
          { exec = { apiVersion = "client.authentication.k8s.io/v1", command = p,
            args = { "get-token", "a b; $(id) 'q'" }, env = { { name = "PLUGIN_MODE",
              value = "test" } },
            interactiveMode = "Never" } })
        local c = assert(k8s.client { kubeconfig = cfg })
        assert(c:get(PODS, nil, "p"))
        assert(c:get(PODS, nil, "p"))
        c:close()
        assert.equals("Bearer exec-token-abc123", last_auth(srv))
        assert.equals("run\n", h.read(count)) -- cached: one run for two calls
        local a1, a2, mode, info = h.read(seen):match("^(.-)|(.-)|(.-)|(.*)\n$")
        assert.equals("get-token", a1)
        assert.equals("a b; $(id) 'q'", a2)
        assert.equals("test", mode)
        assert.matches('"kind":"ExecCredential"', info)
        assert.matches("client.authentication.k8s.io/v1", info)
      end)

      it("runs it again once the credential has expired", function()
        local count = dir .. "/exec-count2"
        local p = plugin("expired.sh", string.format([[
echo run >> %q
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-exp-1234","expirationTimestamp":"2001-01-01T00:00:00Z"}}'
]], count))
        local cfg = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
          { exec = { apiVersion = "client.authentication.k8s.io/v1", command = p } })
        local c = assert(k8s.client { kubeconfig = cfg })
        assert(c:get(PODS, nil, "p"))
        assert(c:get(PODS, nil, "p"))
        c:close()
        assert.equals("run\nrun\n", h.read(count))
      end)

      it("takes a client certificate from the plugin", function()
        local p = plugin("certcred.sh", string.format([[
cat <<EOF
{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{
 "clientCertificateData":%s,"clientKeyData":%s}}
EOF
]], require("vmdr.json").encode(certs.client_pem), require("vmdr.json").encode(certs.client_key_pem)))
        local cfg = kc({ server = mtls.url, ["certificate-authority"] = certs.ca_crt },
          { exec = { apiVersion = "client.authentication.k8s.io/v1", command = p } })
        assert(get_through(cfg))
      end)

      it("reports a failing plugin with its stderr, as unauthorized", function()
        local p = plugin("fail.sh", "echo 'login required: run sso-login' >&2\nexit 4\n")
        local cfg = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
          { exec = { apiVersion = "client.authentication.k8s.io/v1", command = p } })
        local obj, err = get_through(cfg)
        assert.is_nil(obj)
        assert.equals("unauthorized", err.code)
        assert.matches("exited with 4", err.message)
        assert.matches("login required", err.message)
      end)

      it("names a missing plugin and its install hint", function()
        local cfg = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
          { exec = { apiVersion = "client.authentication.k8s.io/v1", command = "no-such-plugin-xyz",
            installHint = "install it from the portal" } })
        local obj, err = get_through(cfg)
        assert.is_nil(obj)
        assert.matches("no%-such%-plugin%-xyz", err.message)
        assert.matches("install it from the portal", err.message)
      end)
    end)

    it("never prints the token or the client key, even in errors", function()
      srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = {
        kt.status(403, "Forbidden", "user cannot get pods") } } }
      local p = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
        { token = "very-secret-token-987", ["client-key-data"] = kt.b64(certs.client_key_pem),
          ["client-certificate-data"] = kt.b64(certs.client_pem) })
      local s = h.write(dir .. "/leak.lua", string.format([[
        local k8s = require "vmdr.k8s"
        local log = require "vmdr.log"
        local c = assert(k8s.client { kubeconfig = %q })
        local _, err = c:get({ group = "", version = "v1", resource = "pods", namespaced = true },
          nil, "p")
        log.info("failed " .. tostring(err), { auth = c._auth.token, key = %q })
        error(err)
      ]], p, certs.client_key_pem:sub(100, 160)))
      local r = h.run { s }
      srv.set(routes)
      assert.equals(3, r.code)
      assert.matches("forbidden: GET", r.stderr)
      assert.not_matches("very%-secret%-token", r.stdout .. r.stderr)
      assert.not_matches(certs.client_key_pem:sub(100, 160):gsub("%p", "%%%0"),
        r.stdout .. r.stderr)
    end)
  end)

  describe("kubeconfig files", function()
    it("merges several files like kubectl: the first to name an entry wins", function()
      local a = kt.kubeconfig(dir .. "/merge/a", { ["current-context"] = "one",
        contexts = { { name = "one", context = { cluster = "c1", user = "u1",
          namespace = "first" } } },
        users = { { name = "u1", user = { token = "tok-from-a-123" } } },
        clusters = { { name = "c1", cluster = { server = srv.url,
          ["certificate-authority"] = certs.ca_crt } } } })
      local b = kt.kubeconfig(dir .. "/merge/b", { ["current-context"] = "two",
        contexts = { { name = "one", context = { cluster = "nope", user = "nope" } },
          { name = "two", context = { cluster = "c1", user = "u2" } } },
        users = { { name = "u1", user = { token = "tok-from-b-123" } },
          { name = "u2", user = { token = "tok-u2-12345" } } },
        clusters = { { name = "c1", cluster = { server = "https://127.0.0.1:1" } } } })
      local c = assert(k8s.client { kubeconfig = { a, b } })
      assert.equals("one", c.context)
      assert.equals("first", c.namespace)
      assert(c:get(PODS, nil, "p"))
      assert.equals("Bearer tok-from-a-123", last_auth(srv))
      c:close()
      -- a context only the second file has, with the first file's cluster
      c = assert(k8s.client { kubeconfig = { a, b }, context = "two" })
      assert(c:get(PODS, "ns", "p"))
      assert.equals("Bearer tok-u2-12345", last_auth(srv))
      c:close()
    end)

    it("goes through a cluster's proxy-url", function()
      -- the scripted server plays the proxy: it sees the absolute URL of the request
      local proxy = kt.script_server(h.tmpdir("k8s-proxy"),
        { { path = "http://api.k8s.invalid/api/v1/namespaces/ns/pods/p",
        replies = { kt.reply(200, POD) } } })
      local p = kc({ server = "http://api.k8s.invalid", ["proxy-url"] = proxy.url },
        { token = "tok-proxy-123" })
      local obj, err = get_through(p)
      proxy.stop()
      assert.is_table(obj, tostring(err))
      local reqs = proxy.requests()
      assert.equals("Bearer tok-proxy-123", reqs[#reqs].headers.Authorization)
    end)

    it("reads KUBECONFIG with several paths, skipping missing ones", function()
      local a = kc({ server = srv.url, ["certificate-authority"] = certs.ca_crt },
        { token = "tok-env-123" })
      local s = h.write(dir .. "/env.lua", [[
        local k8s = require "vmdr.k8s"
        local c = assert(k8s.client())
        assert(c:get({ group = "", version = "v1", resource = "pods", namespaced = true }, nil,
          "p"))
        io.stdout:write(c.context, "\n")
      ]])
      local r = h.run({ s }, { KUBECONFIG = dir .. "/missing-one:" .. a })
      assert.equals(0, r.code, r.stderr)
      assert.equals("t\n", r.stdout)
    end)

    it("uses the in-cluster service account when there is no kubeconfig", function()
      local sa = dir .. "/sa"
      h.write(sa .. "/token", "in-cluster-token-42\n")
      h.write(sa .. "/ca.crt", certs.ca_pem)
      h.write(sa .. "/namespace", "ns")
      local c = assert(k8s.client { in_cluster = true, serviceaccount_dir = sa,
        service_host = "127.0.0.1", service_port = tostring(srv.port) })
      assert.equals("ns", c.namespace)
      assert(c:get(PODS, nil, "p"))
      assert.equals("Bearer in-cluster-token-42", last_auth(srv))
      c:close()
    end)

    it("reads a kubeconfig written in YAML, as kubectl writes it", function()
      local p = h.write(dir .. "/yaml/config", string.format([[
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: %s
    server: %s
  name: yc
contexts:
- context:
    cluster: yc
    namespace: ns
    user: yu
  name: yctx
current-context: yctx
preferences: {}
users:
- name: yu
  user:
    token: tok-yaml-12345
]], kt.b64(certs.ca_pem), srv.url))
      assert(get_through(p))
      assert.equals("Bearer tok-yaml-12345", last_auth(srv))
    end)

    it("names a missing file", function()
      local c, err = k8s.client { kubeconfig = dir .. "/does/not/exist" }
      assert.is_nil(c)
      assert.equals("config", err.code)
      assert.matches("does/not/exist", err.message)
    end)

    it("names a missing context", function()
      local p = kc({ server = srv.url }, { token = "x-123456" })
      local c, err = k8s.client { kubeconfig = p, context = "prod" }
      assert.is_nil(c)
      assert.equals("config", err.code)
      assert.matches('context "prod" not found', err.message)
      assert.matches(p:gsub("%p", "%%%0"), err.message)
    end)

    it("names a context's missing cluster and user, and a missing current-context", function()
      local p = kt.kubeconfig(dir .. "/dangling", {
        contexts = { { name = "a", context = { cluster = "gone", user = "u" } },
          { name = "b", context = { cluster = "c", user = "ghost" } } },
        clusters = { { name = "c", cluster = { server = srv.url } } } })
      local _, err = k8s.client { kubeconfig = p, context = "a" }
      assert.matches('cluster "gone" not found', err.message)
      _, err = k8s.client { kubeconfig = p, context = "b" }
      assert.matches('user "ghost" not found', err.message)
      _, err = k8s.client { kubeconfig = p }
      assert.matches("no current%-context", err.message)
    end)

    it("names the field holding invalid base64", function()
      local p = kc({ server = srv.url, ["certificate-authority-data"] = "not*base64!" },
        { token = "x-123456" })
      local c, err = k8s.client { kubeconfig = p }
      assert.is_nil(c)
      assert.equals("config", err.code)
      assert.matches('clusters%["c"%]%.certificate%-authority%-data: invalid base64', err.message)
      p = kc({ server = srv.url }, { ["client-certificate-data"] = kt.b64("x"),
        ["client-key-data"] = "%%%" })
      c, err = k8s.client { kubeconfig = p }
      assert.is_nil(c)
      assert.matches('users%["u"%]%.client%-key%-data: invalid base64', err.message)
    end)

    it("rejects a file that is not a kubeconfig", function()
      local p = h.write(dir .. "/garbage", "[1, 2")
      local c, err = k8s.client { kubeconfig = p }
      assert.is_nil(c)
      assert.equals("config", err.code)
      assert.matches("garbage", err.message)
    end)
  end)
  local _ = time
end)
