-- Every YAML and JSON file under ../shared/fixtures round-trips through vmdr.yaml and
-- vmdr.json, and what vmdr.yaml writes is read to the same value by PyYAML's
-- pure-Python loader and by Ruby Psych.
local yaml = require "vmdr.yaml"
local json = require "vmdr.json"
local h = require "support.helper"
local c = require "support.codec"

local function fixture_files()
  local p = assert(io.popen("find " .. h.q(h.fixtures) .. " -type f \\( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \\) | sort"))
  local files = {}
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  return files
end

local function has_nonfinite(v)
  if type(v) == "number" then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) ~= "table" then return false end
  for _, x in pairs(v) do if has_nonfinite(x) then return true end end
  return false
end

describe("codec fixtures", function()
  local files = fixture_files()
  local docs, names, texts = {}, {}, {} -- every document, for the external readers

  it("finds the fixtures", function()
    assert.is_true(#files >= 40, "only " .. #files .. " fixture files under " .. h.fixtures)
  end)

  for _, f in ipairs(files) do
    local short = f:sub(#h.fixtures + 2)
    it("round-trips " .. short, function()
      local src = assert(h.read(f))
      local values
      if f:match("%.json$") then
        local v, err = json.decode(src)
        assert(v ~= nil, err and err.message)
        values = { v }
        -- JSON -> JSON is the same value, and a fixed point after one pass
        local out = assert(json.encode(v))
        c.same(v, assert(json.decode(out)), short)
        assert.equals(out, json.encode(json.decode(out)))
      else
        local v, err = yaml.decode_all(src)
        assert(v ~= nil, err and err.message)
        values = v
        assert.is_true(#values >= 1)
        c.same(values[1], yaml.decode(src), short .. " (decode = first document)")
        -- all documents at once
        c.same(values, assert(yaml.decode_all(assert(yaml.encode_all(values)))), short)
      end
      for i, v in ipairs(values) do
        local label = short .. (#values > 1 and (" #" .. i) or "")
        local out = assert(yaml.encode(v))
        c.same(v, assert(yaml.decode(out)), label)
        assert.equals(out, yaml.encode(yaml.decode(out)), label .. ": not a fixed point")
        if not has_nonfinite(v) then
          c.same(v, assert(json.decode(assert(json.encode(v)))), label .. " via JSON")
        end
        docs[#docs + 1], names[#names + 1], texts[#texts + 1] = v, label, out
      end
    end)
  end

  it("is read to the same values by PyYAML (pure-Python SafeLoader)", function()
    assert.is_true(#texts >= #files)
    local got = c.pyyaml(texts)
    for i, v in ipairs(docs) do c.same(c.external_form(v), got[i], names[i]) end
  end)

  it("is read to the same values by Ruby Psych", function()
    local got = c.psych(texts)
    for i, v in ipairs(docs) do c.same(c.external_form(v), got[i], names[i]) end
  end)
end)
