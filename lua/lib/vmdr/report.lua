--- vmdr.report: what a workflow shows people at the end (aligned tables on
--- stdout) and machines (one JSON document with --log-format json).
local json = require "vmdr.json"

local M = {}

--- Prints rows (lists of strings) under headers, columns aligned.
---@param headers string[]
---@param rows string[][]
---@param out? file*
function M.table(headers, rows, out)
    out = out or io.stdout
    local w = {}
    for i, hd in ipairs(headers) do w[i] = #hd end
    for _, r in ipairs(rows) do
        for i = 1, #headers do
            local s = tostring(r[i] == nil and "" or r[i])
            if #s > w[i] then w[i] = #s end
        end
    end
    local function line(cells)
        local parts = {}
        for i = 1, #headers do
            local s = tostring(cells[i] == nil and "" or cells[i])
            parts[i] = i < #headers and (s .. string.rep(" ", w[i] - #s)) or s
        end
        out:write(table.concat(parts, "  "), "\n")
    end
    line(headers)
    for _, r in ipairs(rows) do line(r) end
end

--- Emits the result document: JSON on stdout when ctx.json, else nothing (the
--- workflow has printed its tables).
function M.emit(ctx, doc)
    if ctx.json then
        io.stdout:write(assert(json.encode(doc)), "\n")
    end
end

--- Whether the run wants machine output (--log-format json or -e format=json).
function M.machine(ctx)
    return ctx.config.format == "json" or ctx.log.format and ctx.log.format() == "json" or false
end

--- A counter table printed as "a=1 b=2" in a stable order.
function M.counts(t)
    local ks = {}
    for k in pairs(t) do ks[#ks + 1] = k end
    table.sort(ks)
    local parts = {}
    for _, k in ipairs(ks) do parts[#parts + 1] = k .. "=" .. tostring(t[k]) end
    return table.concat(parts, " ")
end

return M
