-- duplex inside LÖVE 11: an echo server and a client stepped once a frame.
--   make LUA=luajit && love examples/love_echo     (from the checkout)
-- LÖVE runs on LuaJIT: build/luajit holds the module for it.
local root = love.filesystem.getSource() .. "/../../"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
package.cpath = root .. "build/luajit/?.so;" .. package.cpath
local duplex = require "duplex"
local handle = assert(require("duplex.love").attach())

local frames, done = 0, false

function love.load()
  local server = assert(duplex.serve({ host = "127.0.0.1", port = 0 }, function(ws)
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      ws:send(msg, kind)
    end
  end))
  duplex.spawn(function()
    local ws = assert(duplex.connect("ws://127.0.0.1:" .. server.port .. "/"))
    for i = 1, 3 do
      ws:send("hello " .. i)
      print("echoed: " .. assert(ws:receive()))
    end
    ws:close()
    server:close()
    done = true
  end)
end

-- the game's own update still runs, after duplex's step
function love.update(dt)
  frames = frames + 1
  if done then
    print("frames meanwhile: " .. frames)
    handle:stop()
    love.event.quit(0)
  end
end
