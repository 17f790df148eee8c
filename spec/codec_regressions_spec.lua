-- Regressions found by fuzzing the codecs (scripts/fuzz); each case names its finding.
-- The inputs are also kept as seeds in tests/fuzz/corpus/<target>/.
local json = require "vmdr.json"
local yaml = require "vmdr.yaml"

describe("codec regressions", function()
  -- fuzz_json_decode crash 8360b492 (UBSan, pointer overflow in vmdr_codec_enter):
  -- encoding an empty object before any key had been collected sorted a NULL list.
  it("8360b492: encodes an empty object as the first table", function()
    local v = assert(json.decode("{\n }\n \n"))
    assert.equals("{}", json.encode(v))
    assert.equals("{}\n", yaml.encode(assert(yaml.decode("{\n }\n \n"))))
    assert.equals("[{}]", json.encode(json.decode("[{}]")))
  end)
end)
