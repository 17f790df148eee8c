--- Fuzz driver: a kubeconfig document (any bytes) through the client's settings
--- resolution (load, merge, current context -> server/TLS/auth settings), without
--- connecting: vmdr.k8s._settings{kubeconfig = file}.
--- Contract: settings with a server URL, a namespace and a context, or nil and an error
--- {code="config", message=}; never a raise. No secret of the document (token, password,
--- client-key-data) appears in an error message.
local k8s = require "vmdr.k8s"
local yaml = require "vmdr.yaml"

-- The secrets the document holds, as the driver reads it (best effort: only when the
-- document decodes and has the usual shape).
local function secrets(doc)
    local out = {}
    if type(doc) ~= "table" or type(doc.users) ~= "table" then return out end
    for _, u in ipairs(doc.users) do
        local user = type(u) == "table" and u.user
        if type(user) == "table" then
            for _, f in ipairs { "token", "password", "client-key-data" } do
                local v = user[f]
                if type(v) == "string" and #v >= 8 then out[#out + 1] = v end
            end
        end
    end
    return out
end

return function(input, tmp)
    local f = assert(io.open(tmp, "wb"))
    f:write(input)
    f:close()
    local s, err = k8s._settings { kubeconfig = tmp }
    if s then
        if type(s) ~= "table" or type(s.server) ~= "string" or s.server == ""
            or type(s.namespace) ~= "string" or type(s.context) ~= "string" then
            error("settings without server, namespace or context", 0)
        end
        for _, k in ipairs { "ca_data", "cert_data", "key_data", "token", "token_file",
            "ca_file", "cert_file", "key_file", "username", "password", "proxy",
            "tls_server_name" } do
            if s[k] ~= nil and type(s[k]) ~= "string" then
                error("settings." .. k .. " is a " .. type(s[k]), 0)
            end
        end
        return
    end
    if type(err) ~= "table" or err.code ~= "config" or type(err.message) ~= "string" then
        error("not a {code=\"config\"} error: " .. tostring(err), 0)
    end
    for _, secret in ipairs(secrets(yaml.decode(input))) do
        if err.message:find(secret, 1, true) then
            error("a secret of the kubeconfig is in the error: " .. err.message, 0)
        end
    end
end
