-- The shared Ceph pair for specs that say `-- needs: ceph` (spec/support/ceph-fixture).
-- Reads the fixture's env file; fails (never skips) when the pair is not there.
local h = require "support.helper"
local objects = require "support.objects"
local rbd = require "vmdr.rbd"
local time = require "vmdr.time"

local M = {}

M.dir = h.build_dir .. "/fixtures/ceph"

-- an env file's text (CEPH_A_CONF=... lines) as a table
local function parse_env(text)
  local env = {}
  for k, v in text:gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
  return env
end

-- site "a" or "b" of a parsed env file: { conf=, keyring=, user= }
local function site_of(env, s)
  local S = s:upper()
  return { conf = env["CEPH_" .. S .. "_CONF"], keyring = env["CEPH_" .. S .. "_KEYRING"],
    user = env["CEPH_" .. S .. "_USER"] }
end

local function connect(site, timeout)
  site.timeout = timeout or 20
  return assert(rbd.connect(site))
end

--- The fixture's env file as a table (CEPH_A_CONF = ..., ...).
function M.env()
  local text = h.read(M.dir .. "/env")
  if not text then
    error("the Ceph pair is not up (no " .. M.dir .. "/env): run the spec through ctest, "
      .. "which starts spec/support/ceph-fixture first", 2)
  end
  return parse_env(text)
end

--- Site settings as the storage config takes them: { conf=, keyring=, user= }.
function M.site(s)
  return site_of(M.env(), s)
end

--- A connected cluster handle for site "a" or "b".
function M.connect(s, timeout)
  return connect(M.site(s), timeout)
end

local seq = 0
--- A name no other spec (or earlier run) uses.
function M.name(prefix)
  seq = seq + 1
  return string.format("%s-%d-%d-%d", prefix, h.pid(), os.time() % 100000, seq)
end

--- Polls f() every 50 ms until it returns a truthy value or `timeout` s pass; returns
--- its values, or raises with `what`.
function M.eventually(what, timeout, f)
  local deadline = time.monotonic() + timeout
  local last
  while true do
    local r = table.pack(f())
    if r[1] then return table.unpack(r, 1, r.n) end
    last = r[2]
    if time.monotonic() > deadline then
      error(string.format("%s: not after %g s (last: %s)", what, timeout, tostring(last)), 2)
    end
    time.sleep(0.05)
  end
end

--- Opens pool/name on cluster c once it exists (rbd-mirror creates the peer's copy).
function M.image_when_there(c, pool, name, opts, timeout)
  return M.eventually("image " .. pool .. "/" .. name .. " appears", timeout or 30, function()
    return c:image(pool, name, opts)
  end)
end

--- Teardown: leaves none of `images` on the clusters given after it (nil ones are skipped).
--- Each image is a name in pool rbd or { pool, name, namespace }. Mirroring is disabled with
--- force first, since a copy may be primary on both sites, then the image is removed
--- (retried while it is busy, up to 10 s: it fails the spec when an image stays behind,
--- as when the spec still holds it open).
function M.drop(images, ...)
  local clusters = table.pack(...)
  for k = 1, clusters.n do
    local c = clusters[k]
    for _, im in pairs(c and images or {}) do
      local pool, name, ns = "rbd", im, nil
      if type(im) == "table" then pool, name, ns = im[1], im[2], im[3] end
      local opts = ns and { namespace = ns } or nil
      local img = c:image(pool, name, opts)
      if img then
        local mi = img:mirror_info()
        if mi and mi.state ~= "disabled" then img:mirror_disable(true) end
        img:close()
        M.eventually("remove " .. pool .. "/" .. name, 10, function()
          local ok, err = c:remove_image(pool, name, opts)
          if ok or (err and err.code == "not_found") then return true end
          if err and err.code ~= "busy" then error("remove " .. name .. ": " .. tostring(err)) end
          return nil, err
        end)
      end
    end
  end
end

--- For each claim in claims: an 8 MiB image (layering, exclusive-lock) named
--- M.name(prefix .. claim) in pool rbd of cluster c, and the claim's bound PVC and its PV in
--- fx/<claim>.yaml (namespace ns). Records claim -> image name in `images`.
function M.disks(c, fx, ns, prefix, claims, images)
  for _, claim in ipairs(claims) do
    local img = M.name(prefix .. claim)
    images[claim] = img
    assert(c:create_image("rbd", img, 8 * 1024 * 1024, { features = "layering,exclusive-lock" }))
    h.write(fx .. "/" .. claim .. ".yaml", objects.pvc_pv_yaml(ns, claim, "pv-" .. img, img))
  end
end

--- Takes a mirror snapshot of rbd/img on cluster a and waits (timeout s for each step) until
--- the copy on cluster b exists and holds it completely.
function M.synced(a, b, img, timeout)
  local ia = assert(a:image("rbd", img))
  local sid = assert(ia:mirror_snapshot())
  ia:close()
  local ib = M.image_when_there(b, "rbd", img, nil, timeout)
  assert(ib:wait_synced(sid, timeout))
  ib:close()
end

--- A config's storage section for the pair: sa the source site, sb the DR site (tables as
--- M.site returns them); `more` lists further lines of storage.ceph ("timeout: 20").
function M.storage_yaml(sa, sb, more)
  local lines = {
    "storage:",
    "  driver: ceph",
    "  ceph:",
    string.format("    source: { conf: %s, keyring: %s, user: %s }", sa.conf, sa.keyring, sa.user),
    string.format("    dr: { conf: %s, keyring: %s, user: %s }", sb.conf, sb.keyring, sb.user),
  }
  for _, l in ipairs(more or {}) do lines[#lines + 1] = "    " .. l end
  return table.concat(lines, "\n") .. "\n"
end

--- A workflow spec's repository and config against sim s and the pair's sites sa, sb: a bare
--- tmp/manifests.git over file://, tmp/vmdr.yaml (cluster dr-east, commits by vmdr-<o.author>,
--- ArgoCD destination dr-east). o.top: top-level lines before storage ("relocate: {...}");
--- o.ceph: further lines of storage.ceph. Returns w: w.bare, w.cfg, w.run(wf, ...) (vmdr-run
--- wf -c cfg ...; the result's `seconds` is its wall time), w.head() (main's commit).
function M.workspace(tmp, s, sa, sb, o)
  local w = { bare = tmp .. "/manifests.git" }
  h.capture("git init -q --bare -b main " .. h.q(w.bare))
  local top = ""
  for _, l in ipairs(o.top or {}) do top = top .. l .. "\n" end
  w.cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
