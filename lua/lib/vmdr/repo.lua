--- vmdr.repo: the manifests repository as a write transaction.
---
--- repo.transaction(ctx, fn) takes the clone's lock (flock: writers on one host
--- serialise), fetches and hard-resets the machine-owned clone to the remote branch,
--- runs fn(tx) to write and remove files, commits, and pushes. When the push is
--- rejected (another writer got there first) it fetches, resets and runs fn again, so
--- fn recomputes its writes from the new remote state, up to `git.max_attempts` times
--- with exponential backoff and jitter. Nothing half-written is ever pushed: a push
--- sends one commit whose tree is complete, or nothing.
---
--- Dry run (ctx.dry_run): the same up to the commit; the diff is printed and
--- returned, nothing is committed or pushed, and the clone is reset.
local vconfig = require "vmdr.config"
local git = require "vmdr.git"
local mem = require "vmdr.mem"
local time = require "vmdr.time"

local M = {}

local err_mt = {
  __tostring = function(e) return tostring(e.code) .. ": " .. tostring(e.message) end,
}

local function mkerr(code, fmt, ...)
  return setmetatable({ code = code, message = string.format(fmt, ...), status = 0 }, err_mt)
end

local function secret_from(g, env_key, file_key, what)
  if g[env_key] then
    local v = os.getenv(g[env_key])
    if v == nil or v == "" then
      return nil, mkerr("config", "%s: environment variable %s (git.%s) is not set", what,
        g[env_key], env_key)
    end
    return v
  end
  if g[file_key] then
    local v, err = vconfig.read_secret_file(g[file_key], "git." .. file_key)
    if not v then return nil, err end
    if v == "" then return nil, mkerr("config", "git.%s: %s is empty", file_key, g[file_key]) end
    return v
  end
  return nil
end

-- Files the git settings name that must be readable before anything is done: a key or
-- CA file that cannot be read would otherwise surface late, as an "auth" failure.
local GIT_FILES = { "ssh_key", "ssh_pubkey", "known_hosts", "ca_file" }

