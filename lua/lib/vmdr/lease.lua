--- vmdr.lease: leader election through a coordination.k8s.io/v1 Lease, the way
--- client-go's leaderelection does it, so several monitors can run and exactly one acts.
---
---   local el = lease.new(client, { namespace = "vmdr", name = "vmdr-monitor" })
---   if el:try() then ... end        -- one acquire-or-renew round, every el.retry_period
---   if el:leading() then commit end -- re-checked right before acting
---   el:release()                    -- hand-over: the next candidate takes it at once
---
--- Safety comes from the API server's optimistic concurrency: every write is a PUT
--- carrying the resourceVersion that was read (or a create, which fails if the Lease
--- exists), so of two candidates racing for an expired Lease one gets 409 Conflict.
--- Expiry is judged on the local monotonic clock, never by comparing the holder's
--- renewTime with our wall clock (clocks of two hosts disagree): a candidate notes when
--- it last saw the Lease record change, and takes over only when it has seen no change
--- for leaseDurationSeconds. A leader that has not renewed within renew_deadline
--- (< duration) stops acting before anyone else may start.
local time = require "vmdr.time"

local M = {}

local RES <const> = "leases.coordination.k8s.io"

local Elector = {}
Elector.__index = Elector
Elector.__name = "vmdr.lease.Elector"

local function micro_time(t)
    local sec = math.floor(t)
    local usec = math.floor((t - sec) * 1e6)
    return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%06dZ", usec)
end

local function read_first_line(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local l = f:read("l")
    f:close()
    return l
end

--- The default identity: hostname and process id (what a commit message shows).
---@return string
function M.default_identity()
    local host = os.getenv("HOSTNAME") or read_first_line("/proc/sys/kernel/hostname") or "unknown"
    local stat = read_first_line("/proc/self/stat") or ""
    return host .. "/" .. (stat:match("^(%d+)") or "0")
end

--- Creates an elector. opts: name, namespace (required), identity (default hostname/pid),
--- duration (seconds, 15), renew_deadline (2/3 of duration), retry_period (2/15 of it).
---@param client table vmdr.k8s client
---@param opts table
---@return table elector
function M.new(client, opts)
    if type(client) ~= "table" then error("lease.new: client required", 2) end
    if type(opts) ~= "table" or type(opts.name) ~= "string" or type(opts.namespace) ~= "string" then
        error("lease.new: opts.name and opts.namespace required", 2)
    end
    local d = tonumber(opts.duration) or 15
    if d < 1 then error("lease.new: duration must be at least 1 second", 2) end
    local self = setmetatable({
        client = client, name = opts.name, namespace = opts.namespace,
        identity = opts.identity or M.default_identity(),
        duration = d,
        renew_deadline = tonumber(opts.renew_deadline) or d * 2 / 3,
        retry_period = tonumber(opts.retry_period) or d * 2 / 15,
        observed = nil, observed_at = nil, renewed_at = nil, transitions = 0,
    }, Elector)
    if self.renew_deadline >= d then error("lease.new: renew_deadline must be below duration", 2) end
    return self
end

--- Whether this process may act now: it holds the Lease and renewed it less than
--- renew_deadline ago (after that, another candidate may soon take over).
---@return boolean
function Elector:leading()
    return self.renewed_at ~= nil and time.monotonic() - self.renewed_at < self.renew_deadline
end

local function observe(self, obj)
    local spec = obj.spec or {}
    local record = tostring(spec.holderIdentity) .. "|" .. tostring(spec.renewTime) .. "|"
        .. tostring(spec.leaseDurationSeconds)
    if record ~= self.observed then
        self.observed, self.observed_at = record, time.monotonic()
    end
    return spec
end

--- One acquire-or-renew round. Returns true when this process holds the Lease now,
--- false when another does (or a race was lost), and false, err on an API error
--- (leading() then turns false by itself once renew_deadline passes).
---@return boolean leading, table|nil err
function Elector:try()
    local now = time.now()
    local obj, err = self.client:get(RES, self.namespace, self.name)
    if not obj then
        if err.code ~= "not_found" then return false, err end
        local created
        created, err = self.client:create(RES, {
            apiVersion = "coordination.k8s.io/v1", kind = "Lease",
            metadata = { name = self.name, namespace = self.namespace },
            spec = { holderIdentity = self.identity, leaseDurationSeconds = math.ceil(self.duration),
                acquireTime = micro_time(now), renewTime = micro_time(now), leaseTransitions = 0 },
        })
        if not created then
            if err.code == "conflict" then return false end
            return false, err
        end
        observe(self, created)
        self.renewed_at = time.monotonic()
        return true
    end
    local spec = observe(self, obj)
    local holder = spec.holderIdentity
    if holder == self.identity then
        spec.renewTime = micro_time(now)
        spec.leaseDurationSeconds = math.ceil(self.duration)
    else
        local held = type(holder) == "string" and holder ~= ""
        local dur = tonumber(spec.leaseDurationSeconds) or self.duration
        if held and time.monotonic() - self.observed_at < dur then
            self.renewed_at = nil
            return false
        end
        spec.holderIdentity = self.identity
        spec.leaseDurationSeconds = math.ceil(self.duration)
        spec.acquireTime = micro_time(now)
        spec.renewTime = micro_time(now)
        spec.leaseTransitions = (tonumber(spec.leaseTransitions) or 0) + 1
    end
    obj.spec = spec
    local updated
    updated, err = self.client:update(RES, obj)
    if not updated then
        if err.code == "conflict" then
            -- someone else wrote first: we are not (or no longer) the holder
            self.renewed_at = nil
            return false
        end
        return false, err
    end
    observe(self, updated)
    self.renewed_at = time.monotonic()
    return true
end

--- Hands the Lease over: clears holderIdentity (if we still hold it) so the next
--- candidate takes it at its next round instead of waiting for the expiry.
---@return boolean|nil ok, table|nil err
function Elector:release()
    if self.renewed_at == nil then return true end
    self.renewed_at = nil
    local obj, err = self.client:get(RES, self.namespace, self.name)
    if not obj then return nil, err end
    local spec = obj.spec or {}
    if spec.holderIdentity ~= self.identity then return true end
    spec.holderIdentity = nil
    spec.leaseDurationSeconds = 1
    spec.renewTime = micro_time(time.now())
    obj.spec = spec
    local ok
    ok, err = self.client:update(RES, obj)
    if not ok and err.code ~= "conflict" then return nil, err end
    return true
end

--- The Lease as the API has it (for status and tests).
---@return table|nil lease, table|nil err
function Elector:get()
    return self.client:get(RES, self.namespace, self.name)
end

return M
