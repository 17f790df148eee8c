--- vmdr.boot: what vmdr-run does between parsing argv (C) and running a workflow.
--- Builds ctx (config file + -e variables, logger, dry-run flag), finds the script
--- (a path, else site workflows/, else installed workflows/), runs it, maps the
--- result to an exit code. Errors raised as {code="usage"|"config"} exit 2.
local log = require "vmdr.log"
local config = require "vmdr.config"
local fs = require "vmdr.fs"

local M = {}

local function usage_error(fmt, ...)
  error(setmetatable({ code = "usage", message = string.format(fmt, ...) },
    { __tostring = function(e) return e.message end }), 0)
end

local config_error = config.error

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- The real working directory: $PWD can be stale (a parent that chdir'ed without
-- updating it), so ask the kernel.
local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = fs.realpath(".") or os.getenv("PWD") or "."
  return cwd .. "/" .. path
end

local function read_yaml_file(path, what)
  local text, err = fs.read(path)
  if not text then
    config_error("cannot read %s '%s': %s", what, path, (err.message:gsub("^.-': ", "")))
  end
  local ok, yaml = pcall(require, "vmdr.yaml")
  if not ok then config_error("cannot read %s '%s': YAML support is not built in", what, path) end
  if text:match("^%s*$") then return {} end
  local v, derr = yaml.decode(text)
  if v == nil and derr then config_error("%s '%s': %s", what, path, tostring(derr)) end
  if type(v) ~= "table" then config_error("%s '%s' must hold a mapping", what, path) end
  return v
end

--- Sets a dotted key ("git.branch") in t, creating the maps on the way.
local function set_dotted(t, key, value)
  local parts = {}
  for p in key:gmatch("[^.]+") do parts[#parts + 1] = p end
  if #parts == 0 or key:sub(1, 1) == "." or key:sub(-1) == "." or key:find("..", 1, true) then
    usage_error("bad variable name '%s'", key)
  end
  for i = 1, #parts - 1 do
    local p = parts[i]
    if t[p] == nil then t[p] = {} end
    if type(t[p]) ~= "table" then
      usage_error("-e %s: '%s' is not a mapping", key, table.concat(parts, ".", 1, i))
    end
    t = t[p]
  end
  t[parts[#parts]] = value
end
M.set_dotted = set_dotted

--- Parses the -e list into a nested table of variables. Values stay strings, as
--- ansible-playbook keeps them (vmdr.config coerces known keys); `-e @file.yaml`
--- brings typed values. Later items override earlier ones.
---@param list string[] "key=value" or "@file" items, in command-line order
---@return table vars
function M.parse_vars(list)
  local vars = {}
  for _, item in ipairs(list) do
    if item:sub(1, 1) == "@" then
      config.merge(vars, read_yaml_file(item:sub(2), "variables file"))
    else
      local k, v = item:match("^([^=]+)=(.*)$")
      if not k then usage_error("-e '%s': expected KEY=VALUE or @FILE", item) end
      set_dotted(vars, k, v)
    end
  end
  return vars
end

local function list_workflows(dirs)
  local names, seen = {}, {}
  for _, d in ipairs(dirs) do
    for _, e in ipairs(fs.list(d) or {}) do
      local name = type(e) == "table" and e.name or e
      if type(name) == "string" and name:match("%.lua$") then
        name = name:gsub("%.lua$", "")
        if not seen[name] then seen[name] = true; names[#names + 1] = name end
      end
    end
  end
  table.sort(names)
  return names
end

--- Finds the script: an existing path, else <site>/workflows/NAME.lua, else the installed
--- one ("workflows/NAME.lua" and "NAME" both work). Raises a usage error listing the
--- known workflows when there is none.
---@param script string path or workflow name
---@param site_dir string|nil absolute site directory
---@param lua_dir string the installed Lua tree
---@return string path
function M.resolve_script(script, site_dir, lua_dir)
  if file_exists(script) then return absolute(script) end
  local name = script:gsub("^workflows/", ""):gsub("%.lua$", "")
  local dirs = {}
  if site_dir then dirs[#dirs + 1] = site_dir .. "/workflows" end
  dirs[#dirs + 1] = lua_dir .. "/workflows"
  if not name:find("/", 1, true) then
    for _, d in ipairs(dirs) do
      local p = d .. "/" .. name .. ".lua"
      if file_exists(p) then return p end
    end
  end
  local known = list_workflows(dirs)
  usage_error("no such script or workflow '%s'%s", script,
    #known > 0 and (" (workflows: " .. table.concat(known, ", ") .. ")") or "")
end

--- boot.main(opts) -> exit code. opts comes from the C host (see host.c pmain):
--- script, vars, args, config, dry_run, verbosity, log_format, lua_dir, version.
---@param opts table
---@return integer exit code (0 ok, 1 the workflow reported a failure, or its own integer)
function M.main(opts)
  local level = "info"
  if opts.verbosity < 0 then level = "warn" elseif opts.verbosity > 0 then level = "debug" end
  log.configure { level = level, format = opts.log_format or "text" }

  -- configuration: -c, else $VMDR_CONFIG, else ./vmdr.yaml when present
  local file_cfg
  local cfg_path = opts.config or os.getenv("VMDR_CONFIG")
  if cfg_path and cfg_path ~= "" then
    file_cfg = read_yaml_file(cfg_path, "configuration file")
  elseif file_exists("vmdr.yaml") then
    cfg_path = absolute("vmdr.yaml")
    file_cfg = read_yaml_file(cfg_path, "configuration file")
  else
    cfg_path = nil
  end
  local vars = M.parse_vars(opts.vars)
  -- secrets first: nothing below may print one, not even a config error
  if file_cfg then config.register_secrets(file_cfg) end
  config.register_secrets(vars)
  local cfg = config.build(file_cfg, vars, cfg_path)

  local site_dir = cfg.site_dir or os.getenv("VMDR_SITE_DIR")
  if site_dir == "" then site_dir = nil end
  if site_dir then
    if type(site_dir) ~= "string" then config_error("site_dir must be a path") end
    site_dir = absolute(site_dir)
    package.path = site_dir .. "/lib/?.lua;" .. site_dir .. "/lib/?/init.lua;" .. package.path
  end

  local path = M.resolve_script(opts.script, site_dir, opts.lua_dir)
  local chunk, lerr = loadfile(path, "t")
  if not chunk then error(lerr, 0) end

  local ctx = {
    config = cfg,
    config_path = cfg_path,
    vars = vars,
    log = log,
    dry_run = opts.dry_run,
    args = opts.args,
    script = path,
    site_dir = site_dir,
    lua_dir = opts.lua_dir,
    version = opts.version,
  }
  local res = table.pack(chunk(ctx, opts.args))
  -- the workflow has finished: a signal arriving now must not turn its result into
  -- "interrupted" (the host's count hook raises at the next mark outside a hold)
  return require("vmdr.signal").hold(function()
    local first = res[1]
    if math.type(first) == "integer" then return first end
    if first == false or (first == nil and res.n >= 2) then
      if res[2] ~= nil then log.error(tostring(res[2])) end
      return 1
    end
    return 0
  end)
end

return M
