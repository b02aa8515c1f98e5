-- A raw LuaSocket client (no duplex) run as a subprocess by
-- spec/hostile_spec.lua: it upgrades, then sends COUNT pings as fast as it
-- can (payload: the ping's number, 8 digits), and goes on until it has sent
-- at least COUNT and flooded for at least SECONDS, reading the pongs as they
-- come. It appends "pinger-start" when the flood begins, then
--   pinger SENT PONGS INORDER SECONDS
-- to OUTFILE. INORDER is 1 when the pongs came back in the order sent.
--
--   lua spec/hostile/pinger.lua PORT COUNT SECONDS OUTFILE
local socket = require "socket"

local port, count, seconds, outfile = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), arg[4]
local out = assert(io.open(outfile, "a"))
local function log(...)
  out:write(table.concat({ ... }, " "), "\n")
  out:flush()
end

local sock = assert(socket.tcp4())
sock:settimeout(5)
assert(sock:connect("127.0.0.1", port))
sock:setoption("tcp-nodelay", true)
assert(sock:send("GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
local head = ""
while not head:find("\r\n\r\n", 1, true) do
  local line = assert(sock:receive("*l"))
  head = head .. line .. "\r\n"
  if line == "" then break end
end
assert(head:match("^HTTP/1%.1 101"), "no 101: " .. head)

local buf, pongs, inorder = "", 0, 1
local function take(data)
  buf = buf .. data
  while #buf >= 2 do
    local b0, b1 = buf:byte(1, 2)
    local n = b1 % 128
    if n > 125 or #buf < 2 + n then break end
    if b0 == 0x8A then
      pongs = pongs + 1
      if tonumber(buf:sub(3, 2 + n)) ~= pongs then inorder = 0 end
    end
    buf = buf:sub(3 + n)
  end
end

local function drain(timeout)
  sock:settimeout(timeout)
  local data, err, partial = sock:receive(65536)
  data = data or partial
  if data and #data > 0 then take(data) end
  return err
end

log("pinger-start")
local t0 = socket.gettime()
local sent = 0
while sent < count or socket.gettime() - t0 < seconds do
  local batch = {}
  for _ = 1, 500 do
    sent = sent + 1
    -- masked with the all-zero key: legal, and the payload stays readable
    batch[#batch + 1] = "\137\136\0\0\0\0" .. string.format("%08d", sent)
  end
  sock:settimeout(5)
  assert(sock:send(table.concat(batch)))
  drain(0)
end
count = sent
local deadline = socket.gettime() + 10
while pongs < count and socket.gettime() < deadline do
  local err = drain(0.2)
  if err == "closed" then break end
end
local elapsed = socket.gettime() - t0
-- close cleanly: a masked close frame with code 1000
sock:settimeout(2)
sock:send("\136\130\0\0\0\0\3\232")
drain(1)
sock:close()
log("pinger", count, pongs, inorder, string.format("%.3f", elapsed))
