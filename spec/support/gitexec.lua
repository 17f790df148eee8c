-- Test support for the bad-input specs (spec/faults/bad_config_spec.lua, hostile_*_spec.lua):
-- a smart-HTTP Git server with a token (support.gitsrv) holding an empty repository
-- "manifests", and for the exec storage driver a tool that appends its argv to a log.
-- Everything the spec's directory gets from here: mirror-tool, exec.log, token and, with
-- e.config, vmdr.yaml. Test code only.
local h = require "support.helper"
local gitsrv = require "support.gitsrv"

local M = {}

--- Starts the server in a spec's directory tmp. Returns e: e.srv, e.bare (the repository's
--- path), e.url (over HTTP), e.token and e.token_file (tmp/token), e.tool (tmp/mirror-tool),
--- e.exec_log (tmp/exec.log), and
---   e.config(s, ops, args): writes tmp/vmdr.yaml for sim s, the work tree tmp/clone
---     (worktree: true) and storage.exec running the tool for each op as [tool, op, args...];
---     returns its path (also e.cfg)
---   e.run(...): vmdr-run ... -c e.cfg
---   e.git(args): the git CLI in the repository; e.show(path): a file of main
---   e.calls(): the tool's calls so far, one string each, sorted
---   e.down(): stops the server
function M.up(tmp)
    local e = { srv = gitsrv.up() }
    e.bare = gitsrv.bare(e.srv, "manifests")
    e.url = gitsrv.urls(e.srv, "manifests").http
    e.token = e.srv.token
    e.token_file = h.write(tmp .. "/token", e.token .. "\n")
    e.exec_log = tmp .. "/exec.log"
    e.tool = h.write(tmp .. "/mirror-tool", "#!/bin/sh\necho \"$*\" >> " .. h.q(e.exec_log) .. "\n")
    h.sh("chmod +x " .. h.q(e.tool))

    function e.config(s, ops, args)
        local lines = {}
        for _, op in ipairs(ops) do
            local argv = { string.format("%q", e.tool), op }
            for _, a in ipairs(args) do argv[#argv + 1] = string.format("%q", a) end
            lines[#lines + 1] = string.format("    %s: [%s]", op, table.concat(argv, ", "))
        end
        e.cfg = h.write(tmp .. "/vmdr.yaml", string.format([[
cluster_name: dr-east
source: { kubeconfig: %s }
git: { url: %q, workdir: %s/clone, token_file: %s, worktree: true }
storage:
  driver: exec
  exec:
%s
]], s.kubeconfig, e.url, tmp, e.token_file, table.concat(lines, "\n")))
        return e.cfg
    end
    function e.run(...)
        local argv = { ... }
        argv[#argv + 1] = "-c"
        argv[#argv + 1] = e.cfg
        return h.run(argv)
    end
    function e.git(args) return h.capture("git -C " .. h.q(e.bare) .. " " .. args .. " 2>&1") end
    function e.show(path) return e.git("show main:" .. h.q(path)) end
    function e.calls()
        local out = {}
        for line in (h.read(e.exec_log) or ""):gmatch("[^\n]+") do out[#out + 1] = line end
        table.sort(out)
        return out
    end
    function e.down() gitsrv.down(e.srv) end
    return e
end

return M
