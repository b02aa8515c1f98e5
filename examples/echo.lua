-- An echo server: every message comes back to its sender, same kind.
--   lua examples/echo.lua [port]        (default 8080, on 127.0.0.1)
-- Try it with:  lua examples/client.lua ws://127.0.0.1:8080/
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local port = tonumber(arg and arg[1]) or 8080

local server = assert(duplex.serve({ host = "127.0.0.1", port = port }, function(ws)
  -- A while loop over receive() rather than `for msg, kind in ws:messages()`,
  -- so that this also runs on PUC Lua 5.1 (which cannot yield in a for iterator).
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    ws:send(msg, kind)
  end
end))

print(("echo server on ws://127.0.0.1:%d/"):format(server.port))
io.stdout:flush()
duplex.run()
