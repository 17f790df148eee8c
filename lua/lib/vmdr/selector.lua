--- vmdr.selector: Kubernetes label selectors, parsed, matched and printed.
---
--- The grammar is the one kubectl and the API server accept
--- (k8s.io/apimachinery labels.Parse), minus the numeric `>`/`<` forms, which a
--- LabelSelector object cannot express and a DR group never needs:
---
---   selector    := requirement ( "," requirement )*
---   requirement := key | "!" key
---                | key ( "=" | "==" | "!=" ) value
---                | key ( "in" | "notin" ) "(" value ( "," value )* ")"
---
--- Requirements are ANDed. Keys and values are checked against the Kubernetes
--- label rules. A malformed or empty selector is an error with code "invalid":
--- it must never degrade into "match everything", because failover acts on
--- whatever a selector matches.
local M = {}

---@class vmdr.selector.Requirement
---@field key string
---@field op "eq"|"neq"|"in"|"notin"|"exists"|"notexists"
---@field values string[]  sorted, without duplicates (empty for exists/notexists)

---@class vmdr.selector.Selector
---@field requirements vmdr.selector.Requirement[]  sorted by key, then by text
---@field text string  the canonical form

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }

local function invalid(fmt, ...)
    return nil, setmetatable({ code = "invalid", message = string.format(fmt, ...) }, err_mt)
end

-- DNS-1123 subdomain: the optional prefix of a label key.
local function is_dns_subdomain(s)
    if #s == 0 or #s > 253 then return false end
    for part in (s .. "."):gmatch("([^.]*)%.") do
        if not part:match("^[a-z0-9]$") and not part:match("^[a-z0-9][-a-z0-9]*[a-z0-9]$") then
            return false
        end
    end
    return true
end

-- A label name or value: up to 63 characters, alphanumerics at both ends,
-- '-', '_' and '.' inside.
local function is_label_word(s)
    return #s <= 63 and (s:match("^[A-Za-z0-9]$") ~= nil
        or s:match("^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$") ~= nil)
end

--- Checks a label key ("prefix/name" or "name").
---@param key string
---@return boolean ok
---@return string? why
function M.valid_key(key)
    if type(key) ~= "string" then return false, "key must be a string" end
    local prefix, name = key:match("^([^/]*)/(.*)$")
    if not prefix then name = key end
    if prefix and not is_dns_subdomain(prefix) then
        return false, string.format("label key prefix '%s' is not a DNS-1123 subdomain", prefix)
    end
    if name == "" then return false, string.format("label key '%s' has an empty name", key) end
    if not is_label_word(name) then
        return false, string.format("label key '%s': the name part must be at most 63 characters,"
            .. " alphanumeric at both ends, with '-', '_' or '.' inside", key)
    end
    return true
end

--- Checks a label value (may be empty).
---@param value string
---@return boolean ok
---@return string? why
function M.valid_value(value)
    if type(value) ~= "string" then return false, "value must be a string" end
    if value == "" or is_label_word(value) then return true end
    return false, string.format("label value '%s' must be empty or at most 63 characters,"
        .. " alphanumeric at both ends, with '-', '_' or '.' inside", value)
end

