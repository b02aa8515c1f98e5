-- duplex inside a cqueues controller: an echo server, a client, and a
-- cqueues coroutine of the host sleeping meanwhile.
--   lua5.4 examples/cqueues_echo.lua     (Debian: apt-get install lua-cqueues)
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/" .. (rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")) ..
  "/?.so;" .. package.cpath
local cqueues = require "cqueues"
local duplex = require "duplex"

local cq = cqueues.new()
local handle = require("duplex.cqueues").attach(cq)

local server = assert(duplex.serve({ host = "127.0.0.1", port = 0 }, function(ws)
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    ws:send(msg, kind)
  end
end))

local done, ticks = false, 0
cq:wrap(function() -- the host's own work goes on
  while not done do
    cqueues.sleep(0.01)
    ticks = ticks + 1
  end
end)

duplex.spawn(function()
  local ws = assert(duplex.connect("ws://127.0.0.1:" .. server.port .. "/"))
  for i = 1, 3 do
    ws:send("hello " .. i)
    print("echoed: " .. assert(ws:receive()))
    duplex.sleep(0.03)
  end
  ws:close()
  server:close()
  done = true
  print("host coroutine ticks meanwhile: " .. ticks)
end)

assert(cq:loop()) -- returns once duplex and the host have nothing left
handle:stop()
