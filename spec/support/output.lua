-- busted output handler: the plain terminal output, plus a counts file that
-- scripts/test reads to print "N passed, N failed" over every test case.
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)
  local dir = os.getenv("VMDR_RESULTS_DIR")
  busted.subscribe({ "exit" }, function()
    if dir then
      local name = (arg[#arg] or "spec"):gsub("^.*/spec/", "spec/"):gsub("[/.]", "_")
      local f = io.open(dir .. "/" .. name .. ".counts", "w")
      if f then
        f:write(string.format("%d %d %d\n", handler.successesCount, handler.failuresCount,
          handler.errorsCount))
        f:close()
      end
    end
    return nil, true
  end)
  return handler
end
