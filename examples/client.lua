-- A line-based client: prints every message that arrives, sends each line
-- typed on stdin as a text message. End with Ctrl-D (closes with 1000).
--   lua examples/client.lua ws://127.0.0.1:8080/
--
-- Reading stdin. duplex runs every connection in one thread on an event
-- loop, and has no stdin API. A plain io.read() would block the whole
-- process, so no message could arrive (or be answered with a pong) while we
-- wait for the user to type. Instead a coroutine asks LuaSocket's
-- socket.select whether fd 0 is readable, with a zero timeout, every 20 ms,
-- sleeping with duplex.sleep in between (which lets the loop run), and calls
-- io.read only when a line is there. stdin is made unbuffered so that stdio
-- never pulls a second line into its own buffer, where select cannot see it.
local duplex = require "duplex"

local ok, socket = pcall(require, "socket")
if not ok then
  io.stderr:write("examples/client.lua needs LuaSocket (luarocks install luasocket) to poll stdin\n")
  os.exit(2)
end

local url = arg and arg[1]
if not url then
  io.stderr:write("usage: lua examples/client.lua ws://host:port/path\n")
  os.exit(2)
end

-- socket.select accepts any object with getfd (and dirty) methods.
local stdin = {
  getfd = function() return 0 end,
  dirty = function() return false end,
}
io.stdin:setvbuf("no")

local function stdin_ready()
  local readable = socket.select({ stdin }, nil, 0)
  return readable[1] ~= nil
end

duplex.run(function()
  local ws, err = duplex.connect(url)
  if not ws then
    io.stderr:write("cannot connect to ", url, ": ", tostring(err), "\n")
    os.exit(1)
  end
  io.stderr:write("connected to ", url, (ws.protocol and " (" .. ws.protocol .. ")" or ""), "\n")

  local done = false

  -- Incoming messages. A while loop, not `for ... in ws:messages()`, so that
  -- it runs on PUC Lua 5.1 too.
  duplex.spawn(function()
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      if kind == "binary" then
        io.write(("<binary message, %d bytes>\n"):format(#msg))
      else
        io.write(msg, "\n")
      end
      io.flush()
    end
    if not done then
      io.stderr:write(("connection closed by the server: %s %s\n"):format(
        tostring(ws.close_code), ws.close_reason or ""))
    end
    done = true
    duplex.stop()
  end)

  -- Outgoing lines.
  while not done do
    if stdin_ready() then
      local line = io.read("*l")
      if not line then
        -- End of input: say goodbye. A server may answer our close frame
        -- before it answers the last lines (the RFC allows it), so give
        -- replies in flight a moment first. The receiving coroutine prints
        -- what arrives before the server's close frame, then stops the loop.
        duplex.sleep(0.25)
        done = true
        ws:close(1000, "bye")
        return
      end
      local sent, serr = ws:send(line)
      if not sent then
        io.stderr:write("send failed: ", tostring(serr), "\n")
        break
      end
    else
      duplex.sleep(0.02)
    end
  end
end)
