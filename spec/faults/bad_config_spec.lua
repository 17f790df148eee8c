-- Bad configuration (issue 8, "Bad input"), generated from the schema in
-- lua/lib/vmdr/config.lua: every key a workflow requires missing in turn, every typed
-- key with a wrong type or out of its range (in the file and with -e), configuration
-- files that are missing, unreadable or not YAML, and unreadable secret files. Each must
-- exit 2 with a message naming the key (or the file), print no traceback, and change
-- nothing: no commit, no API request, no storage command.
-- Regression spec of "config: unreadable git secrets and files exit 2 naming the key"
-- (a git.token_file that is a directory crashed with a traceback; a missing token file,
-- ssh key, CA file or kubeconfig exited 1 after the API had been read).
-- Real components: vmdr-sim, a smart-HTTP Git server with a token (spec/support/gitsrv.lua),
-- the exec storage driver recording its argv.
local h = require "support.helper"
local sim = require "support.sim"
local gitexec = require "support.gitexec"
local config = require "vmdr.config"
local yaml = require "vmdr.yaml"

-- the workflows, the -e variables each needs besides the configuration file, and the
-- keys each requires
local WORKFLOWS = {
    { "reconcile", {} },
    { "gc", {} },
    { "failover", { "all=true" } },
    { "activate", { "vm_selector=app=x" } },
    { "status", {} },
    { "event_sync", { "namespace=team1", "name=app1" }, { "namespace", "name" } },
}
local REQUIRED = { "cluster_name", "git.url", "git.workdir" }

local function deep_copy(v)
    if type(v) ~= "table" then return v end
    local t = {}
    for k, x in pairs(v) do t[k] = deep_copy(x) end
    return t
end

