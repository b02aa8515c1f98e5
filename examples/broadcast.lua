-- Broadcast: every connected client gets a clock tick each second, and every
-- message a client sends goes to all the others.
--   lua examples/broadcast.lua [port]      (default 8080, on 127.0.0.1)
-- Watch it with:  lua examples/client.lua ws://127.0.0.1:8080/
--
-- Every connection subscribes to one topic. A publish is framed once and
-- queued for every subscriber without waiting; a client that falls 64 KiB
-- behind misses messages (max_backlog) until it catches up.
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

local server = assert(duplex.serve({ host = "127.0.0.1", port = port, max_backlog = 64 * 1024 },
  function(ws)
    ws:subscribe("all")
    -- while, not `for ... in ws:messages()`, so that PUC Lua 5.1 can run it
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      if kind == "text" then ws:publish("all", tostring(ws.remote) .. ": " .. msg) end
    end
  end))

duplex.every(1, function()
  duplex.publish("all", os.date("!tick %H:%M:%S"))
end)

print(("broadcasting on ws://127.0.0.1:%d/"):format(server.port))
io.stdout:flush()
duplex.run()
