-- deploy/rbac.yaml and deploy/rbac-operator.yaml grant exactly what docs/security.md's
-- RBAC table says: every (role, API group, resource, verb, resource name) the manifests
-- grant is a row of the table and every row is granted, so neither can drift alone. Also:
-- the bindings name the vmdr service account, and nothing grants a wildcard or a Secret.
local h = require "support.helper"
local yaml = require "vmdr.yaml"

local function set_of(list)
    local s = {}
    for _, x in ipairs(list) do s[#s + 1] = x end
    table.sort(s)
    return s
end

--- The table between the rbac-table markers: tuples "role|group|resource|verb|name".
local function doc_grants()
    local text = assert(h.read(h.source_dir .. "/docs/security.md"))
    local body = assert(text:match("<!%-%- rbac%-table: begin %-%->(.-)<!%-%- rbac%-table: end %-%->"),
        "docs/security.md has no rbac-table markers")
    local out, rows = {}, 0
    for line in body:gmatch("[^\n]+") do
        local cells = {}
        for c in (line .. "|"):gmatch("([^|]*)|") do cells[#cells + 1] = c:match("^%s*(.-)%s*$") end
        -- cells[1] is "" (the leading bar): role, kind, group, resource, verbs, names, used by
        local role, group, res, verbs, names = cells[2], cells[4], cells[5], cells[6], cells[7]
        if role and role ~= "role" and not role:match("^%-") and role ~= "" then
            rows = rows + 1
            if group == "(core)" then group = "" end
            local nl = {}
            for n in (names or ""):gmatch("[^,%s]+") do nl[#nl + 1] = n end
            if #nl == 0 then nl = { "*" } end
            for v in verbs:gmatch("[^,%s]+") do
                for _, n in ipairs(nl) do out[#out + 1] = table.concat({ role, group, res, v, n }, "|") end
            end
        end
    end
    assert(rows >= 5, "the RBAC table has too few rows")
    return set_of(out)
end

local function manifest_grants(docs)
    local out = {}
    for _, d in ipairs(docs) do
        if d.kind == "ClusterRole" or d.kind == "Role" then
            for _, r in ipairs(d.rules) do
                local names = r.resourceNames or { "*" }
                for _, g in ipairs(r.apiGroups) do
                    for _, res in ipairs(r.resources) do
                        for _, v in ipairs(r.verbs) do
                            for _, n in ipairs(names) do
                                out[#out + 1] = table.concat({ d.metadata.name, g, res, v, n }, "|")
                            end
                        end
                    end
                end
            end
        end
    end
    return set_of(out)
end

describe("RBAC: the manifests grant exactly what docs/security.md says", function()
    local docs = {}
    setup(function()
        for _, f in ipairs { "rbac.yaml", "rbac-operator.yaml" } do
            for _, d in ipairs(assert(yaml.decode_all(assert(h.read(h.source_dir .. "/deploy/" .. f))))) do
                docs[#docs + 1] = d
            end
        end
    end)

    it("the same grants, row for row", function()
        local want, got = doc_grants(), manifest_grants(docs)
        assert.same(want, got)
    end)

    it("no wildcard, no Secrets, no escalation verbs", function()
        for _, g in ipairs(manifest_grants(docs)) do
            local role, group, res, verb = g:match("^([^|]*)|([^|]*)|([^|]*)|([^|]*)|")
            assert.are_not.equal("*", group, g)
            assert.are_not.equal("*", res, g)
            assert.are_not.equal("*", verb, g)
            assert.are_not.equal("secrets", res, g)
            for _, bad in ipairs { "escalate", "bind", "impersonate", "delete", "deletecollection" } do
                assert.are_not.equal(bad, verb, g)
            end
            assert.is_truthy(role)
        end
    end)

    it("binds only the vmdr service account, and only what the kustomization ships", function()
        local kinds = {}
        for _, d in ipairs(docs) do
            kinds[d.kind] = (kinds[d.kind] or 0) + 1
            if d.kind == "ClusterRoleBinding" or d.kind == "RoleBinding" then
                assert.equals(1, #d.subjects)
                assert.same({ kind = "ServiceAccount", name = "vmdr", namespace = "vmdr" }, d.subjects[1])
                assert.is_truthy(d.roleRef.name == "vmdr-reader" or d.roleRef.name == "vmdr-leader-election",
                    d.roleRef.name)
            end
        end
        assert.equals(1, kinds.ClusterRoleBinding)
        assert.equals(1, kinds.RoleBinding)
        -- the operator roles are not in the kustomization (nothing binds them by default)
        local k = assert(yaml.decode(h.read(h.source_dir .. "/deploy/kustomization.yaml")))
        for _, r in ipairs(k.resources) do assert.are_not.equal("rbac-operator.yaml", r) end
    end)
end)
