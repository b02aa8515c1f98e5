-- A duplex process joined to Redis, for spec/broker_spec.lua:
--   LUA broker_node.lua REDIS_URL PORT_FILE [PORT [reuseport]]
-- Writes its port to PORT_FILE once the broker is connected. Its clients
-- drive it with text commands, each answered with "ok ..." :
--   sub T | unsub T | pub T DATA | wspub T DATA | burst T N TAG | stats
-- (burst publishes "TAG 1" .. "TAG N")
-- and a binary message "T\n" .. DATA publishes DATA as binary.
local duplex = require "duplex"

local url, port_file, port, reuse = ...

local function handle(ws, msg, kind)
  if kind == "binary" then
    local t, data = msg:match("^([^\n]+)\n(.*)$")
    duplex.publish(t, data, "binary")
    return "ok"
  end
  local cmd, t, rest = msg:match("^(%S+) ?(%S*) ?(.*)$")
  if cmd == "sub" then
    ws:subscribe(t)
  elseif cmd == "unsub" then
    ws:unsubscribe(t)
  elseif cmd == "pub" then
    duplex.publish(t, rest)
  elseif cmd == "wspub" then
    ws:publish(t, rest)
  elseif cmd == "burst" then
    local n, tag = rest:match("^(%d+) ?(.*)$")
    for i = 1, tonumber(n) do duplex.publish(t, tag .. " " .. i) end
  elseif cmd == "stats" then
    local b = _G.BROKER
    return ("ok %s %d %d %d %d"):format(b.state, b.published, b.received, b.dropped, b.invalid)
  end
  return "ok"
end

duplex.run(function()
  local b = assert(duplex.broker(url, { reconnect = { min = 0.05, max = 0.3 }, timeout = 2 }))
  _G.BROKER = b
  local s = assert(duplex.serve({ port = tonumber(port) or 0, reuseport = reuse == "reuseport" or nil },
    function(ws)
      while true do
        local msg, kind = ws:receive()
        if not msg then break end
        ws:send(handle(ws, msg, kind))
      end
    end))
  local f = assert(io.open(port_file, "w"))
  f:write(s.port, "\n")
  f:close()
end)
