-- Starts the real Git servers of spec/support/git-servers for one spec file and
-- gives their addresses, credentials and helpers to make bare repositories.
local h = require "support.helper"

local M = {}

--- Starts the servers in a fresh directory; returns the servers.lua table plus token.
function M.up()
  for _, t in ipairs { "lighttpd", "git", "openssl", "ssh-keygen", "unshare", "python3" } do h.need(t) end
  local dir = h.tmpdir("gitsrv")
  local script = h.source_dir .. "/spec/support/git-servers"
  local r = h.exec { script, "up", dir }
  if r.code ~= 0 then
    h.exec { script, "down", dir }
    error("git servers did not start: " .. r.stderr .. r.stdout)
  end
  local s = dofile(dir .. "/servers.lua")
  s.token = h.read(s.token_file)
  s.script = script
  return s
end

function M.down(s)
  if s then h.exec { s.script, "down", s.dir } end
end

--- Creates an empty bare repository NAME.git on the servers (refusing non-fast-forward
--- pushes, as a hosted repository does) and returns its path.
function M.bare(s, name, initial)
  local path = s.repos .. "/" .. name .. ".git"
  h.capture("git init -q --bare -b main " .. h.q(path))
  h.capture("git -C " .. h.q(path) .. " config receive.denyNonFastForwards true")
  h.capture("git -C " .. h.q(path) .. " config http.receivepack true")
  if initial then
    -- one commit holding README, made with the git CLI as an independent client
    local w = h.tmpdir("seed")
    h.capture("git -C " .. h.q(w) .. " init -q -b main && cd " .. h.q(w) ..
      " && echo seed > README && git add README && git -c user.name=t -c user.email=t@t" ..
      " commit -qm seed && git push -q " .. h.q(path) .. " main 2>&1")
  end
  return path
end

--- URLs of repository NAME over each transport.
function M.urls(s, name)
  local function under(base) return base and (base .. "/" .. name .. ".git") end
  return {
    file = "file://" .. s.repos .. "/" .. name .. ".git",
    path = s.repos .. "/" .. name .. ".git",
    http = under(s.http_base),
    https = under(s.https_base),
    ssh = under(s.ssh_base),
  }
end

--- vmdr.git options for a transport.
function M.opts(s, transport)
  if transport == "http" then return { token = s.token } end
  if transport == "https" then return { token = s.token, ca_file = s.ca_file } end
  if transport == "ssh" then return { ssh_key = s.ssh_key, known_hosts = s.known_hosts } end
  return {}
end

--- Runs git (the CLI, an independent client) in a repository; returns stdout.
function M.git(path, args)
  return h.capture("git -C " .. h.q(path) .. " " .. args .. " 2>&1")
end

return M
