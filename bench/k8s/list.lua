-- bench/k8s/list.lua KUBECONFIG LIMIT EXPECTED: lists every VirtualMachine into Lua tables
-- (discovery included), checks the count, prints the process's peak RSS (VmHWM, kB).
local k8s = require "vmdr.k8s"
local _, args = ...
local c = assert(k8s.client { kubeconfig = args[1], page_size = tonumber(args[2] or "500") })
local l = assert(c:list("virtualmachines.kubevirt.io"))
assert(#l.items == tonumber(args[3]), "got " .. #l.items .. " VMs")
assert(type(l.items[#l.items].spec) == "table")
local f = io.open("/proc/self/status")
local hwm = f:read("a"):match("VmHWM:%s*(%d+)")
f:close()
io.stderr:write("items=", #l.items, " VmHWM_kB=", hwm, "\n")
c:close()
