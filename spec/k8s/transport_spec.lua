-- vmdr.k8s transport against a scripted server (spec/support/script-server.py): replies no
-- real API server sends (truncated JSON, HTML, wrong content types, broken watch lines),
-- Status mapping, retries, keep-alive, gzip, proxies, interrupts. The API semantics
-- themselves are checked against vmdr-sim in the other k8s specs.
local h = require "support.helper"
local kt = require "support.k8stest"
local k8s = require "vmdr.k8s"

local function pod(name, rv)
  return { kind = "Pod", apiVersion = "v1", metadata = { name = name, namespace = "ns",
    resourceVersion = rv } }
end

-- bypasses discovery: these specs are about the transport
local PODS = { group = "", version = "v1", resource = "pods", namespaced = true }

describe("vmdr.k8s transport", function()
  local dir, srv, c

  setup(function()
    dir = h.tmpdir("k8s-transport")
    srv = kt.script_server(dir, {})
  end)
  teardown(function() if srv then srv.stop() end end)

  local function client(extra)
    local o = { server = srv.url, token = "transport-token-123", retries = 3, backoff = 0.01,
      backoff_max = 0.05 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(k8s.client(o))
  end

  before_each(function() c = client() end)
  after_each(function() c:close() end)

  it("rejects truncated JSON with a clean bad_response error", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p",
      replies = { kt.reply(200, '{"kind":"Pod","meta') } } }
    local obj, err = c:get(PODS, "ns", "p")
    assert.is_nil(obj)
    assert.equals("bad_response", err.code)
    assert.matches("not valid JSON", err.message)
  end)

  it("rejects a 200 with HTML and names the content type", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = { { status = 200,
      headers = { ["Content-Type"] = "text/html" }, body = "<html><body>Login</body></html>" } } } }
    local obj, err = c:get(PODS, "ns", "p")
    assert.is_nil(obj)
    assert.equals("bad_response", err.code)
    assert.matches("text/html", err.message)
    assert.matches("Login", err.message)
  end)

  it("rejects JSON sent with a wrong content type", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = { { status = 200,
      headers = { ["Content-Type"] = "text/plain" }, body = '{"kind":"Pod"}' } } } }
    local _, err = c:get(PODS, "ns", "p")
    assert.equals("bad_response", err.code)
    assert.matches("text/plain", err.message)
  end)

  it("treats a body cut short by the server as a failed call, not a result", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = { { status = 200,
      headers = { ["Content-Type"] = "application/json" }, body = '{"kind":"Pod"', length = 500,
      close = true } } } }
    local obj, err = c:get(PODS, "ns", "p")
    assert.is_nil(obj)
    assert.equals("unreachable", err.code)
    assert.matches("remaining", err.message)
  end)

  it("fails a list cut short inside its items, never returning fewer items", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { kt.reply(200,
      '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":['
        .. '{"metadata":{"name":"a"}},{"metadata":{"name":"b"}},{"metadata":{"na') } } }
    local l, err = c:list(PODS, { namespace = "ns" })
    assert.is_nil(l)
    assert.equals("bad_response", err.code)
    assert.matches("after 2 complete items", err.message)
  end)

  it("fails a list with an item that is not JSON", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { kt.reply(200,
      '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":['
        .. '{"metadata":{"name":"a"}},{"metadata":{"name":nope}}]}') } } }
    local l, err = c:list(PODS, { namespace = "ns" })
    assert.is_nil(l)
    assert.equals("bad_response", err.code)
    assert.matches("items%[1%]: invalid JSON at line 1 column 21", err.message) -- the exact item
  end)

  -- A list is decoded while it streams in: the scanner delimits items that arrive in
  -- pieces, and an item with plenty of bytes at hand is decoded in place in one pass
  -- (runtime/k8s/listscan.c try_item), falling back to the scanner when it turns out cut
  -- short or bad. Each shape below must give exactly what decoding the whole body gives.
  local json = require "vmdr.json"
  local function tricky_items(n, pad)
    local items = {}
    for i = 1, n do
      items[i] = string.format('{"metadata":{"name":"p%d","namespace":"ns","uid":"u-%d"},'
        .. '"spec":{"q":"a \\"quoted\\" \\\\ \\u00e9 \\ud83d\\ude00 é😀 [{x}]",'
        .. '"n":[%d,-%d.5,1e%d,true,false,null,[],{}],"pad":"%s"}}',
        i, i, i * 1000003, i, i % 300, (pad or ""):rep(1))
    end
    return items
  end
  local function body_of(items)
    return '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[ '
      .. table.concat(items, " ,\n") .. ' ]}'
  end
  -- (cuts move off UTF-8 continuation bytes: the script server takes its pieces as JSON)
  local function pieces(s, cuts)
    local out, from = {}, 1
    for _, at in ipairs(cuts) do
      while at <= #s and s:byte(at) >= 0x80 and s:byte(at) < 0xC0 do at = at + 1 end
      if at > from then out[#out + 1] = s:sub(from, at - 1); from = at end
    end
    out[#out + 1] = s:sub(from)
    return out
  end
  local function serve_in_pieces(parts)
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { { status = 200,
      headers = { ["Content-Type"] = "application/json" }, lines = parts, delay = 0.002 } } } }
  end

  it("decodes list items streamed in pieces cut anywhere", function()
    local body = body_of(tricky_items(12))
    local want = assert(json.decode(body))
    local cuts = {}
    for at = 2, #body, 7 do cuts[#cuts + 1] = at end -- every 7 bytes: inside every token
    serve_in_pieces(pieces(body, cuts))
    local l = assert(c:list(PODS, { namespace = "ns" }))
    assert.same(want, l)
    assert.equals(json.array_mt, getmetatable(l.items))
    assert.equals(json.null, l.items[12].spec.n[6])
  end)

  it("decodes an item in place, and falls back when it is cut short or larger", function()
    -- small items first (so the in-place decode is tried), then one of 60 KB, sent so
    -- that its first piece ends 9000 bytes into it: tried, cut short, then scanned
    local items = tricky_items(40)
    items[30] = tricky_items(1, ("big "):rep(15000))[1]:gsub('"p1"', '"p30"')
    local body = body_of(items)
    local want = assert(json.decode(body))
    local start = body:find('"p30"', 1, true)
    serve_in_pieces(pieces(body, { start + 9000, start + 30000 }))
    local l = assert(c:list(PODS, { namespace = "ns" }))
    assert.equals(40, #l.items)
    assert.same(want, l)
    -- the whole body at once: every item is decoded in place
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { kt.reply(200, body) } } }
    assert.same(want, assert(c:list(PODS, { namespace = "ns" })))
  end)

  it("names a bad item that the in-place decode met first", function()
    local items = tricky_items(3)
    items[2] = '{"metadata":{"name":nope}}'
    items[4] = tricky_items(1, ("x"):rep(9000))[1]
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { kt.reply(200,
      body_of(items)) } } }
    local l, err = c:list(PODS, { namespace = "ns" })
    assert.is_nil(l)
    assert.equals("bad_response", err.code)
    assert.matches("items%[1%]: invalid JSON at line 1 column 21", err.message)
  end)

  it("lists across pages, keeping the first page's envelope and every item", function()
    srv.set { { path = "/api/v1/pods", replies = {
      kt.reply(200, { kind = "PodList", apiVersion = "v1", metadata = { resourceVersion = "9",
        ["continue"] = "tok1" }, items = { pod("a", "1"), pod("b", "2") } }),
      kt.reply(200, { kind = "PodList", apiVersion = "v1", metadata = { resourceVersion = "9",
        ["continue"] = "tok2" }, items = { pod("c", "3") } }),
      kt.reply(200, { kind = "PodList", apiVersion = "v1", metadata = { resourceVersion = "9" },
        items = setmetatable({}, require("vmdr.json").array_mt) }) } } }
    local before = #srv.requests()
    local l = assert(c:list(PODS, { limit = 2, labelSelector = "app in (x,y)" }))
    local got = {}
    for i, it in ipairs(l.items) do got[i] = it.metadata.name end
    assert.same({ "a", "b", "c" }, got)
    assert.equals("9", l.metadata.resourceVersion)
    assert.is_nil(l.metadata["continue"])
    assert.equals("PodList", l.kind)
    local reqs = srv.requests()
    assert.equals(3, #reqs - before)
    assert.equals("/api/v1/pods?labelSelector=app%20in%20%28x%2Cy%29&limit=2",
      reqs[before + 1].path)
    assert.matches("continue=tok1", reqs[before + 2].path)
    assert.matches("continue=tok2", reqs[before + 3].path)
  end)

  it("maps API Status replies to codes with reason and message", function()
    local cases = {
      { 404, "NotFound", "not_found" }, { 409, "Conflict", "conflict" }, { 410, "Gone", "gone" },
      { 403, "Forbidden", "forbidden" }, { 401, "Unauthorized", "unauthorized" },
      { 422, "Invalid", "invalid" }, { 400, "BadRequest", "invalid" },
    }
    for _, k in ipairs(cases) do
      srv.set { { path = "/api/v1/namespaces/ns/pods/p", method = "PUT",
        replies = { kt.status(k[1], k[2], "message for " .. k[2]) } } }
      local obj, err = c:update(PODS, pod("p", "1"))
      assert.is_nil(obj)
      assert.equals(k[3], err.code)
      assert.equals(k[1], err.status)
      assert.equals(k[2], err.reason)
      assert.matches("message for " .. k[2], err.message)
      assert.matches("^" .. k[3] .. ": PUT /api/v1/namespaces/ns/pods/p", tostring(err))
    end
  end)

  it("retries an idempotent call on 5xx and 429, then succeeds", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = {
      kt.status(503, "ServiceUnavailable", "busy"), kt.status(429, "TooManyRequests", "slow down"),
      { status = 502, headers = { ["Content-Type"] = "text/html" }, body = "<h1>Bad Gateway</h1>" },
      kt.reply(200, pod("p", "7")) } } }
    local before = #srv.requests()
    local obj = assert(c:get(PODS, "ns", "p"))
    assert.equals("7", obj.metadata.resourceVersion)
    assert.equals(4, #srv.requests() - before)
  end)

  it("gives up after the configured retries with the last error", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = {
      { status = 502, headers = { ["Content-Type"] = "text/html" },
        body = "<h1>Bad Gateway</h1>" } } } }
    local before = #srv.requests()
    local obj, err = c:get(PODS, "ns", "p")
    assert.is_nil(obj)
    assert.equals("unavailable", err.code)
    assert.equals(502, err.status)
    assert.matches("Bad Gateway", err.message)
    assert.equals(4, #srv.requests() - before) -- 1 + 3 retries
  end)

  it("does not retry a non-idempotent create on 5xx, but does on 429", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods", method = "POST", replies = {
      kt.status(500, "InternalError", "boom"), kt.status(429, "TooManyRequests", "later"),
      kt.reply(201, pod("p", "9")) } } }
    local before = #srv.requests()
    local obj, err = c:create(PODS, pod("p"))
    assert.is_nil(obj)
    assert.equals("unavailable", err.code)
    assert.equals(1, #srv.requests() - before)
    obj = assert(c:create(PODS, pod("p")))
    assert.equals("9", obj.metadata.resourceVersion)
    assert.equals(3, #srv.requests() - before)
  end)

  it("honours Retry-After instead of its own backoff", function()
    -- with a 1000 s backoff, only the server's Retry-After: 0 lets this call finish
    local slow = client { backoff = 1000, backoff_max = 1000 }
    local routes = { { path = "/api/v1/namespaces/ns/pods/p", replies = {
      { status = 429, headers = { ["Content-Type"] = "application/json", ["Retry-After"] = "0" },
        body = '{"kind":"Status","code":429,"reason":"TooManyRequests","message":"later"}' },
      kt.reply(200, pod("p", "3")) } } }
    srv.set(routes)
    local obj = assert(slow:get(PODS, "ns", "p"))
    assert.equals("3", obj.metadata.resourceVersion)
    slow:close()
  end)

  it("keeps one connection alive across calls and asks for gzip", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods/p", replies = { kt.reply(200, pod("p",
      "1")) } } }
    local before = #srv.requests()
    for _ = 1, 5 do assert(c:get(PODS, "ns", "p")) end
    local reqs = srv.requests()
    local ports = {}
    for i = before + 1, #reqs do ports[reqs[i].port] = true end
    local n = 0
    for _ in pairs(ports) do n = n + 1 end
    assert.equals(1, n)
    assert.matches("gzip", reqs[#reqs].headers["Accept-Encoding"])
    assert.equals("Bearer transport-token-123", reqs[#reqs].headers.Authorization)
  end)

  it("decodes a gzip-compressed response, a list included", function()
    local items = {}
    for i = 1, 300 do items[i] = pod("p" .. i, tostring(i)) end
    srv.set { { path = "/api/v1/pods", replies = { kt.reply(200, { kind = "PodList",
      apiVersion = "v1",
      metadata = { resourceVersion = "300" }, items = items }, { gzip = true }) } } }
    local l = assert(c:list(PODS))
    assert.equals(300, #l.items)
    assert.equals("p300", l.items[300].metadata.name)
    local reqs = srv.requests()
    assert.matches("gzip", reqs[#reqs].headers["Accept-Encoding"])
  end)

  it("request() returns other verbs' answers and raw bytes", function()
    srv.set { { path = "/healthz", replies = { { status = 200,
      headers = { ["Content-Type"] = "text/plain" },
      body = "ok" } } },
      { path = "/apis/x/v1/things", method = "POST",
        replies = { kt.reply(201, { kind = "Thing" }) } },
      { path = "/apis/x/v1/things/t", method = "DELETE", replies = { { status = 204 } } } }
    assert.is_true((c:request("DELETE", "/apis/x/v1/things/t")))
    local body, status = c:request("GET", "/healthz", nil, { raw = true })
    assert.equals("ok", body)
    assert.equals(200, status)
    local obj, st = c:request("POST", "/apis/x/v1/things", { kind = "Thing", spec = { a = 1 } })
    assert.equals("Thing", obj.kind)
    assert.equals(201, st)
    local reqs = srv.requests()
    assert.equals('{"kind":"Thing","spec":{"a":1}}', reqs[#reqs].body)
    assert.equals("application/json", reqs[#reqs].headers["Content-Type"])
  end)

  it("raises on misuse and on a closed client", function()
    assert.has_error(function() c:get(PODS, "ns", 42) end)
    assert.has_error(function() c:patch(PODS, "ns", "p", {}, { type = "bogus" }) end)
    local c2 = client()
    assert.is_true(c2:close())
    assert.is_true(c2:close())
    assert.matches("closed", tostring(c2))
    assert.has_error(function() c2:get(PODS, "ns", "p") end,
      "attempt to use a closed vmdr.k8s.Client")
  end)

  it("fails a watch on a malformed event line, after its retries, with a raised error", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { { status = 200,
      headers = { ["Content-Type"] = "application/json" },
      lines = { '{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}}\n',
        '{"type":"MODIF\n' } },
      { status = 200, headers = { ["Content-Type"] = "application/json" },
        lines = { "<oops>\n" } } } } }
    local seen = {}
    local ok, err = pcall(function()
      for t, obj in c:watch(PODS, { namespace = "ns", resourceVersion = "1", max_failures = 2,
        backoff = 0.01 }) do
        seen[#seen + 1] = t .. ":" .. obj.metadata.name
      end
    end)
    assert.is_false(ok)
    assert.equals("bad_response", err.code)
    assert.same({ "ADDED:a" }, seen)
  end)

  it("fails a watch answered with HTML", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { { status = 200,
      headers = { ["Content-Type"] = "text/html" }, body = "<html>proxy login</html>" } } } }
    local ok, err = pcall(function()
      for _ in c:watch(PODS, { namespace = "ns", resourceVersion = "1" }) do end
    end)
    assert.is_false(ok)
    assert.equals("bad_response", err.code)
    assert.matches("text/html", err.message)
  end)

  it("a watch handles ERROR 410 by re-listing and yields RESYNC, then resumes", function()
    srv.set {
      { path = "/api/v1/namespaces/ns/pods", replies = {
        { status = 200, headers = { ["Content-Type"] = "application/json" }, lines = {
          '{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"8"}}}\n',
          '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            .. '"message":"too old resource version: 8 (20)","reason":"Expired","code":410}}\n' } },
        kt.reply(200, { kind = "PodList", apiVersion = "v1", metadata = { resourceVersion = "20" },
          items = { pod("a", "19"), pod("b", "20") } }),
        { status = 200, headers = { ["Content-Type"] = "application/json" }, lines = {
          '{"type":"DELETED","object":{"kind":"Pod","metadata":{"name":"b","resourceVersion":"21"}}}\n' } },
      } } }
    local before = #srv.requests()
    local got = {}
    local it, _, _, w = c:watch(PODS, { namespace = "ns", resourceVersion = "7" })
    for t, obj in it do
      if t == "RESYNC" then
        got[#got + 1] = t .. ":" .. #obj.items
      else
        got[#got + 1] = t .. ":" .. obj.metadata.name
        break
      end
    end
    w:close()
    assert.same({ "RESYNC:2", "DELETED:b" }, got)
    local reqs = srv.requests()
    assert.matches("resourceVersion=7", reqs[before + 1].path)
    assert.matches("watch=true", reqs[before + 1].path)
    assert.not_matches("watch=", reqs[before + 2].path) -- the re-list
    assert.matches("resourceVersion=20", reqs[before + 3].path)
  end)

  it("stops a blocked call on SIGINT with code interrupted", function()
    srv.set { { path = "/slow", replies = { { status = 200,
      headers = { ["Content-Type"] = "application/json" },
      lines = { "{", "}" }, delay = 60 } } } }
    local s = h.write(dir .. "/slow.lua", string.format([[
      local k8s = require "vmdr.k8s"
      local c = assert(k8s.client { server = %q, token = "x" })
      io.stdout:write("ready\n"); io.stdout:flush()
      local body, err = c:request("GET", "/slow")
      io.stdout:write(tostring(body), " ", err and err.code or "", "\n")
      return body and 0 or 1
    ]], srv.url))
    local r = h.run_signalled({ s }, "INT", "ready")
    assert.equals(130, r.code)
    assert.matches("nil interrupted", r.stdout)
  end)

  it("stops a watch waiting for events on SIGTERM, closing its stream", function()
    srv.set { { path = "/api/v1/namespaces/ns/pods", replies = { { status = 200,
      headers = { ["Content-Type"] = "application/json" },
      lines = { '{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"3"}}}\n', "\n" },
      delay = 60 } } } }
    local s = h.write(dir .. "/watchsig.lua", string.format([[
      local k8s = require "vmdr.k8s"
      local c = assert(k8s.client { server = %q, token = "x" })
      io.stdout:write("ready\n"); io.stdout:flush()
      local ok, err = pcall(function()
        for _ in c:watch({ group = "", version = "v1", resource = "pods", namespaced = true },
          { namespace = "ns", resourceVersion = "1" }) do end
      end)
      io.stdout:write(tostring(ok), " ", type(err) == "table" and err.code or tostring(err), "\n")
      return 1
    ]], srv.url))
    local r = h.run_signalled({ s }, "TERM", "ready")
    assert.equals(130, r.code)
    assert.matches("false interrupted", r.stdout)
  end)

  it("goes through the proxy named in the environment, as curl does", function()
    srv.set { { path = "http://api.k8s.invalid/api/v1/namespaces/ns/pods/p", replies = {
      kt.reply(200, pod("p", "1")) } } }
    local s = h.write(dir .. "/proxy.lua", [[
      local k8s = require "vmdr.k8s"
      local c = assert(k8s.client { server = "http://api.k8s.invalid", token = "x" })
      local obj = assert(c:get({ group = "", version = "v1", resource = "pods", namespaced = true },
        "ns", "p"))
      io.stdout:write(obj.metadata.name, "\n")
    ]])
    local r = h.run({ s }, { http_proxy = srv.url, no_proxy = "" })
    assert.equals(0, r.code, r.stderr)
    assert.equals("p\n", r.stdout)
  end)
end)
