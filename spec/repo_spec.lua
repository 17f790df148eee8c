-- vmdr.repo.transaction against real servers (spec/support/git-servers): retries on
-- rejection, dry run, 2 and 8 vmdr-run processes pushing at once over HTTP and SSH,
-- kill -9 in the middle of a transaction. Every output is grepped for the token.
-- lsan: full-stacks (libgit2 1.5's SSH transport; see cmake/tests.cmake)
local h = require "support.helper"
local gitsrv = require "support.gitsrv"
local git = require "vmdr.git"
local repo = require "vmdr.repo"
local log = require "vmdr.log"
local fs = require "vmdr.fs"

local function trim(s) return (s:gsub("%s+$", "")) end

-- The script each writer process runs: `rounds` transactions, each appending its id to
-- a shared file (a guaranteed conflict) and adding a file of its own.
local WORKER = [[
local ctx = ...
local repo = require "vmdr.repo"
local time = require "vmdr.time"
local id, rounds = ctx.vars.id, tonumber(ctx.vars.rounds or "1")
for k = 1, rounds do
  local res, err = repo.transaction(ctx, function(tx)
    local cur = tx:read("shared.txt") or ""
    assert(tx:write("shared.txt", cur .. id .. "-" .. k .. "\n"))
    assert(tx:write("changes/" .. id .. "-" .. k .. ".txt", id .. "\n"))
    if ctx.vars.files then
      for f = 1, tonumber(ctx.vars.files) do
        assert(tx:write(string.format("bulk/%s/%04d.yaml", id, f), string.format("n: %d-%d\n", f, k)))
      end
    end
    if ctx.vars.hang then
      io.stdout:write("READY\n"); io.stdout:flush()
      time.sleep(120)
    end
    tx:set_message("change " .. id .. "-" .. k)
  end)
  if not res then io.stderr:write("FAILED ", tostring(err), "\n") return 1 end
  io.stdout:write("ok ", id, "-", k, " attempts=", res.attempts, "\n")
end
]]

describe("vmdr.repo.transaction", function()
  local S, tmp, worker
  local outputs = {} -- every process output and error string, grepped for the token

  setup(function()
    S = gitsrv.up()
    worker = h.write(h.tmpdir("worker") .. "/worker.lua", WORKER)
  end)
  teardown(function()
    gitsrv.down(S)
  end)
  before_each(function()
    tmp = h.tmpdir("tx")
  end)

  -- ctx for this process, as vmdr-run would build it from config + -e.
  local function ctx_for(transport, name, workdir, extra)
    local g = {
      url = gitsrv.urls(S, name)[transport],
      workdir = workdir,
      token_file = (transport == "http" or transport == "https") and S.token_file or nil,
      ca_file = transport == "https" and S.ca_file or nil,
      ssh_key = transport == "ssh" and S.ssh_key or nil,
      known_hosts = transport == "ssh" and S.known_hosts or nil,
      author = { name = "vmdr-test", email = "test@vmdr" },
      backoff = 0.01,
    }
    for k, v in pairs(extra or {}) do g[k] = v end
    return { config = { git = g }, log = log }
  end

  -- vmdr-run arguments for the same configuration (token through an env var).
  local function run_args(transport, name, workdir, vars)
    local args = { worker, "-v",
      "-e", "git.url=" .. gitsrv.urls(S, name)[transport],
      "-e", "git.workdir=" .. workdir,
      "-e", "git.max_attempts=60", "-e", "git.backoff=0.02", "-e", "git.worktree=true",
      "-e", "git.author.name=worker", "-e", "git.author.email=w@vmdr" }
    if transport == "http" or transport == "https" then
      args[#args + 1] = "-e"; args[#args + 1] = "git.token_env=VMDR_TEST_GIT_TOKEN"
    end
    if transport == "https" then
      args[#args + 1] = "-e"; args[#args + 1] = "git.ca_file=" .. S.ca_file
    end
    if transport == "ssh" then
      args[#args + 1] = "-e"; args[#args + 1] = "git.ssh_key=" .. S.ssh_key
      args[#args + 1] = "-e"; args[#args + 1] = "git.known_hosts=" .. S.known_hosts
    end
    for k, v in pairs(vars or {}) do
      args[#args + 1] = "-e"; args[#args + 1] = k .. "=" .. v
    end
    return args
  end
  local env = function() return { VMDR_TEST_GIT_TOKEN = S.token } end

  it("commits and pushes fn's writes, and returns commit=false when nothing changed", function()
    local remote = gitsrv.bare(S, "basic", true)
    local ctx = ctx_for("http", "basic", tmp .. "/w")
    local res = assert(repo.transaction(ctx, function(tx)
      assert(tx:write("vms/a.yaml", "a\n"))
      tx:set_message("add a")
      return "value"
    end))
    assert.equals(1, res.attempts)
    assert.equals("value", res.value)
    assert.equals(res.commit, trim(gitsrv.git(remote, "rev-parse main")))
    assert.equals("add a", trim(gitsrv.git(remote, "log -1 --format=%s main")))
    assert.equals("vmdr-test", trim(gitsrv.git(remote, "log -1 --format=%an main")))
    res = assert(repo.transaction(ctx, function(tx) assert.is_false(tx:write("vms/a.yaml", "a\n")) end))
    assert.is_false(res.commit)
    assert.equals("2", trim(gitsrv.git(remote, "rev-list --count main")))
  end)

  it("redoes fn on the new remote state when the push is rejected", function()
    local remote = gitsrv.bare(S, "retry", true)
    local other = assert(git.clone(gitsrv.urls(S, "retry").http, tmp .. "/other", { token = S.token }))
    local ctx = ctx_for("http", "retry", tmp .. "/w")
    local calls = 0
    local res = assert(repo.transaction(ctx, function(tx)
      calls = calls + 1
      local cur = tx:read("list.txt") or ""
      assert(tx:write("list.txt", cur .. "mine\n"))
      if calls == 1 then
        -- another writer gets there first
        assert(other:write("list.txt", "theirs\n")); assert(other:commit("theirs")); assert(other:push())
      end
    end))
    assert.equals(2, calls)
    assert.equals(2, res.attempts)
    assert.equals("theirs\nmine\n", trim(gitsrv.git(remote, "show main:list.txt")) .. "\n")
    assert.equals("", gitsrv.git(remote, "rev-list --merges main"))
  end)

  it("gives up with a clear rejected error after max_attempts", function()
    gitsrv.bare(S, "giveup", true)
    local other = assert(git.clone(gitsrv.urls(S, "giveup").http, tmp .. "/other", { token = S.token }))
    local ctx = ctx_for("http", "giveup", tmp .. "/w", { max_attempts = 3 })
    local calls = 0
    local res, err = repo.transaction(ctx, function(tx)
      calls = calls + 1
      assert(tx:write("mine.txt", tostring(calls)))
      assert(other:fetch()); assert(other:reset_to_remote())
      assert(other:write("theirs.txt", tostring(calls))); assert(other:commit("t")); assert(other:push())
    end)
    assert.is_nil(res)
    outputs[#outputs + 1] = tostring(err)
    assert.equals("rejected", err.code)
    assert.matches("after 3 attempts", err.message)
    assert.equals(3, calls)
  end)

  it("aborts on fn's error or nil, err, pushing nothing and leaving the clone clean", function()
    local remote = gitsrv.bare(S, "abort", true)
    local before = trim(gitsrv.git(remote, "rev-parse main"))
    local ctx = ctx_for("http", "abort", tmp .. "/w")
    local res, err = repo.transaction(ctx, function(tx)
      assert(tx:write("half.txt", "x"))
      return nil, { code = "invalid", message = "the VM vanished" }
    end)
    assert.is_nil(res)
    assert.equals("the VM vanished", err.message)
    assert.has_error(function()
      repo.transaction(ctx, function(tx) assert(tx:write("half.txt", "x")); error("boom") end)
    end)
    assert.equals(before, trim(gitsrv.git(remote, "rev-parse main")))
    assert.is_nil(h.read(tmp .. "/w/half.txt"))
    assert.equals("", gitsrv.git(tmp .. "/w", "status --porcelain"))
  end)

  it("reports configuration errors: a token variable that is not set", function()
    gitsrv.bare(S, "cfg", true)
    local ctx = ctx_for("http", "cfg", tmp .. "/w", { token_env = "VMDR_NO_SUCH_VAR_X" })
    ctx.config.git.token_file = nil
    local res, err = repo.transaction(ctx, function() end)
    assert.is_nil(res)
    assert.equals("config", err.code)
    assert.matches("VMDR_NO_SUCH_VAR_X", err.message)
  end)

  it("dry run prints the diff and pushes nothing (vmdr-run --dry-run)", function()
    local remote = gitsrv.bare(S, "dry", true)
    local before = trim(gitsrv.git(remote, "rev-parse main"))
    local args = run_args("http", "dry", tmp .. "/w", { id = "dry" })
    table.insert(args, 2, "--dry-run")
    local d = h.run(args, env())
    outputs[#outputs + 1] = d.stdout .. d.stderr
    assert.equals(0, d.code, d.stderr)
    assert.matches("+++ b/changes/dry-1.txt", d.stdout, 1, true)
    assert.matches("\n+dry-1\n", d.stdout, 1, true)
    assert.equals(before, trim(gitsrv.git(remote, "rev-parse main")))
    assert.equals("", gitsrv.git(tmp .. "/w", "status --porcelain"))
    assert.is_nil(h.read(tmp .. "/w/changes/dry-1.txt"))
  end)

  -- N processes at once; clones are shared by pairs when `share` (so the flock is used too).
  local function race(transport, n, rounds, share)
    local name = string.format("race-%s-%d", transport, n)
    local remote = gitsrv.bare(S, name, true)
    local parts = {}
    for i = 1, n do
      local wd = tmp .. "/w" .. (share and math.ceil(i / 2) or i)
      local argv = run_args(transport, name, wd, { id = "p" .. i, rounds = tostring(rounds) })
      local q = { "env", "VMDR_TEST_GIT_TOKEN=" .. S.token, h.vmdr_run }
      for _, a in ipairs(argv) do q[#q + 1] = a end
      for k, a in ipairs(q) do q[k] = h.q(a) end
      parts[#parts + 1] = string.format("( %s >%s 2>%s </dev/null; echo $? >%s ) &",
        table.concat(q, " "), h.q(tmp .. "/out" .. i), h.q(tmp .. "/err" .. i), h.q(tmp .. "/rc" .. i))
    end
    assert.equals(0, h.sh(table.concat(parts, " ") .. " wait"))
    local retries = 0
    for i = 1, n do
      local out, err = h.read(tmp .. "/out" .. i) or "", h.read(tmp .. "/err" .. i) or ""
      outputs[#outputs + 1] = out .. err
      assert.equals("0", trim(h.read(tmp .. "/rc" .. i)), err)
      for a in out:gmatch("attempts=(%d+)") do retries = retries + tonumber(a) - 1 end
    end
    -- every change landed, as its own commit, on a linear history
    local total = n * rounds
    assert.equals(tostring(total + 1), trim(gitsrv.git(remote, "rev-list --count main")))
    assert.equals("", gitsrv.git(remote, "rev-list --merges main"))
    local shared = gitsrv.git(remote, "show main:shared.txt")
    local files = gitsrv.git(remote, "ls-tree --name-only main changes/")
    for i = 1, n do
      for k = 1, rounds do
        local tag = "p" .. i .. "-" .. k
        assert.is_not_nil(("\n" .. shared):find("\n" .. tag .. "\n", 1, true), tag)
        assert.matches("changes/" .. tag .. ".txt", files, 1, true)
      end
    end
    local lines = 0
    for _ in shared:gmatch("[^\n]+") do lines = lines + 1 end
    assert.equals(total, lines)
    assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
    return retries
  end

  it("2 processes pushing at once over HTTP: every change lands, history linear", function()
    race("http", 2, 3, false)
  end)
  it("2 processes pushing at once over SSH: every change lands, history linear", function()
    race("ssh", 2, 3, false)
  end)
  it("8 processes (pairs sharing a clone) pushing at once over HTTP", function()
    race("http", 8, 3, true)
  end)
  it("8 processes (pairs sharing a clone) pushing at once over SSH", function()
    race("ssh", 8, 3, true)
  end)

  it("recovers after kill -9 in the middle of a transaction; the remote never saw it", function()
    local remote = gitsrv.bare(S, "kill", true)
    local wd = tmp .. "/w"
    local first = h.run(run_args("http", "kill", wd, { id = "first" }), env())
    assert.equals(0, first.code, first.stderr)
    local before = trim(gitsrv.git(remote, "rev-parse main"))
    local r = h.run_signalled(run_args("http", "kill", wd, { id = "killed", files = "300", hang = "1" }),
      "KILL", "READY", env())
    outputs[#outputs + 1] = (r.stdout or "") .. (r.stderr or "")
    assert.equals(137, r.code)
    assert.equals(before, trim(gitsrv.git(remote, "rev-parse main")))
    assert.is_not_nil(h.read(wd .. "/bulk/killed/0001.yaml")) -- the killed run had written
    -- what a kill inside libgit2's own writes would leave behind
    h.write(wd .. "/.git/index.lock", "")
    h.write(wd .. "/.git/refs/heads/main.lock", "")
    -- and a kill inside libgit2's indexer or loose-object write (seen in a CI-like run)
    h.write(wd .. "/.git/objects/pack/pack_git2_27cbcf7da923dc19", "PACK half")
    h.write(wd .. "/.git/objects/tmp_object_git2_a1b2c3", "x")
    -- and in a pack merge's stage (vmdr.git maintain)
    assert(fs.mkdir(wd .. "/.git/vmdr-repack"))
    h.write(wd .. "/.git/vmdr-repack/pack_git2_1237615c5d8370ef", "PACK half")
    -- look-alikes stay: another prefix, and a link (its target untouched)
    h.write(wd .. "/.git/objects/pack/my_pack_git2_note", "keep")
    h.write(tmp .. "/target", "keep")
    assert(h.sh("ln -s " .. h.q(tmp .. "/target") .. " " .. h.q(wd .. "/.git/objects/pack/pack_git2_link")) == 0)
    local again = h.run(run_args("http", "kill", wd, { id = "after" }), env())
    outputs[#outputs + 1] = again.stdout .. again.stderr
    assert.equals(0, again.code, again.stderr)
    assert.equals("3", trim(gitsrv.git(remote, "rev-list --count main")))
    local tree = gitsrv.git(remote, "ls-tree -r --name-only main")
    assert.is_nil(tree:find("killed", 1, true))
    assert.matches("changes/after-1.txt", tree, 1, true)
    assert.is_nil(h.read(wd .. "/bulk/killed/0001.yaml"))
    assert.equals("", gitsrv.git(wd, "status --porcelain"))
    assert.is_nil(h.read(wd .. "/.git/objects/pack/pack_git2_27cbcf7da923dc19"))
    assert.is_nil(h.read(wd .. "/.git/objects/tmp_object_git2_a1b2c3"))
    assert.is_false(fs.exists(wd .. "/.git/vmdr-repack"))
    assert.equals("keep", h.read(wd .. "/.git/objects/pack/my_pack_git2_note"))
    assert.equals("link", fs.stat(wd .. "/.git/objects/pack/pack_git2_link").type)
    assert.equals("keep", h.read(tmp .. "/target"))
  end)

  it("stays consistent when killed at arbitrary points of commit and push", function()
    local remote = gitsrv.bare(S, "kills", true)
    local wd = tmp .. "/w"
    local t = require "vmdr.time"
    for i = 1, 6 do
      -- a writer of 400 files per transaction, killed after a varying delay
      local argv = run_args("http", "kills", wd, { id = "k" .. i, files = "400", rounds = "3" })
      local q = { "env", "VMDR_TEST_GIT_TOKEN=" .. S.token, h.vmdr_run }
      for _, a in ipairs(argv) do q[#q + 1] = a end
      for k, a in ipairs(q) do q[k] = h.q(a) end
      local pidf = tmp .. "/pid" .. i
      assert.equals(0, h.sh(table.concat(q, " ") .. " >/dev/null 2>&1 </dev/null & echo $! >" .. h.q(pidf)))
      t.sleep(({ 0.02, 0.1, 0.2, 0.35, 0.5, 0.8 })[i])
      h.sh("kill -9 " .. trim(h.read(pidf)) .. " 2>/dev/null; while kill -0 " .. trim(h.read(pidf)) ..
        " 2>/dev/null; do sleep 0.01; done")
      assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
    end
    local again = h.run(run_args("http", "kills", wd, { id = "final" }), env())
    outputs[#outputs + 1] = again.stdout .. again.stderr
    assert.equals(0, again.code, again.stderr)
    -- every commit on the remote holds complete trees: each writer's 400 files or none
    for c in gitsrv.git(remote, "rev-list main"):gmatch("%x+") do
      local tree = gitsrv.git(remote, "ls-tree -r --name-only " .. c)
      for i = 1, 6 do
        local _, n = tree:gsub("bulk/k" .. i .. "/", "")
        assert.is_true(n == 0 or n == 400, "commit " .. c .. " has " .. n .. " files of k" .. i)
      end
    end
    assert.matches("changes/final-1.txt", gitsrv.git(remote, "ls-tree -r --name-only main"), 1, true)
    assert.equals("", gitsrv.git(wd, "status --porcelain"))
    assert.equals("", gitsrv.git(remote, "rev-list --merges main"))
  end)

  it("never printed the token: every process output and error of this file grepped", function()
    assert.is_true(#outputs >= 20)
    for _, o in ipairs(outputs) do assert.is_nil(o:find(S.token, 1, true), o) end
    -- and the debug logs did say something (the grep looked at real output)
    local all = table.concat(outputs, "\n")
    assert.matches("pushed", all, 1, true)
  end)
end)
