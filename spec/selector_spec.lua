-- vmdr.selector: Kubernetes label-selector syntax, as data tables.
local selector = require "vmdr.selector"

-- { selector, canonical text, { labels = expected match, ... } }
local L = {
  db = { ["app-tier"] = "database" },
  web = { ["app-tier"] = "web", env = "prod" },
  dbprod = { ["app-tier"] = "database", env = "prod", ["dr.demojam.com/group"] = "g1" },
  none = {},
  empty_val = { ["app-tier"] = "" },
}

local cases = {
  { "app-tier=database", "app-tier=database", { db = true, web = false, dbprod = true, none = false } },
  { "app-tier==database", "app-tier=database", { db = true, web = false, none = false } },
  { "app-tier!=database", "app-tier!=database", { db = false, web = true, none = true } },
  { "app-tier in (web,database)", "app-tier in (database,web)",
    { db = true, web = true, none = false } },
  { "app-tier in(database)", "app-tier in (database)", { db = true, web = false } },
  { "app-tier notin (database)", "app-tier notin (database)", { db = false, web = true, none = true } },
  { "app-tier", "app-tier", { db = true, none = false, empty_val = true } },
  { "!app-tier", "!app-tier", { db = false, none = true, empty_val = false } },
  { "  env = prod ,  app-tier = database ", "app-tier=database,env=prod",
    { db = false, web = false, dbprod = true } },
  { "dr.demojam.com/group=g1,env", "dr.demojam.com/group=g1,env", { dbprod = true, web = false } },
  { "app-tier=", "app-tier=", { empty_val = true, db = false, none = false } },
  { "app-tier in (database,)", "app-tier in (,database)", { empty_val = true, db = true, web = false } },
  { "app-tier in (b,a,b)", "app-tier in (a,b)", {} },
  { "env=prod,env=prod", "env=prod", { web = true } },
  { "a.b-c.d/x.Y_z-9=V.1_2-3", "a.b-c.d/x.Y_z-9=V.1_2-3", {} },
}

local malformed = {
  { "", "empty" },
  { "   ", "empty" },
  { ",", "expected a label key" },
  { "a=b,", "expected a label key" },
  { "a=b,,c", "expected a label key" },
  { "=b", "expected a label key" },
  { "a=b=c", "expected ','" },
  { "a==", nil }, -- empty value is legal: see below
  { "a in ()", "needs at least one value" },
  { "a in (x", "expected ',' or '%)'" },
  { "a in x", "expected '%('" },
  { "a notin", "expected '%('" },
  { "a in (x y)", "expected ',' or '%)'" },
  { "!a=b", "cannot be followed by an operator" },
  { "!", "expected a label key" },
  { "a>1", "numeric comparisons" },
  { "a<1", "numeric comparisons" },
  { "a b", "expected an operator" },
  { "-a=b", "name part" },
  { "a-=b", "name part" },
  { "a=b-", "label value" },
  { "a=" .. string.rep("x", 64), "label value" },
  { string.rep("k", 64) .. "=v", "name part" },
  { "Example.com/a=b", "prefix" },
  { "ex_ample.com/a=b", "prefix" },
  { "/a=b", "prefix" },
  { "x.com/=b", "empty name" },
  { "a/b/c=d", "name part" },
  { "a=b;c", "label value" },
  { "a=$(id)", "label value" },
  { "a=\"b\"", "label value" },
}

