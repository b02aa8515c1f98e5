-- A duplex server run as a subprocess by spec/hostile_spec.lua, so that its
-- memory (VmRSS) and open file descriptors can be measured from outside.
--
--   lua spec/hostile/server.lua LOGFILE [key=value ...]
--
-- Options (numbers): high_water, handshake_timeout, close_timeout,
-- max_message, lifetime (seconds before it exits on its own, default 60),
-- flood_total (bytes the /flood handler sends, default 256 MiB),
-- flood_size (bytes per message, default 64 KiB), sleepy (seconds the
-- /sleepy handler waits before it reads, default 1).
--
-- It appends one line per event to LOGFILE (flushed at once):
--   ready PORT PID               listening
--   closed PATH CODE COUNT       a handler saw receive() end (code, messages)
--   flood SENT MAXBUF ERR        the /flood handler ended (bytes sent, the
--                                largest ws.buffered seen after a send)
--   gc KBYTES                    answer to /gc (Lua heap after a full GC)
--
-- Paths: /flood sends flood_size-byte binary messages until flood_total or
-- the connection ends; /gc runs a full garbage collection, logs, sends the
-- Lua heap size and closes; /sleepy sleeps, then echoes (a handler that
-- falls behind); anything else echoes.
local duplex = require "duplex"

local logfile = assert(arg[1], "usage: server.lua LOGFILE [key=value ...]")
local opts = {}
for i = 2, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  assert(k, "bad option " .. arg[i])
  opts[k] = tonumber(v) or v
end

local out = assert(io.open(logfile, "a"))
local function log(...)
  out:write(table.concat({ ... }, " "), "\n")
  out:flush()
end

local f = assert(io.open("/proc/self/stat"))
local pid = f:read("*l"):match("^(%d+)")
f:close()

local flood_total = opts.flood_total or 256 * 1024 * 1024
local flood_size = opts.flood_size or 64 * 1024

local function flood(ws)
  local msg = string.rep("x", flood_size)
  local sent, maxbuf, err = 0, 0, "done"
  while sent < flood_total do
    local ok, e = ws:send(msg, "binary")
    if not ok then err = e break end
    sent = sent + #msg
    local b = ws.buffered
    if b > maxbuf then maxbuf = b end
  end
  log("flood", sent, maxbuf, tostring(err))
end

local function echo(ws, path)
  local n = 0
  while true do
    local msg, kind, code = ws:receive()
    if not msg then
      log("closed", path, tostring(code), n)
      return
    end
    n = n + 1
    ws:send(msg, kind)
  end
end

local server = assert(duplex.serve({
  host = "127.0.0.1",
  port = 0,
  high_water = opts.high_water,
  handshake_timeout = opts.handshake_timeout,
  close_timeout = opts.close_timeout,
  max_message = opts.max_message,
}, function(ws)
  local path = ws.request.path
  if path == "/flood" then
    flood(ws)
  elseif path == "/sleepy" then
    duplex.sleep(opts.sleepy or 1)
    echo(ws, path)
  elseif path == "/gc" then
    collectgarbage("collect")
    collectgarbage("collect")
    local kb = math.floor(collectgarbage("count"))
    log("gc", kb)
    ws:send(tostring(kb))
  else
    echo(ws, path)
  end
end))

log("ready", server.port, pid)

duplex.spawn(function()
  duplex.sleep(opts.lifetime or 60)
  log("lifetime over")
  server:close()
  duplex.stop()
end)

duplex.run()
os.exit(0)
