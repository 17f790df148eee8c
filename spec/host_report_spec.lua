-- How vmdr-run reports an uncaught error: the text, the exit code, no crash.
local h = require "support.helper"

describe("vmdr-run error report", function()
  local tmp
  setup(function() tmp = h.tmpdir("report") end)

  it("prints a plain {code=, message=} table as 'code: message' with a traceback, exit 3", function()
    local r = h.run { h.write(tmp .. "/t.lua", "error({ code = 'auth', message = 'token rejected' })") }
    assert.equals(3, r.code)
    assert.matches("^vmdr%-run: auth: token rejected\nstack traceback:", r.stderr)
  end)

  it("survives an error object whose __tostring raises", function()
    local r = h.run { h.write(tmp .. "/bad.lua",
      "error(setmetatable({}, { __tostring = function() error('nested') end }))") }
    assert.equals(3, r.code)
    assert.matches("could not be printed", r.stderr)
  end)

  it("prints usage and config errors without a traceback, exit 2", function()
    local r = h.run { h.write(tmp .. "/c.lua", "error({ code = 'config', message = 'no cluster_name' })") }
    assert.equals(2, r.code)
    assert.equals("vmdr-run: config: no cluster_name\n", r.stderr)
  end)

  it("exits 130 for an error table with code 'interrupted'", function()
    local r = h.run { h.write(tmp .. "/i.lua", "error({ code = 'interrupted', message = 'stop' })") }
    assert.equals(130, r.code)
  end)
end)
