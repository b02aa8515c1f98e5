-- The broker's cost (bench/broker.sh): run with LUA_PATH/LUA_CPATH set.
--   LUA bench/broker.lua REDIS_PORT          the measurements
--   LUA bench/broker.lua REDIS_PORT node F   a second process (port to F)
local duplex = require "duplex"
local socket = require "socket"

local rport, mode, port_file = tonumber(arg[1]), arg[2], arg[3]
local URL = "redis://127.0.0.1:" .. rport
local N, SUBS = tonumber(os.getenv("N") or 100000), tonumber(os.getenv("SUBS") or 10)
local MSG = string.rep("x", 100)

local function sink(ws)
  ws:subscribe("b")
  while ws:receive() do end
end

if mode == "node" then
  duplex.run(function()
    assert(duplex.broker(URL))
    local s = assert(duplex.serve({ port = 0 }, sink))
    local f = assert(io.open(port_file, "w"))
    f:write(s.port, "\n")
    f:close()
  end)
  return
end

local function clients(port, n)
  local cs = {}
  for i = 1, n do cs[i] = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/")) end
  return cs
end

-- Seconds for N publishes (the loop runs every 1000 so the queues drain).
local function publish_run()
  local t0 = socket.gettime()
  for i = 1, N do
    duplex.publish("b", MSG)
    if i % 1000 == 0 then duplex.sleep(0) end
  end
  return socket.gettime() - t0
end

-- Seconds until c has received N messages published here.
local function delivery(c)
  local t0 = socket.gettime()
  duplex.spawn(function()
    for i = 1, N do
      duplex.publish("b", MSG)
      if i % 200 == 0 then duplex.sleep(0) end
    end
  end)
  for _ = 1, N do assert(c:receive(10)) end
  return socket.gettime() - t0
end

duplex.run(function()
  local s = assert(duplex.serve({ port = 0, max_backlog = 67108864 }, sink))
  local cs = clients(s.port, SUBS)
  while duplex.subscribers("b") < SUBS do duplex.sleep(0.01) end
  local plain = publish_run()
  local b = assert(duplex.broker(URL, { max_queue = 67108864 }))
  local brokered = publish_run()
  print(("local publish to %d subscribers: %.2f us without a broker, %.2f us with one (%d sent to Redis, %d dropped)"):format(
    SUBS, plain / N * 1e6, brokered / N * 1e6, b.published, b.dropped))
  for _, c in ipairs(cs) do c:close() end
  -- fan-out: one subscriber in this process, then one in another process
  local one = clients(s.port, 1)[1]
  while duplex.subscribers("b") ~= 1 do duplex.sleep(0.01) end
  local t1 = delivery(one)
  one:close()
  local f = os.tmpname()
  os.remove(f)
  os.execute(("%s %s %d node %s & echo $! > %s.pid"):format(arg[-1], arg[0], rport, f, f))
  local port
  for _ = 1, 500 do
    local h = io.open(f)
    port = h and tonumber(h:read("*a"))
    if h then h:close() end
    if port then break end
    duplex.sleep(0.01)
  end
  local other = clients(port, 1)[1]
  duplex.sleep(0.2) -- its SUBSCRIBE reaches Redis
  local t2 = delivery(other)
  print(("%d messages to one subscriber: %.0f msg/s in this process, %.0f msg/s through Redis to another"):format(
    N, N / t1, N / t2))
  other:close()
  local h = io.open(f .. ".pid")
  os.execute("kill " .. h:read("*l"))
  h:close()
  os.remove(f)
  os.remove(f .. ".pid")
  s:close()
  b:close()
end)
