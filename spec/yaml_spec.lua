-- vmdr.yaml: decode/encode fidelity (data tables, lua-cjson tests style), checked
-- against two independent readers (PyYAML's pure-Python loader, Ruby Psych), and bad input.
local yaml = require "vmdr.yaml"
local json = require "vmdr.json"
local c = require "support.codec"
local null, array_mt = yaml.null, yaml.array_mt

local function arr(t) return setmetatable(t, array_mt) end

-- Strings a YAML 1.1 or 1.2 reader would take for something else, and strings
-- with characters that constrain the style: each must come back as the same string.
local tricky_strings = {
  "true", "yes", "no", "on", "off", "y", "n", "Y", "N", "0755", "0x1F", "1e3", "null", "~", "",
  ".5", "12:30", "2024-01-01", "Yes", "NULL", ".inf", "-.5", "+1", "0o17", "1_000",
  "True", "FALSE", "oN", "Off", ".NaN", "-.inf", "+.INF", "0b101", "1:20:30", "190:20:30.15",
  "1.", "-1", "+.5", "1e+3", "1E3", "0.", "00", "09", "1,000", "2024-01-01T10:00:00Z",
  "2024-1-1 10:00:00", "<<", "=", ":sym", "-", "- x", "?", "? x", ":", "[a]", "{a}", "a, b",
  "&a", "*a", "!tag", "%x", "@x", "`x", "'", '"', "|", ">", "#", "# comment", "a #b", "a# b",
  "a: b", "a:b", "key: value\nmore", " lead", "trail ", "  both  ", " ", "\t", "a\tb",
  "line1\nline2", "line1\nline2\n", "trailing\n\n", "\n", "\nlead", " x\ny", "x \ny",
  "a\r\nb", "a\rb", "nel\194\133x", "ls\226\128\168x", "ps\226\128\169x",
  "héllo wörld", "日本語", "emoji 😀", "\239\187\191bom", "ctl\1x\127y", "back\\slash",
  "10Gi", "100m", "1d", "v1", "1.2.3", "0.0.0.0", "::1", "http://x/y?a=b#c",
  string.rep("long ", 40), "x\0y",
}

describe("vmdr.yaml", function()
  it("shares null and array_mt with vmdr.json", function()
    assert.equals(json.null, yaml.null)
    assert.equals(json.array_mt, yaml.array_mt)
    assert.equals("userdata", type(null))
  end)

  -- { name, Lua value }: encode -> decode is the same value (subtypes, [] vs {}, null),
  -- and both independent readers read the encoding to the same value.
  local fidelity = {
    { "null", null },
    { "null in a map and a list", { a = null, l = arr { null, 1, null } } },
    { "empty list vs empty map", { l = arr {}, m = {}, nested = arr { arr {}, {} } } },
    { "booleans", arr { true, false } },
    { "int64 extremes", arr { 0, -1, 1, math.maxinteger, math.mininteger, 2 ^ 53 // 1 + 1 } },
    { "floats", arr { 0.1, 1.5, -2.25, 1e300, -1e-300, 5e-324, 2.0 ^ 53, 3.0, 0.0, 1 / 3 } },
    { "nan and infinities", arr { 0 / 0, math.huge, -math.huge } },
    { "tricky strings", arr(tricky_strings) },
    { "tricky strings as keys", (function()
        local m = {}
        for i, s in ipairs(tricky_strings) do m[s] = i end
        return m
      end)() },
    { "a long key", { [string.rep("k", 300)] = "v" } },
    { "nesting", { a = { b = { c = arr { { d = arr { 1 } } } } } } },
    { "a Kubernetes-like object", {
        apiVersion = "v1", kind = "PersistentVolume",
        metadata = { name = "pv-1", labels = { ["app.kubernetes.io/name"] = "db" },
          annotations = { ["pv.kubernetes.io/bound-by-controller"] = "yes" } },
        spec = { capacity = { storage = "10Gi" }, accessModes = arr { "ReadWriteOnce" },
          persistentVolumeReclaimPolicy = "Retain", mountOptions = arr {},
          csi = { volumeAttributes = { imageFeatures = "layering", ["journal.pool"] = "0755" } } },
      } },
  }

  local encoded = {}
  for i, case in ipairs(fidelity) do
    it("round-trips " .. case[1], function()
      local text = assert(yaml.encode(case[2]))
      encoded[i] = text
      c.same(case[2], assert(yaml.decode(text)), case[1])
      -- deterministic: encoding the decoded value gives the same bytes
      assert.equals(text, yaml.encode(yaml.decode(text)))
    end)
  end

  it("is read to the same values by PyYAML (pure-Python SafeLoader)", function()
    local texts = {}
    for i, case in ipairs(fidelity) do texts[i] = encoded[i] or assert(yaml.encode(case[2])) end
    local got = c.pyyaml(texts)
    for i, case in ipairs(fidelity) do c.same(c.external_form(case[2]), got[i], case[1]) end
  end)

  it("is read to the same values by Ruby Psych", function()
    local texts = {}
    for i, case in ipairs(fidelity) do texts[i] = encoded[i] or assert(yaml.encode(case[2])) end
    local got = c.psych(texts)
    for i, case in ipairs(fidelity) do c.same(c.external_form(case[2]), got[i], case[1]) end
  end)

  it("writes block style with sorted keys, as kubectl prints", function()
    local v = { spec = { b = 1, a = arr { { y = 1, x = 2 }, "s" } }, kind = "VM", empty = {},
      list = arr {}, s = "multi\nline\n", q = "true" }
    assert.equals(table.concat({
      "empty: {}",
      "kind: VM",
      "list: []",
      'q: "true"',
      "s: |",
      "  multi",
      "  line",
      "spec:",
      "  a:",
      "  - x: 2",
      '    "y": 1', -- "y" is a YAML 1.1 boolean: quoted, as kubectl does
      "  - s",
      "  b: 1",
      "" }, "\n"), yaml.encode(v))
    -- the same content inserted in another order gives the same bytes
    local w = {}
    for _, k in ipairs { "s", "list", "q", "kind", "empty", "spec" } do w[k] = v[k] end
    assert.equals(yaml.encode(v), yaml.encode(w))
    assert.equals('"0755"\n', yaml.encode("0755"))
    assert.equals("1.0e+300\n", yaml.encode(1e300))
    assert.equals("3.0\n", yaml.encode(3.0))
    assert.equals("a: 'x: y'\n", yaml.encode { a = "x: y" })
  end)

  -- kubectl's own order has cycles on some sets (v10 < v1alpha2 < v1beta1 < v2 < v10), and
  -- then varies from run to run; these keys have none, so kubectl prints them one way.
  it("orders keys as kubectl prints them (checked against kubectl itself)", function()
    local h = require "support.helper"
    h.need("kubectl")
    local keys = { "a10", "a2", "a_b", "aB", "b", "A", "a.b", "a-b", "z9z", "z09z", "z9a", "Z",
      "0", "10", "9", "a02", "a2b", "a1", "_x", "a0", "a00", "a01", "a001", "x1y2", "x1y10",
      "x01", "x-1", "x.1", "B_", "b_", "bb9", "bb10a", "bb10", "v1beta1", "v1alpha2",
      "v2", "disk1", "disk10", "disk2", "app.kubernetes.io/name", "app", "kubevirt.io/size" }
    local argv = { "kubectl", "create", "configmap", "x", "--dry-run=client", "-o", "yaml" }
    local data = {}
    for _, k in ipairs(keys) do
      if k:match("^[%-%._%w]+$") then
        argv[#argv + 1] = "--from-literal=" .. k .. "=v"
        data[k] = "v"
      end
    end
    local r = h.exec(argv)
    assert.equals(0, r.code, r.stderr)
    local theirs = r.stdout:match("\ndata:\n(.-)\n%S")
    local ours = yaml.encode { data = data }:match("^data:\n(.*)\n$")
    assert.is_not_nil(theirs)
    assert.equals(theirs, ours)
    -- and our own reading of kubectl's output agrees on the content
    c.same(data, assert(yaml.decode(r.stdout)).data)
  end)

  it("keeps a deterministic key order where kubectl's is not transitive", function()
    -- go-yaml's order has "0755" < "0x1F" < "1e3" < "0755": the output must still
    -- not depend on the table's insertion or hash order
    local keys = { "0755", "0x1F", "1e3", "1_000", "0o17", "09", "1E3", "12:30", "x", "0",
      "v10", "v1alpha2", "v1beta1", "v2" }
    local first
    for round = 1, 20 do
      local t = {}
      for i = 1, #keys do
        local k = keys[(i + round) % #keys + 1]
        t[k] = 1
      end
      for i = 1, round do t["pad" .. i] = 1 end
      for i = 1, round do t["pad" .. i] = nil end
      local out = yaml.encode(t)
      first = first or out
      assert.equals(first, out)
    end
  end)

  -- { YAML text, expected value }: how plain scalars and other input read
  local decode_cases = {
    { "a: yes", { a = true } }, { "a: Y", { a = true } }, { "a: n", { a = false } },
    { "a: off", { a = false } }, { "a: TRUE", { a = true } }, { "a: ~", { a = null } },
    { "a:", { a = null } }, { "a: Null", { a = null } }, { "- null", arr { null } },
    { "a: 0x1F", { a = 31 } }, { "a: 0o17", { a = 15 } }, { "a: 0755", { a = 493 } },
    { "a: 0b101", { a = 5 } }, { "a: -0x10", { a = -16 } }, { "a: 1_000", { a = 1000 } },
    { "a: +1", { a = 1 } }, { "a: 09", { a = 9.0 } }, { "a: 1e3", { a = 1000.0 } },
    { "a: .5", { a = 0.5 } }, { "a: -.5", { a = -0.5 } }, { "a: 1.", { a = 1.0 } },
    { "a: .inf", { a = math.huge } }, { "a: -.Inf", { a = -math.huge } },
    { "a: 12:30", { a = "12:30" } }, { "a: 2024-01-01", { a = "2024-01-01" } },
    { "a: 9223372036854775807", { a = math.maxinteger } },
    { "a: -9223372036854775808", { a = math.mininteger } },
    { "a: 9223372036854775808", { a = 9223372036854775808.0 } },
    { "a: 0xFFFFFFFFFFFFFFFFF", { a = "0xFFFFFFFFFFFFFFFFF" } },
    { "a: 'true'", { a = "true" } }, { 'a: "1"', { a = "1" } }, { "a: !!str 1", { a = "1" } },
    { "a: !!int '12'", { a = 12 } }, { "a: !!float 1", { a = 1.0 } },
    { "a: !!bool yes", { a = true } }, { "a: !!null ''", { a = null } },
    { "a: !Ref name", { a = "name" } }, { "a: ! 12", { a = "12" } },
    { "1: a\ntrue: b\n~: c", { ["1"] = "a", ["true"] = "b", ["~"] = "c" } },
    { "a: |\n  x\n  y\n", { a = "x\ny\n" } }, { "a: >-\n  x\n  y\n", { a = "x y" } },
    { "a: [1, [], {}]", { a = arr { 1, arr {}, {} } } },
    { "{}", {} }, { "[]", arr {} }, { "", null }, { "# only a comment\n", null },
    { "x", "x" }, { "--- 5\n...\n", 5 },
    { "base: &b {x: 1, y: [1]}\nuse: *b", { base = { x = 1, y = arr { 1 } }, use = { x = 1, y = arr { 1 } } } },
    { "s: &s str\nk: *s", { s = "str", k = "str" } },
    { "a: &k key\n*k : v", { a = "key", key = "v" } },
    { "b: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3", { b = { x = 1, y = 2 }, m = { x = 1, y = 3 } } },
    { "p: &p {x: 1}\nq: &q {x: 2, z: 3}\nm:\n  <<: [*p, *q]", { p = { x = 1 }, q = { x = 2, z = 3 }, m = { x = 1, z = 3 } } },
    { "a: 'it''s'", { a = "it's" } }, { 'a: "\\u00e9\\t"', { a = "é\t" } },
  }
  for _, case in ipairs(decode_cases) do
    it("decodes " .. case[1]:gsub("\n", "\\n"), function()
      local v, err = yaml.decode(case[1])
      assert.is_nil(err)
      c.same(case[2], v, case[1])
    end)
  end

  it("gives aliases their own copy", function()
    local v = assert(yaml.decode("a: &x {n: 1}\nb: *x"))
    v.a.n = 2
    assert.equals(1, v.b.n)
  end)

  it("decodes every document with decode_all, the first with decode", function()
    local text = "a: 1\n---\n- x\n---\n---\nb: &x 2\nc: *x\n"
    local docs = assert(yaml.decode_all(text))
    c.same(arr { { a = 1 }, arr { "x" }, null, { b = 2, c = 2 } }, docs)
    c.same({ a = 1 }, yaml.decode(text))
    c.same(arr {}, yaml.decode_all(""))
    -- anchors are per document
    local v, err = yaml.decode_all("a: &x 1\n---\nb: *x\n")
    assert.is_nil(v)
    assert.matches("undefined alias 'x'", err.message)
  end)

  it("writes documents with encode_all that decode_all and PyYAML read back", function()
    local docs = arr { { kind = "A" }, arr { 1, "true" }, null, "s", {} }
    local text = assert(yaml.encode_all(docs))
    assert.matches("^kind: A\n%-%-%-", text)
    c.same(docs, yaml.decode_all(text))
    c.same(docs, c.pyyaml({ text }, true)[1])
    assert.equals("", yaml.encode_all(arr {}))
  end)

  -- { YAML text, pattern of the error }: malformed input is nil, err with line and column
  local bad = {
    { "a: [1, 2", "line 2 column 1: did not find expected ',' or ']'" },
    { "a: b: c", "line 1 column 5: mapping values are not allowed" },
    { "a:\n\tb: 1", "line 2 column 1: found character that cannot start any token" },
    { "a: 'open", "line 1 column 9: found unexpected end of stream .*at line 1 column 4" },
    { "- a\nb: c", "line 2 column 1: did not find expected '%-' indicator" },
    { "a: 1\na: 2", "line 2 column 1: duplicate key 'a'" },
    { "a: *nope", "line 1 column 4: undefined alias 'nope'" },
    { "a: !!int abc", "line 1 column 4: the value does not fit its tag" },
    { "a: !!bool 1", "does not fit its tag" },
    { "? [1]\n: x", "line 1 column 3: a mapping key must be a scalar" },
    { "l: &l [1]\n*l : x", "a mapping key alias must name a string" },
    { "m:\n  <<: 1", "merge key" },
    { "a: \255", "line 1 column 4: invalid leading UTF%-8 octet" },
    { "a: b\n\226\130", "line 2 column 1: .*UTF%-8" },
    { "a: \"\\ud800\"", "line 1 column" },
    { "a: \1", "control characters are not allowed" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1]:gsub("%c", "?"), function()
      local v, err = yaml.decode(case[1])
      assert.is_nil(v)
      assert.equals("invalid", err.code)
      assert.matches("^invalid YAML at line %d+ column %d+: ", err.message)
      assert.matches(case[2], err.message)
      assert.is_nil(yaml.decode_all(case[1]))
    end)
  end

  it("limits nesting to 512, without crashing on far deeper input", function()
    assert.truthy(yaml.decode(("["):rep(512) .. ("]"):rep(512)))
    local v, err = yaml.decode(("["):rep(513) .. ("]"):rep(513))
    assert.is_nil(v)
    assert.matches("nesting deeper than 512", err.message)
    v, err = yaml.decode(("- "):rep(100000) .. "x")
    assert.is_nil(v)
    assert.matches("nesting deeper than 512", err.message)
    v, err = yaml.decode(("{a: "):rep(100000))
    assert.is_nil(v)
    local deep = {}
    local cur = deep
    for _ = 1, 600 do cur.x = {}; cur = cur.x end
    v, err = yaml.encode(deep)
    assert.is_nil(v)
    assert.matches("nesting deeper than 512", err.message)
  end)

  it("stops a billion-laughs document with an error", function()
    local lines = { 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]' }
    local prev = "a"
    for i = 1, 8 do
      local name = string.char(string.byte("a") + i)
      lines[#lines + 1] = string.format("%s: &%s [%s]", name, name,
        (("*" .. prev .. ","):rep(9)):sub(1, -2))
      prev = name
    end
    local v, err = yaml.decode(table.concat(lines, "\n"))
    assert.is_nil(v)
    assert.matches("aliases expand to more than 1000000 nodes", err.message)
  end)

  -- { Lua value, pattern }: values YAML cannot hold are nil, err
  local unencodable = {
    { { 1, 2, nil, 4 }, "sparse array" }, { { a = 1, 2 }, "mixes string and other keys" },
    { print, "cannot encode a function" }, { "\255", "not valid UTF%-8" },
    { { ["\192\128"] = 1 }, "not valid UTF%-8" },
  }
  for i, case in ipairs(unencodable) do
    it("refuses to encode case " .. i .. " (" .. case[2] .. ")", function()
      local s, err = yaml.encode(case[1])
      assert.is_nil(s)
      assert.equals("invalid", err.code)
      assert.matches(case[2], err.message)
    end)
  end

  it("refuses a cycle", function()
    local t = { a = arr {} }
    t.a[1] = t
    local s, err = yaml.encode(t)
    assert.is_nil(s)
    assert.matches("cycle", err.message)
  end)

  it("raises on misuse", function()
    assert.has_error(function() yaml.decode() end)
    assert.has_error(function() yaml.decode_all({}) end)
    assert.has_error(function() yaml.encode() end)
    assert.has_error(function() yaml.encode_all("x") end)
  end)

  it("round-trips a 100 MB string", function()
    local big = ("0123456789abcdef ü\"'#: "):rep(100 * 1024 * 1024 // 26)
    local s = assert(yaml.encode { big })
    local v = assert(yaml.decode(s))
    assert.equals(#big, #v[1])
    assert.is_true(big == v[1])
    local ml = ("line of text\n"):rep(100 * 1024 * 1024 // 13)
    s = assert(yaml.encode { k = ml })
    assert.matches("^k: |", s)
    assert.is_true(ml == assert(yaml.decode(s)).k)
  end)
end)
