-- Generates the codec benchmark data from the VM fixtures (run inside vmdr-run):
--   vms.json        a Kubernetes List of VM objects, at least 50 MB of JSON
--   vms.yaml        10,000 VM documents, one per VM, separated by "---"
-- Every item is a fixture VM with a unique name and uid.
--   vmdr-run bench/codecs/gen.lua -- FIXTURES_DIR OUT_DIR
local _, args = ...
local json = require "vmdr.json"
local yaml = require "vmdr.yaml"
local fixtures, out = args[1], args[2]

local vms = {}
local p = assert(io.popen("ls " .. fixtures .. "/vms/*.yaml"))
for f in p:lines() do
  local fh = assert(io.open(f, "rb"))
  local v = assert(yaml.decode(fh:read("a")))
  fh:close()
  if type(v) == "table" and v.kind == "VirtualMachine" then vms[#vms + 1] = v end
end
p:close()
assert(#vms > 5, "too few VM fixtures")

local function item(i)
  local v = assert(yaml.decode(assert(yaml.encode(vms[(i - 1) % #vms + 1])))) -- a fresh copy
  v.metadata = v.metadata or {}
  v.metadata.name = string.format("%s-%06d", v.metadata.name or "vm", i)
  v.metadata.uid = string.format("00000000-0000-4000-8000-%012d", i)
  return v
end

-- JSON: items until the encoded list passes 50 MB
local parts, size, i = {}, 0, 0
while size < 50 * 1024 * 1024 do
  i = i + 1
  local s = assert(json.encode(item(i)))
  parts[#parts + 1] = s
  size = size + #s + 1
end
local f = assert(io.open(out .. "/vms.json", "wb"))
f:write('{"apiVersion":"v1","items":[', table.concat(parts, ","), '],"kind":"List","metadata":{}}')
f:close()
print(string.format("vms.json: %d VMs, %.1f MB", i, size / 1048576))

-- YAML: 10,000 documents
parts = {}
for k = 1, 10000 do parts[k] = assert(yaml.encode(item(k))) end
f = assert(io.open(out .. "/vms.yaml", "wb"))
f:write(table.concat(parts, "---\n"))
f:close()
local total = 0
for _, s in ipairs(parts) do total = total + #s end
print(string.format("vms.yaml: 10000 VMs, %.1f MB", total / 1048576))
