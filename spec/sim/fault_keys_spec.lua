-- vmdr-sim fault keys for the source-API fault specs (issue 8): `fail.after` (let the first
-- K matching requests through, so a paginated list fails on a later page) and `token` (rotate
-- the accepted bearer token at run time). Checked with curl and with kubectl.
local h = require "support.helper"
local sim = require "support.sim"

local VMS = "/apis/kubevirt.io/v1/virtualmachines"

describe("vmdr-sim fault keys", function()
    local s
    setup(function() s = sim.start { fixtures = false, generate = 6, token = true } end)
    teardown(function() if s then s.stop() end end)
    after_each(function() s.admin { clear = true } end)

    it("fail.after lets the first K matching requests through, then fails the next N", function()
        s.admin { fail = { after = 1, count = 2, status = 500, path_prefix = VMS } }
        assert.equals(200, s.curl { path = "/api/v1/namespaces" }.code) -- not matching: not counted
        local p1 = s.curl { path = VMS .. "?limit=2" }
        assert.equals(200, p1.code)
        assert.equals(2, #p1.json.items)
        local cont = assert(p1.json.metadata["continue"])
        local f = s.state().faults.fail
        assert.equals(0, f.after)
        assert.equals(2, f.count)
        -- the second page fails, twice, then the third try is served
        local p2 = s.curl { path = VMS .. "?limit=2&continue=" .. cont }
        assert.equals(500, p2.code)
        assert.equals("InternalError", p2.json.reason)
        assert.equals(500, s.curl { path = VMS .. "?limit=2&continue=" .. cont }.code)
        local p3 = s.curl { path = VMS .. "?limit=2&continue=" .. cont }
        assert.equals(200, p3.code)
        assert.equals(2, #p3.json.items)
        assert.equals(0, s.state().faults.fail.count)
    end)

    it("fail.after is validated with the rest of the document", function()
        local r = s.curl { method = "POST", path = "/_sim/faults",
            body = { fail = { after = -1, count = 1 } } }
        assert.equals(400, r.code)
        assert.matches("after", r.json.message)
        assert.equals(0, s.state().faults.fail.count)
    end)

    it("token rotates the accepted bearer token; clear keeps it; it is never shown", function()
        local old = s.token
        assert.equals(200, s.curl { path = VMS }.code)
        local new = old .. "-rotated"
        s.admin { token = new }
        assert.equals(new, s.token)
        local stale = s.curl { path = VMS, token = old }
        assert.equals(401, stale.code)
        assert.equals("Unauthorized", stale.json.reason)
        assert.equals(401, s.curl { path = "/_sim/state", token = old }.code) -- admin too
        assert.equals(200, s.curl { path = VMS }.code)
        -- kubectl with the kubeconfig written at start (the old token) is refused
        local k = s.kubectl { "get", "vm", "-A" }
        assert.are_not.equal(0, k.code)
        assert.matches("provide credentials", k.stderr .. k.stdout)
        s.admin { clear = true }
        assert.equals(200, s.curl { path = VMS }.code)
        assert.equals(401, s.curl { path = VMS, token = old }.code)
        local shown = s.curl { path = "/_sim/faults" }.body .. s.curl { path = "/_sim/state" }.body
        assert.is_nil(shown:find(new, 1, true))
        -- back to the original for the other tests
        s.admin { token = old }
        assert.equals(200, s.curl { path = VMS, token = old }.code)
    end)

    it("a bad token value is refused and changes nothing", function()
        for _, bad in ipairs { "", "two words", 42 } do
            local r = s.curl { method = "POST", path = "/_sim/faults", body = { token = bad } }
            assert.equals(400, r.code)
            assert.matches("token", r.json.message)
        end
        assert.equals(200, s.curl { path = VMS }.code)
    end)

    it("a sim started without a token can start requiring one", function()
        local open = sim.start { fixtures = false }
        local ok, err = pcall(function()
            assert.equals(200, open.curl { path = VMS }.code)
            open.admin { token = "now-required" }
            assert.equals(401, open.curl { path = VMS, token = false }.code)
            assert.equals(200, open.curl { path = VMS }.code)
        end)
        open.stop()
        assert(ok, err)
    end)
end)
