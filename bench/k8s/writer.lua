-- bench/k8s/writer.lua KUBECONFIG COUNT INTERVAL: patches the first VirtualMachine COUNT
-- times, INTERVAL seconds apart, stamping each patch with time.now() just before sending.
local k8s = require "vmdr.k8s"
local time = require "vmdr.time"
local _, args = ...
local count, interval = tonumber(args[2]), tonumber(args[3])
local c = assert(k8s.client { kubeconfig = args[1] })
local first = assert(c:request("GET", "/apis/kubevirt.io/v1/virtualmachines?limit=1")).items[1]
assert(c:resource("vm"))
for i = 1, count do
  assert(c:patch("vm", first.metadata.namespace, first.metadata.name, { metadata = { annotations = {
    ["bench.vmdr/seq"] = tostring(i), ["bench.vmdr/sent"] = string.format("%.6f",
      time.now()) } } }))
  time.sleep(interval)
end
