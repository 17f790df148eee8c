-- vmdr.lease: Lease leader election against vmdr-sim (a real API server for Leases, with
-- resourceVersion preconditions), checked with kubectl as an independent reader.
local h = require "support.helper"
local sim = require "support.sim"
local k8s = require "vmdr.k8s"
local lease = require "vmdr.lease"
local time = require "vmdr.time"

describe("vmdr.lease", function()
    local s, clients = nil, {}
    local function client()
        local c = assert(k8s.client { kubeconfig = s.kubeconfig })
        clients[#clients + 1] = c
        return c
    end
    local function elector(id, name, duration)
        return lease.new(client(), { namespace = "default", name = name, identity = id,
            duration = duration or 2, retry_period = 0.1 })
    end
    local function holder(name)
        local r = s.kubectl { "get", "lease", "-n", "default", name, "-o",
            "jsonpath={.spec.holderIdentity}" }
        assert.equals(0, r.code, r.stderr)
        return r.stdout
    end

    setup(function()
        h.need("kubectl")
        s = sim.start { fixtures = false }
    end)
    teardown(function()
        for _, c in ipairs(clients) do c:close() end
        if s then s.stop() end
    end)

    it("the first candidate acquires, the others follow, the holder renews", function()
        local a, b = elector("host-a/1", "l1"), elector("host-b/2", "l1")
        assert.is_true(a:try())
        assert.is_true(a:leading())
        assert.is_false(b:try())
        assert.is_false(b:leading())
        assert.equals("host-a/1", holder("l1"))
        local before = assert(a:get()).spec.renewTime
        time.sleep(0.01)
        assert.is_true(a:try())
        local l = assert(a:get())
        assert.are_not.equals(before, l.spec.renewTime)
        assert.equals(0, l.spec.leaseTransitions)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$", l.spec.renewTime)
        assert.is_false(b:try())
    end)

    it("a holder that stops renewing loses the Lease to exactly one candidate after expiry", function()
        local a = elector("host-a/1", "l2", 1)
        local b, c = elector("host-b/2", "l2", 1), elector("host-c/3", "l2", 1)
        assert.is_true(a:try())
        -- a is "killed": it never renews again; b and c keep trying
        local winner
        local deadline = time.monotonic() + 30
        while not winner and time.monotonic() < deadline do
            local rb, rc = b:try(), c:try()
            assert.is_false(rb and rc)   -- never two
            winner = rb and b or rc and c or nil
            time.sleep(0.1)
        end
        assert.is_not_nil(winner, "nobody took over")
        assert.equals(winner.identity, holder("l2"))
        local other = winner == b and c or b
        assert.is_false(other:try())
        assert.equals(1, assert(winner:get()).spec.leaseTransitions)
        -- the old holder comes back: it sees someone else holds the Lease
        assert.is_false(a:try())
        assert.is_false(a:leading())
    end)

    it("two candidates racing on the same resourceVersion: one wins, one gets a conflict", function()
        local a, b = elector("host-a/1", "l3"), elector("host-b/2", "l3")
        assert.is_true(a:try())
        -- b writes with a resourceVersion that a's renew has made stale
        local stale = assert(b:get())
        assert.is_true(a:try())
        stale.spec.holderIdentity = "host-b/2"
        local ok, err = clients[#clients]:update("leases.coordination.k8s.io", stale)
        assert.is_nil(ok)
        assert.equals("conflict", err.code)
        assert.equals("host-a/1", holder("l3"))
    end)

    it("release hands over at once: the next candidate does not wait for the expiry", function()
        local a, b = elector("host-a/1", "l4", 3600), elector("host-b/2", "l4", 3600)
        assert.is_true(a:try())
        assert.is_false(b:try())
        assert.is_true(a:release())
        assert.is_false(a:leading())
        assert.equals("", holder("l4"))
        assert.is_true(b:try())
        assert.equals("host-b/2", holder("l4"))
        -- releasing what one does not hold changes nothing
        assert.is_true(a:release())
        assert.equals("host-b/2", holder("l4"))
    end)

    it("a leader that cannot renew stops leading after renew_deadline", function()
        local a = lease.new(client(), { namespace = "default", name = "l5", identity = "host-a/1",
            duration = 1, renew_deadline = 0.3, retry_period = 0.1 })
        assert.is_true(a:try())
        assert.is_true(a:leading())
        s.admin { fail = { count = 1000, status = 500, path_prefix = "/apis/coordination.k8s.io" } }
        local ok, err = a:try()
        s.admin { clear = true }
        assert.is_false(ok)
        assert.equals("unavailable", err.code)
        time.sleep(0.35)
        assert.is_false(a:leading())
    end)

    it("rejects bad options", function()
        assert.has_error(function() lease.new(client(), { name = "x" }) end)
        assert.has_error(function() lease.new(client(), { name = "x", namespace = "d", duration = 0 }) end)
        assert.matches("^.+/%d+$", lease.default_identity())
    end)
end)
