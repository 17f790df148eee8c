-- vmdr.config: defaults, types, -e coercion, required keys, secrets; and through the
-- host, that a configuration error exits 2 naming the key.
local h = require "support.helper"
local config = require "vmdr.config"
local log = require "vmdr.log"

--- Runs f, which must raise a config error; returns its message.
local function config_error(f)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected a config error")
  assert.equals("table", type(err), tostring(err))
  assert.equals("config", err.code)
  assert.matches("^config: ", tostring(err))
  return err.message
end

describe("vmdr.config", function()
  it("fills DESIGN.md's defaults under what is given", function()
    local cfg = config.build({ git = { url = "file:///r", branch = "dr" } }, nil, "x.yaml")
    assert.equals("file:///r", cfg.git.url)
    assert.equals("dr", cfg.git.branch)
    assert.equals("vms", cfg.git.root)
    assert.same({ name = "vmdr", email = "vmdr@localhost" }, cfg.git.author)
    assert.equals("dr.demojam.com/enabled=true", cfg.label_selector)
    assert.equals("ceph", cfg.storage.driver)
    assert.equals("snapshot", cfg.storage.ceph.mirror_mode)
    assert.equals("admin", cfg.storage.ceph.dr.user)
    assert.same({ ".rbd.csi.ceph.com" }, cfg.storage.csi_drivers)
    assert.equals(0.5, cfg.gc.max_delete_fraction)
    assert.equals("openshift-gitops", cfg.argocd.namespace)
    -- defaults are copies: changing one config leaves the next alone
    cfg.git.author.name = "changed"
    assert.equals("vmdr", config.build().git.author.name)
  end)

  it("layers -e over the file over the defaults; lists replace, maps merge", function()
    local cfg = config.build(
      { git = { url = "a", author = { email = "x@y" } }, storage = { csi_drivers = { "a", "b" } } },
      { git = { url = "b" }, storage = { csi_drivers = "c.example, d" } })
    assert.equals("b", cfg.git.url)
    assert.same({ name = "vmdr", email = "x@y" }, cfg.git.author)
    assert.same({ "c.example", "d" }, cfg.storage.csi_drivers)
  end)

  it("coerces -e strings by the key's type", function()
    local cfg = config.build(nil, config.merge({}, {
      gc = { max_delete_fraction = "0.25", force = "true" },
      git = { max_attempts = "5" },
      vm_selector = "app-tier=database", -- not a config key: stays a string
      count = "3",
    }))
    assert.equals(0.25, cfg.gc.max_delete_fraction)
    assert.is_true(cfg.gc.force)
    assert.equals(5, cfg.git.max_attempts)
    assert.equals("integer", math.type(cfg.git.max_attempts))
    assert.equals("app-tier=database", cfg.vm_selector)
    assert.equals("3", cfg.count)
    assert.is_false(config.build(nil, { gc = { force = "false" } }).gc.force)
    assert.equals("true", config.build(nil, { cluster_name = "true" }).cluster_name)
    cfg = config.build(nil, { storage = { ceph = { parallel = "8", peer_timeout = "2.5" } },
      git = { accept_unknown_host_key = "true" } })
    assert.equals(8, cfg.storage.ceph.parallel)
    assert.equals(2.5, cfg.storage.ceph.peer_timeout)
    assert.is_true(cfg.git.accept_unknown_host_key)
  end)

  it("rejects -e strings that do not fit, naming key and value", function()
    local m = config_error(function() config.build(nil, { gc = { max_delete_fraction = "half" } }) end)
    assert.matches("gc%.max_delete_fraction", m)
    assert.matches("half", m)
    assert.matches("a number from 0 to 1", m)
    m = config_error(function() config.build(nil, { gc = { max_delete_fraction = "1.5" } }) end)
    assert.matches("from 0 to 1", m)
    m = config_error(function() config.build(nil, { gc = { force = "yes" } }) end)
    assert.matches("gc%.force.*true or false", m)
    m = config_error(function() config.build(nil, { git = { max_attempts = "2.5" } }) end)
    assert.matches("git%.max_attempts.*an integer", m)
  end)

  it("checks the file's types, naming the key and the file", function()
    local m = config_error(function() config.build({ git = { url = 42 } }, nil, "/etc/vmdr.yaml") end)
    assert.equals("configuration key git.url must be a string, got 42 (/etc/vmdr.yaml)", m)
    m = config_error(function() config.build({ git = "main" }, nil, "f.yaml") end)
    assert.matches("git must be a mapping", m)
    m = config_error(function() config.build({ storage = { driver = "lvm" } }, nil, "f.yaml") end)
    assert.matches("storage%.driver must be one of ceph, exec, none, got \"lvm\"", m)
    m = config_error(function() config.build({ storage = { csi_drivers = { 1 } } }, nil, "f.yaml") end)
    assert.matches("a list of strings", m)
    m = config_error(function() config.build({ "a", "b" }, nil, "f.yaml") end)
    assert.matches("must be a mapping", m)
    -- a YAML string that looks like a number is not coerced from a file
    m = config_error(function() config.build({ gc = { max_delete_fraction = "0.5" } }, nil, "f") end)
    assert.matches("got \"0.5\"", m)
  end)

  it("keeps unknown keys, warning about those inside vmdr's own sections", function()
    local cfg = config.build({ site_key = { x = 1 }, git = { brnach = "oops" } }, nil, "f.yaml")
    assert.same({ x = 1 }, cfg.site_key)
    assert.equals("oops", cfg.git.brnach)
  end)

  it("require_keys raises naming every missing key and the workflow", function()
    local cfg = config.build({ git = { url = "file:///r" }, cluster_name = "" })
    assert.equals(cfg, config.require_keys(cfg, { "git.url", "git.branch" }))
    local m = config_error(function()
      config.require_keys(cfg, { "git.url", "cluster_name", "dr.kubeconfig" }, "reconcile")
    end)
    assert.matches("missing keys cluster_name, dr%.kubeconfig %(needed by reconcile%)", m)
    assert.matches("%-e cluster_name=VALUE", m)
  end)

  it("get reads dotted keys", function()
    local cfg = { a = { b = { c = 1 } }, s = "x" }
    assert.equals(1, config.get(cfg, "a.b.c"))
    assert.is_nil(config.get(cfg, "a.x.c"))
    assert.is_nil(config.get(cfg, "s.t"))
  end)

  describe("secrets", function()
    local tmp
    before_each(function() tmp = h.tmpdir("config") end)

    it("reads a secret from a *_file setting and never prints it", function()
      local f = h.write(tmp .. "/token", "file-t0ken-abcdef\n")
      local v = config.secret({ git = { token_file = f } }, "git.token")
      assert.equals("file-t0ken-abcdef", v)
      assert.equals("x *** y", log.redact("x file-t0ken-abcdef y"))
    end)

    it("returns false when not configured, nil and err when unusable", function()
      assert.is_false(config.secret({ git = {} }, "git.token"))
      local v, err = config.secret({ git = { token_file = tmp .. "/none" } }, "git.token")
      assert.is_nil(v); assert.equals("config", err.code)
      assert.matches("git%.token_file", err.message)
      v, err = config.secret({ git = { token_env = "VMDR_SPEC_SURELY_UNSET" } }, "git.token")
      assert.is_nil(v); assert.matches("VMDR_SPEC_SURELY_UNSET is not set", err.message)
    end)

    it("register_secrets covers *_file secrets and key files, line by line", function()
      local key = h.write(tmp .. "/id", "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----\n")
      local pw = h.write(tmp .. "/pw", "hunter2-but-longer")
      local ca = h.write(tmp .. "/ca", "public-ca-certificate")
      config.register_secrets({ git = { ssh_key = key }, db = { password_file = pw },
        tls = { ca_file = ca } })
      assert.equals("***", log.redact("QUJDREVGR0hJSktMTU5PUA=="))
      assert.equals("***", log.redact("hunter2-but-longer"))
      assert.equals("public-ca-certificate", log.redact("public-ca-certificate"))
    end)
  end)
end)