local function set(t, key, value)
    local parts = {}
    for p in key:gmatch("[^.]+") do parts[#parts + 1] = p end
    for i = 1, #parts - 1 do
        if type(t[parts[i]]) ~= "table" then t[parts[i]] = {} end
        t = t[parts[i]]
    end
    t[parts[#parts]] = value
end

-- wrong values for a schema entry: { value, text for -e or nil, what is wrong }. One
-- case per kind of mistake, so the ~90 keys stay within the spec's time budget.
local function wrong_values(spec)
    local t = spec.type
    local out = {}
    if type(t) == "table" then
        out[#out + 1] = { "bogus-value", "bogus-value", "not in the enum" }
    elseif t == "string" then
        out[#out + 1] = { 42, nil, "a number" }
    elseif t == "number" or t == "integer" then
        out[#out + 1] = { "soon", "soon", "a string" }
        if t == "integer" then out[#out + 1] = { 2.5, "2.5", "a fraction" } end
        if spec.min then out[#out + 1] = { spec.min - 1, nil, "below min" } end
        if spec.max then out[#out + 1] = { spec.max + 1, tostring(spec.max + 1), "above max" } end
    elseif t == "boolean" then
        out[#out + 1] = { "yes", "yes", "a string" }
    elseif t == "list" then
        out[#out + 1] = { { 1, 2 }, nil, "a list of numbers" }
    elseif t == "map" then
        out[#out + 1] = { "flat", "flat", "a string" }
    end
    return out
end

describe("bad configuration", function()
    local tmp, s, gx, bare, base, exec_log, token
    local runs = 0

    local function git(args) return h.capture("git -C " .. h.q(bare) .. " " .. args .. " 2>&1") end
    local function head() return (git("rev-parse main"):gsub("%s+$", "")) end
    local function requests() return s.state().requests end
    local function write_cfg(t)
        runs = runs + 1
        return h.write(tmp .. "/cfg/c" .. runs .. ".yaml", yaml.encode(t))
    end
    local function run(wf, cfgfile, extra, env)
        local argv = { wf }
        if cfgfile then argv[#argv + 1] = "-c"; argv[#argv + 1] = cfgfile end
        for _, wf_e in ipairs(WORKFLOWS) do
            if wf_e[1] == wf then
                for _, e in ipairs(wf_e[2]) do argv[#argv + 1] = "-e"; argv[#argv + 1] = e end
            end
        end
        for _, e in ipairs(extra or {}) do argv[#argv + 1] = "-e"; argv[#argv + 1] = e end
        return h.run(argv, env)
    end
    -- exit 2, the message, no traceback, no secret
    local state
    local function expect_config_error(r, pattern, what)
        what = what or pattern
        assert.equals(2, r.code, what .. ":\n" .. r.stdout .. r.stderr)
        assert.matches(pattern, r.stderr, 1, false, what)
        assert.not_matches("traceback", r.stderr, 1, true)
        assert.not_matches("%.lua:%d+:", r.stderr, 1, false, what)
        assert.is_nil((r.stdout .. r.stderr):find(token, 1, true), "the token was printed")
    end
    -- nothing changed anywhere since the last good state: no commit, no API request (the
    -- sim counts every one), no storage command. Checked once per test: both only grow.
    local function assert_nothing_changed()
        assert.equals(state.head, head())
        assert.equals(state.requests, requests(), "the API was called")
        assert.equals("", h.read(exec_log) or "", "a storage command ran")
    end

    setup(function()
        tmp = h.tmpdir("bad-config")
        h.write(tmp .. "/fx/app1.yaml", [[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: app1, namespace: team1, labels: {dr.demojam.com/enabled: "true", app: x}}
spec: {template: {spec: {domain: {devices: {}}}}}
]])
        s = sim.start { fixtures = tmp .. "/fx" }
        gx = gitexec.up(tmp)
        bare, token, exec_log = gx.bare, gx.token, gx.exec_log
        local tool = gx.tool
        base = {
            cluster_name = "dr-east",
            source = { kubeconfig = s.kubeconfig },
            git = { url = gx.url, workdir = tmp .. "/clone", token_file = gx.token_file },
            storage = { driver = "exec", exec = { enable = { tool, "enable", "{spec}" },
                promote = { tool, "promote", "{spec}" }, status = { tool, "status", "{spec}" } } },
        }
        -- a good run first: the repository exists, so "nothing changed" means something
        local r = run("reconcile", write_cfg(base))
        assert(r.code == 0, r.stderr)
        h.write(exec_log, "")
        state = { head = head(), requests = requests() }
    end)

    teardown(function()
        if s then s.stop() end
        if gx then gx.down() end
    end)

    it("the good configuration works (the cases below differ from it by one key)", function()
        for _, w in ipairs(WORKFLOWS) do
            local r = run(w[1], write_cfg(base))
            assert.is_true(r.code == 0 or r.code == 1, w[1] .. ": " .. r.stderr)
            assert.not_matches("config:", r.stderr)
        end
        h.write(exec_log, "")
        state = { head = head(), requests = requests() }
    end)

    it("every key a workflow requires, missing in turn: exit 2 naming it", function()
        local n = 0
        for _, w in ipairs(WORKFLOWS) do
            local keys = {}
            for _, k in ipairs(REQUIRED) do keys[#keys + 1] = k end
            for _, k in ipairs(w[3] or {}) do keys[#keys + 1] = k end
            for _, key in ipairs(keys) do
                local t = deep_copy(base)
                set(t, key, nil)
                local argv = { w[1], "-c", write_cfg(t) }
                for _, e in ipairs(w[2]) do
                    if not e:match("^" .. key .. "=") then argv[#argv + 1] = "-e"; argv[#argv + 1] = e end
                end
                local r = h.run(argv)
                expect_config_error(r, "missing key " .. key:gsub("%p", "%%%0") .. " %(needed by "
                    .. w[1] .. "%)", w[1] .. " without " .. key)
                -- an empty value is missing too
                if key ~= "namespace" and key ~= "name" then
                    t = deep_copy(base)
                    set(t, key, "")
                    r = run(w[1], write_cfg(t))
                    expect_config_error(r, "missing key " .. key:gsub("%p", "%%%0"), w[1] .. " with empty " .. key)
                end
                n = n + 1
            end
        end
        assert.equals(6 * 3 + 2, n)
        assert_nothing_changed()
    end)

    it("every typed key of the schema with a wrong type or out of range: exit 2 naming key and file", function()
        local keys = {}
        for k in pairs(config.schema) do keys[#keys + 1] = k end
        table.sort(keys)
        local n = 0
        local e_done = {} -- -e goes through the coercion: one key per kind of mistake is enough
        for _, key in ipairs(keys) do
            for _, bad in ipairs(wrong_values(config.schema[key])) do
                local t = deep_copy(base)
                set(t, key, bad[1])
                local f = write_cfg(t)
                local r = run("reconcile", f)
                expect_config_error(r, "configuration key " .. key:gsub("%p", "%%%0") .. " must be .*%("
                    .. f:gsub("%p", "%%%0") .. "%)", key .. " " .. bad[3])
                n = n + 1
                local kind = tostring(config.schema[key].type) .. " " .. bad[3]
                if type(config.schema[key].type) == "table" then kind = "enum " .. bad[3] end
                if bad[2] and not e_done[kind] then
                    e_done[kind] = true
                    r = run("reconcile", write_cfg(base), { key .. "=" .. bad[2] })
                    expect_config_error(r, "%-e " .. key:gsub("%p", "%%%0") .. "=", "-e " .. key .. " " .. bad[3])
                    n = n + 1
                end
            end
        end
        -- every key of the schema had at least one case
        assert.is_true(n >= #keys, n .. " cases for " .. #keys .. " keys")
        assert_nothing_changed()
    end)

    -- regression: an empty label_selector listed every VM of the cluster (reconcile would
    -- export and mirror VMs nobody protected), a malformed one failed at the API (exit 1)
    it("values of the right type that cannot be used: exit 2 naming the key", function()
        local cases = {
            { "cluster_name", "../../etc", "cluster_name \"%.%./%.%./etc\" is not a DNS%-1123 subdomain" },
            { "cluster_name", "Dr_East", "cluster_name \"Dr_East\" is not a DNS%-1123 subdomain" },
            { "git.root", "/etc", "git%.root \"/etc\" must be relative" },
            { "git.root", "../up", "git%.root \"%.%./up\": segment \"%.%.\" is not allowed" },
            { "git.root", ".git", "git%.root \"%.git\": segment \"%.git\" is not allowed" },
            { "label_selector", "", "configuration key label_selector: empty label selector" },
            { "label_selector", "a=(", "configuration key label_selector: label selector 'a=%(' at character 3" },
            { "label_selector", "a in (b", "configuration key label_selector: label selector" },
        }
        for _, c in ipairs(cases) do
            local t = deep_copy(base)
            set(t, c[1], c[2])
            local f = write_cfg(t)
            -- a workflow that lists the API, one that reads Git alone, one for a single VM
            for _, wf in ipairs { "reconcile", "failover", "event_sync" } do
                expect_config_error(run(wf, f), c[3], wf .. " " .. c[1] .. "=" .. c[2])
            end
            expect_config_error(run("reconcile", write_cfg(base), { c[1] .. "=" .. c[2] }), c[3],
                "-e " .. c[1] .. "=" .. c[2])
        end
        assert_nothing_changed()
    end)

    it("a configuration file that is missing, a directory, not YAML or not a mapping: exit 2 naming it", function()
        local cases = {
            { tmp .. "/none.yaml", "cannot read configuration file '.-none%.yaml': No such file" },
            { tmp .. "/fx", "configuration file '.-fx'.*" },
            { h.write(tmp .. "/bad.yaml", "cluster_name: dr\ngit: {url: [unclosed\n"),
                "configuration file '.-bad%.yaml': .*line %d+" },
            { h.write(tmp .. "/tab.yaml", "cluster_name: dr\n\tgit: x\n"), "configuration file '.-tab%.yaml'" },
            { h.write(tmp .. "/list.yaml", "- a\n- b\n"), "the configuration must be a mapping %(.-list%.yaml%)" },
            { h.write(tmp .. "/scalar.yaml", "just text\n"), "configuration file '.-scalar%.yaml' must hold a mapping" },
            { h.write(tmp .. "/bin.yaml", "\0\1\2\255\254garbage"), "configuration file '.-bin%.yaml'" },
            { h.write(tmp .. "/empty.yaml", ""), "missing keys cluster_name, git%.url, git%.workdir" },
        }
        for _, c in ipairs(cases) do
            local r = run("reconcile", c[1])
            expect_config_error(r, c[2], c[1])
            r = run("gc", nil, nil, { VMDR_CONFIG = c[1] })
            expect_config_error(r, c[2], "$VMDR_CONFIG=" .. c[1])
        end
        -- -e @FILE the same way
        local r = run("reconcile", write_cfg(base), { "@" .. tmp .. "/none.yaml" })
        expect_config_error(r, "variables file '.-none%.yaml'", "-e @missing")
        r = run("reconcile", write_cfg(base), { "@" .. tmp .. "/bad.yaml" })
        expect_config_error(r, "variables file '.-bad%.yaml'.*line", "-e @bad")
        assert_nothing_changed()
    end)

    it("unreadable secret and key files: exit 2 naming the key and the file", function()
        local dir = tmp .. "/fx"
        local cases = {
            { "git.token_file", tmp .. "/no-token", "git%.token_file: cannot read secret file: .-no%-token: No such file" },
            { "git.token_file", dir, "git%.token_file: cannot read secret file: .-fx: Is a directory" },
            { "git.token_file", h.write(tmp .. "/empty-token", "\n"), "git%.token_file: .-empty%-token is empty" },
            { "git.ssh_passphrase_file", tmp .. "/no-pass", "git%.ssh_passphrase_file: cannot read secret file" },
            { "git.ssh_key", tmp .. "/no-key", "git%.ssh_key: cannot read .-no%-key: No such file" },
            { "git.ssh_key", dir, "git%.ssh_key: cannot read .-fx: Is a directory" },
            { "git.ssh_pubkey", tmp .. "/no-pub", "git%.ssh_pubkey: cannot read" },
            { "git.known_hosts", tmp .. "/no-kh", "git%.known_hosts: cannot read .-no%-kh" },
            { "git.ca_file", dir, "git%.ca_file: cannot read .-fx: Is a directory" },
            { "git.token_env", "VMDR_SPEC_SURELY_UNSET", "environment variable VMDR_SPEC_SURELY_UNSET %(git%.token_env%) is not set" },
            { "source.kubeconfig", tmp .. "/no-kubeconfig", "source%.kubeconfig: kubeconfig '.-no%-kubeconfig' cannot be read" },
            { "source.kubeconfig", h.write(tmp .. "/bad-kubeconfig", "clusters: [unclosed\n"), "source%.kubeconfig: kubeconfig '.-bad%-kubeconfig'" },
            { "source.kubeconfig", h.write(tmp .. "/list-kubeconfig", "- a\n"), "source%.kubeconfig: kubeconfig '?.-list%-kubeconfig" },
        }
        for _, c in ipairs(cases) do
            local t = deep_copy(base)
            set(t, c[1], c[2])
            if c[1] == "git.token_env" then t.git.token_file = nil end
            local f = write_cfg(t)
            -- every case with reconcile; the Git ones with failover (which reads Git alone) too
            for _, wf in ipairs { "reconcile", "failover" } do
                if not (wf == "failover" and c[1] == "source.kubeconfig") then
                    expect_config_error(run(wf, f), c[3], wf .. " " .. c[1] .. "=" .. c[2])
                end
            end
        end
        assert_nothing_changed()
    end)
end)
