-- vmdr.git against real bare repositories over file:// and a plain path (no server
-- needed): the working-clone API, path checks, hostile trees from the remote, locks.
-- The git CLI checks the results as an independent client.
local h = require "support.helper"
local gitsrv = require "support.gitsrv"
local git = require "vmdr.git"

local function trim(s) return (s:gsub("%s+$", "")) end

local function exists(path)
  return h.sh("test -e " .. h.q(path) .. " || test -L " .. h.q(path)) == 0
end

-- A fake server layout (only the repos dir is used for file transports).
local function repos_dir()
  local d = h.tmpdir("repos")
  return { repos = d }
end

describe("vmdr.git over file:// and a path", function()
  local S, tmp
  before_each(function()
    h.need("git")
    S = repos_dir()
    tmp = h.tmpdir("gitc")
  end)

  it("reports libgit2 1.5 with HTTPS and SSH", function()
    local f = git.features()
    assert.matches("^1%.5%.", f.version)
    assert.is_true(f.https)
    assert.is_true(f.ssh)
  end)

  for _, transport in ipairs { "file", "path" } do
    it("clones, writes, commits, pushes, fetches and resets (" .. transport .. ")", function()
      local remote = gitsrv.bare(S, "m", true)
      local url = gitsrv.urls(S, "m")[transport]
      local a = assert(git.clone(url, tmp .. "/a"))
      assert.equals("seed\n", a:read("README"))
      assert.same({ "README" }, a:list())
      assert(a:write("vms/base/ns1/vm-a.yaml", "kind: VirtualMachine\n"))
      assert(a:write("vms/base/ns1/kustomization.yaml", "resources: []\n"))
      local id = assert(a:commit("add vm-a", { author = { name = "Tester", email = "t@example.com" } }))
      assert.matches("^%x+$", id)
      assert.equals(40, #id)
      assert.equals(id, a:head())
      assert.is_true(a:push())
      -- the git CLI sees exactly that commit, author and tree
      assert.equals(id, trim(gitsrv.git(remote, "rev-parse main")))
      assert.equals("Tester <t@example.com>", trim(gitsrv.git(remote, "log -1 --format='%an <%ae>' main")))
      assert.equals("README\nvms/base/ns1/kustomization.yaml\nvms/base/ns1/vm-a.yaml",
        trim(gitsrv.git(remote, "ls-tree -r --name-only main")))
      assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
      -- the work tree of the clone matches, and git status is clean
      assert.equals("kind: VirtualMachine\n", h.read(tmp .. "/a/vms/base/ns1/vm-a.yaml"))
      assert.equals("", gitsrv.git(tmp .. "/a", "status --porcelain"))

      -- a second clone sees it, changes it; the first fetches and resets
      local b = assert(git.clone(url, tmp .. "/b"))
      assert.equals("kind: VirtualMachine\n", b:read("vms/base/ns1/vm-a.yaml"))
      assert.is_true(b:remove("vms/base/ns1/vm-a.yaml"))
      assert(b:write("vms/base/ns1/vm-b.yaml", "b\n"))
      assert(b:commit("swap"))
      assert.is_true(b:push())
      assert.is_true(a:fetch())
      assert.is_true(a:reset_to_remote())
      assert.equals(b:head(), a:head())
      assert.same({ "kustomization.yaml", "vm-b.yaml" }, a:list("vms/base/ns1"))
      assert.is_false(exists(tmp .. "/a/vms/base/ns1/vm-a.yaml"))
      assert.equals("b\n", h.read(tmp .. "/a/vms/base/ns1/vm-b.yaml"))
      a:close()
      b:close()
    end)
  end

  it("works without a work tree (worktree=false): objects and refs only", function()
    local remote = gitsrv.bare(S, "m", true)
    local url = gitsrv.urls(S, "m").file
    local r = assert(git.clone(url, tmp .. "/bare", { worktree = false }))
    assert.equals("seed\n", r:read("README"))
    assert(r:write("vms/a.yaml", "a\n"))
    assert.same({ "a.yaml" }, r:list("vms"))
    assert(r:commit("a"))
    assert(r:push())
    assert.equals("a\n", gitsrv.git(remote, "show main:vms/a.yaml"))
    assert.is_nil(h.read(tmp .. "/bare/vms/a.yaml"))
    assert.is_nil(h.read(tmp .. "/bare/README"))
    -- reopened, it stays without a work tree and follows the remote
    r:close()
    local other = assert(git.clone(url, tmp .. "/other"))
    assert(other:write("b", "b")); assert(other:commit("b")); assert(other:push())
    r = assert(git.open(tmp .. "/bare"))
    assert(r:fetch()); assert(r:reset_to_remote())
    assert.equals("b", r:read("b"))
    assert.equals(other:head(), r:head())
  end)

  it("returns false from commit when nothing changed, also after rewriting identical bytes", function()
    gitsrv.bare(S, "m", true)
    local r = assert(git.clone(gitsrv.urls(S, "m").file, tmp .. "/c"))
    local head = r:head()
    assert.is_false(r:commit("nothing"))
    -- the same bytes again: write says so (false) and stages nothing
    assert.is_false(r:write("README", "seed\n"))
    assert.is_false(r:commit("same bytes"))
    local wrote, created = r:write("README", "changed\n")
    assert.is_true(wrote); assert.is_false(created)
    assert.equals("changed\n", r:read("README"))
    assert.equals("seed\n", r:read("README", { head = true })) -- what the write replaced
    assert.is_false(r:write("README", "changed\n"))
    wrote, created = r:write("brand-new", "x")
    assert.is_true(wrote); assert.is_true(created)
    assert.is_false(r:remove("brand-new") == nil)
    assert.is_true(r:write("README", "seed\n"))
    assert.is_false(r:commit("changed and changed back"))
    assert(r:write("x", "1"))
    assert(r:remove("x"))
    assert.is_false(r:commit("written then removed"))
    assert.equals(head, r:head())
  end)

  it("tells the blob id of a regular file as the git CLI computes it, pending writes included", function()
    local remote = gitsrv.bare(S, "ids", true)
    -- an executable and a symlink in HEAD: not what write produces, so no id
    local w = h.tmpdir("ids-seed")
    h.capture("git clone -q " .. h.q(remote) .. " " .. h.q(w) .. " 2>&1 && cd " .. h.q(w)
      .. " && mkdir d && printf x > d/run && chmod +x d/run && ln -s README link"
      .. " && git add -A && git -c user.name=t -c user.email=t@t commit -qm modes"
      .. " && git push -q origin main 2>&1")
    local r = assert(git.clone(gitsrv.urls(S, "ids").file, tmp .. "/ids"))
    assert.equals(trim(gitsrv.git(remote, "rev-parse main:README")), r:blob_id("README"))
    assert.is_false(r:blob_id("d/run"))
    assert.is_false(r:blob_id("link"))
    assert.is_false(r:blob_id("d"))
    assert.is_false(r:blob_id("absent/file"))
    assert.is_true(r:write("new.yaml", "a: 1\n"))
    local want = trim(h.capture("printf 'a: 1\\n' | git hash-object --stdin"))
    assert.equals(want, r:blob_id("new.yaml"))
    assert.is_true(r:remove("README"))
    assert.is_false(r:blob_id("README"))
    -- the same path checks as read and write
    local ok, err = r:blob_id("../escape")
    assert.is_nil(ok)
    assert.equals("invalid", err.code)
    assert.has_error(function() r:blob_id() end)
    -- after the commit, from HEAD
    assert(r:commit("ids"))
    assert.equals(want, r:blob_id("new.yaml"))
  end)

  it("starts an empty remote with the first push", function()
    local remote = gitsrv.bare(S, "empty", false)
    local r = assert(git.clone(gitsrv.urls(S, "empty").file, tmp .. "/e"))
    assert.is_false(r:head())
    assert.same({}, r:list())
    assert.same({}, r:list("vms"))
    assert.is_false(r:commit("nothing"))
    assert(r:write("vms/applicationset.yaml", "x\n"))
    local id = assert(r:commit("init"))
    assert.is_true(r:push())
    assert.equals(id, trim(gitsrv.git(remote, "rev-parse main")))
  end)

  it("reads and lists its own pending writes, and diffs them", function()
    gitsrv.bare(S, "m", true)
    local r = assert(git.clone(gitsrv.urls(S, "m").path, tmp .. "/d"))
    assert(r:write("vms/base/ns/a.yaml", "a: 1\n"))
    assert(r:write("vms/base/ns/a.yaml", "a: 2\n"))
    assert.equals("a: 2\n", r:read("vms/base/ns/a.yaml"))
    assert.same({ "README", "vms/" }, r:list())
    assert.same({ "ns/" }, r:list("vms/base/"))
    assert.is_true(r:remove("README"))
    assert.is_false(r:remove("README"))
    local v, err = r:read("README")
    assert.is_nil(v)
    assert.equals("not_found", err.code)
    local diff = assert(r:diff())
    assert.matches("deleted file mode 100644", diff, 1, true)
    assert.matches("+++ b/vms/base/ns/a.yaml\n@@ -0,0 +1 @@\n+a: 2\n", diff, 1, true)
    assert(r:commit("c1"))
    -- a directory is not a file
    v, err = r:read("vms/base")
    assert.equals("invalid", err.code)
    v, err = r:remove("vms")
    assert.equals("invalid", err.code)
    -- removing the last file of a directory removes the directory
    assert.is_true(r:remove("vms/base/ns/a.yaml"))
    assert.same({}, r:list())
    assert(r:commit("c2"))
    assert.is_false(exists(tmp .. "/d/vms"))
    assert.equals("", gitsrv.git(tmp .. "/d", "ls-tree -r --name-only HEAD"))
  end)

  it("refuses paths outside the repository or in .git, writing nothing", function()
    gitsrv.bare(S, "m", true)
    local r = assert(git.clone(gitsrv.urls(S, "m").file, tmp .. "/p"))
    for _, p in ipairs { "../x", "a/../../x", "/etc/passwd", ".git/hooks/post-commit", "a/.git/x",
      ".GIT/config", "a//b", "./a", "a/./b", "", "a/", "a\\b" } do
      local ok, err = r:write(p, "bad")
      assert.is_nil(ok, p)
      assert.equals("invalid", err.code, p)
      ok, err = r:read(p)
      assert.equals("invalid", err.code, p)
      assert.is_nil(git.check_path(p))
    end
    assert.is_false(exists(tmp .. "/x"))
    assert.is_false(exists(tmp .. "/p/.git/hooks/post-commit"))
    assert.is_true(git.check_path("vms/base/ns/vm-a.yaml"))
    assert.is_false(r:commit("nothing was written"))
  end)

  it("never writes through a symlink in the work tree", function()
    gitsrv.bare(S, "m", true)
    local r = assert(git.clone(gitsrv.urls(S, "m").file, tmp .. "/s"))
    local outside = h.tmpdir("outside")
    assert(h.sh("ln -s " .. h.q(outside) .. " " .. h.q(tmp .. "/s/evil")) == 0)
    local ok, err = r:write("evil/x.yaml", "bad")
    assert.is_nil(ok)
    assert.equals("invalid", err.code)
    assert.is_false(exists(outside .. "/x.yaml"))
  end)

  it("keeps the clone free of secrets: no token in .git/config, commits or writes", function()
    local remote = gitsrv.bare(S, "m", true)
    local token = "tok-" .. string.rep("s3cr3t", 4)
    local r = assert(git.clone(gitsrv.urls(S, "m").file, tmp .. "/t", { token = token }))
    local ok, err = r:write("leak.yaml", "password: " .. token .. "\n")
    assert.is_nil(ok)
    assert.equals("invalid", err.code)
    assert.is_nil(err.message:find(token, 1, true))
    local id, cerr = r:commit("pushing with " .. token)
    assert.is_nil(id)
    assert.equals("invalid", cerr.code)
    assert.is_nil(tostring(cerr):find(token, 1, true))
    assert(r:write("ok.yaml", "fine\n"))
    assert(r:commit("fine"))
    assert(r:push())
    assert.is_nil(h.capture("cat " .. h.q(tmp .. "/t/.git/config")):find(token, 1, true))
    assert.is_nil(gitsrv.git(remote, "log -p --all"):find(token, 1, true))
    -- a URL that carries a password is refused outright
    local r2, uerr = git.clone("https://git:" .. token .. "@127.0.0.1:1/x.git", tmp .. "/u")
    assert.is_nil(r2)
    assert.equals("invalid", uerr.code)
    assert.is_nil(tostring(uerr):find(token, 1, true))
    assert.is_false(exists(tmp .. "/u"))
  end)

  it("rejects a stale push over file:// instead of overwriting (compare-and-swap)", function()
    local remote = gitsrv.bare(S, "m", true)
    local url = gitsrv.urls(S, "m").file
    local a = assert(git.clone(url, tmp .. "/a"))
    local b = assert(git.clone(url, tmp .. "/b"))
    assert(a:write("a", "a")); assert(a:commit("a")); assert(a:push())
    assert(b:write("b", "b")); assert(b:commit("b"))
    local ok, err = b:push()
    assert.is_nil(ok)
    assert.equals("rejected", err.code)
    assert.equals(a:head(), trim(gitsrv.git(remote, "rev-parse main")))
    assert(b:fetch()); assert(b:reset_to_remote())
    assert(b:write("b", "b")); assert(b:commit("b again")); assert(b:push())
    assert.equals("2", trim(gitsrv.git(remote, "rev-list --count main ^main~2")))
    assert.equals("", gitsrv.git(remote, "rev-list --merges main"))
  end)

  it("fails clearly on a missing repository and a non-repository directory", function()
    local r, err = git.clone("file://" .. S.repos .. "/nope.git", tmp .. "/n")
    assert.is_nil(r)
    assert.equals("not_found", err.code)
    r, err = git.open(tmp .. "/not-a-clone")
    assert.equals("not_found", err.code)
    h.write(tmp .. "/full/file", "x")
    gitsrv.bare(S, "m", true)
    r, err = git.clone(gitsrv.urls(S, "m").file, tmp .. "/full")
    assert.equals("invalid", err.code)
    assert.equals("x", h.read(tmp .. "/full/file"))
  end)

  it("completes a clone whose init was killed half-way", function()
    gitsrv.bare(S, "m", true)
    local url = gitsrv.urls(S, "m").file
    -- what a kill inside git_repository_init can leave: a .git without HEAD or config
    assert(h.sh("mkdir -p " .. h.q(tmp .. "/k/.git/objects/pack") .. " " .. h.q(tmp .. "/k/.git/refs")) == 0)
    -- and init's symlink probe, killed before it removed it (seen in repo_spec's kills)
    local probe = "/_git2_fa9c61ec428afe9f"
    assert(h.sh("ln -s testing " .. h.q(tmp .. "/k" .. probe)) == 0)
    local r = assert(git.clone(url, tmp .. "/k"))
    assert.equals("seed\n", r:read("README"))
    assert.equals("seed\n", h.read(tmp .. "/k/README"))
    assert.is_false(exists(tmp .. "/k" .. probe), "the probe is not left in the work tree")
    -- a bare one, killed after the probe's file was made (empty) and before it became a link
    assert(h.sh("mkdir -p " .. h.q(tmp .. "/kb/objects") .. " && touch " .. h.q(tmp .. "/kb/config")
      .. " " .. h.q(tmp .. "/kb/_git2_0123456789abcdef")) == 0)
    local b = assert(git.clone(url, tmp .. "/kb", { worktree = false }))
    assert.equals("seed\n", b:read("README"))
    assert.is_false(exists(tmp .. "/kb/_git2_0123456789abcdef"))
    -- what only looks like a probe is somebody's file: refused, and kept
    for name, how in pairs { ["_git2_0123456789abcdee"] = "printf data >",
      ["_git2_0123456789abcded"] = "ln -s elsewhere ", ["_git2_probe"] = "touch " } do
      local d = tmp .. "/kx-" .. name
      assert(h.sh("mkdir -p " .. h.q(d .. "/.git/refs") .. " && " .. how .. h.q(d .. "/" .. name)) == 0)
      local x, err = git.clone(url, d)
      assert.is_nil(x, name)
      assert.equals("invalid", err.code)
      assert.matches("is not a git clone", err.message, 1, true)
      assert.is_true(exists(d .. "/" .. name), name)
    end
  end)

  for _, worktree in ipairs { true, false } do
    it("clears what a killed run left when opened with clear_locks, and only then (worktree="
      .. tostring(worktree) .. ")", function()
      gitsrv.bare(S, "m", true)
      local url = gitsrv.urls(S, "m").file
      local wd = tmp .. "/c"
      assert(git.clone(url, wd, { worktree = worktree })):close()
      local gd = worktree and wd .. "/.git/" or wd .. "/"
      local left = { "index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "refs/heads/main.lock",
        "FETCH_HEAD.lock", "ORIG_HEAD.lock", "refs/remotes/origin/main.lock",
        "objects/pack/pack_git2_27cbcf7da923dc19", "objects/tmp_object_git2_a1b2c3",
        "vmdr-repack/pack_git2_1237615c5d8370ef", "vmdr-repack/pack-0123.idx" }
      local kept = { "objects/pack/my_pack_git2_note", "objects/tmp_object_kept", "vmdr-repackage" }
      local function plant()
        assert(h.sh("mkdir -p " .. h.q(gd .. "vmdr-repack")) == 0)
        for _, f in ipairs(left) do h.write(gd .. f, "x") end
        for _, f in ipairs(kept) do h.write(gd .. f, "keep") end
        -- a link of that name is not libgit2's: it stays, its target untouched
        h.write(tmp .. "/target", "keep")
        assert(h.sh("ln -sfn " .. h.q(tmp .. "/target") .. " " .. h.q(gd .. "objects/pack/pack_git2_link")) == 0)
      end
      plant()
      -- without clear_locks (a reader without the clone's lock) nothing is touched (the
      -- open itself fails on HEAD.lock: another writer could be at work)
      local r, err = git.open(wd)
      assert.is_nil(r); assert.matches("HEAD.lock", err.message, 1, true)
      for _, f in ipairs(left) do assert.is_true(exists(gd .. f), f) end
      r = assert(git.open(wd, { clear_locks = true }))
      r:close()
      for _, f in ipairs(left) do assert.is_false(exists(gd .. f), f) end
      assert.is_false(exists(gd .. "vmdr-repack"))
      for _, f in ipairs(kept) do assert.equals("keep", h.read(gd .. f), f) end
      assert.is_true(exists(gd .. "objects/pack/pack_git2_link"))
      assert.equals("keep", h.read(tmp .. "/target"))
      -- and repo:clear_locks() does the same on an open clone
      r = assert(git.open(wd))
      plant()
      assert.is_true(r:clear_locks())
      r:close()
      for _, f in ipairs(left) do assert.is_false(exists(gd .. f), f) end
      assert.is_false(exists(gd .. "vmdr-repack"))
      -- the clone is whole: git fsck and a read
      assert.equals("", gitsrv.git(wd, "fsck --no-progress --no-dangling"))
    end)
  end

  it("raises on misuse and on a closed handle", function()
    gitsrv.bare(S, "m", true)
    local r = assert(git.clone(gitsrv.urls(S, "m").file, tmp .. "/m"))
    assert.has_error(function() r:write("a") end)
    assert.has_error(function() r:commit("m", { author = 5 }) end)
    assert.has_error(function() git.open(tmp, { branch = 5 }) end)
    assert.has_error(function() git.open({}) end)
    assert.matches("vmdr.git.Repo %(", tostring(r))
    assert.is_true(r:close())
    assert.is_true(r:close())
    assert.matches("closed", tostring(r))
    assert.has_error(function() r:read("README") end, nil)
    local ok, e = pcall(r.head, r)
    assert.is_false(ok)
    assert.matches("attempt to use a closed vmdr.git.Repo", e)
  end)

  it("locks: a second holder waits and times out, close releases", function()
    local p = tmp .. "/locks/clone.lock"
    local l1 = assert(git.lock(p, 1))
    local l2, err = git.lock(p, 0.2)
    assert.is_nil(l2)
    assert.equals("timeout", err.code)
    assert.is_true(l1:close())
    assert.is_true(l1:close())
    local l3 = assert(git.lock(p, 0.2))
    l3:close()
  end)

  it("writes a 600-file tree in one pack and changes 3 files incrementally", function()
    local remote = gitsrv.bare(S, "big", false)
    local r = assert(git.clone(gitsrv.urls(S, "big").file, tmp .. "/big"))
    for d = 1, 30 do
      for f = 1, 20 do
        assert(r:write(string.format("vms/base/ns%02d/vm-%02d.yaml", d, f),
          string.format("name: vm-%02d\nnamespace: ns%02d\n", f, d)))
      end
    end
    assert(r:commit("big"))
    assert(r:push())
    assert.equals("600", trim(gitsrv.git(remote, "ls-tree -r main | wc -l")))
    -- one pack, no loose objects
    assert.equals("0", trim(h.capture("find " .. h.q(tmp .. "/big/.git/objects") ..
      " -path '*/pack/*' -prune -o -type f -print | wc -l")))
    assert(r:write("vms/base/ns01/vm-01.yaml", "changed\n"))
    assert(r:write("vms/base/ns30/vm-20.yaml", "changed\n"))
    assert(r:remove("vms/base/ns15/vm-10.yaml"))
    assert(r:commit("small"))
    assert(r:push())
    assert.equals("M\tvms/base/ns01/vm-01.yaml\nD\tvms/base/ns15/vm-10.yaml\nM\tvms/base/ns30/vm-20.yaml",
      trim(gitsrv.git(remote, "diff --name-status main~1 main")))
    assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
    assert.equals("", gitsrv.git(tmp .. "/big", "status --porcelain"))
  end)

  --- The inode of each pack file under dir/objects/pack, by file name.
  local function pack_inodes(dir)
    local out = {}
    for line in h.capture("cd " .. h.q(dir .. "/objects/pack") ..
        " && stat -c '%i %n' pack-*.pack pack-*.idx"):gmatch("[^\n]+") do
      local ino, name = line:match("^(%d+) (.+)$")
      out[name] = ino
    end
    return out
  end

  it("links its commit's pack into a local remote instead of indexing it again", function()
    local remote = gitsrv.bare(S, "lnk", false)
    local r = assert(git.clone(gitsrv.urls(S, "lnk").file, tmp .. "/lnk"))
    assert(r:write("a.yaml", "a: 1\n")); assert(r:commit("a")); assert(r:push())
    local mine, theirs = pack_inodes(tmp .. "/lnk/.git"), pack_inodes(remote)
    local shared = 0
    for name, ino in pairs(mine) do
      if theirs[name] then assert.equals(ino, theirs[name], name); shared = shared + 1 end
    end
    assert.equals(2, shared) -- the commit's .pack and .idx
    assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
    assert.equals("a: 1", trim(gitsrv.git(remote, "show main:a.yaml")))
  end)

  it("indexes the pack in a group-shared local remote (its files keep their own modes)", function()
    local remote = gitsrv.bare(S, "grp", false)
    gitsrv.git(remote, "config core.sharedRepository group")
    local r = assert(git.clone(gitsrv.urls(S, "grp").file, tmp .. "/grp"))
    assert(r:write("a.yaml", "a: 1\n")); assert(r:commit("a")); assert(r:push())
    local mine, theirs = pack_inodes(tmp .. "/grp/.git"), pack_inodes(remote)
    local same = 0
    for name, ino in pairs(mine) do
      if theirs[name] then
        assert.are_not.equals(ino, theirs[name], name)
        same = same + 1
      end
    end
    assert.equals(2, same) -- the same pack, written there by the indexer
    assert.equals("", gitsrv.git(remote, "fsck --no-progress --no-dangling"))
    assert.equals("a: 1", trim(gitsrv.git(remote, "show main:a.yaml")))
  end)
end)

