-- duplex fan-out server for bench/fanout.sh, on duplex's topics.
--   luajit bench/servers/duplex_fanout.lua PORT [MODE [TOPICS]]
-- Every connection joins TOPICS topics (default 1: "topic1" .. "topicN"),
-- then sends the text message "ready". MODE fanout (default): each message
-- that arrives is published to topic1 with duplex.publish (every subscriber,
-- the sender included). MODE chat: each message is ws:publish-ed to topic1
-- (every subscriber but the sender). TOPICS 0 or 3 with bench/fanout --mode
-- idle measures what a membership costs. With FANOUT_BROKER set (a Redis
-- URL) it joins the broker and listens with reuseport, so that several of
-- it share the port and their topics (bench/fanout.sh's duplex-redis2).
-- (LUA_PATH / LUA_CPATH must find
-- lua/duplex and build/<lua>/duplex/core.so; bench/fanout.sh sets them.)
local duplex = require "duplex"

local port = tonumber(arg[1]) or error("usage: duplex_fanout.lua PORT [fanout|chat [TOPICS]]")
local mode = arg[2] or "fanout"
local ntopics = tonumber(arg[3] or "1")
if mode ~= "fanout" and mode ~= "chat" then error("MODE must be fanout or chat") end
if not duplex.publish then
  io.stderr:write("duplex_fanout.lua: this duplex has no topics (duplex.publish); ",
    "try bench/servers/duplex_fanout_manual.lua\n")
  os.exit(1)
end

local topics = {}
for i = 1, ntopics do topics[i] = "topic" .. i end
local room = topics[1] or "topic1"
local publish = duplex.publish

local function join(ws)
  for i = 1, ntopics do ws:subscribe(topics[i]) end
  ws:send("ready", "text")
end

local handlers = {
  -- while/receive rather than `for msg, kind in ws:messages()`, so the same
  -- script runs on PUC Lua 5.1 as well
  fanout = function(ws)
    join(ws)
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      publish(room, msg, kind)
    end
  end,
  chat = function(ws)
    join(ws)
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      ws:publish(room, msg, kind)
    end
  end,
}

local broker_url = os.getenv("FANOUT_BROKER")
if broker_url then assert(duplex.broker(broker_url)) end
assert(duplex.serve({ host = "127.0.0.1", port = port, reuseport = broker_url ~= nil }, handlers[mode]))
duplex.run()
