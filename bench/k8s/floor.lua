-- bench/k8s/floor.lua FLOOR_SO LIST_JSON ROUNDS: in one process, alternately decodes the list
-- (vmdr.json.decode, as vmdr.k8s does, the collector paused) and builds the same tables from
-- a tape (bench/k8s/floor.c: the decoder's Lua calls without the parse); prints one line
-- per measurement: "decode|build wall_ms cpu_ms".
local json = require "vmdr.json"
local time = require "vmdr.time"
local _, args = ...
local floor = assert(package.loadlib(args[1], "luaopen_floor"))()
local f = assert(io.open(args[2], "rb"))
local body = f:read("a")
f:close()
local rounds = tonumber(args[3] or "7")

local doc = json.decode(body)
local nitems = #doc.items
local tape, ents, bytes = floor.tape(doc)
doc = nil
collectgarbage("collect")
collectgarbage("collect")
io.stderr:write(string.format("items=%d tape: %d entries, %d string bytes\n", nitems, ents, bytes))

-- the tape must give back the very tables the decoder makes, or the comparison is void
local function same(a, b, path)
  if type(a) ~= type(b) then error(path .. ": " .. type(a) .. " vs " .. type(b)) end
  if type(a) ~= "table" then
    assert(a == b and math.type(a) == math.type(b), path .. ": values differ")
    return
  end
  assert(getmetatable(a) == getmetatable(b), path .. ": metatables differ")
  for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
  for k in pairs(b) do assert(a[k] ~= nil, path .. "." .. tostring(k) .. ": missing") end
end
same(json.decode(body), floor.build(tape), "list")
collectgarbage("collect")

local function timed(what, fn)
  collectgarbage("collect")
  collectgarbage("stop")
  local w0, c0 = time.now(), os.clock()
  local v = fn()
  local w1, c1 = time.now(), os.clock()
  collectgarbage("restart")
  assert(#v.items == nitems)
  print(string.format("%s %.2f %.2f", what, (w1 - w0) * 1000, (c1 - c0) * 1000))
end

for r = 1, rounds do
  local order = r % 2 == 1 and { "decode", "build" } or { "build", "decode" }
  for _, what in ipairs(order) do
    if what == "decode" then timed(what, function() return json.decode(body) end)
    else timed(what, function() return floor.build(tape) end) end
  end
end
