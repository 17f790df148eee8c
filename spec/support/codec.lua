-- Test support for the codec specs: a strict deep comparison (integer vs float,
-- [] vs {}, null) and the independent YAML readers (PyYAML pure-Python, Ruby Psych).
local h = require "support.helper"
local json = require "vmdr.json"

local M = {}
local null, array_mt = json.null, json.array_mt

local function show(v)
  if v == null then return "null" end
  if type(v) == "number" then return math.type(v) .. " " .. string.format("%.17g", v) end
  if type(v) == "string" then return string.format("%q", #v > 60 and v:sub(1, 60) .. "..." or v) end
  if type(v) == "table" then return getmetatable(v) == array_mt and "array" or "map" end
  return tostring(v)
end

--- Returns nil when a and b are the same value (same number subtypes, arrays vs maps),
--- else a description of the first difference with its path.
---@return string|nil
function M.diff(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return path .. ": " .. show(a) .. " vs " .. show(b) end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return path .. ": " .. show(a) .. " vs " .. show(b) end
    if a ~= b and not (a ~= a and b ~= b) then return path .. ": " .. show(a) .. " vs " .. show(b) end
    return nil
  end
  if type(a) ~= "table" then
    if a ~= b then return path .. ": " .. show(a) .. " vs " .. show(b) end
    return nil
  end
  if (getmetatable(a) == array_mt) ~= (getmetatable(b) == array_mt) then
    return path .. ": " .. show(a) .. " vs " .. show(b)
  end
  for k, v in pairs(a) do
    local d = M.diff(v, b[k], path .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(b) do
    if a[k] == nil then return path .. "." .. tostring(k) .. ": missing vs " .. show(b[k]) end
  end
  return nil
end

--- Asserts a and b are the same value (M.diff), with msg naming the case.
function M.same(a, b, msg)
  local d = M.diff(a, b)
  if d then error((msg and msg .. ": " or "") .. d, 2) end
end

--- The value as the external readers report it: NaN and infinities as strings.
function M.external_form(v)
  if type(v) == "number" and math.type(v) == "float" then
    if v ~= v then return "<nan>" end
    if v == math.huge then return "<inf>" end
    if v == -math.huge then return "<-inf>" end
    return v
  end
  if type(v) ~= "table" then return v end
  local out = setmetatable({}, getmetatable(v))
  for k, x in pairs(v) do out[k] = M.external_form(x) end
  return out
end

local function run_reader(cmd, texts)
  local d = h.tmpdir("reader")
  local names = {}
  for i, t in ipairs(texts) do names[i] = h.q(h.write(string.format("%s/%d.yaml", d, i), t)) end
  local out = h.capture(cmd .. " " .. table.concat(names, " ") .. " 2>&1")
  h.sh("rm -rf " .. h.q(d))
  return assert(json.decode(out))
end

--- Reads each YAML text with PyYAML's pure-Python SafeLoader; returns their values.
--- With all = true, each value is the list of the text's documents.
function M.pyyaml(texts, all)
  h.need("/usr/bin/python3")
  return run_reader("/usr/bin/python3 " .. h.q(h.source_dir .. "/spec/support/yaml_to_json.py")
    .. (all and " --all" or ""), texts)
end

--- Reads each single-document YAML text with Ruby's Psych (safe_load).
function M.psych(texts)
  h.need("ruby")
  return run_reader("ruby " .. h.q(h.source_dir .. "/spec/support/yaml_to_json.rb"), texts)
end

return M
