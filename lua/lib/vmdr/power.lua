--- vmdr.power: powering VMs off through a cluster's API and waiting until they
--- are down, for the planned workflows (relocate, failback) whose storage steps
--- are only safe once nothing writes to the disks.
local json = require "vmdr.json"
local time = require "vmdr.time"

local M = {}

local VM = "virtualmachines.kubevirt.io"

--- Whether a VM object is down: KubeVirt reports printableStatus "Stopped" once
--- the VirtualMachineInstance is gone.
---@param vm table
---@return boolean
function M.is_stopped(vm)
    local st = type(vm.status) == "table" and vm.status or {}
    return st.printableStatus == "Stopped"
end

--- Asks every VM of the bundles to stop: runStrategy Halted, and the deprecated
--- spec.running removed (the two are mutually exclusive). A VM that no longer
--- exists counts as stopped. Returns the list of "ns/name" patched, or nil, err.
---@param client table vmdr.k8s client
---@param bundles table[] {ns=, name=}
function M.stop(client, bundles)
    local patched = {}
    for _, b in ipairs(bundles) do
        local obj, err = client:patch(VM, b.ns, b.name, { spec = { running = json.null, runStrategy = "Halted" } },
            { type = "merge" })
        if not obj and err.code ~= "not_found" then
            return nil, string.format("stopping %s/%s: %s", b.ns, b.name, tostring(err))
        end
        patched[#patched + 1] = b.ns .. "/" .. b.name
    end
    return patched
end

--- The VMs of the bundles that are not stopped, as "ns/name" (a VM that does not
--- exist is stopped), or nil, err.
function M.running(client, bundles)
    local up = {}
    for _, b in ipairs(bundles) do
        local vm, err = client:get(VM, b.ns, b.name)
        if vm then
            if not M.is_stopped(vm) then up[#up + 1] = b.ns .. "/" .. b.name end
        elseif err.code ~= "not_found" then
            return nil, string.format("reading %s/%s: %s", b.ns, b.name, tostring(err))
        end
    end
    return up
end

--- Waits until every VM of the bundles is stopped, polling every `interval` s,
--- for at most `timeout` s. Returns true, or nil, err naming those still up.
function M.wait_stopped(client, bundles, timeout, interval)
    local deadline = time.monotonic() + (timeout or 300)
    while true do
        local up, err = M.running(client, bundles)
        if not up then return nil, err end
        if #up == 0 then return true end
        if time.monotonic() > deadline then
            return nil, string.format("still running after %ds: %s", timeout or 300, table.concat(up, ", "))
        end
        local ok, serr = time.sleep(interval or 1)
        if not ok then return nil, tostring(serr) end
    end
end

return M
