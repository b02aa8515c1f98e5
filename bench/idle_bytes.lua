-- Where the bytes of an idle ws:// server connection go.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/luajit/?.so;;" \
--     luajit bench/idle_bytes.lua [connections]        (default 2000)
--
-- The server runs in this process; a child process (this file with
-- "client") opens the connections, which then stay idle, each server
-- handler waiting in ws:receive() as the echo handler does. Printed per
-- connection: the RSS growth, the Lua heap growth (collectgarbage after a
-- full collection), of which a bare coroutine parked in a yield (measured
-- alone in this process), and the rest of RSS (C: struct conn and its libuv
-- handles, malloc's overhead, pages). The kernel's socket buffers are not in
-- RSS and are not counted.
local duplex = require "duplex"

local args = arg or {}
local self_path = args[0] or "bench/idle_bytes.lua"
local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

if args[1] == "client" then
  local port, n = tonumber(args[2]), tonumber(args[3])
  local conns = {}
  duplex.spawn(function()
    for i = 1, n do
      conns[i] = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/"))
    end
    io.stdout:write("open\n")
    io.stdout:flush()
    duplex.sleep(30) -- the parent kills us once it has measured
  end)
  duplex.run()
  return
end

local N = tonumber(args[1]) or 2000

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function heap_kib()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

local function coroutine_bytes(n)
  local keep, before = {}, heap_kib()
  for i = 1, n do
    local co = coroutine.create(function() coroutine.yield() end)
    coroutine.resume(co)
    keep[i] = co
  end
  local after = heap_kib()
  keep = nil
  return (after - before) * 1024 / n
end

local open = 0
local server = assert(duplex.serve({ host = "127.0.0.1", port = 0 }, function(ws)
  open = open + 1
  while ws:receive() do end
end))

local lua = args[-1] or (rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+")))
local cmd = ("%s -e %s %s client %d %d"):format(quote(lua),
  quote(("package.path=%q package.cpath=%q"):format(package.path, package.cpath)),
  quote(self_path), server.port, N)

duplex.spawn(function()
  duplex.sleep(0.2)
  local rss0, heap0 = rss_kib(), heap_kib()
  local child = io.popen(cmd .. " & echo $!")
  local pid = child:read("*l")
  local deadline = duplex.now() + 60
  while open < N and duplex.now() < deadline do duplex.sleep(0.05) end
  duplex.sleep(0.5)
  local rss1, heap1 = rss_kib(), heap_kib()
  os.execute("kill " .. pid)
  child:close()
  local co = coroutine_bytes(N)
  local per = function(kib) return kib * 1024 / N end
  local rss, heap = per(rss1 - rss0), per(heap1 - heap0)
  print(("%s, %d idle ws:// connections (%d open)"):format(rawget(_G, "jit") and jit.version or _VERSION, N, open))
  print(("  RSS per connection          %6.0f B"):format(rss))
  print(("  Lua heap per connection     %6.0f B"):format(heap))
  print(("    of which a parked coroutine %4.0f B"):format(co))
  print(("    the ws object and scheduler %4.0f B"):format(heap - co))
  print(("  the rest (C and malloc)     %6.0f B"):format(rss - heap))
  server:close()
  duplex.stop()
end)
duplex.run()
