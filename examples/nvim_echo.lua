-- duplex inside Neovim (0.7+): an echo server and a client on the editor's
-- loop; the replies land in a scratch buffer through vim.schedule.
--   make LUA=luajit && nvim -u NONE -c 'luafile examples/nvim_echo.lua'
-- (headless: nvim --headless -u NONE -c 'luafile examples/nvim_echo.lua')
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/luajit/?.so;" .. package.cpath
local duplex = require "duplex"
local dnvim = require "duplex.nvim"

local handle = dnvim.attach()

local server = assert(duplex.serve({ host = "127.0.0.1", port = 0, on_error = dnvim.on_error }, function(ws)
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    ws:send(msg, kind)
  end
end))

-- runs on the editor's main loop, where vim.api may be called
local show = dnvim.wrap(function(line)
  vim.api.nvim_buf_set_lines(0, -1, -1, false, { line })
  if #vim.api.nvim_list_uis() == 0 then io.stdout:write(line, "\n") end -- headless
end)

duplex.spawn(function()
  local ws = assert(duplex.connect("ws://127.0.0.1:" .. server.port .. "/"))
  for i = 1, 3 do
    ws:send("hello " .. i)
    show("echoed: " .. assert(ws:receive()))
  end
  ws:close()
  server:close()
  show("done")
  vim.schedule(function()
    handle:stop()
    if #vim.api.nvim_list_uis() == 0 then vim.cmd("qall!") end
  end)
end)
