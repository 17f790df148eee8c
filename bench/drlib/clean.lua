-- Cleaning cost per VM bundle (VM + PVC + PV), beside the floor of only encoding
-- the same objects uncleaned. Usage: vmdr-run bench/drlib/clean.lua -- N MODE
-- MODE: bundle (manifest.bundle: clean + encode + hash) | encode (yaml.encode only)
local _, args = ...
local yaml = require "vmdr.yaml"
local time = require "vmdr.time"
local manifest = require "vmdr.manifest"

local n = tonumber(args[1] or "10000")
local mode = args[2] or "bundle"
local src = os.getenv("VMDR_SOURCE_DIR") or "."
local function fixture(rel)
  local f = assert(io.open(src .. "/../shared/fixtures/" .. rel, "rb"))
  local text = f:read("a")
  f:close()
  return text
end
local vm_text = fixture("vms/kubevirt-examples--vm-alpine-datavolume.yaml")
local pvc_text = fixture("storage/pvc/deckhouse--pvc-ceph-csi-rbd-bound.yaml")
local pv_text = fixture("storage/pv/deckhouse--pv-ceph-csi-rbd-bound.yaml")

-- fresh objects, as a list call would hand them over (not timed)
local items = {}
for i = 1, n do
  local vm, pvc, pv = yaml.decode(vm_text), yaml.decode(pvc_text), yaml.decode(pv_text)
  vm.metadata.name = "vm-" .. i
  vm.metadata.generation = i
  pvc.metadata.name = "vm-" .. i .. "-disk"
  pv.metadata.name = "pvc-" .. i
  items[i] = { vm, pvc, pv }
end

local t0 = time.monotonic()
local bytes = 0
for i = 1, n do
  local it = items[i]
  if mode == "bundle" then
    local b = assert(manifest.bundle(nil, it[1], { it[2] }, { it[3] }))
    bytes = bytes + #b.vm
  else
    bytes = bytes + #yaml.encode(it[1]) + #yaml.encode(it[2]) + #yaml.encode(it[3])
  end
end
local dt = time.monotonic() - t0
local f = io.open("/proc/self/status")
local hwm = f:read("a"):match("VmHWM:%s*(%d+)")
f:close()
io.write(string.format("%s n=%d seconds=%.3f per_vm_us=%.1f peak_rss_mb=%.1f\n", mode, n, dt,
  dt / n * 1e6, tonumber(hwm) / 1024))
