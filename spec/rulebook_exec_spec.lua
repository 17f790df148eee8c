-- The command lines rulebooks/vm_monitor_standalone.yaml would run, actually run: the
-- rulebook's argv lists are taken from the file, their Jinja values rendered from a
-- sample sabre1041.eda.k8s event (event.type, event.resource) here in Lua, and the argv
-- executed as is (no shell) with vmdr-run against vmdr-sim and a bare Git repository.
-- An event whose name carries shell metacharacters must reach vmdr-run intact, as one
-- argument, and be refused there, with no shell ever seeing it.
local h = require "support.helper"
local sim = require "support.sim"
local mon = require "support.monitor"
local yaml = require "vmdr.yaml"

--- Renders "{{ event.a.b }}" (the only Jinja the rulebook uses) from the event table.
local function render(s, event)
    return (s:gsub("{{%s*([%w_%.]+)%s*}}", function(path)
        local v = { event = event }
        for part in path:gmatch("[^.]+") do v = type(v) == "table" and v[part] or nil end
        assert(type(v) == "string", "no value for " .. path)
        return v
    end))
end

describe("the standalone rulebook's commands", function()
    local s, env, rules
    local function argv_for(rule_name, event)
        for _, r in ipairs(rules) do
            if r.name == rule_name then
                local out = {}
                for i, a in ipairs(r.action.run_module.module_args.argv) do
                    out[i] = render(a, event)
                end
                assert.equals("vmdr-run", out[1])
                out[1] = h.vmdr_run
                return out
            end
        end
        error("no rule " .. rule_name)
    end
    local function event(typ, ns, name)
        return { type = typ, resource = { apiVersion = "kubevirt.io/v1", kind = "VirtualMachine",
            metadata = { namespace = ns, name = name } } }
    end

    setup(function()
        h.need("kubectl"); h.need("git")
        local doc = assert(yaml.decode_all(h.read(h.source_dir .. "/rulebooks/vm_monitor_standalone.yaml")))
        rules = doc[1][1].rules   -- a rulebook is a list of rulesets
        s = sim.start { fixtures = false }
        assert.equals(0, s.kubectl { "create", "namespace", "shop" }.code)
        local r = s.kubectl({ "apply", "-f", "-" }, mon.vm_yaml("shop", "db1",
            { ["dr.demojam.com/enabled"] = "true" }))
        assert.equals(0, r.code, r.stderr)
        env = mon.setup(s)
    end)
    teardown(function() if s then s.stop() end end)

    it("MODIFIED -> event_sync exports that VM", function()
        local argv = argv_for("sync an added or modified VM", event("MODIFIED", "shop", "db1"))
        local r = h.exec(argv, { VMDR_CONFIG = env.cfg })
        assert.equals(0, r.code, r.stderr)
        assert.is_not_nil(env.vms()["shop/db1"])
        assert.matches("event_sync: shop/db1", env.git("log -1 --format=%s main"))
    end)

    it("DELETED -> gc removes the VM once the API confirms it is gone", function()
        assert.equals(0, s.kubectl { "delete", "vm", "-n", "shop", "db1" }.code)
        local argv = argv_for("garbage-collect after a VM left the DR set", event("DELETED", "shop", "db1"))
        -- gc's brake: removing every VM needs force; the rulebook's gc is the careful one
        local r = h.exec(argv, { VMDR_CONFIG = env.cfg })
        assert.equals(1, r.code, r.stdout .. r.stderr)
        assert.matches("refus", r.stderr)
        assert.is_not_nil(env.vms()["shop/db1"])
        -- with a second VM alive, the orphan is within max_delete_fraction and goes
        r = s.kubectl({ "apply", "-f", "-" }, mon.vm_yaml("shop", "web1", { ["dr.demojam.com/enabled"] = "true" }))
        assert.equals(0, r.code, r.stderr)
        r = h.exec(argv_for("sync an added or modified VM", event("ADDED", "shop", "web1")),
            { VMDR_CONFIG = env.cfg })
        assert.equals(0, r.code, r.stderr)
        r = h.exec(argv, { VMDR_CONFIG = env.cfg })
        assert.equals(0, r.code, r.stdout .. r.stderr)
        assert.is_nil(env.vms()["shop/db1"])
        assert.is_not_nil(env.vms()["shop/web1"])
    end)

    it("a name with shell metacharacters arrives intact as one argument and is refused", function()
        local marker = env.tmp .. "/pwned"
        local hostile = "x; touch " .. marker .. " $(touch " .. marker .. ") `touch " .. marker .. "`"
        local argv = argv_for("sync an added or modified VM", event("MODIFIED", "shop", hostile))
        assert.equals("name=" .. hostile, argv[#argv])
        local before = env.commits()
        local r = h.exec(argv, { VMDR_CONFIG = env.cfg })
        assert.equals(2, r.code, r.stderr)
        -- vmdr-run saw the whole value (quoted back in its message), nothing ran it
        assert.matches("not Kubernetes names", r.stderr)
        assert.truthy(r.stderr:find(hostile, 1, true) or r.stderr:find("touch", 1, true), r.stderr)
        assert.is_nil(h.read(marker))
        assert.equals(before, env.commits())
    end)
end)