describe("vmdr.selector", function()
  for _, c in ipairs(cases) do
    local text, canon, expect = c[1], c[2], c[3]
    it("parses " .. string.format("%q", text), function()
      local sel, err = selector.parse(text)
      assert.is_nil(err)
      assert.equals(canon, sel.text)
      assert.equals(canon, selector.canonical(text))
      -- the canonical text means the same thing and is a fixed point
      assert.equals(canon, selector.parse(canon).text)
      for name, want in pairs(expect) do
        assert.equals(want, selector.match(sel, L[name]), name)
        assert.equals(want, selector.match(text, L[name]), name)
      end
    end)
  end

  it("accepts the empty value after == (as Kubernetes does)", function()
    local sel = assert(selector.parse("a=="))
    assert.equals("a=", sel.text)
    assert.is_true(selector.match(sel, { a = "" }))
    assert.is_false(selector.match(sel, { a = "x" }))
  end)

  for _, c in ipairs(malformed) do
    if c[2] then
      it("refuses " .. string.format("%q", c[1]), function()
        local sel, err = selector.parse(c[1])
        assert.is_nil(sel)
        assert.equals("invalid", err.code)
        assert.matches(c[2], err.message)
        assert.matches("^invalid: ", tostring(err))
        -- and match() reports it instead of answering true or false
        local m, merr = selector.match(c[1], { a = "b" })
        assert.is_nil(m)
        assert.equals("invalid", merr.code)
      end)
    end
  end

  it("selects the objects whose labels match, ignoring objects without labels", function()
    local objs = {
      { metadata = { name = "a", labels = L.db } },
      { metadata = { name = "b", labels = L.web } },
      { metadata = { name = "c" } },
      { metadata = { name = "d", labels = L.dbprod } },
    }
    local got = assert(selector.select("app-tier=database", objs))
    assert.same({ "a", "d" }, { got[1].metadata.name, got[2].metadata.name })
    assert.equals(2, #got)
    assert.same({}, selector.select("app-tier=none", objs))
    local r, err = selector.select("app-tier=", objs)
    assert.same({}, r)
    r, err = selector.select("in (", objs)
    assert.is_nil(r)
    assert.equals("invalid", err.code)
  end)

  it("raises on misuse", function()
    assert.has_error(function() selector.parse(nil) end)
    assert.has_error(function() selector.parse({}) end)
    assert.has_error(function() selector.match({}, {}) end)
    assert.has_error(function() selector.match("a", "labels") end)
  end)

  it("treats nil labels as none and ignores non-string label values", function()
    assert.is_true(selector.match("!a", nil))
    assert.is_false(selector.match("a", { a = 1 }))
  end)

  it("converts to matchExpressions and back", function()
    local ls = assert(selector.to_match_expressions(
      "env!=dev,app-tier in (web,database),!legacy,tier=db,owner,x notin (a)"))
    assert.same({
      { key = "app-tier", operator = "In", values = { "database", "web" } },
      { key = "env", operator = "NotIn", values = { "dev" } },
      { key = "legacy", operator = "DoesNotExist" },
      { key = "owner", operator = "Exists" },
      { key = "tier", operator = "In", values = { "db" } },
      { key = "x", operator = "NotIn", values = { "a" } },
    }, ls.matchExpressions)
    local back = assert(selector.from_label_selector(ls))
    assert.equals("app-tier in (database,web),env notin (dev),!legacy,owner,tier in (db),x notin (a)",
      back.text)
    -- same meaning as the original on every label set of the table
    for _, labels in pairs(L) do
      assert.equals(selector.match("env!=dev,app-tier in (web,database),!legacy,tier=db,owner,"
        .. "x notin (a)", labels), selector.match(back, labels))
    end
  end)

  it("reads matchLabels and refuses an empty LabelSelector", function()
    assert.equals("a=b,c=d", selector.from_label_selector { matchLabels = { c = "d", a = "b" } }.text)
    local s, err = selector.from_label_selector {}
    assert.is_nil(s)
    assert.equals("invalid", err.code)
    s, err = selector.from_label_selector { matchExpressions = { { key = "a", operator = "In" } } }
    assert.is_nil(s)
    assert.matches("needs values", err.message)
    s, err = selector.from_label_selector { matchExpressions = { { key = "a", operator = "Gt",
      values = { "1" } } } }
    assert.is_nil(s)
    assert.matches("unknown operator", err.message)
  end)

  it("matches what the API server's selector matches for the same text (table from kubectl docs)", function()
    -- kubectl get -l 'environment in (production),tier in (frontend)'
    local sel = "environment in (production),tier in (frontend)"
    assert.is_true(selector.match(sel, { environment = "production", tier = "frontend" }))
    assert.is_false(selector.match(sel, { environment = "production", tier = "backend" }))
    assert.is_false(selector.match(sel, { environment = "production" }))
  end)
end)
