-- What a topic's history costs (bench/history.sh): publish with history
-- off and on, memory held, and the replay of a whole history to one client.
-- Run with LUA_PATH/LUA_CPATH set.
--   LUA bench/history.lua
-- Knobs (environment): N publishes per run (100000), SUBS subscribers (10),
-- SIZE message bytes (100), REPLAY messages replayed (10000), RUNS (5).
local duplex = require "duplex"
local socket = require "socket"

local N, SUBS = tonumber(os.getenv("N") or 100000), tonumber(os.getenv("SUBS") or 10)
local SIZE, REPLAY = tonumber(os.getenv("SIZE") or 100), tonumber(os.getenv("REPLAY") or 10000)
local RUNS = tonumber(os.getenv("RUNS") or 5)
local MSG = string.rep("x", SIZE)

local function sink(ws)
  local topic = ws.request.path:sub(2)
  local since = ws.request.params.since
  ws:subscribe(topic, since and { since = since } or nil)
  while ws:receive() do end
end

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local kib = f and tonumber(f:read("*a"):match("VmRSS:%s*(%d+)")) or 0
  if f then f:close() end
  return kib
end

-- Microseconds per publish to the topic's SUBS subscribers (the loop runs
-- every 1000 publishes, so their queues drain).
local function publish_us(topic)
  local t0 = socket.gettime()
  for i = 1, N do
    duplex.publish(topic, MSG)
    if i % 1000 == 0 then duplex.sleep(0) end
  end
  return (socket.gettime() - t0) / N * 1e6
end

-- Milliseconds from connecting with since = "earliest" until the client
-- has received the REPLAY messages the history holds.
local function replay_ms(port)
  local t0 = socket.gettime()
  local c = assert(duplex.connect(("ws://127.0.0.1:%d/r?since=earliest"):format(port)))
  for _ = 1, REPLAY do assert(c:receive(10), "replay stalled") end
  local ms = (socket.gettime() - t0) * 1000
  c:close()
  return ms
end

duplex.run(function()
  local s = assert(duplex.serve({ port = 0, max_backlog = 1073741824 }, sink))
  local cs = {}
  for _ = 1, SUBS do
    for _, topic in ipairs({ "off", "on" }) do
      local c = assert(duplex.connect(("ws://127.0.0.1:%d/%s"):format(s.port, topic)))
      cs[#cs + 1] = c
      duplex.spawn(function() while c:receive() do end end) -- the subscribers keep up
    end
  end
  while duplex.subscribers("off") < SUBS or duplex.subscribers("on") < SUBS do duplex.sleep(0.01) end
  duplex.history("on", { size = 1000 })
  local off, on = {}, {}
  for r = 1, RUNS do
    off[r] = publish_us("off")
    on[r] = publish_us("on")
  end
  print(("publish of %d B to %d subscribers: %.3f us without history, %.3f us with history (size 1000); medians of %d runs of %d"):format(
    SIZE, SUBS, median(off), median(on), RUNS, N))
  for _, c in ipairs(cs) do c:close() end
  -- memory: a history of 100000 messages on a topic nobody reads
  collectgarbage()
  local rss0 = rss_kib()
  duplex.history("m", { size = 100000 })
  for _ = 1, 100000 do duplex.publish("m", MSG) end
  print(("memory of 100000 messages of %d B held: %.0f B each (RSS +%d KiB)"):format(SIZE,
    (rss_kib() - rss0) * 1024 / 100000, rss_kib() - rss0))
  duplex.history("m", false)
  duplex.history("r", { size = REPLAY })
  for _ = 1, REPLAY do duplex.publish("r", MSG) end
  local ms = {}
  for r = 1, RUNS do ms[r] = replay_ms(s.port) end
  print(("replay of %d messages of %d B to one client (connect, subscribe with since, all received): %.1f ms median of %d (min %.1f, max %.1f)"):format(
    REPLAY, SIZE, median(ms), RUNS, ms[1], ms[#ms]))
  s:close()
end)
