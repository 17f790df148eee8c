--- vmdr.layout: every path of the manifests repository (DESIGN.md "The manifests
--- repository"), relative to the repository top:
---
---   <root>/applicationset.yaml
---   <root>/base/<ns>/kustomization.yaml, vm-<name>.yaml, pvc-<claim>.yaml, pv-<pv>.yaml
---   <root>/overlays/<cluster>/<ns>/kustomization.yaml
---   <root>/overlays/<cluster>/components/failover-control/kustomization.yaml
---   <root>/overlays/<cluster>/components/failover-control/patches/power-{on,off}.yaml
---
--- Names come from the Kubernetes API, and the API is input: each is validated
--- (namespaces as DNS-1123 labels, VM/PVC/PV names as DNS-1123 subdomains, the
--- cluster name as a subdomain) before it becomes a path, so nothing can climb
--- out of the tree ("..", "/", NUL, leading dots) or collide with the reserved
--- `components` overlay directory.
local M = {}

local err_mt = { __tostring = function(e) return e.code .. ": " .. e.message end }

local function invalid(fmt, ...)
    return nil, setmetatable({ code = "invalid", message = string.format(fmt, ...) }, err_mt)
end

M.COMPONENT = "failover-control"
-- overlays/<cluster>/components is the component's home, so no namespace may take that name
M.RESERVED_NAMESPACES = { components = true }

--- Whether s is a DNS-1123 label: at most 63 of [a-z0-9-], alphanumeric at both ends.
---@param s any
---@return boolean
function M.is_dns_label(s)
    return type(s) == "string" and #s >= 1 and #s <= 63
        and (s:match("^[a-z0-9]$") ~= nil or s:match("^[a-z0-9][-a-z0-9]*[a-z0-9]$") ~= nil)
end

--- Whether s is a DNS-1123 subdomain: at most 253 characters, dot-separated labels.
---@param s any
---@return boolean
function M.is_dns_subdomain(s)
    if type(s) ~= "string" or #s < 1 or #s > 253 then return false end
    for part in (s .. "."):gmatch("([^.]*)%.") do
        if not M.is_dns_label(part) then return false end
    end
    return true
end

-- A name from the API for a message: quoted, with control characters and non-ASCII
-- bytes spelled out, so a look-alike ("gооd" in Cyrillic) or a terminal escape shows
-- for what it is instead of passing for a valid name.
local function show(s)
    s = tostring(s)
    return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
        if c == '"' or c == "\\" then return "\\" .. c end
        return string.format("\\x%02x", c:byte())
    end) .. '"' .. (s:find("[\128-\255]") and " (non-ASCII characters)" or "")
end
M.show = show

