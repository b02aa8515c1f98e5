-- permessage-deflate benchmark: a JSON chat workload over loopback between
-- our client and our server, with compression off, on (context takeover)
-- and on without context takeover; then the memory of idle connections.
--
--   lua5.4 bench/compression.lua [MESSAGES] [IDLE_CONNS]
--
-- (run from the repository root with LUA_PATH/LUA_CPATH set, see
-- bench/README.md). The server runs in a child process (this same file
-- with the argument "server MODE"), so that its counters are its own:
--
-- * bytes on the wire: the server's rchar/wchar from /proc/PID/io, read
--   before and after the run. They count every byte the server's read and
--   write system calls moved, which here are only its socket reads and
--   writes: WebSocket frames with their headers and masks, i.e. the TCP
--   payload (the TCP/IP headers are not in it). Divided by the number of
--   messages they give bytes per message in each direction.
-- * memory: VmRSS of the server from /proc/PID/status before and after
--   IDLE_CONNS connections have each sent and received one 200-byte JSON
--   message (so any zlib state a connection keeps is allocated), divided
--   by IDLE_CONNS.
local duplex = require "duplex"
local socket = require "socket"

local MODES = {
  off = false,
  on = true,
  nct = { context_takeover = false },
}

if arg[1] == "server" then
  local compression = MODES[arg[2]]
  local s = assert(duplex.serve({ host = "127.0.0.1", port = 0, compression = compression }, function(ws)
    while true do
      local msg, kind = ws:receive()
      if not msg then return end
      ws:send(msg, kind)
    end
  end))
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  io.stdout:write("port=", s.port, " pid=", pid, "\n")
  io.stdout:flush()
  duplex.run()
  return
end

local N = tonumber(arg[1]) or 20000
local IDLE = tonumber(arg[2]) or 1000
local BATCH = 100

-- The workload: chat lines from a handful of users, varied text.
local words = { "hello", "world", "the", "build", "is", "green", "again", "who", "broke", "main", "lunch",
  "at", "noon", "?", "deploying", "now", "ok", "thanks", "see", "you", "tomorrow", "review", "please",
  "looks", "good", "to", "me", "ship", "it", "coffee", "meeting", "moved", "3pm", "websocket", "latency" }
local nicks = { "alice", "bob", "carol", "dave", "eve", "mallory" }
math.randomseed(7)
local messages = {}
for i = 1, N do
  local t = {}
  for k = 1, math.random(3, 25) do t[k] = words[math.random(#words)] end
  messages[i] = ('{"type":"message","room":"general","nick":"%s","id":%d,"ts":%d,"text":"%s"}')
    :format(nicks[math.random(#nicks)], i, 1700000000000 + i * 137, table.concat(t, " "))
end
local payload_bytes = 0
for _, m in ipairs(messages) do payload_bytes = payload_bytes + #m end

local lua = arg[-1] or "lua5.4"
local script = arg[0]

local function start_server(mode)
  local cmd = ("%s %s server %s"):format(lua, script, mode)
  local p = assert(io.popen(cmd, "r"))
  local line = p:read("*l")
  local port, pid = line:match("port=(%d+) pid=(%d+)")
  assert(port, "server did not start: " .. tostring(line))
  return { p = p, port = tonumber(port), pid = pid }
end

local function stop_server(s)
  os.execute("kill " .. s.pid)
  s.p:close()
end

local function proc_field(pid, file, name)
  local f = assert(io.open("/proc/" .. pid .. "/" .. file))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(name .. ":%s*(%d+)"))
end

local function chat_run(mode)
  local srv = start_server(mode)
  local result
  duplex.run(function()
    local ws = assert(duplex.connect("ws://127.0.0.1:" .. srv.port .. "/", { compression = MODES[mode] }))
    -- one warm-up round trip, then the counters
    assert(ws:send(messages[1]))
    assert(ws:receive())
    local r0, w0 = proc_field(srv.pid, "io", "rchar"), proc_field(srv.pid, "io", "wchar")
    local t0 = socket.gettime()
    -- batches of BATCH messages in flight: far below the 1 MiB high-water
    -- marks, so this measures compression, not backpressure
    for i = 1, N, BATCH do
      local last = math.min(N, i + BATCH - 1)
      for k = i, last do assert(ws:send(messages[k])) end
      for _ = i, last do assert(ws:receive(), "connection closed early") end
    end
    local elapsed = socket.gettime() - t0
    local r1, w1 = proc_field(srv.pid, "io", "rchar"), proc_field(srv.pid, "io", "wchar")
    result = {
      mode = mode,
      compression = ws.compression,
      rate = N / elapsed,
      up = (r1 - r0) / N,
      down = (w1 - w0) / N,
    }
    ws:close()
  end)
  stop_server(srv)
  return result
end

local function idle_run(mode)
  local srv = start_server(mode)
  local result
  duplex.run(function()
    duplex.sleep(0.2)
    local before = proc_field(srv.pid, "status", "VmRSS")
    local conns = {}
    for i = 1, IDLE do
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. srv.port .. "/", { compression = MODES[mode] }))
      assert(ws:send(messages[i % N + 1]))
      assert(ws:receive())
      conns[i] = ws
    end
    duplex.sleep(0.5)
    local after = proc_field(srv.pid, "status", "VmRSS")
    result = { mode = mode, per_conn = (after - before) * 1024 / IDLE, compression = conns[1].compression }
    for _, ws in ipairs(conns) do ws:abort() end
  end)
  stop_server(srv)
  return result
end

local labels = { off = "off", on = "on, context takeover", nct = "on, no context takeover" }

print(("%s, %d JSON chat messages (%.0f bytes on average), echoed over loopback, %d in flight"):format(
  _VERSION .. (rawget(_G, "jit") and " (" .. jit.version .. ")" or ""), N, payload_bytes / N, BATCH))
print()
print("| compression | messages/s (echoed) | wire bytes/msg client->server | wire bytes/msg server->client |")
print("| --- | --- | --- | --- |")
for _, mode in ipairs({ "off", "on", "nct" }) do
  local r = chat_run(mode)
  assert(r.compression == (mode ~= "off"), "compression was not negotiated as expected")
  print(("| %s | %.0f | %.1f | %.1f |"):format(labels[mode], r.rate, r.up, r.down))
end
print()
print(("| compression | server RSS per idle connection (%d connections, after one message each) |"):format(IDLE))
print("| --- | --- |")
for _, mode in ipairs({ "off", "on", "nct" }) do
  local r = idle_run(mode)
  print(("| %s | %.0f bytes |"):format(labels[mode], r.per_conn))
end
