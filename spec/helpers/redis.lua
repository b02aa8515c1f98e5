-- A real redis-server for the broker specs: on a free port of 127.0.0.1,
-- without persistence, started and stopped from here (every wait bounded).
local socket = require "socket"

local M = {}

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- A port nobody listens on (yet).
M.free_port = require("helpers").closed_port

-- Starts redis-server on port (a free one if nil): the server object.
-- unixsocket: also listen on that path.
function M.start(port, password, unixsocket)
  port = port or M.free_port()
  local args = ("--port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize no"):format(port)
  if password then args = args .. " --requirepass " .. password end
  if unixsocket then args = args .. " --unixsocket " .. unixsocket end
  local pid = tonumber(sh(("redis-server %s </dev/null >/dev/null 2>&1 & echo $!"):format(args)))
  assert(pid, "could not start redis-server")
  local r = { port = port, pid = pid, password = password }
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then
      c:close()
      return setmetatable(r, { __index = M })
    end
    c:close()
    socket.sleep(0.02)
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  error("redis-server did not come up on port " .. port)
end

-- redis-cli's answer to a command (a string of words).
function M:cli(cmd)
  local auth = self.password and (" -a " .. self.password .. " --no-auth-warning") or ""
  return sh(("timeout 5 redis-cli -p %d%s %s 2>&1"):format(self.port, auth, cmd))
end

function M:url()
  if self.password then return ("redis://:%s@127.0.0.1:%d"):format(self.password, self.port) end
  return "redis://127.0.0.1:" .. self.port
end

-- Kills it and waits (bounded) until the port is free.
function M:stop()
  -- a paused one must go on to see the signal
  os.execute("kill " .. self.pid .. " 2>/dev/null; kill -CONT " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline do
    local f = io.open("/proc/" .. self.pid .. "/status")
    if not f then return end
    local zombie = f:read("*a"):find("State:%s*Z")
    f:close()
    if zombie then return end
    socket.sleep(0.02)
  end
end

function M:pause() os.execute("kill -STOP " .. self.pid) end
function M:resume() os.execute("kill -CONT " .. self.pid) end

-- A new server on the same port.
function M:restart()
  self:stop()
  local r = M.start(self.port, self.password)
  self.pid = r.pid
end

return M
