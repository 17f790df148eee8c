-- bench/k8s/watch.lua KUBECONFIG COUNT: watches one VirtualMachine and measures, for each
-- change, the time from the writer stamping it (bench/k8s/writer.lua puts time.now() in an
-- annotation just before it sends the patch) to the event reaching this Lua loop.
-- Prints "ready" once the watch is open, then p50/p99/max in ms after COUNT changes.
local k8s = require "vmdr.k8s"
local time = require "vmdr.time"
local _, args = ...
local count = tonumber(args[2])
local c = assert(k8s.client { kubeconfig = args[1] })
local first = assert(c:request("GET", "/apis/kubevirt.io/v1/virtualmachines?limit=1")).items[1]
local lat = {}
for t, obj in c:watch("vm", { namespace = first.metadata.namespace,
  fieldSelector = "metadata.name=" .. first.metadata.name }) do
  if t == "RESYNC" then
    io.stdout:write("ready\n"); io.stdout:flush()
  elseif t == "MODIFIED" then
    local now = time.now()
    local sent = tonumber((obj.metadata.annotations or {})["bench.vmdr/sent"])
    if sent then lat[#lat + 1] = (now - sent) * 1000 end
    if #lat >= count then break end
  end
end
table.sort(lat)
local function pct(p) return lat[math.max(1, math.ceil(#lat * p))] end
io.stdout:write(string.format("events=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", #lat, pct(0.5),
  pct(0.99), lat[#lat]))
