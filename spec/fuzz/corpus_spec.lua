-- The Lua-level fuzz drivers (tests/fuzz/lua/*.lua) replayed on every stored input of
-- their corpus (tests/fuzz/corpus/fuzz_<driver>/): the seeds and the regressions the
-- 30-minute libFuzzer runs found, checked in both builds without libFuzzer. A driver
-- raises when a parser raises on bad input or breaks its contract.
--
-- Regressions kept here (tests/fuzz/corpus/fuzz_selector/regress-*):
--   * selector.from_label_selector turned a lone empty In/NotIn value (what
--     to_match_expressions makes of `tier=`) into "tier in ()", a parse error, so a
--     valid selector did not survive its LabelSelector form;
--   * the canonical text of "k notin (,)" (the set of the empty value alone) was
--     "k notin ()", which does not parse (found by the 30-minute fuzz_selector run);
--     it is now written "k notin (,)", like the LabelSelector conversion above;
--   * from_label_selector raised on a matchExpressions entry that is not a mapping
--     ("attempt to index a number value") and on a matchLabels key that is not a
--     string (sorting mixed key types), instead of returning nil, {code="invalid"}.
-- And in tests/fuzz/corpus/fuzz_control_panel/regress-*:
--   * the control-panel editor (kustomize.lua scan) took a "path:" or "labelSelector:"
--     line at any depth of a patches item for the item's own: a labelSelector outside
--     target (found by fuzz_control_panel) or a nested "path: patches/power-on.yaml"
--     made active_selectors list a group the YAML does not power on, activate answer
--     "already active", and deactivate comment out the operator's other patch;
--   * the same editor counted any whitespace as indentation: a line "     \rlabelSelector:"
--     (a lone carriage return, a line break to YAML) passed for a key of target
--     (found by the 30-minute fuzz_control_panel run);
--   * activate and deactivate edited a panel active_selectors refused (a quoted selector
--     over two lines, powered on in the YAML, unseen by the scanner): regress-two-line-quote.
local h = require "support.helper"

local DRIVERS = { "selector", "kubeconfig", "control_panel" }

local function files(dir)
    local out = {}
    local p = assert(io.popen("ls -1 " .. h.q(dir) .. " 2>/dev/null"))
    for name in p:lines() do out[#out + 1] = name end
    p:close()
    table.sort(out)
    return out
end

describe("fuzz corpus replay", function()
    for _, name in ipairs(DRIVERS) do
        it("runs the " .. name .. " driver on every stored input", function()
            local driver = assert(loadfile(h.source_dir .. "/tests/fuzz/lua/" .. name .. ".lua"))()
            local dir = h.source_dir .. "/tests/fuzz/corpus/fuzz_" .. name
            local inputs = files(dir)
            assert.is_true(#inputs >= 3, "the corpus of " .. name .. " has its seeds")
            local tmp = h.tmpdir("fuzz-" .. name) .. "/input"
            for _, f in ipairs(inputs) do
                local ok, err = pcall(driver, h.read(dir .. "/" .. f), tmp)
                assert(ok, string.format("%s on %s: %s", name, f, tostring(err)))
            end
        end)
    end

    it("the drivers catch a broken contract (they can fail)", function()
        local driver = assert(loadfile(h.source_dir .. "/tests/fuzz/lua/selector.lua"))()
        local selector = require "vmdr.selector"
        local parse = selector.parse
        -- a parser that raises on bad input, as the bugs above did
        selector.parse = function() error("attempt to index a number value") end
        local ok = pcall(driver, "a=b", "/dev/null")
        selector.parse = parse
        assert.is_false(ok)
    end)
end)

describe("selector.from_label_selector regressions (found by fuzz_selector)", function()
    local selector = require "vmdr.selector"

    it("keeps a lone empty value: tier= survives its LabelSelector form", function()
        for _, text in ipairs { "tier=", "tier!=", "tier in (,)", "a,tier notin (,)" } do
            local sel = assert(selector.parse(text))
            local back = assert(selector.from_label_selector(selector.to_match_expressions(sel)))
            for _, labels in ipairs { {}, { tier = "" }, { tier = "x" }, { a = "1", tier = "" } } do
                assert.equals(selector.match(sel, labels), selector.match(back, labels), text)
            end
        end
    end)

    it("writes a lone empty set value so that the canonical text parses", function()
        -- { text, matches {tier=""} }
        for _, c in ipairs { { "tier notin (,)", false }, { "tier in (,)", true },
            { "a,tier in (,,)", true } } do
            local sel = assert(selector.parse(c[1]))
            local again = assert(selector.parse(sel.text), sel.text)
            assert.equals(sel.text, again.text)
            assert.equals(c[2], selector.match(again, { tier = "", a = "1" }))
        end
    end)

    it("returns invalid, never raises, on a malformed LabelSelector document", function()
        for _, doc in ipairs {
            { matchExpressions = { 1 } },
            { matchExpressions = { { key = {}, operator = "Exists" } } },
            { matchLabels = { [1] = "a", b = "c" } },
            { matchLabels = { [true] = "a" } },
        } do
            local s, err = selector.from_label_selector(doc)
            assert.is_nil(s)
            assert.equals("invalid", err.code)
        end
    end)
end)

describe("control-panel editor regressions (found by fuzz_control_panel)", function()
    local kustomize = require "vmdr.kustomize"

    it("reads path and labelSelector at the item's own level only", function()
        local nested = table.concat({
            "kind: Component",
            "patches:",
            "  - path: patches/other.yaml",
            "    target:",
            "      labelSelector: x=y",
            "      path: patches/power-on.yaml",
            "  - path: patches/power-on.yaml",
            "    target1:",
            "      labelSelector: a=b",
            "",
        }, "\n")
        assert.same({}, kustomize.active_selectors(nested))
        -- deactivate leaves the operator's patch alone: nothing of x=y is active
        local out, changed = kustomize.deactivate(nested, "x=y")
        assert.equals(nested, out)
        assert.is_false(changed)
        -- activate adds a real block instead of answering "already active"
        out, changed = kustomize.activate(nested, "a=b")
        assert.is_true(changed)
        assert.same({ "a=b" }, kustomize.active_selectors(out))
    end)

    it("counts only spaces as indentation (a lone \\r is a line break to YAML)", function()
        local text = table.concat({
            "kind: Component",
            "patches:",
            "  - path: patches/power-on.yaml",
            "    target:",
            "      kind: VirtualMachine",
            "     \rlabelSelector: \"app in (db,web)\"",
            "  - path: patches/power-on.yaml",
            "    target:",
            "     \tlabelSelector: x=y",
            "",
        }, "\n")
        -- not valid YAML (a tab where indentation is expected): refused rather than read
        -- as a group that is on
        local active, err = kustomize.active_selectors(text)
        assert.is_nil(active)
        assert.equals("invalid", err.code)
    end)

    it("refuses a panel whose patches the scanner would misread (patches a map, not a list)",
        function()
        -- found by the 30-minute run: "  -ample group" (no space after the dash) made
        -- patches a mapping whose one key holds the list, and active_selectors reported a
        -- group the YAML does not power on
        local text = table.concat({
            "kind: Component",
            "patches:",
            "  -ample group, powered on when uncommented:",
            "  - path: patches/power-on.yaml",
            "    target:",
            "      kind: VirtualMachine",
            "      labelSelector: 'tier=web'",
            "",
        }, "\n")
        local active, err = kustomize.active_selectors(text)
        assert.is_nil(active)
        assert.matches("not a Component with a patches list", err.message)
        local out, aerr = kustomize.activate(text, "tier=web")
        assert.is_nil(out)
        assert.equals("invalid", aerr.code)
        out, aerr = kustomize.deactivate(text, "tier=web")
        assert.is_nil(out)
        assert.equals("invalid", aerr.code)
    end)

    it("edits nothing in a panel whose power-on blocks it cannot all read", function()
        -- found by the 30-minute run of 2026-11-27: a quoted selector over two lines is a
        -- group the YAML powers on ('!legacy,t.io') that the line scanner cannot see.
        -- active_selectors refused the panel, yet activate appended a block to it and
        -- reported success: every edit now starts (and ends) with the same check
        local text = table.concat({
            "kind: Component",
            "patches:",
            "  - path: patches/power-on.yaml",
            "    target:",
            "      kind: VirtualMachine",
            "      labelSelector: '!legacy,t.io",
            "   '",
            "",
        }, "\n")
        local active, err = kustomize.active_selectors(text)
        assert.is_nil(active)
        assert.matches("layout the editor does not follow", err.message)
        for _, edit in ipairs { kustomize.activate, kustomize.deactivate } do
            local out, eerr = edit(text, "tier=web,!legacy")
            assert.is_nil(out)
            assert.equals("invalid", eerr.code)
            assert.matches("layout the editor does not follow", eerr.message)
        end
    end)

    it("still reads '- path:' first, '- target:' first, a wide dash", function()
        local text = table.concat({
            "kind: Component",
            "patches:",
            "- target:   # the web tier",
            "    kind: VirtualMachine",
            "    labelSelector: 'tier=web'",
            "  path: patches/power-on.yaml",
            "-   path: patches/power-on.yaml",
            "    target:",
            "      labelSelector: \"app in (db)\"",
            "",
        }, "\n")
        assert.same({ "tier=web", "app in (db)" }, kustomize.active_selectors(text))
    end)
end)
