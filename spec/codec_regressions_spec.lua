-- Regressions found by fuzzing the codecs (scripts/fuzz); each case names its finding.
-- The inputs are also kept as seeds in tests/fuzz/corpus/<target>/.
local json = require "vmdr.json"
local yaml = require "vmdr.yaml"
local h = require "support.helper"

describe("codec regressions", function()
  -- fuzz_json_decode crash 8360b492 (UBSan, pointer overflow in vmdr_codec_enter):
  -- encoding an empty object before any key had been collected sorted a NULL list.
  it("8360b492: encodes an empty object as the first table", function()
    local v = assert(json.decode("{\n }\n \n"))
    assert.equals("{}", json.encode(v))
    assert.equals("{}\n", yaml.encode(assert(yaml.decode("{\n }\n \n"))))
    assert.equals("[{}]", json.encode(json.decode("[{}]")))
  end)

  -- fuzz_json_decode crash 0daa2497 (a raise from the next push, then a SEGV): a string
  -- longer than the luaL_Buffer's inline space, with escapes, failing (bad \u) inside
  -- nested objects left the buffer's to-be-closed box in a state that made the next
  -- lua_settop close a stale slot. The decoder now keeps unescaped strings in its own
  -- scratch userdata.
  it("0daa2497: a failing long escaped string leaves the Lua stack sound", function()
    local s = assert(h.read(h.source_dir ..
      "/tests/fuzz/corpus/fuzz_json_decode/regress-0daa2497-escaped-string-error"))
    local v, err = json.decode(s)
    assert.is_nil(v)
    assert.equals("invalid", err.code)
    -- the same shape, built here: nested objects, a long escaped string, a bad escape
    local long = ("x\\u00e9"):rep(600)
    for depth = 1, 6 do
      local doc = ('{"a":'):rep(depth) .. '"' .. long .. '\\uZZZZ"' .. ("}"):rep(depth)
      v, err = json.decode(doc)
      assert.is_nil(v)
      assert.matches("invalid \\u escape", err.message)
      local ok = json.decode('{"a":"' .. long .. '"}')
      assert.equals(600 * 3, #ok.a)
    end
  end)
end)
