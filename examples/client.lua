-- A line-based client on duplex alone: sends each line of stdin (or each
-- message given after the URL) as a text message and prints every message
-- that arrives. It stays connected: when the server goes away it tries
-- again with backoff, and lines read meanwhile are queued and sent once it
-- is back. At the end of its input it waits briefly for the replies, then
-- closes with 1000.
--   lua examples/client.lua ws://127.0.0.1:8080/            (lines from stdin)
--   lua examples/client.lua ws://127.0.0.1:8080/ hello bye  (these messages)
--
-- stdin and stdout go through the loop (duplex.stdio): reading a line
-- waits in this coroutine only, so replies print and pings are answered
-- while you type, at a terminal or from a pipe alike.
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"
local stdio = require "duplex.stdio"

local url = arg and arg[1]
if not url then
  io.stderr:write("usage: lua examples/client.lua ws://host:port/path [message ...]\n")
  os.exit(2)
end

local settle = 0.25 -- seconds given to the last replies

local function note(...)
  io.stderr:write(...)
  io.stderr:write("\n")
end

-- The messages to send: the arguments after the URL, else the lines of stdin.
local function lines()
  if #arg >= 2 then
    local i = 1
    return function()
      i = i + 1
      return arg[i]
    end
  end
  return stdio.read_line
end

local ok = true
duplex.run(function()
  local ws, err = duplex.connect(url, {
    reconnect = { max = 10 },
    on_open = function(w, info)
      if info.reconnects == 0 then
        note("connected to ", url, w.protocol and " (" .. w.protocol .. ")" or "")
      else
        note(("reconnected to %s after %.1f s"):format(url, info.downtime))
      end
    end,
    on_close = function(_, info)
      if info.retry then
        note(("connection lost (%s %s): trying again in %.1f s"):format(tostring(info.code), info.error, info.delay))
      end
    end,
    should_retry = function(e, code)
      -- told of every failure (a close code >= 1000 after a connection)
      if not code or code < 1000 then note("cannot connect: ", e) end
      return nil -- the default rules decide
    end,
  })
  if not ws then
    note("cannot connect to ", url, ": ", tostring(err))
    os.exit(1)
  end

  local done = false
  -- Incoming messages, across reconnections. A while loop, not `for ... in
  -- ws:messages()`, so that it runs on PUC Lua 5.1 too.
  duplex.spawn(function()
    while true do
      local msg, kind, code, reason, last_error = ws:receive()
      if not msg then
        if not done then
          note(("gave up: %s %s %s"):format(tostring(code), reason or "", last_error or ""))
          ok = false
        end
        break
      end
      if kind == "binary" then
        stdio.write(("<binary message, %d bytes>\n"):format(#msg))
      else
        stdio.write(msg, "\n")
      end
    end
  end)

  -- While the server is away, send queues (up to 256 messages). A while
  -- loop: PUC Lua 5.1 cannot wait inside a for iterator.
  local next_line = lines()
  while true do
    local line = next_line()
    if not line then break end
    local sent, serr = ws:send(line)
    if not sent then
      note("send failed: ", tostring(serr))
      ok = false
      break
    end
  end
  -- A server may answer our close frame before the last replies (the RFC
  -- allows it), so give replies in flight a moment first.
  duplex.sleep(settle)
  done = true
  ws:close(1000, "bye")
  stdio.flush()
  stdio.close()
end)
os.exit(ok and 0 or 1)