local function readable(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local ok, rerr = f:read(0)
  f:close()
  if ok == nil and rerr then return nil, path .. ": " .. tostring(rerr) end
  return true
end

--- The vmdr.git options for ctx.config.git: URL, branch, and the credentials read from
--- the environment variable or file the configuration names (never from the file itself).
---@param config table the whole configuration (uses config.git)
---@return table|nil opts, table|nil err
function M.git_options(config)
  local g = (config or {}).git
  if type(g) ~= "table" then return nil, mkerr("config", "no git section in the configuration") end
  if type(g.url) ~= "string" or g.url == "" then
    return nil, mkerr("config", "git.url is not set")
  end
  if type(g.workdir) ~= "string" or g.workdir == "" then
    return nil, mkerr("config", "git.workdir is not set")
  end
  local token, terr = secret_from(g, "token_env", "token_file", "git token")
  if terr then return nil, terr end
  local pass, perr = secret_from(g, "ssh_passphrase_env", "ssh_passphrase_file", "ssh passphrase")
  if perr then return nil, perr end
  for _, k in ipairs(GIT_FILES) do
    local path = g[k]
    if type(path) == "string" and path ~= "" then
      local ok, rerr = readable(path)
      if not ok then return nil, mkerr("config", "git.%s: cannot read %s", k, tostring(rerr)) end
    end
  end
  local accept = g.accept_unknown_host_key
  if type(accept) == "string" then accept = accept == "true" end
  local worktree = g.worktree
  if type(worktree) == "string" then worktree = worktree ~= "false" end
  return {
    url = g.url,
    branch = g.branch or "main",
    user = g.user,
    token = token,
    ssh_key = g.ssh_key,
    ssh_pubkey = g.ssh_pubkey,
    ssh_passphrase = pass,
    known_hosts = g.known_hosts,
    accept_unknown_host_key = accept == true,
    ca_file = g.ca_file,
    -- false: the clone keeps objects and refs only (no files checked out; faster)
    worktree = worktree ~= false,
  }
end

local function open_clone(ctx, locked)
  local opts, err = M.git_options(ctx.config)
  if not opts then return nil, err end
  local workdir = ctx.config.git.workdir
  -- Only with the clone's lock held: git lock files in it are then from a killed run.
  opts.clear_locks = locked
  local r, oerr = git.open(workdir, opts)
  if r then return r end
  if oerr.code ~= "not_found" then return nil, oerr end
  return git.clone(opts.url, workdir, opts)
end

--- Opens the working clone named by git.workdir, cloning it first when missing
--- (for reading; writers use transaction, which also takes the clone's lock).
---@param ctx table {config=}
---@return userdata|nil repo, table|nil err
function M.open(ctx)
  return open_clone(ctx, false)
end

local function lock_path(ctx)
  local g = ctx.config.git
  return g.lock_file or (g.workdir:gsub("/+$", "") .. ".lock")
end

local function number(v, default)
  return tonumber(v) or default
end

--- The object fn receives: reads see the remote state plus fn's own writes.
--- A write or remove that fails (disk full, an invalid path) is kept in tx.failed even
--- when fn goes on: the transaction then commits nothing, since the tree would lack a
--- file fn meant to change (a VM file without its kustomization entry, or the reverse).
local function new_tx(r)
  local tx = { message = nil, writes = 0, removes = 0, failed = nil }
  ---@param path string
  ---@return string|nil bytes, table|nil err
  function tx:read(path, opts) return r:read(path, opts) end
  --- The blob id of the regular file at path (what write compares with), or false.
  ---@param path string
  ---@return string|false|nil id, table|nil err
  function tx:blob_id(path) return r:blob_id(path) end
  ---@param dir string|nil
  ---@return table|nil names, table|nil err
  function tx:list(dir) return r:list(dir) end
  ---@param path string
  ---@param bytes string
  --- true, created (the file is new) | false (it already holds these bytes) | nil, err
  ---@return boolean|nil changed, boolean|table|nil created_or_err
  function tx:write(path, bytes)
    local changed, second = r:write(path, bytes)
    if changed then self.writes = self.writes + 1 end
    if changed == nil then self.failed = self.failed or second end
    return changed, second
  end
  ---@param path string
  ---@return boolean|nil removed, table|nil err
  function tx:remove(path)
    local removed, err = r:remove(path)
    if removed then self.removes = self.removes + 1 end
    if removed == nil then self.failed = self.failed or err end
    return removed, err
  end
  --- Sets the commit message.
  function tx:set_message(msg) self.message = msg end
  return tx
end

local function log(ctx, level, msg, fields)
  local l = ctx.log
  if l and l[level] then l[level](msg, fields) end
end

--- Every commit writes one pack into the clone; over git.max_packs (10) the small ones
--- are merged (vmdr.git repo:maintain), so a monitor committing every few seconds keeps a
--- bounded number of packs for libgit2 to map and search. Runs after a successful push
--- and never fails it: what was pushed stays pushed.
local function maintain(ctx, r, g)
  local max = math.max(1, math.floor(number(g.max_packs, 10)))
  local n = r:pack_count()
  if not n or n <= max then return end
  local st, err = r:maintain({ max_packs = max })
  if not st then
    log(ctx, "warn", "could not merge the clone's packs (the push is done)",
      { packs = n, reason = tostring(err) })
    return
  end
  -- the heap a merge used goes back now, not at the next full resync's trim
  mem.trim()
  log(ctx, "debug", "merged the clone's packs", { packs_before = st.packs_before,
    packs_after = st.packs_after, packs_merged = st.packs_merged,
    objects = st.objects_merged, seconds = string.format("%.3f", st.seconds) })
end

--- A read-only view of the remote branch, for workflows that read Git and never
--- write it (failover, status). It holds the clone's lock until :close(). When the
--- remote cannot be reached (the Git server may have gone down with the source
--- site) the clone's last fetched state is used, with a warning: failing over from
--- a slightly old copy beats not failing over.
--- Returns { read = fn(self, path), list = fn(self, dir), head = id, stale = bool,
---   close = fn(self) } or nil, err.
---@param ctx table {config=, log=}
---@param opts table|nil { lock_timeout= }
---@return table|nil snapshot, table|nil err
function M.snapshot(ctx, opts)
  opts = opts or {}
  local g = ctx.config.git or {}
  local gopts, cerr = M.git_options(ctx.config)
  if not gopts then return nil, cerr end
  local lock, lerr = git.lock(lock_path(ctx), number(opts.lock_timeout or g.lock_timeout, 300))
  if not lock then return nil, lerr end
  local r, oerr = M.open(ctx)
  if not r then lock:close(); return nil, oerr end
  r:clear_locks()
  local stale = false
  local ok, ferr = r:fetch()
  if not ok then
    if ferr.code ~= "unreachable" and ferr.code ~= "timeout" then
      r:close(); lock:close()
      return nil, ferr
    end
    stale = true
    log(ctx, "warn", "the Git remote cannot be reached: using the clone's last fetched state",
      { reason = tostring(ferr) })
  end
  ok, ferr = r:reset_to_remote()
  if not ok then r:close(); lock:close(); return nil, ferr end
  local snap = { stale = stale, head = r:head() }
  function snap:read(path) return r:read(path) end
  function snap:list(dir) return r:list(dir) end
  function snap:close()
    r:close()
    lock:close()
    return true
  end
  return setmetatable(snap, { __close = function(s) s:close() end, __gc = function(s) s:close() end })
end

--- Runs one write transaction on the manifests repository.
--- fn(tx) writes and removes files through tx (tx:read, tx:list, tx:write, tx:remove,
--- tx:set_message); it may run more than once (after a rejected push) and must
--- recompute its writes from what tx:read shows each time. It may return nil, err to
--- abort: nothing is committed and the error is returned.
--- Result: { commit = id | false (nothing changed), attempts = n, diff = text (dry run),
---   dry_run = bool, value = fn's first result } or nil, err.
---@param ctx table {config=, log=, dry_run=}
---@param fn fun(tx: table): any
---@param opts table|nil { message=, max_attempts=, backoff=, lock_timeout= }
---@return table|nil result, table|nil err
function M.transaction(ctx, fn, opts)
  assert(type(ctx) == "table" and type(ctx.config) == "table",
    "repo.transaction: ctx.config required")
  assert(type(fn) == "function", "repo.transaction: fn must be a function")
  opts = opts or {}
  local g = ctx.config.git or {}
  local gopts, cerr = M.git_options(ctx.config)
  if not gopts then return nil, cerr end
  local max_attempts = math.max(1, math.floor(number(opts.max_attempts or g.max_attempts, 8)))
  local backoff = number(opts.backoff or g.backoff, 0.1)
  local author = g.author or {}
  author = { name = author.name or "vmdr", email = author.email or "vmdr@localhost" }

  local lock_timeout = number(opts.lock_timeout or g.lock_timeout, 300)
  local lock <close>, lerr = git.lock(lock_path(ctx), lock_timeout)
  if not lock then return nil, lerr end
  local r <close>, oerr = open_clone(ctx, true)
  if not r then return nil, oerr end

  local last
  for attempt = 1, max_attempts do
    local ok, err = r:fetch()
    if not ok then return nil, err end
    ok, err = r:reset_to_remote()
    if not ok then return nil, err end

    local tx = new_tx(r)
    local pok, value, ferr = pcall(fn, tx)
    if not pok then
      r:reset_to_remote()
      error(value, 0)
    end
    if value == nil and ferr ~= nil then
      r:reset_to_remote()
      return nil, ferr
    end
    if tx.failed then
      -- fn went on after a failed write: committing would push a tree missing it
      r:reset_to_remote()
      local e = tx.failed
      return nil, setmetatable({ code = e.code or "io", status = e.status or 0,
        message = "a write failed, nothing committed: " .. tostring(e.message or e) }, err_mt)
    end
    local msg = tx.message or opts.message or "vmdr: update manifests"
    -- a site's hooks.lua may format every commit message (ticket numbers, sign-offs)
    local hook = ctx.hooks and ctx.hooks.commit_message
    if type(hook) == "function" then
      local hok, m = pcall(hook, msg, ctx)
      if not hok or type(m) ~= "string" or m == "" then
        r:reset_to_remote()
        return nil, mkerr("hook", "the site's commit_message hook failed: %s",
          hok and ("it returned " .. type(m)) or tostring(m))
      end
      msg = m
    end

    if ctx.dry_run then
      local diff, derr = r:diff()
      r:reset_to_remote()
      if not diff then return nil, derr end
      if diff ~= "" then io.stdout:write(diff) end
      log(ctx, "info", "dry run: nothing committed or pushed",
        { writes = tx.writes, removes = tx.removes, changed = diff ~= "" })
      return { commit = false, dry_run = true, diff = diff, attempts = attempt, value = value }
    end

    local id, cerr2 = r:commit(msg, { author = author })
    if id == nil then return nil, cerr2 end
    if id == false then
      log(ctx, "debug", "nothing changed: no commit")
      return { commit = false, attempts = attempt, value = value }
    end
    local pushed, perr = r:push()
    if pushed then
      log(ctx, "info", "pushed", { commit = id, attempts = attempt })
      maintain(ctx, r, g)
      return { commit = id, attempts = attempt, value = value }
    end
    if perr.code ~= "rejected" then return nil, perr end
    last = perr
    if attempt < max_attempts then
      local delay = backoff * 2 ^ (attempt - 1) * (0.5 + math.random())
      log(ctx, "warn", "push rejected, retrying on the new remote state",
        { attempt = attempt, delay = string.format("%.2f", delay), reason = perr.message })
      local slept, serr = time.sleep(math.min(delay, 10))
      if not slept then return nil, serr end
    end
  end
  return nil, mkerr("rejected", "push still rejected after %d attempts: %s", max_attempts,
    last and last.message or "?")
end

return M
