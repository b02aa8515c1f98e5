-- A line-based client on duplex alone: sends each line of stdin (or each
-- message given after the URL) as a text message and prints every message
-- that arrives; at the end of its input it waits briefly for the replies,
-- then closes with 1000.
--   lua examples/client.lua ws://127.0.0.1:8080/            (lines from stdin)
--   lua examples/client.lua ws://127.0.0.1:8080/ hello bye  (these messages)
--
-- Reading stdin: duplex has no stdin API, and io.read blocks the whole
-- process while it waits. So this client reads a line, sends it, and then
-- lets the loop run for a moment (duplex.sleep) so that replies are printed
-- and pings answered before it reads the next one. That is right for pipes
-- and files; typed at a terminal, messages that arrive while you type show
-- up after your next line. For a live terminal client use bin/duplex connect.
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local url = arg and arg[1]
if not url then
  io.stderr:write("usage: lua examples/client.lua ws://host:port/path [message ...]\n")
  os.exit(2)
end

local settle = 0.25 -- seconds given to the last replies

-- The messages to send: the arguments after the URL, else the lines of stdin.
local function lines()
  if #arg >= 2 then
    local i = 1
    return function()
      i = i + 1
      return arg[i]
    end
  end
  return io.lines()
end

local ok = true
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
      ok = false
    end
  end)

  -- io.lines' iterator is a C function that does not yield: waiting in the
  -- body of this loop is fine on every Lua.
  for line in lines() do
    local sent, serr = ws:send(line)
    if not sent then
      io.stderr:write("send failed: ", tostring(serr), "\n")
      ok = false
      break
    end
    duplex.sleep(0) -- let the loop run: replies print, pings get answered
  end
  -- A server may answer our close frame before the last replies (the RFC
  -- allows it), so give replies in flight a moment first.
  duplex.sleep(settle)
  done = true
  ws:close(1000, "bye")
end)
os.exit(ok and 0 or 1)