-- Tokens: the operators and punctuation below; identifiers are runs of any
-- other non-space characters (validation happens on keys and values later, so
-- stray characters get a message naming the word they are in).
local function tokenize(s)
    local toks, i, n = {}, 1, #s
    while i <= n do
        local c = s:sub(i, i)
        if c:match("%s") then
            i = i + 1
        elseif s:sub(i, i + 1) == "!=" or s:sub(i, i + 1) == "==" then
            toks[#toks + 1] = { t = s:sub(i, i + 1), pos = i }
            i = i + 2
        elseif c == "!" or c == "=" or c == "(" or c == ")" or c == "," or c == "<" or c == ">" then
            toks[#toks + 1] = { t = c, pos = i }
            i = i + 1
        else
            local j = i
            while j <= n and not s:sub(j, j):match("[%s!=(),<>]") do j = j + 1 end
            toks[#toks + 1] = { t = "id", v = s:sub(i, j - 1), pos = i }
            i = j
        end
    end
    toks[#toks + 1] = { t = "eof", pos = n + 1 }
    return toks
end

local function req_text(r)
    if r.op == "exists" then return r.key end
    if r.op == "notexists" then return "!" .. r.key end
    if r.op == "eq" then return r.key .. "=" .. r.values[1] end
    if r.op == "neq" then return r.key .. "!=" .. r.values[1] end
    -- "k in ()" does not parse: a lone empty value is written "(,)" (it, twice)
    local list = table.concat(r.values, ",")
    if list == "" then list = "," end
    return r.key .. " " .. r.op .. " (" .. list .. ")"
end

local function sorted_unique(list)
    table.sort(list)
    local out = {}
    for _, v in ipairs(list) do
        if out[#out] ~= v then out[#out + 1] = v end
    end
    return out
end

local function finish(reqs)
    local texts = {}
    for _, r in ipairs(reqs) do r.text = req_text(r) end
    table.sort(reqs, function(a, b)
        if a.key ~= b.key then return a.key < b.key end
        return a.text < b.text
    end)
    local out = {}
    for _, r in ipairs(reqs) do
        if not out[#out] or out[#out].text ~= r.text then
            out[#out + 1] = r
            texts[#texts + 1] = r.text
        end
    end
    for _, r in ipairs(out) do r.text = nil end
    return { requirements = out, text = table.concat(texts, ",") }
end

--- Parses a selector string.
---@param s string
---@return vmdr.selector.Selector? sel
---@return table? err  {code="invalid", message=}
function M.parse(s)
    if type(s) ~= "string" then
        error("selector.parse: expected a string, got " .. type(s), 2)
    end
    if s:match("^%s*$") then
        return invalid("empty label selector (it would match every VM; name a group)")
    end
    local toks = tokenize(s)
    local p = 1
    local function where(tok)
        return string.format("label selector '%s' at character %d", s, tok.pos)
    end
    local reqs = {}
    while true do
        local tok = toks[p]
        local negate = false
        if tok.t == "!" then negate = true; p = p + 1; tok = toks[p] end
        if tok.t ~= "id" then
            return invalid("%s: expected a label key, found %s", where(tok),
                tok.t == "eof" and "the end" or ("'" .. tok.t .. "'"))
        end
        local key = tok.v
        local ok, why = M.valid_key(key)
        if not ok then return invalid("%s: %s", where(tok), why) end
        p = p + 1
        local nxt = toks[p]
        local r
        if nxt.t == "," or nxt.t == "eof" then
            r = { key = key, op = negate and "notexists" or "exists", values = {} }
        elseif negate then
            return invalid("%s: '!%s' cannot be followed by an operator", where(nxt), key)
        elseif nxt.t == "=" or nxt.t == "==" or nxt.t == "!=" then
            p = p + 1
            local vt = toks[p]
            local value = ""
            if vt.t == "id" then
                value = vt.v
                p = p + 1
            elseif vt.t ~= "," and vt.t ~= "eof" then
                return invalid("%s: expected a value after '%s'", where(vt), nxt.t)
            end
            ok, why = M.valid_value(value)
            if not ok then return invalid("%s: %s", where(vt), why) end
            r = { key = key, op = nxt.t == "!=" and "neq" or "eq", values = { value } }
        elseif nxt.t == "id" and (nxt.v == "in" or nxt.v == "notin") then
            p = p + 1
            if toks[p].t ~= "(" then
                return invalid("%s: expected '(' after '%s'", where(toks[p]), nxt.v)
            end
            p = p + 1
            local values = {}
            while true do
                local vt = toks[p]
                local value = ""
                if vt.t == "id" then
                    value = vt.v
                    p = p + 1
                elseif vt.t ~= "," and vt.t ~= ")" then
                    return invalid("%s: expected a value or ')'", where(vt))
                end
                -- "in ()" is an error; "in (a,)" holds the empty value, as in Kubernetes
                if vt.t == ")" and #values == 0 then
                    return invalid("%s: '%s' needs at least one value", where(vt), nxt.v)
                end
                ok, why = M.valid_value(value)
                if not ok then return invalid("%s: %s", where(vt), why) end
                values[#values + 1] = value
                local sep = toks[p]
                p = p + 1
                if sep.t == ")" then break end
                if sep.t ~= "," then
                    return invalid("%s: expected ',' or ')' in the value list", where(sep))
                end
            end
            r = { key = key, op = nxt.v, values = sorted_unique(values) }
        elseif nxt.t == "<" or nxt.t == ">" then
            return invalid("%s: numeric comparisons ('%s') are not supported in DR selectors",
                where(nxt), nxt.t)
        else
            return invalid("%s: expected an operator (=, ==, !=, in, notin), ',' or the end",
                where(nxt))
        end
        reqs[#reqs + 1] = r
        local sep = toks[p]
        if sep.t == "eof" then break end
        if sep.t ~= "," then
            return invalid("%s: expected ',' between requirements", where(sep))
        end
        p = p + 1
    end
    return finish(reqs)
end

local function coerce(sel)
    if type(sel) == "string" then
        local parsed, err = M.parse(sel)
        if not parsed then return nil, err end
        return parsed
    end
    if type(sel) ~= "table" or type(sel.requirements) ~= "table" then
        error("expected a selector string or a parsed selector", 3)
    end
    return sel
end

local function has(values, v)
    for _, x in ipairs(values) do
        if x == v then return true end
    end
    return false
end

--- Whether a label set satisfies the selector (every requirement holds).
--- Semantics are Kubernetes': `!=` and `notin` also match when the key is absent.
---@param sel vmdr.selector.Selector|string
---@param labels table<string,string>|nil  metadata.labels (nil = no labels)
---@return boolean? matches
---@return table? err  for a malformed selector string
function M.match(sel, labels)
    local s, err = coerce(sel)
    if not s then return nil, err end
    if labels ~= nil and type(labels) ~= "table" then
        error("selector.match: labels must be a table", 2)
    end
    labels = labels or {}
    for _, r in ipairs(s.requirements) do
        local v = labels[r.key]
        if type(v) ~= "string" then v = nil end
        local ok
        if r.op == "exists" then ok = v ~= nil
        elseif r.op == "notexists" then ok = v == nil
        elseif r.op == "eq" or r.op == "in" then ok = v ~= nil and has(r.values, v)
        else ok = v == nil or not has(r.values, v) end
        if not ok then return false end
    end
    return true
end

--- The objects whose metadata.labels satisfy the selector, in their order.
--- An empty result is not an error here; a workflow acting on a group must
--- treat it as one ("the selector matches nothing" fails loudly).
---@param sel vmdr.selector.Selector|string
---@param objects table[]  Kubernetes objects
---@return table[]? matched
---@return table? err  for a malformed selector string
function M.select(sel, objects)
    local s, err = coerce(sel)
    if not s then return nil, err end
    if type(objects) ~= "table" then error("selector.select: objects must be a list", 2) end
    local out = {}
    for _, o in ipairs(objects) do
        local md = type(o) == "table" and o.metadata
        local labels = type(md) == "table" and md.labels
        if M.match(s, type(labels) == "table" and labels or nil) then out[#out + 1] = o end
    end
    return out
end

--- The canonical text: requirements sorted by key, `==` written `=`, set values
--- sorted and deduplicated. Two selectors with the same meaning written the same
--- way print the same, so the control-panel editor can find a group's block.
---@param sel vmdr.selector.Selector|string
---@return string? text
---@return table? err
function M.canonical(sel)
    local s, err = coerce(sel)
    if not s then return nil, err end
    return s.text
end

--- The selector as a Kubernetes LabelSelector object
--- `{ matchExpressions = { {key=, operator="In"|"NotIn"|"Exists"|"DoesNotExist", values=} } }`.
--- `=` becomes In with one value and `!=` NotIn, which is what the API server
--- does with the same text.
---@param sel vmdr.selector.Selector|string
---@return table? label_selector
---@return table? err
function M.to_match_expressions(sel)
    local s, err = coerce(sel)
    if not s then return nil, err end
    local ops = { eq = "In", ["in"] = "In", neq = "NotIn", notin = "NotIn",
        exists = "Exists", notexists = "DoesNotExist" }
    local exprs = {}
    for _, r in ipairs(s.requirements) do
        local e = { key = r.key, operator = ops[r.op] }
        if #r.values > 0 then
            e.values = {}
            for i, v in ipairs(r.values) do e.values[i] = v end
        end
        exprs[#exprs + 1] = e
    end
    return { matchExpressions = exprs }
end

--- Builds a selector from a LabelSelector object (matchLabels and matchExpressions).
--- An empty LabelSelector is refused like an empty string.
---@param ls table
---@return vmdr.selector.Selector? sel
---@return table? err
function M.from_label_selector(ls)
    if type(ls) ~= "table" then error("selector.from_label_selector: expected a table", 2) end
    local parts = {}
    local ml = ls.matchLabels
    if type(ml) == "table" then
        local keys = {}
        for k in pairs(ml) do
            -- a decoded document may hold any key; sorting mixed types would raise
            if type(k) ~= "string" then
                return invalid("matchLabels has a key that is not a string")
            end
            keys[#keys + 1] = k
        end
        table.sort(keys)
        for _, k in ipairs(keys) do
            if type(ml[k]) ~= "string" then return invalid("matchLabels.%s is not a string", k) end
            parts[#parts + 1] = k .. "=" .. ml[k]
        end
    end
    for i, e in ipairs(type(ls.matchExpressions) == "table" and ls.matchExpressions or {}) do
        if type(e) ~= "table" then return invalid("matchExpressions[%d] is not a mapping", i) end
        if type(e.key) ~= "string" then return invalid("matchExpressions[%d] has no key", i) end
        local vals = type(e.values) == "table" and e.values or {}
        for _, v in ipairs(vals) do
            if type(v) ~= "string" then return invalid("matchExpressions[%d]: bad value", i) end
        end
        local k = e.key
        if e.operator == "In" or e.operator == "NotIn" then
            if #vals == 0 then
                return invalid("matchExpressions[%d]: %s needs values", i, e.operator)
            end
            -- "k in ()" is an error: a lone empty value is written "k in (,)" (the empty
            -- value, twice), so `tier=` survives to_match_expressions and back
            local list = table.concat(vals, ",")
            if list == "" then list = "," end
            parts[#parts + 1] = string.format("%s %s (%s)", k,
                e.operator == "In" and "in" or "notin", list)
        elseif e.operator == "Exists" or e.operator == "DoesNotExist" then
            if #vals > 0 then
                return invalid("matchExpressions[%d]: %s takes no values", i, e.operator)
            end
            parts[#parts + 1] = (e.operator == "DoesNotExist" and "!" or "") .. k
        else
            return invalid("matchExpressions[%d]: unknown operator '%s'", i, tostring(e.operator))
        end
    end
    return M.parse(table.concat(parts, ","))
end

return M
