-- vmdr.git against real servers started by spec/support/git-servers: smart HTTP and
-- HTTPS (lighttpd + git http-backend, basic auth) and SSH (sshd, key-only, git-shell).
-- Every error is checked for its code and for the token.
-- lsan: full-stacks (libgit2 1.5's SSH transport; see cmake/tests.cmake)
local h = require "support.helper"
local gitsrv = require "support.gitsrv"
local git = require "vmdr.git"

local function trim(s) return (s:gsub("%s+$", "")) end

describe("vmdr.git over HTTP, HTTPS and SSH", function()
  local S, tmp
  local seen = {} -- every error string produced, checked for the token at the end

  local function remember(err)
    if err then
      seen[#seen + 1] = tostring(err)
      seen[#seen + 1] = tostring(err.message)
    end
    return err
  end

  setup(function()
    S = gitsrv.up()
  end)
  teardown(function()
    gitsrv.down(S)
  end)
  before_each(function()
    tmp = h.tmpdir("gitnet")
  end)

  local transports = {
    { "http", function() return gitsrv.opts(S, "http") end },
    { "https", function() return gitsrv.opts(S, "https") end },
    { "ssh", function() return gitsrv.opts(S, "ssh") end },
    { "ssh", function()
      return { ssh_key = S.ssh_key_pass, ssh_passphrase = S.ssh_passphrase, known_hosts = S.known_hosts }
    end, "ssh with a passphrase-protected key" },
  }

  for i, t in ipairs(transports) do
    local name, opts = t[1], t[2]
    it("clones, writes, commits, pushes, fetches and resets over " .. (t[3] or name), function()
      local repo = "t" .. i
      local remote = gitsrv.bare(S, repo, true)
      local url = gitsrv.urls(S, repo)[name]
      local a = assert(git.clone(url, tmp .. "/a", opts()))
      assert.equals("seed\n", a:read("README"))
      assert(a:write("vms/base/ns/vm-a.yaml", "a\n"))
      local id = assert(a:commit("a"))
      assert.is_true(a:push())
      assert.equals(id, trim(gitsrv.git(remote, "rev-parse main")))
      assert.is_false(a:commit("nothing"))

      local b = assert(git.clone(url, tmp .. "/b", opts()))
      assert.equals("a\n", b:read("vms/base/ns/vm-a.yaml"))
      assert(b:write("vms/base/ns/vm-b.yaml", "b\n"))
      assert(b:commit("b"))
      assert.is_true(b:push())
      assert.is_true(a:fetch())
      assert.is_true(a:reset_to_remote())
      assert.equals(b:head(), a:head())
      assert.equals("b\n", h.read(tmp .. "/a/vms/base/ns/vm-b.yaml"))
      assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
      -- the token is in no file of the clone
      assert.equals(1, h.sh("grep -r -q -F " .. h.q(S.token) .. " " .. h.q(tmp)))
    end)
  end

  for _, name in ipairs { "http", "ssh" } do
    it("reports a non-fast-forward push over " .. name .. " as rejected", function()
      local repo = "nff-" .. name
      local remote = gitsrv.bare(S, repo, true)
      local url = gitsrv.urls(S, repo)[name]
      local a = assert(git.clone(url, tmp .. "/a", gitsrv.opts(S, name)))
      local b = assert(git.clone(url, tmp .. "/b", gitsrv.opts(S, name)))
      assert(a:write("a", "a")); assert(a:commit("a")); assert(a:push())
      assert(b:write("b", "b")); assert(b:commit("b"))
      local ok, err = b:push()
      assert.is_nil(ok)
      assert.equals("rejected", remember(err).code)
      assert.equals(a:head(), trim(gitsrv.git(remote, "rev-parse main")))
      -- and after a fetch, when libgit2 knows the remote tip (the other trap-2 message)
      assert(b:fetch())
      ok, err = b:push()
      assert.is_nil(ok)
      assert.equals("rejected", remember(err).code)
    end)

    it("reports a push the server refuses (returning 0 in libgit2) as rejected with its reason over " .. name, function()
      local repo = "hook-" .. name
      local remote = gitsrv.bare(S, repo, true)
      h.write(remote .. "/hooks/pre-receive", "#!/bin/sh\necho 'policy: main is frozen by the test' >&2\nexit 1\n")
      assert(h.sh("chmod +x " .. h.q(remote .. "/hooks/pre-receive")) == 0)
      local before = trim(gitsrv.git(remote, "rev-parse main"))
      local a = assert(git.clone(gitsrv.urls(S, repo)[name], tmp .. "/a", gitsrv.opts(S, name)))
      assert(a:write("a", "a")); assert(a:commit("a"))
      local ok, err = a:push()
      assert.is_nil(ok)
      assert.equals("rejected", remember(err).code)
      assert.matches("main is frozen by the test", err.message, 1, true)
      assert.matches("pre-receive hook declined", err.message, 1, true)
      assert.equals(before, trim(gitsrv.git(remote, "rev-parse main")))
    end)
  end

  local function expect_error(code, url, opts, pattern)
    local dir = h.tmpdir("fail")
    local r, err = git.clone(url, dir .. "/c", opts)
    assert.is_nil(r)
    assert.is_table(err)
    remember(err)
    assert.equals(code, err.code, tostring(err))
    if pattern then assert.matches(pattern, err.message) end
    return err
  end

  it("fails with auth on a wrong token, without looping, and never shows it", function()
    gitsrv.bare(S, "auth", true)
    local urls = gitsrv.urls(S, "auth")
    local wrong = "wrong-" .. S.token:sub(1, 12) .. "x"
    expect_error("auth", urls.http, { token = wrong }, "refused the token")
    expect_error("auth", urls.https, { token = wrong, ca_file = S.ca_file }, "refused the token")
    expect_error("auth", urls.http, {}, "none are configured")
    for _, s in ipairs(seen) do assert.is_nil(s:find(wrong, 1, true), s) end
  end)

  it("fails with tls on an untrusted TLS certificate (verification is always on)", function()
    gitsrv.bare(S, "tls", true)
    local urls = gitsrv.urls(S, "tls")
    expect_error("tls", urls.https, { token = S.token }, "not trusted")
    expect_error("tls", urls.https, { token = S.token, ca_file = S.other_ca_file }, "not trusted")
  end)

  it("fails with auth on a wrong SSH key, an unknown and a changed host key", function()
    gitsrv.bare(S, "ssh", true)
    local url = gitsrv.urls(S, "ssh").ssh
    expect_error("auth", url, { ssh_key = S.ssh_key_wrong, known_hosts = S.known_hosts }, "refused the SSH key")
    expect_error("auth", url, { ssh_key = S.ssh_key }, "no known_hosts")
    expect_error("auth", url, { ssh_key = S.ssh_key, known_hosts = S.known_hosts_other }, "unknown")
    expect_error("auth", url, { ssh_key = S.ssh_key, known_hosts = S.known_hosts_changed }, "NOT match")
    -- accepting unknown keys is explicit, and never covers a changed key
    expect_error("auth", url, { ssh_key = S.ssh_key, known_hosts = S.known_hosts_changed,
      accept_unknown_host_key = true }, "NOT match")
    local r = assert(git.clone(url, tmp .. "/ok", { ssh_key = S.ssh_key, known_hosts = S.known_hosts_other,
      accept_unknown_host_key = true }))
    r:close()
    expect_error("auth", url, { ssh_key = S.ssh_key_pass, ssh_passphrase = "not the passphrase",
      known_hosts = S.known_hosts })
  end)

  it("fails with unreachable when no server listens", function()
    -- a port that was free a moment ago and has no listener
    local port = trim(h.capture([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])']]))
    expect_error("unreachable", "http://127.0.0.1:" .. port .. "/git/x.git", { token = S.token })
    expect_error("unreachable", "https://127.0.0.1:" .. port .. "/git/x.git", { token = S.token })
    expect_error("unreachable", "ssh://git@127.0.0.1:" .. port .. "/x.git",
      { ssh_key = S.ssh_key, known_hosts = S.known_hosts })
  end)

  it("fails with not_found on a missing repository", function()
    local urls = gitsrv.urls(S, "does-not-exist")
    expect_error("not_found", urls.http, gitsrv.opts(S, "http"))
    expect_error("not_found", urls.https, gitsrv.opts(S, "https"))
    expect_error("not_found", urls.ssh, gitsrv.opts(S, "ssh"))
    expect_error("not_found", urls.file, {})
  end)

  it("never put the token in any error seen in this file", function()
    assert.is_true(#seen > 10)
    for _, s in ipairs(seen) do assert.is_nil(s:find(S.token, 1, true), s) end
  end)
end)
