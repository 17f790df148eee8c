-- vmdr.json: decode/encode fidelity (data tables, lua-cjson tests style), bad input.
local json = require "vmdr.json"
local null, array_mt = json.null, json.array_mt

local function arr(t) return setmetatable(t, array_mt) end

describe("vmdr.json", function()
  it("exposes the shared markers", function()
    assert.equals("userdata", type(null))
    assert.equals("table", type(array_mt))
    local yaml = require "vmdr.yaml"
    assert.equals(yaml.null, null)
    assert.equals(yaml.array_mt, array_mt)
  end)

  -- { json text, canonical encoding (nil: the same text) }
  local roundtrip = {
    { 'null' }, { 'true' }, { 'false' }, { '0' }, { '-1' }, { '""' },
    { '[]' }, { '{}' }, { '[[],{}]' }, { '{"a":[],"b":{}}' },
    { '{"a":null}' }, { '[null,null]' },
    { '9223372036854775807' }, { '-9223372036854775808' },
    { '1.5' }, { '0.1' }, { '-0.0' }, { '1e+300' }, { '1000.0' }, { '1e3', '1000.0' },
    { '1E-7', '1e-07' }, { '0.3333333333333333' }, { '1.7976931348623157e+308' },
    { '5e-324', '4.94065645841247e-324' },
    { '18446744073709551616', '1.8446744073709552e+19' },
    { '"true"' }, { '"0755"' }, { '"1e3"' }, { '"null"' },
    { '"caf\\u00e9"', '"café"' }, { '"😀"' }, { '"\\ud83d\\ude00"', '"😀"' },
    { '"a\\"b\\\\c\\/d"', '"a\\"b\\\\c/d"' },
    { '"\\b\\f\\n\\r\\t\\u0001\\u001f"' },
    { '{"b":1,"a":2,"c":{"z":1,"y":2}}', '{"a":2,"b":1,"c":{"y":2,"z":1}}' },
    { '{"B":1,"a":2,"_":3,"aa":4,"a.b":5}', '{"B":1,"_":3,"a":2,"a.b":5,"aa":4}' },
    { ' \t\r\n[ 1 , 2 ]\n', '[1,2]' },
    { '\239\187\191{}', '{}' },
  }
  for _, case in ipairs(roundtrip) do
    it("round-trips " .. case[1], function()
      local v, err = json.decode(case[1])
      assert.is_nil(err)
      local out = assert(json.encode(v))
      assert.equals(case[2] or case[1], out)
      assert.same(v, json.decode(out))
    end)
  end

  -- { lua value, expected type of the decoded value's fields }
  it("keeps integer and float subtypes", function()
    local v = json.decode('{"i":3,"f":3.0,"big":9007199254740993,"e":1e2}')
    assert.equals("integer", math.type(v.i))
    assert.equals("float", math.type(v.f))
    assert.equals(9007199254740993, v.big)
    assert.equals("integer", math.type(v.big))
    assert.equals("float", math.type(v.e))
  end)

  it("decodes [] with array_mt and {} without", function()
    local v = json.decode('{"l":[],"m":{},"n":[1]}')
    assert.equals(array_mt, getmetatable(v.l))
    assert.is_nil(getmetatable(v.m))
    assert.equals(array_mt, getmetatable(v.n))
    assert.equals(null, json.decode('[null]')[1])
  end)

  it("encodes Lua tables by their keys", function()
    assert.equals('[1,2,3]', json.encode { 1, 2, 3 })
    assert.equals('{}', json.encode {})
    assert.equals('[]', json.encode(arr {}))
    assert.equals('{"a":[]}', json.encode { a = arr {} })
    assert.equals('null', json.encode(nil))
    assert.equals('"x"', json.encode("x"))
  end)

  -- { json text, pattern the error message must match }
  local bad = {
    { '', 'line 1 column 1: unexpected end of input' },
    { '{"a":1,}', 'line 1 column 8: unexpected \'}\'' },
    { '[1,2', 'line 1 column 5: unexpected end of input' },
    { '\n\n  [1,2 x', 'line 3 column 8: unexpected \'x\'' },
    { '[1] 2', 'line 1 column 5: unexpected \'2\', expected the end of input' },
    { '01', 'leading zero' }, { '-', 'digit must follow' }, { '1.', 'digit must follow' },
    { '1e', 'digit must follow the exponent' }, { '1e999', 'number out of range' },
    { 'tru', 'unexpected \'t\'' }, { 'nul', 'unexpected' }, { "'a'", "unexpected '''" },
    { '"abc', 'unterminated string' }, { '"a\\', 'unterminated string' },
    { '"\\x"', 'invalid escape' }, { '"\\u12g4"', 'invalid \\u escape' },
    { '"\\ud800"', 'lone UTF%-16 surrogate' }, { '"\\udc00x"', 'lone UTF%-16 surrogate' },
    { '"a\nb"', 'control character' },
    { '"\255"', 'invalid UTF%-8' }, { '"\192\128"', 'invalid UTF%-8' },
    { '"\237\160\128"', 'invalid UTF%-8' }, { '"\244\144\128\128"', 'invalid UTF%-8' },
    { '"\226\130"', 'invalid UTF%-8' },
    { '{"a" 1}', "expected ':'" }, { '{1:2}', 'expected a string' },
    { '[1 2]', "expected ',' or ']'" }, { '{"a":1 "b":2}', "expected ',' or '}'" },
    { 'NaN', 'unexpected' }, { 'Infinity', 'unexpected' }, { '+1', 'unexpected' },
    { '\0', 'unexpected byte 0x00' },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1]:gsub("%c", "?"), function()
      local v, err = json.decode(case[1])
      assert.is_nil(v)
      assert.equals("invalid", err.code)
      assert.matches(case[2], err.message)
    end)
  end

  -- The decoder keeps up to 256 members per container on the Lua stack and sizes the
  -- table once (runtime/json.c PENDING_MAX): counts around that boundary, order, and
  -- the worst stack use (512 levels each holding 255 pending members).
  it("decodes containers of any size, in order, around the presizing boundary", function()
    for _, n in ipairs { 0, 1, 255, 256, 257, 511, 512, 513, 100000 } do
      local parts, keys = {}, {}
      for i = 1, n do
        parts[i] = i % 3 == 0 and "null" or (i % 3 == 1 and tostring(i) or '"s' .. i .. '"')
        keys[i] = string.format('"k%06d":%s', i, parts[i])
      end
      local a = assert(json.decode("[" .. table.concat(parts, ",") .. "]"))
      local o = assert(json.decode("{" .. table.concat(keys, ",") .. "}"))
      assert.equals(array_mt, getmetatable(a))
      assert.equals(n, #a)
      local count = 0
      for _ in pairs(o) do count = count + 1 end
      assert.equals(n, count)
      for _, i in ipairs { 1, 2, 3, 255, 256, 257, n } do
        if i >= 1 and i <= n then
          local want = i % 3 == 0 and null or (i % 3 == 1 and i or "s" .. i)
          assert.equals(want, a[i])
          assert.equals(want, o[string.format("k%06d", i)])
        end
      end
      assert.equals("[" .. table.concat(parts, ",") .. "]", assert(json.encode(a)))
    end
  end)

  it("keeps the last value of a duplicate key, across the presizing boundary", function()
    assert.equals(2, json.decode('{"a":1,"a":2}').a)
    local parts = { '"d":"first"' }
    for i = 1, 300 do parts[#parts + 1] = '"x' .. i .. '":' .. i end
    parts[#parts + 1] = '"d":"last"'
    assert.equals("last", json.decode("{" .. table.concat(parts, ",") .. "}").d)
  end)

  it("decodes 512 levels each holding 255 members before the next level", function()
    local filler = {}
    for i = 1, 255 do filler[i] = '"f' .. i .. '":' .. i end
    filler = table.concat(filler, ",")
    local s = ('{' .. filler .. ',"n":'):rep(511) .. '{' .. filler .. '}' .. ('}'):rep(511)
    local v = assert(json.decode(s))
    local depth = 1
    while v.n do v, depth = v.n, depth + 1 end
    assert.equals(512, depth)
    assert.equals(255, v.f255)
  end)

  it("limits nesting to 512 on decode, without crashing", function()
    assert.truthy(json.decode(("["):rep(512) .. ("]"):rep(512)))
    local v, err = json.decode(("["):rep(513) .. ("]"):rep(513))
    assert.is_nil(v)
    assert.matches("nesting deeper than 512", err.message)
    v, err = json.decode(("{\"a\":"):rep(100000))
    assert.is_nil(v)
    assert.matches("nesting deeper than 512", err.message)
  end)

  -- { lua value, pattern of the error }
  local unencodable = {
    { { 1, 2, nil, 4 }, 'sparse array' },
    { { a = 1, 2 }, 'mixes string and other keys' },
    { { [1.5] = 1 }, 'neither a string nor a positive integer' },
    { { [true] = 1 }, 'neither a string nor a positive integer' },
    { setmetatable({ 1, a = 2 }, array_mt), 'array_mt has keys other than 1..n' },
    { print, 'cannot encode a function' },
    { 0 / 0, 'NaN' }, { math.huge, 'infinity' },
    { "\255", 'not valid UTF%-8' }, { { ["\255"] = 1 }, 'not valid UTF%-8' },
    { coroutine.create(print), 'cannot encode a thread' },
  }
  for i, case in ipairs(unencodable) do
    it("refuses to encode case " .. i .. " (" .. case[2] .. ")", function()
      local s, err = json.encode(case[1])
      assert.is_nil(s)
      assert.equals("invalid", err.code)
      assert.matches(case[2], err.message)
    end)
  end

  it("refuses a cycle and nesting deeper than 512", function()
    local t = {}
    t.self = t
    local s, err = json.encode(t)
    assert.is_nil(s)
    assert.matches("cycle", err.message)
    local deep = {}
    local cur = deep
    for _ = 1, 600 do cur.x = {}; cur = cur.x end
    s, err = json.encode(deep)
    assert.is_nil(s)
    assert.matches("nesting deeper than 512", err.message)
    -- the same table twice, not nested in itself, is no cycle
    local shared = { 1 }
    assert.equals('{"a":[1],"b":[1]}', json.encode { a = shared, b = shared })
  end)

  it("raises on misuse", function()
    assert.has_error(function() json.decode() end)
    assert.has_error(function() json.decode({}) end)
    assert.has_error(function() json.encode() end)
  end)

  it("round-trips a 100 MB string", function()
    local big = ("0123456789abcdef\n\"\\é"):rep(100 * 1024 * 1024 // 21)
    local s = assert(json.encode { big })
    local v = assert(json.decode(s))
    assert.equals(#big, #v[1])
    assert.is_true(big == v[1])
  end)
end)
