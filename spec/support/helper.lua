-- Test support shared by the specs: temp dirs, files, and running vmdr-run and
-- other programs as real processes. Test code only; the product never shells out.
local M = {}

M.build_dir = assert(os.getenv("VMDR_BUILD_DIR"), "VMDR_BUILD_DIR is not set: run specs through ctest")
M.source_dir = assert(os.getenv("VMDR_SOURCE_DIR"), "VMDR_SOURCE_DIR is not set")
M.tmp_root = os.getenv("VMDR_TEST_TMP") or (M.build_dir .. "/spec-tmp")
M.vmdr_run = M.build_dir .. "/bin/vmdr-run"
M.vmdr_sim = M.build_dir .. "/bin/vmdr-sim"
M.fixtures = M.source_dir .. "/../shared/fixtures"
M.in_ci = os.getenv("CI") == "true"

--- Quotes one word for /bin/sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.sh(cmd)
  local ok, how, code = os.execute(cmd)
  if how == "exit" then return code end
  return 128 + (code or 0)
end

--- Runs a shell command, returns stdout (and raises if it fails).
function M.capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  if not ok then error(string.format("command failed (%s): %s\n%s", tostring(code), cmd, out), 2) end
  return out
end

local counter = 0
--- A fresh, empty directory under the build tree's spec-tmp.
function M.tmpdir(name)
  counter = counter + 1
  local d = string.format("%s/%s-%d-%d", M.tmp_root, name, M.pid(), counter)
  assert(M.sh("rm -rf " .. M.q(d) .. " && mkdir -p " .. M.q(d)) == 0)
  return d
end

local mypid
function M.pid()
  if not mypid then
    local f = io.open("/proc/self/stat", "r")
    mypid = f and tonumber(f:read("l"):match("^(%d+)")) or math.random(1e6)
    if f then f:close() end
  end
  return mypid
end

function M.write(path, text)
  local dir = path:match("^(.*)/[^/]+$")
  if dir then assert(M.sh("mkdir -p " .. M.q(dir)) == 0) end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function env_prefix(env)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. M.q(v) end
  table.sort(parts)
  return #parts > 0 and ("env " .. table.concat(parts, " ") .. " ") or ""
end

local function argv_string(argv)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = M.q(a) end
  return table.concat(parts, " ")
end

--- Runs a program with argv (a list) and env additions; returns {code, stdout, stderr}.
function M.exec(argv, env, stdin)
  local d = M.tmpdir("exec")
  local cmd = env_prefix(env) .. argv_string(argv) .. " >" .. M.q(d .. "/out") .. " 2>" .. M.q(d .. "/err")
  if stdin then
    M.write(d .. "/in", stdin)
    cmd = cmd .. " <" .. M.q(d .. "/in")
  else
    cmd = cmd .. " </dev/null"
  end
  local code = M.sh(cmd)
  local r = { code = code, stdout = M.read(d .. "/out") or "", stderr = M.read(d .. "/err") or "" }
  M.sh("rm -rf " .. M.q(d))
  return r
end

--- Runs vmdr-run with argv.
function M.run(argv, env, stdin)
  local full = { M.vmdr_run }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return M.exec(full, env, stdin)
end

--- Starts vmdr-run, waits until stdout shows `ready`, sends signal `sig`, waits for exit.
--- again: seconds after which the same signal is sent a second time (optional).
function M.run_signalled(argv, sig, ready, env, again)
  local d = M.tmpdir("sig")
  local full = { M.vmdr_run }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  local inner = env_prefix(env) .. argv_string(full) .. " >" .. M.q(d .. "/out") .. " 2>" .. M.q(d .. "/err")
    .. " </dev/null & echo $! >" .. M.q(d .. "/pid") .. "; wait $!; echo $? >" .. M.q(d .. "/rc")
  assert(M.sh("sh -c " .. M.q(inner) .. " >/dev/null 2>&1 &") == 0)
  local t = require "vmdr.time"
  local deadline = t.monotonic() + 30
  -- the shell writes the pid after forking: the process may be ready before it
  while not ((M.read(d .. "/out") or ""):find(ready, 1, true) and (M.read(d .. "/pid") or ""):match("%d")) do
    if t.monotonic() > deadline then error("process never became ready: " .. (M.read(d .. "/err") or "")) end
    t.sleep(0.02)
  end
  local pid = M.read(d .. "/pid"):match("%d+")
  M.sh("kill -" .. sig .. " " .. pid)
  if again then
    t.sleep(again)
    M.sh("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
  end
  while not M.read(d .. "/rc") or not M.read(d .. "/rc"):match("%d") do
    if t.monotonic() > deadline then
      M.sh("kill -9 " .. pid)
      error("process did not exit after SIG" .. sig)
    end
    t.sleep(0.02)
  end
  return { code = tonumber(M.read(d .. "/rc"):match("%d+")), stdout = M.read(d .. "/out"),
    stderr = M.read(d .. "/err") }
end

--- Fails (never skips) when a tool the suite needs is missing.
function M.need(tool)
  if M.sh("command -v " .. M.q(tool) .. " >/dev/null 2>&1") ~= 0 then
    error(tool .. " is not installed: run scripts/deps", 2)
  end
end

return M
