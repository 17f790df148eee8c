-- bench/k8s/frag.lua LIST.json EVERY: RSS after a peak whose survivors are scattered:
-- decodes a list, keeps every EVERY-th item, collects twice, trims (vmdr.mem), prints the
-- peak and the RSS after. Compare the pool with `VMDR_LUA_ALLOC=malloc vmdr-run ...`.
-- LIST.json: e.g. curl's download of the VirtualMachine list in bench/k8s/run.
local json, mem = require "vmdr.json", require "vmdr.mem"
local _, args = ...
local every = tonumber(args[2] or "100")
local f = assert(io.open(assert(args[1], "usage: frag.lua -- LIST.json EVERY"), "rb"))
local s = f:read("a")
f:close()
local keep = {}
do
    local v = assert(json.decode(s))
    for i = 1, #v.items, every do keep[#keep + 1] = v.items[i] end
end
s = nil
local peak = mem.rss()
collectgarbage("collect"); collectgarbage("collect"); mem.trim()
print(string.format("every=%d kept=%d peak=%.1f MiB after collect+trim=%.1f MiB lua=%.1f MiB",
    every, #keep, peak / 1048576, mem.rss() / 1048576, collectgarbage("count") / 1024))