git:
  url: file://%s
  workdir: %s/clone
  author: { name: vmdr-%s, email: %s@localhost }
argocd: { destination: dr-east }
%s]], s.kubeconfig, w.bare, tmp, o.author, o.author, top) .. M.storage_yaml(sa, sb, o.ceph))
  function w.run(wf, ...)
    local argv = { wf, "-c", w.cfg }
    for _, x in ipairs { ... } do argv[#argv + 1] = x end
    local t0 = time.monotonic()
    local r = h.run(argv)
    r.seconds = time.monotonic() - t0
    return r
  end
  function w.head() return h.capture("git --git-dir " .. h.q(w.bare) .. " rev-parse main") end
  return w
end

--- `rbd` CLI on site s (an independent client); returns stdout, raises on failure.
function M.rbd_cli(s, args)
  local site = M.site(s)
  local cmd = "rbd -c " .. h.q(site.conf) .. " --keyring " .. h.q(site.keyring)
    .. " --id " .. h.q(site.user) .. " --rados-mon-op-timeout 20 --rados-osd-op-timeout 20 "
    .. args .. " 2>&1"
  return h.capture(cmd)
end

--- Runs `rbd` on site s with argv (a list of words), no shell: returns {code, stdout, stderr}.
function M.rbd_exec(s, argv)
  local site = M.site(s)
  local full = { "rbd", "-c", site.conf, "--keyring", site.keyring, "--id", site.user,
    "--rados-mon-op-timeout", "20", "--rados-osd-op-timeout", "20" }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return h.exec(full)
end

--- A Ceph pair of the spec's own, for destructive cases (a monitor stopped, a site frozen)
--- that must not disturb the shared pair other specs use. Started with ceph-fixture up in a
--- fresh directory (15-25 s on the loaded machine); ALWAYS call pair.down() in teardown.
--- Returns { dir=, env=, site(s), connect(s, timeout), pid(s, daemon), freeze(s, daemons),
--- thaw(s, daemons), kill(s, daemon), restart(s, daemon), down() } where s is "a" or "b"
--- and a daemon is "mon.a", "osd.0" or "rbd-mirror".
function M.own_pair(name)
  local fixture = h.source_dir .. "/spec/support/ceph-fixture"
  local dir = h.tmpdir(name or "ownpair")
  local p = { dir = dir }
  local r = h.exec({ fixture, "up", dir })
  if r.code ~= 0 then
    h.exec({ fixture, "down", dir })
    error("ceph-fixture up " .. dir .. " failed:\n" .. r.stdout .. r.stderr, 2)
  end
  p.env = parse_env(assert(h.read(dir .. "/env")))
  function p.site(s) return site_of(p.env, s) end
  function p.connect(s, timeout) return connect(p.site(s), timeout) end
  --- the current PID of a daemon (a restart changes it)
  function p.pid(s, daemon)
    return assert(tostring(h.read(dir .. "/" .. s .. "/pids/" .. daemon)):match("%d+"),
      "no pid file for " .. daemon .. " of site " .. s)
  end
  local function signal(sig, s, daemons)
    if type(daemons) == "string" then daemons = { daemons } end
    for _, d in ipairs(daemons) do
      assert(h.sh("kill -" .. sig .. " " .. p.pid(s, d)) == 0, "kill -" .. sig .. " " .. d)
    end
  end
  --- SIGSTOP: the daemon hangs (a hung host or a partition: nothing refuses, nothing answers)
  function p.freeze(s, daemons) signal("STOP", s, daemons) end
  function p.thaw(s, daemons) signal("CONT", s, daemons) end
  --- SIGKILL: the daemon is gone (connections are refused)
  function p.kill(s, daemon)
    local pid = p.pid(s, daemon)
    signal("KILL", s, daemon)
    M.eventually(daemon .. " of site " .. s .. " exits", 10, function()
      local st = h.read("/proc/" .. pid .. "/stat")
      return st == nil or st:match("^%d+ %b() Z") ~= nil
    end)
  end
  --- started again with its first command (a running one is stopped cleanly first)
  function p.restart(s, daemon)
    local rr = h.exec({ fixture, "restart", dir, s, daemon })
    assert(rr.code == 0, "ceph-fixture restart " .. s .. " " .. daemon .. ": " .. rr.stderr)
  end
  function p.down()
    if p.dir then
      -- a frozen daemon still dies by SIGKILL; nothing of ours is left running
      h.exec({ fixture, "down", p.dir })
      p.dir = nil
    end
  end
  return p
end

return M
