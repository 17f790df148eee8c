-- rulebooks/*.yaml are valid ansible-rulebook rulebooks (checked against the
-- ruleset JSON schemas in ../shared/fixtures, with python3-jsonschema as an
-- independent validator) and follow vmdr's rules for what they launch.
local h = require "support.helper"

local schemas = {
  h.fixtures .. "/schemas/ansible-rulebook/ruleset_schema-v1.3.0.json",
  h.fixtures .. "/schemas/ansible-rulebook/ruleset_schema-main.json",
}
local rulebooks = { "rulebooks/vm_monitor.yaml", "rulebooks/vm_monitor_standalone.yaml" }

-- Validates a YAML rulebook against a JSON schema; prints "ok" or the errors.
local validator = [[
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
doc = yaml.safe_load(open(sys.argv[2]))
v = jsonschema.Draft202012Validator(schema) if "2020-12" in schema.get("$schema", "") \
    else jsonschema.validators.validator_for(schema)(schema)
errs = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
for e in errs:
    print("/".join(map(str, e.path)), e.message)
print(json.dumps(doc) if not errs else "", file=sys.stderr)
sys.exit(1 if errs else 0)
]]

describe("rulebooks", function()
  setup(function() h.need("python3") end)

  for _, rb in ipairs(rulebooks) do
    for _, schema in ipairs(schemas) do
      it(rb .. " validates against " .. schema:match("[^/]+$"), function()
        local r = h.exec({ "python3", "-c", validator, schema, h.source_dir .. "/" .. rb })
        assert.equals(0, r.code, r.stdout .. r.stderr)
      end)
    end

    it(rb .. " watches labelled VirtualMachines and throttles per VM and per namespace", function()
      local r = h.exec({ "python3", "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        h.source_dir .. "/" .. rb })
      assert.equals(0, r.code, r.stderr)
      local json = require "vmdr.json"
      local doc = assert(json.decode(r.stdout))
      local src = doc[1].sources[1]["sabre1041.eda.k8s"]
      assert.equals("kubevirt.io/v1", src.api_version)
      assert.equals("VirtualMachine", src.kind)
      assert.same({ "dr.demojam.com/enabled=true" }, src.label_selectors)
      local sync, gc = doc[1].rules[1], doc[1].rules[2]
      assert.same({ "event.resource.metadata.namespace", "event.resource.metadata.name" },
        sync.throttle.group_by_attributes)
      assert.is_string(sync.throttle.once_after)
      assert.same({ "event.resource.metadata.namespace" }, gc.throttle.group_by_attributes)
      assert.matches("DELETED", gc.condition)
    end)
  end

  it("the validator rejects a throttle without group_by_attributes (it can fail)", function()
    local tmp = h.tmpdir("rulebook")
    local bad = h.write(tmp .. "/bad.yaml", (h.read(h.source_dir .. "/" .. rulebooks[1])
      :gsub("group_by_attributes:\n%s+%- event.resource.metadata.namespace\n%s+%- event.resource.metadata.name\n", "")))
    for _, schema in ipairs(schemas) do
      local r = h.exec({ "python3", "-c", validator, schema, bad })
      assert.equals(1, r.code, r.stdout)
    end
  end)

  it("the standalone rulebook passes event values as argv elements, never through a shell", function()
    local text = h.read(h.source_dir .. "/rulebooks/vm_monitor_standalone.yaml")
    assert.not_matches("ansible.builtin.shell", text)
    assert.not_matches("cmd:", text)
    assert.matches("argv:", text)
  end)
end)
