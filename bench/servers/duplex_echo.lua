-- duplex echo server for the benchmarks: the handler is plain Lua.
--   luajit bench/servers/duplex_echo.lua PORT
-- (LUA_PATH / LUA_CPATH must find lua/duplex and build/<lua>/duplex/core.so;
-- bench/run.sh sets them.)
local duplex = require "duplex"

local port = tonumber(arg[1]) or error("usage: duplex_echo.lua PORT")

assert(duplex.serve({ host = "127.0.0.1", port = port }, function(ws)
  -- while/receive rather than `for msg, kind in ws:messages()`, so the same
  -- script runs on PUC Lua 5.1 as well
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    ws:send(msg, kind)
  end
end))

duplex.run()
