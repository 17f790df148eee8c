--- Fuzz driver: the control-panel editor (vmdr.kustomize activate, deactivate,
--- active_selectors). Input: the first line is the selector, the rest the panel text.
--- Contract: each returns its result or nil and an error {code="invalid"}; never a raise.
--- activate's text lists the selector among active_selectors, deactivate's does not; an
--- unchanged result is the input itself; a block activate appended (marked) is taken
--- out by deactivate without a trace. What the editor takes for an active block is one
--- in the YAML too: every selector of active_selectors names a patches entry with
--- path patches/power-on.yaml and that target.labelSelector (else deactivate would
--- comment out some other patch, and activate call a group on that is not).
local kustomize = require "vmdr.kustomize"
local selector = require "vmdr.selector"
local yaml = require "vmdr.yaml"

local function check_err(err, what)
    if type(err) ~= "table" or err.code ~= "invalid" or type(err.message) ~= "string" then
        error(what .. ": not a {code=\"invalid\"} error: " .. tostring(err), 0)
    end
end

local function has(list, v)
    for _, x in ipairs(list) do if x == v then return true end end
    return false
end

local function count(s, pat)
    local n = 0
    for _ in s:gmatch(pat) do n = n + 1 end
    return n
end

local MARKER = kustomize.MARKER:gsub("%p", "%%%0")

-- The canonical selectors of the power-on patches of the decoded document.
local function yaml_active(text)
    local doc = yaml.decode(text)
    if type(doc) ~= "table" or type(doc.patches) ~= "table" then return nil end
    local out = {}
    for _, p in ipairs(doc.patches) do
        local t = type(p) == "table" and p.target
        if type(t) == "table" and p.path == kustomize.POWER_ON
            and type(t.labelSelector) == "string" then
            local c = selector.canonical(t.labelSelector)
            if c then out[c] = true end
        end
    end
    return out
end

local function check_active(text, what)
    local scan = kustomize.active_selectors(text)
    local truth = scan and #scan > 0 and yaml_active(text)
    if not truth then return end
    for _, c in ipairs(scan) do
        if not truth[c] then
            error(string.format("%s: active_selectors has %q, the YAML has no power-on patch"
                .. " for it", what, c), 0)
        end
    end
end

return function(input)
    local sel, text = input:match("^([^\n]*)\n(.*)$")
    if not sel then sel, text = "app=db", input end
    local canon = selector.canonical(sel)

    local actives, aerr = kustomize.active_selectors(text)
    if not actives then check_err(aerr, "active_selectors") end
    check_active(text, "input")

    local out, changed = kustomize.activate(text, sel)
    if out == nil then
        check_err(changed, "activate")
    else
        if type(out) ~= "string" or type(changed) ~= "boolean" then
            error("activate: not (text, boolean)", 0)
        end
        if not changed and out ~= text then error("activate: unchanged but different", 0) end
        check_active(out, "activate")
        local now = kustomize.active_selectors(out)
        if not now or not has(now, canon) then
            error(string.format("activate returned a text without %q active", canon), 0)
        end
        local back, bchanged = kustomize.deactivate(out, sel)
        if back == nil then
            check_err(bchanged, "deactivate after activate")
        else
            local after = kustomize.active_selectors(back)
            if not after or has(after, canon) then
                error(string.format("deactivate(activate(t)) still has %q active", canon), 0)
            end
            -- appended and marked: removed without a trace
            if changed and count(out, MARKER) == count(text, MARKER) + 1
                and (not actives or not has(actives, canon)) and back ~= text
                and count(text, MARKER) == 0 then
                error("deactivate did not restore the text activate appended to", 0)
            end
        end
    end

    local d, dchanged = kustomize.deactivate(text, sel)
    if d == nil then
        check_err(dchanged, "deactivate")
    else
        if type(d) ~= "string" or type(dchanged) ~= "boolean" then
            error("deactivate: not (text, boolean)", 0)
        end
        if not dchanged and d ~= text then error("deactivate: unchanged but different", 0) end
        local now = kustomize.active_selectors(d)
        if now and has(now, canon) then
            error(string.format("deactivate returned a text with %q still active", canon), 0)
        end
    end
end
