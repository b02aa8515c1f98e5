-- duplex fan-out server for bench/fanout.sh, with the fan-out written by
-- hand as a user must without topics: a Lua table of connections per topic
-- and ws:send in a loop, so each delivery frames and copies the message
-- again. The same protocol as duplex_fanout.lua (see there):
--   luajit bench/servers/duplex_fanout_manual.lua PORT [MODE [TOPICS]]
local duplex = require "duplex"

local port = tonumber(arg[1]) or error("usage: duplex_fanout_manual.lua PORT [fanout|chat [TOPICS]]")
local mode = arg[2] or "fanout"
local ntopics = tonumber(arg[3] or "1")
if mode ~= "fanout" and mode ~= "chat" then error("MODE must be fanout or chat") end

local members = {} -- topic -> { [ws] = true }
for i = 1, ntopics do members["topic" .. i] = {} end
local room = members.topic1 or {}

-- except: the sender in chat mode, nil in fanout mode
local function broadcast(msg, kind, except)
  for ws in pairs(room) do
    if ws ~= except then ws:send(msg, kind) end
  end
end

assert(duplex.serve({ host = "127.0.0.1", port = port }, function(ws)
  for _, set in pairs(members) do set[ws] = true end
  ws:send("ready", "text")
  local except = mode == "chat" and ws or nil
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    broadcast(msg, kind, except)
  end
  for _, set in pairs(members) do set[ws] = nil end
end))
duplex.run()