-- Trees git itself would refuse to create, made with `hash-object --literally` and
-- served by a bare repository: the clone must refuse them and write nothing outside.
describe("vmdr.git and a hostile tree from the remote", function()
  local S, tmp, remote

  local function hex2bin(hex)
    return (hex:gsub("..", function(c) return string.char(tonumber(c, 16)) end))
  end
  local function object(kind, data)
    local f = h.write(h.tmpdir("obj") .. "/o", data)
    return trim(h.capture("git -C " .. h.q(remote) .. " hash-object --literally -w -t " .. kind ..
      " " .. h.q(f)))
  end
  local function tree(entries)
    local parts = {}
    for _, e in ipairs(entries) do parts[#parts + 1] = e[1] .. " " .. e[2] .. "\0" .. hex2bin(e[3]) end
    return object("tree", table.concat(parts))
  end
  -- Puts a commit with README plus `extra` entries on main.
  local function publish(extra)
    local readme = object("blob", "seed\n")
    local entries = { { "100644", "README", readme } }
    for _, e in ipairs(extra) do entries[#entries + 1] = e end
    local t = tree(entries)
    local c = trim(gitsrv.git(remote, "commit-tree " .. t .. " -p main -m hostile"))
    gitsrv.git(remote, "update-ref refs/heads/main " .. c)
  end

  before_each(function()
    S = repos_dir()
    tmp = h.tmpdir("hostile")
    remote = gitsrv.bare(S, "h", true)
  end)

  local outside_name = "vmdr-escaped-" .. h.pid()
  local cases = {
    { "a '..' directory", function()
      return { { "40000", "..", tree { { "100644", outside_name, object("blob", "pwned") } } } }
    end },
    { "a '.git/hooks/x' file", function()
      local hooks = tree { { "100755", "post-checkout", object("blob", "#!/bin/sh\ntouch /tmp/" .. outside_name) } }
      return { { "40000", ".git", tree { { "40000", "hooks", hooks } } } }
    end },
    { "a '.GIT' directory", function()
      return { { "40000", ".GIT", tree { { "100644", "config", object("blob", "[core]\n") } } } }
    end },
    { "a name with a slash", function()
      return { { "100644", "a/../../" .. outside_name, object("blob", "pwned") } }
    end },
    { "an absolute symlink", function()
      return { { "120000", "link", object("blob", "/tmp") } }
    end },
    { "a symlink climbing out", function()
      return { { "40000", "sub", tree { { "120000", "up", object("blob", "../../..") } } } }
    end },
  }

  for _, case in ipairs(cases) do
    it("refuses " .. case[1] .. " on clone and on reset, writing nothing", function()
      local url = gitsrv.urls(S, "h").file
      local good = assert(git.clone(url, tmp .. "/good"))
      local good_head = good:head()
      publish(case[2]())
      -- a fresh clone
      local r, err = git.clone(url, tmp .. "/fresh")
      assert.is_nil(r)
      assert.equals("invalid", err.code)
      assert.matches("hostile tree", err.message)
      -- an existing clone: fetch works, reset refuses and leaves everything as it was
      assert.is_true(good:fetch())
      local ok, rerr = good:reset_to_remote()
      assert.is_nil(ok)
      assert.equals("invalid", rerr.code)
      assert.equals(good_head, good:head())
      assert.equals("seed\n", h.read(tmp .. "/good/README"))
      assert.equals("README", trim(h.capture("ls -A " .. h.q(tmp .. "/good") .. " | grep -v '^.git$'")))
      assert.is_false(exists(tmp .. "/" .. outside_name))
      assert.is_false(exists(tmp .. "/good/.git/hooks/post-checkout"))
      assert.is_false(exists("/tmp/" .. outside_name))
      assert.is_false(exists(tmp .. "/fresh/link"))
    end)
  end

  it("accepts a symlink that stays inside the repository", function()
    publish { { "120000", "alias", object("blob", "README") },
      { "40000", "d", tree { { "120000", "up", object("blob", "../README") } } } }
    local r = assert(git.clone(gitsrv.urls(S, "h").file, tmp .. "/ok"))
    assert.equals("seed\n", h.read(tmp .. "/ok/alias"))
    r:close()
  end)
end)
