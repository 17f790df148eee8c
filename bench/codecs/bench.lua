-- One codec benchmark, in the host that has the implementation:
--   vmdr-run bench/codecs/bench.lua -- IMPL FILE RUNS     IMPL = vmdr-json | vmdr-yaml
--   lua5.4   bench/codecs/bench.lua    IMPL FILE RUNS     IMPL = cjson | lyaml
-- JSON: decode FILE (one big List) into Lua tables. YAML: decode every document of
-- FILE separately (one VM each, as vmdr reads manifests), then encode every value.
-- Times are CPU seconds (os.clock) of the codec calls only; prints one line of
-- key=value: the median and each run, MB/s of the median, and peak RSS (VmHWM).
local a1, a2 = ...
local args = type(a2) == "table" and a2 or { ... }
local impl, file, runs = args[1], args[2], tonumber(args[3] or "5")

local fh = assert(io.open(file, "rb"))
local text = fh:read("a")
fh:close()

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function peak_rss_mb()
  local f = io.open("/proc/self/status", "r")
  local s = f and f:read("a") or ""
  if f then f:close() end
  return tonumber(s:match("VmHWM:%s*(%d+)") or "0") / 1024
end

local function timed(fn)
  collectgarbage("collect")
  local t0 = os.clock()
  local keep = fn()
  local t = os.clock() - t0
  keep = nil -- luacheck: ignore
  return t
end

local result = {}
if impl == "vmdr-json" or impl == "cjson" then
  local decode
  if impl == "vmdr-json" then
    local json = require "vmdr.json"
    decode = function(s) return assert(json.decode(s)) end
  else
    local cjson = require "cjson"
    decode = cjson.decode
  end
  local times = {}
  local nitems
  for r = 1, runs do
    times[r] = timed(function()
      local v = decode(text)
      nitems = #v.items
      return v
    end)
  end
  local med = median(times)
  result = { impl = impl, op = "json-decode", items = nitems, mb = #text / 1048576,
    median_s = med, mb_s = #text / 1048576 / med, runs = table.concat(times, "/") }
else
  local docs = {}
  for d in (text .. "---\n"):gmatch("(.-)%-%-%-\n") do docs[#docs + 1] = d end
  local load, dump
  if impl == "vmdr-yaml" then
    local yaml = require "vmdr.yaml"
    load = function(s) return assert(yaml.decode(s)) end
    dump = function(v) return assert(yaml.encode(v)) end
  else
    local lyaml = require "lyaml"
    load = lyaml.load
    dump = function(v) return lyaml.dump({ v }) end
  end
  local values, dec, enc, outbytes = {}, {}, {}, 0
  for r = 1, runs do
    dec[r] = timed(function()
      for i, d in ipairs(docs) do values[i] = load(d) end
      return values
    end)
    enc[r] = timed(function()
      local out = {}
      for i, v in ipairs(values) do out[i] = dump(v) end
      outbytes = 0
      for _, s in ipairs(out) do outbytes = outbytes + #s end
      return out
    end)
  end
  local mdec, menc = median(dec), median(enc)
  result = { impl = impl, op = "yaml", docs = #docs, mb = #text / 1048576,
    decode_median_s = mdec, decode_mb_s = #text / 1048576 / mdec,
    encode_median_s = menc, encode_mb_s = outbytes / 1048576 / menc,
    decode_runs = table.concat(dec, "/"), encode_runs = table.concat(enc, "/") }
end
result.peak_rss_mb = peak_rss_mb()
local keys = {}
for k in pairs(result) do keys[#keys + 1] = k end
table.sort(keys)
local out = {}
for _, k in ipairs(keys) do
  local v = result[k]
  if type(v) == "number" and math.type(v) == "float" then v = string.format("%.3f", v) end
  out[#out + 1] = k .. "=" .. tostring(v)
end
print(table.concat(out, " "))
