-- A raw LuaSocket client (no duplex) run as a subprocess by
-- spec/hostile_spec.lua: it shrinks its receive buffer, upgrades on PATH,
-- reads the 101 and then never reads again, while it sends KIND frames as
-- fast as the server takes them for SECONDS:
--   ping   125-byte pings (each asks for a pong the flooder never reads)
--   empty  empty binary messages (6 bytes on the wire, nothing to store)
-- It appends "flooder-start" when the flood begins, then
--   flooder KIND SENT
-- (bytes the kernel took) to OUTFILE, and resets the connection.
--
--   lua spec/hostile/flooder.lua PORT PATH KIND SECONDS OUTFILE
local socket = require "socket"

local port, path, kind, seconds, outfile = tonumber(arg[1]), arg[2], arg[3], tonumber(arg[4]), arg[5]
local out = assert(io.open(outfile, "a"))
local function log(...)
  out:write(table.concat({ ... }, " "), "\n")
  out:flush()
end

local sock = assert(socket.tcp4())
sock:setoption("recv-buffer-size", 4096)
sock:settimeout(5)
assert(sock:connect("127.0.0.1", port))
assert(sock:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" ..
  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
local head = ""
while not head:find("\r\n\r\n", 1, true) do
  local c = assert(sock:receive(1))
  head = head .. c
end
assert(head:match("^HTTP/1%.1 101"), "no 101: " .. head)

-- masked with the all-zero key: legal, and no work to build
local frame = kind == "ping" and "\137\253\0\0\0\0" .. ("p"):rep(125) or "\130\128\0\0\0\0"
local chunk = frame:rep(math.floor(65536 / #frame))

log("flooder-start")
local t0, sent = socket.gettime(), 0
sock:settimeout(0.1)
while socket.gettime() - t0 < seconds do
  local last, err, partial = sock:send(chunk)
  sent = sent + (last or partial or 0)
  if err and err ~= "timeout" then break end
end
log("flooder", kind, sent)
sock:setoption("linger", { on = true, timeout = 0 })
sock:close()