describe("vmdr-run configuration", function()
  local tmp
  setup(function() tmp = h.tmpdir("hostcfg") end)

  it("exits 2 naming the key a workflow requires", function()
    local s = h.write(tmp .. "/needs.lua", [[
      local ctx = ...
      require("vmdr.config").require_keys(ctx.config, { "git.url", "cluster_name" }, "needs")
    ]])
    local r = h.run { s, "-e", "cluster_name=dr1" }
    assert.equals(2, r.code)
    assert.matches("missing key git%.url %(needed by needs%)", r.stderr)
    assert.not_matches("traceback", r.stderr)
    r = h.run { s, "-e", "cluster_name=dr1", "-e", "git.url=file:///x" }
    assert.equals(0, r.code, r.stderr)
  end)

  it("hands the workflow coerced, defaulted config", function()
    local s = h.write(tmp .. "/show.lua", [[
      local ctx = ...
      io.write(math.type(ctx.config.git.max_attempts), " ", tostring(ctx.config.gc.force), " ",
        ctx.config.gc.max_delete_fraction, " ", ctx.config.git.root)
    ]])
    local r = h.run { s, "-e", "git.max_attempts=7", "-e", "gc.force=true",
      "-e", "gc.max_delete_fraction=0.1" }
    assert.equals(0, r.code, r.stderr)
    assert.equals("integer true 0.1 vms", r.stdout)
  end)

  it("exits 2 on a bad -e value", function()
    local r = h.run { h.write(tmp .. "/x.lua", ""), "-e", "gc.max_delete_fraction=lots" }
    assert.equals(2, r.code)
    assert.matches("gc%.max_delete_fraction", r.stderr)
  end)

  it("exits 2 naming a configuration file it cannot read", function()
    local r = h.run { "-c", tmp .. "/missing.yaml", h.write(tmp .. "/y.lua", "") }
    assert.equals(2, r.code)
    assert.matches("missing%.yaml", r.stderr)
    assert.matches("No such file", r.stderr)
  end)

  it("never prints a secret read from a *_file setting, error messages included", function()
    local tok = h.write(tmp .. "/tok", "t0ken-from-a-file-123\n")
    local s = h.write(tmp .. "/leak.lua", string.format([[
      local f = io.open(%q); local v = f:read("l"); f:close()
      local ctx = ...
      ctx.log.info("using " .. v)
      error({ code = "auth", message = "rejected " .. v })
    ]], tok))
    local r = h.run { "-e", "git.token_file=" .. tok, s }
    assert.equals(3, r.code)
    assert.matches("using %*%*%*", r.stderr)
    assert.matches("rejected %*%*%*", r.stderr)
    assert.not_matches("t0ken", r.stdout .. r.stderr)
  end)

  describe("files", function()
    local proc = require "vmdr.proc"
    local show

    setup(function()
      show = h.write(tmp .. "/cfgshow.lua", [[
        local ctx = ...
        local c = ctx.config
        io.write(c.git.url, "|", c.git.branch, "|", tostring(c.gc.max_delete_fraction), "|",
          c.cluster_name, "|", tostring(ctx.vars.extra and ctx.vars.extra.n), "|",
          math.type(c.git.max_attempts))
      ]])
    end)

    it("reads -c FILE, with -e on top", function()
      local cfg = h.write(tmp .. "/c1.yaml",
        "git:\n  url: file:///repo\n  branch: dr\ngc: {max_delete_fraction: 0.2}\ncluster_name: dr-east\n")
      local r = h.run { "-c", cfg, show, "-e", "git.branch=other" }
      assert.equals(0, r.code, r.stderr)
      assert.equals("file:///repo|other|0.2|dr-east|nil|integer", r.stdout)
    end)

    it("reads $VMDR_CONFIG, else ./vmdr.yaml", function()
      local cfg = h.write(tmp .. "/c2.yaml", "git: {url: from-env}\ncluster_name: a\n")
      local r = h.run({ show }, { VMDR_CONFIG = cfg })
      assert.equals(0, r.code, r.stderr)
      assert.matches("^from%-env|main|0%.5|a|", r.stdout)
      local dir = tmp .. "/cwd"
      h.write(dir .. "/vmdr.yaml", "git: {url: from-cwd}\ncluster_name: b\n")
      local p = assert(proc.run({ h.vmdr_run, show }, { cwd = dir, env = { VMDR_CONFIG = false } }))
      assert.equals(0, p.status, p.stderr)
      assert.matches("^from%-cwd|main|0%.5|b|", p.stdout)
    end)

    it("-e @FILE brings typed, nested variables; later -e wins", function()
      local vars = h.write(tmp .. "/vars.yaml",
        "git: {url: from-vars}\ncluster_name: c\nextra: {n: 3}\ngc: {max_delete_fraction: 0.7}\n")
      local r = h.run { show, "-e", "@" .. vars, "-e", "gc.max_delete_fraction=0.9" }
      assert.equals(0, r.code, r.stderr)
      assert.equals("from-vars|main|0.9|c|3|integer", r.stdout)
      r = h.run { show, "-e", "gc.max_delete_fraction=0.9", "-e", "@" .. vars }
      assert.equals("from-vars|main|0.7|c|3|integer", r.stdout)
    end)

    it("exits 2 naming the file and the line of malformed YAML", function()
      local bad = h.write(tmp .. "/bad.yaml", "git:\n  url: [unclosed\n")
      local r = h.run { "-c", bad, show }
      assert.equals(2, r.code)
      assert.matches("configuration file '" .. bad:gsub("%p", "%%%0") .. "'", r.stderr)
      assert.matches("line %d+", r.stderr)
      r = h.run { show, "-e", "@" .. bad }
      assert.equals(2, r.code)
      assert.matches("variables file", r.stderr)
      r = h.run { show, "-e", "@" .. tmp .. "/none.yaml" }
      assert.equals(2, r.code)
      assert.matches("none%.yaml", r.stderr)
    end)

    it("exits 2 naming the key and the file of a wrongly typed value", function()
      local bad = h.write(tmp .. "/type.yaml", "git:\n  url: 42\n")
      local r = h.run { "-c", bad, show }
      assert.equals(2, r.code)
      assert.matches("git%.url must be a string, got 42 %(.*type%.yaml%)", r.stderr)
      local list = h.write(tmp .. "/list.yaml", "- a\n- b\n")
      r = h.run { "-c", list, show }
      assert.equals(2, r.code)
      assert.matches("list%.yaml", r.stderr)
    end)

    it("never prints a secret named by a *_file setting in the file", function()
      local tok = h.write(tmp .. "/tok2", "file-secret-0123456789\n")
      local cfg = h.write(tmp .. "/sec.yaml", "git:\n  url: x\n  token_file: " .. tok .. "\n")
      local s = h.write(tmp .. "/sec.lua", [[
        local ctx = ...
        local v = assert(require("vmdr.config").secret(ctx.config, "git.token"))
        ctx.log.warn("token " .. v, { header = "Bearer " .. v })
        return nil, "push failed with " .. v
      ]])
      local r = h.run { "-c", cfg, s }
      assert.equals(1, r.code)
      assert.matches("token %*%*%*", r.stderr)
      assert.matches("push failed with %*%*%*", r.stderr)
      assert.not_matches("file%-secret", r.stdout .. r.stderr)
    end)
  end)
end)
