-- Broadcast: every connected client gets a clock tick each second, and every
-- message a client sends goes to all the others.
--   lua examples/broadcast.lua [port]      (default 8080, on 127.0.0.1)
-- Watch it with:  lua examples/client.lua ws://127.0.0.1:8080/
local duplex = require "duplex"

local port = tonumber(arg and arg[1]) or 8080
local clients = {}   -- set of open connections
local SLOW = 64 * 1024  -- skip a client with this many bytes still unsent

-- Each send runs in its own coroutine: a client that reads slowly can only
-- hold up itself, and one that falls too far behind misses messages.
local function broadcast(text, except)
  for ws in pairs(clients) do
    if ws ~= except and ws.buffered <= SLOW then duplex.spawn(ws.send, ws, text) end
  end
end

local server = assert(duplex.serve({ host = "127.0.0.1", port = port }, function(ws)
  clients[ws] = true
  -- while, not `for ... in ws:messages()`, so that PUC Lua 5.1 can run it
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    if kind == "text" then broadcast(tostring(ws.remote) .. ": " .. msg, ws) end
  end
  clients[ws] = nil
end))

duplex.spawn(function()
  while true do
    duplex.sleep(1)
    broadcast(os.date("!tick %H:%M:%S"))
  end
end)

print(("broadcasting on ws://127.0.0.1:%d/"):format(server.port))
io.stdout:flush()
duplex.run()
