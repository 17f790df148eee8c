--- Fuzz driver: vmdr.selector on any text (the label selector grammar), and
--- from_label_selector on whatever the same text decodes to as YAML.
--- Contract: parse returns a selector or nil, {code="invalid", message=}; it never
--- raises on a string. A parsed selector's canonical text parses to itself; its
--- LabelSelector form means the same (same match on label sets built from its own
--- keys and values); a label set built to satisfy it matches it.
local selector = require "vmdr.selector"
local yaml = require "vmdr.yaml"

local function check_err(err, what)
    if type(err) ~= "table" or err.code ~= "invalid" or type(err.message) ~= "string" then
        error(what .. ": not a {code=\"invalid\"} error: " .. tostring(err), 0)
    end
end

-- Label sets from the selector's own keys and values: for key i, digit i of n (base 3)
-- picks absent, its first value or a value no requirement names.
local function label_sets(sel)
    local keys, vals, seen = {}, {}, {}
    for _, r in ipairs(sel.requirements) do
        if not seen[r.key] then
            seen[r.key] = true
            keys[#keys + 1] = r.key
            vals[#keys] = r.values[1] or "v"
        end
    end
    local sets = {}
    local k = math.min(#keys, 5)
    for n = 0, 3 ^ k - 1 do
        local labels, m = {}, n
        for i = 1, k do
            local d = m % 3
            m = m // 3
            if d == 1 then labels[keys[i]] = vals[i] end
            if d == 2 then labels[keys[i]] = "zz-no-such-value" end
        end
        sets[#sets + 1] = labels
    end
    return sets
end

local function check_selector(sel, input)
    local again, err = selector.parse(sel.text)
    if not again then
        error(string.format("canonical text %q of %q does not parse: %s", sel.text, input,
            tostring(err)), 0)
    end
    if again.text ~= sel.text then
        error(string.format("canonical text is not a fixed point: %q -> %q", sel.text,
            again.text), 0)
    end
    local ls = assert(selector.to_match_expressions(sel))
    local back, berr = selector.from_label_selector(ls)
    if not back then
        error(string.format("the LabelSelector of %q does not convert back: %s", sel.text,
            tostring(berr)), 0)
    end
    for _, labels in ipairs(label_sets(sel)) do
        local a, b = selector.match(sel, labels), selector.match(back, labels)
        if type(a) ~= "boolean" or a ~= b then
            error(string.format("%q and its LabelSelector disagree", sel.text), 0)
        end
    end
    -- a label set that satisfies every requirement, when the keys are distinct
    local labels, distinct, seen = {}, true, {}
    for _, r in ipairs(sel.requirements) do
        if seen[r.key] then distinct = false end
        seen[r.key] = true
        if r.op == "eq" or r.op == "in" or r.op == "exists" then
            labels[r.key] = r.values[1] or "x"
        end
    end
    if distinct and selector.match(sel, labels) ~= true then
        error(string.format("%q does not match a label set built to satisfy it", sel.text), 0)
    end
end

return function(input)
    local sel, err = selector.parse(input)
    if sel then
        check_selector(sel, input)
    else
        check_err(err, "parse")
    end
    -- the LabelSelector object form (a spec's selector:, a config's group)
    local doc = yaml.decode(input)
    if type(doc) == "table" then
        local s2, err2 = selector.from_label_selector(doc)
        if s2 then
            check_selector(s2, input)
        else
            check_err(err2, "from_label_selector")
        end
    end
end
