-- duplex inside a luv loop: an echo server, a client that talks to it, and
-- a luv timer of the host ticking meanwhile; uv.run() returns when all is done.
--   lua5.4 examples/luv_echo.lua      (Debian: apt-get install lua-luv)
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/" .. (rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")) ..
  "/?.so;" .. package.cpath
local uv = require "luv"
local duplex = require "duplex"

local handle = assert(require("duplex.luv").attach())

local server = assert(duplex.serve({ host = "127.0.0.1", port = 0 }, function(ws)
  while true do -- while, not `for ... in ws:messages()`: PUC Lua 5.1 too
    local msg, kind = ws:receive()
    if not msg then break end
    ws:send(msg, kind)
  end
end))

local ticks = 0
local tick = uv.new_timer()
tick:start(10, 10, function() ticks = ticks + 1 end)

duplex.spawn(function()
  local ws = assert(duplex.connect("ws://127.0.0.1:" .. server.port .. "/"))
  for i = 1, 3 do
    ws:send("hello " .. i)
    print("echoed: " .. assert(ws:receive()))
    duplex.sleep(0.03)
  end
  ws:close()
  server:close()
  tick:close() -- the host's timer was firing all along
  print("host timer ticks meanwhile: " .. ticks)
end)

uv.run() -- returns once duplex and the host have nothing left
handle:stop()
uv.run("nowait") -- let the adapter's handles close