-- Longest file name Linux file systems take (NAME_MAX): a longer vm-/pvc-/pv- file
-- would make every checkout of the repository fail (Argo CD's included).
local NAME_MAX <const> = 255

local function check_ns(ns)
    if not M.is_dns_label(ns) then
        return invalid("namespace %s is not a DNS-1123 label (lower-case a-z, 0-9 and '-',"
            .. " at most 63 characters): refusing to use it in a path", show(ns))
    end
    if M.RESERVED_NAMESPACES[ns] then
        return invalid("namespace %q collides with the overlay directory of the same name", ns)
    end
    return ns
end

local function check_name(what, name)
    if not M.is_dns_subdomain(name) then
        return invalid("%s name %s is not a DNS-1123 subdomain (lower-case a-z, 0-9, '-' and"
            .. " '.', at most 253 characters): refusing to use it in a path", what, show(name))
    end
    return name
end

-- The root is operator configuration: a relative path of plain segments.
local function check_root(root)
    if type(root) ~= "string" or root == "" then
        return invalid("git.root must be a non-empty relative path, got %q", tostring(root))
    end
    local trimmed = root:gsub("/+$", "")
    if trimmed:sub(1, 1) == "/" then
        return invalid("git.root %q must be relative to the repository top", root)
    end
    if trimmed == "." then return "." end
    for seg in (trimmed .. "/"):gmatch("([^/]*)/") do
        if seg == "" or seg == "." or seg == ".." or not seg:match("^[A-Za-z0-9._-]+$")
            or seg:sub(1, 1) == "." then
            return invalid("git.root %q: segment %q is not allowed (plain names only: no empty,"
                .. " '.', '..' or hidden segments)", root, seg)
        end
    end
    return trimmed
end

---@class vmdr.Layout
---@field root string      the root folder ("vms"), or "." for the repository top
---@field cluster string   the DR overlay name
local Layout = {}
Layout.__index = Layout

--- Creates a layout for one DR cluster.
---@param opts {root?: string, cluster: string}
---@return vmdr.Layout? layout
---@return table? err  {code="invalid"}
function M.new(opts)
    if type(opts) ~= "table" then error("layout.new: expected an options table", 2) end
    local root, err = check_root(opts.root == nil and "vms" or opts.root)
    if not root then return nil, err end
    if not M.is_dns_subdomain(opts.cluster) then
        return invalid("cluster_name %q is not a DNS-1123 subdomain: refusing to use it in a path",
            tostring(opts.cluster))
    end
    return setmetatable({ root = root, cluster = opts.cluster }, Layout)
end

--- The layout the configuration describes (`git.root`, default "vms";
--- `cluster_name`, required).
---@param cfg table  ctx.config
---@return vmdr.Layout? layout
---@return table? err
function M.from_config(cfg)
    if type(cfg) ~= "table" then error("layout.from_config: expected the configuration table", 2) end
    local git = type(cfg.git) == "table" and cfg.git or {}
    if cfg.cluster_name == nil then
        return invalid("cluster_name is not set (the DR overlay name, e.g. -e cluster_name=ocp-dr)")
    end
    return M.new { root = git.root, cluster = cfg.cluster_name }
end

local function join(self, rest)
    if self.root == "." then return rest end
    return self.root .. "/" .. rest
end

---@return string
function Layout:applicationset() return join(self, "applicationset.yaml") end

---@return string
function Layout:base_root() return join(self, "base") end

---@return string
function Layout:overlays_root() return join(self, "overlays/" .. self.cluster) end

---@param ns string
---@return string? path
---@return table? err
function Layout:base_dir(ns)
    local ok, err = check_ns(ns)
    if not ok then return nil, err end
    return join(self, "base/" .. ns)
end

---@param ns string
---@return string? path
---@return table? err
function Layout:base_kustomization(ns)
    local d, err = self:base_dir(ns)
    if not d then return nil, err end
    return d .. "/kustomization.yaml"
end

local function object_path(self, prefix, what, ns, name)
    local d, err = self:base_dir(ns)
    if not d then return nil, err end
    local ok
    ok, err = check_name(what, name)
    if not ok then return nil, err end
    local file = prefix .. name .. ".yaml"
    if #file > NAME_MAX then
        return invalid("%s name %s is %d characters long: its file %s... would exceed the %d"
            .. " bytes a file name may have (no checkout of the repository could hold it)",
            what, show(name), #name, file:sub(1, 40), NAME_MAX)
    end
    return d .. "/" .. file
end

--- Path of a VirtualMachine manifest.
---@param ns string
---@param name string
---@return string? path
---@return table? err
function Layout:vm(ns, name) return object_path(self, "vm-", "VirtualMachine", ns, name) end

--- Path of a PVC manifest.
---@param ns string
---@param claim string
---@return string? path
---@return table? err
function Layout:pvc(ns, claim) return object_path(self, "pvc-", "PersistentVolumeClaim", ns, claim) end

--- Path of a PV manifest: PVs are cluster-scoped, they live beside their claim.
---@param ns string  the namespace of the PV's claim
---@param pv string
---@return string? path
---@return table? err
function Layout:pv(ns, pv) return object_path(self, "pv-", "PersistentVolume", ns, pv) end

--- Path of the manifest of any of the three kinds ("VirtualMachine",
--- "PersistentVolumeClaim", "PersistentVolume").
---@param kind string
---@param ns string
---@param name string
---@return string? path
---@return table? err
function Layout:object(kind, ns, name)
    if kind == "VirtualMachine" then return self:vm(ns, name) end
    if kind == "PersistentVolumeClaim" then return self:pvc(ns, name) end
    if kind == "PersistentVolume" then return self:pv(ns, name) end
    return invalid("no place in the layout for kind %q", tostring(kind))
end

---@param ns string
---@return string? path
---@return table? err
function Layout:overlay_dir(ns)
    local ok, err = check_ns(ns)
    if not ok then return nil, err end
    return self:overlays_root() .. "/" .. ns
end

---@param ns string
---@return string? path
---@return table? err
function Layout:overlay_kustomization(ns)
    local d, err = self:overlay_dir(ns)
    if not d then return nil, err end
    return d .. "/kustomization.yaml"
end

---@return string
function Layout:component_dir() return self:overlays_root() .. "/components/" .. M.COMPONENT end

---@return string
function Layout:component_kustomization() return self:component_dir() .. "/kustomization.yaml" end

---@return string
function Layout:power_on_patch() return self:component_dir() .. "/patches/power-on.yaml" end

---@return string
function Layout:power_off_patch() return self:component_dir() .. "/patches/power-off.yaml" end

--- From an overlay kustomization to its base (a directory inside the repo, so
--- kustomize's default load restrictions allow it).
---@param ns string
---@return string? rel
---@return table? err
function Layout:overlay_to_base(ns)
    local ok, err = check_ns(ns)
    if not ok then return nil, err end
    -- overlays/<cluster>/<ns> -> up three to <root>
    return "../../../base/" .. ns
end

--- From an overlay kustomization to the failover-control component.
---@return string
function Layout:overlay_to_component() return "../components/" .. M.COMPONENT end

--- The ApplicationSet's directory generator path for the namespace overlays.
---@return string
function Layout:overlay_glob() return self:overlays_root() .. "/*" end

--- The directory the generator must exclude (the component is not an Application).
---@return string
function Layout:components_dir() return self:overlays_root() .. "/components" end

local prefixes = {
    { "vm-", "VirtualMachine" },
    { "pvc-", "PersistentVolumeClaim" },
    { "pv-", "PersistentVolume" },
}

--- Classifies a file name of a base directory: `kind, name` for vm-/pvc-/pv-
--- manifests with a valid name; nil for anything else (kustomization.yaml,
--- stray files) so callers never act on a name they could not have written.
---@param filename string
---@return string? kind
---@return string? name
function M.classify(filename)
    if type(filename) ~= "string" then return nil end
    for _, p in ipairs(prefixes) do
        local name = filename:match("^" .. p[1]:gsub("%-", "%%-") .. "(.+)%.yaml$")
        if name and M.is_dns_subdomain(name) then return p[2], name end
    end
    return nil
end

--- Parses a repository path written by this layout:
--- `{ kind = "VirtualMachine"|..., namespace =, name = }` for object manifests,
--- `{ kind = "base-kustomization"|"overlay-kustomization", namespace = }`, or nil.
---@param path string
---@return table?
function Layout:parse(path)
    if type(path) ~= "string" then return nil end
    local base = self.root == "." and "" or (self.root .. "/")
    if path:sub(1, #base) ~= base then return nil end
    local rest = path:sub(#base + 1)
    local ns, file = rest:match("^base/([^/]+)/([^/]+)$")
    if ns and M.is_dns_label(ns) and not M.RESERVED_NAMESPACES[ns] then
        if file == "kustomization.yaml" then return { kind = "base-kustomization", namespace = ns } end
        local kind, name = M.classify(file)
        if kind then return { kind = kind, namespace = ns, name = name } end
        return nil
    end
    local cl, ons = rest:match("^overlays/([^/]+)/([^/]+)/kustomization%.yaml$")
    if cl == self.cluster and M.is_dns_label(ons) and not M.RESERVED_NAMESPACES[ons] then
        return { kind = "overlay-kustomization", namespace = ons }
    end
    return nil
end

return M
