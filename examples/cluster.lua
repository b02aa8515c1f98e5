-- The chat example (examples/chat.lua) on every core: N worker processes
-- share one port (reuseport) and join their rooms through Redis, so a
-- message sent to any worker reaches the room's members on all of them.
--   lua examples/cluster.lua [workers] [port] [redis-url]
--   (defaults: 2, 8080, redis://127.0.0.1:6379)
--
-- This process only starts the workers, starts again one that dies (after a
-- pause that grows while it keeps dying) and, on SIGTERM or SIGINT, stops
-- them: each closes its clients with 1001 (they reconnect elsewhere) and
-- exits. The member counts in join and leave messages are each worker's
-- own (duplex.subscribers counts this process). Several machines: run this on each, all with the same Redis, behind
-- a load balancer that forwards WebSocket upgrades (README, "Scale out").
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local script = arg[0]
local dir = script:match("^(.*)[/\\]") or "."

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The worker ---------------------------------------------------------------

local function worker(port, redis)
  local chat = assert(loadfile(dir .. "/chat.lua"))({ script = dir .. "/chat.lua" })
  local broker, err = duplex.broker(redis)
  if not broker then
    io.stderr:write("worker: ", err, "\n")
    os.exit(1)
  end
  local server, serr = chat.start({ port = port, reuseport = true })
  if not server then
    io.stderr:write("worker: ", serr, "\n")
    os.exit(1)
  end
  local function stop()
    duplex.shutdown({ code = 1001, reason = "server restarting", timeout = 5 })
    broker:close()
    duplex.stop()
  end
  duplex.on_signal("SIGTERM", stop)
  duplex.on_signal("SIGINT", stop)
  duplex.run()
end

-- The supervisor -----------------------------------------------------------

-- os.execute's result as a boolean, on every Lua (5.1 returns a number).
local function ran(...)
  local ok, _, code = ...
  if type(ok) == "number" then return ok == 0 end
  return ok == true and (code == nil or code == 0)
end

local function alive(pid) return ran(os.execute("kill -0 " .. pid .. " 2>/dev/null")) end

-- The command line that started this Lua, up to the script (the
-- interpreter and its options, such as -e with module paths).
local function interpreter()
  local i = 0
  while arg[i - 1] do i = i - 1 end
  local words = {}
  for j = i, -1 do words[#words + 1] = quote(arg[j]) end
  return #words > 0 and table.concat(words, " ") or "lua"
end

local function start_worker(port, redis)
  local p = io.popen(("%s %s --worker %d %s >&2 & echo $!"):format(
    interpreter(), quote(script), port, quote(redis)))
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

local function supervise(n, port, redis)
  local workers = {} -- slot -> { pid, started, delay }
  for i = 1, n do workers[i] = { pid = start_worker(port, redis), started = duplex.now(), delay = 1 } end
  local pids = {}
  for i, w in ipairs(workers) do pids[i] = w.pid end
  print(("cluster: %d workers (pids %s) on http://127.0.0.1:%d/, Redis %s  (Ctrl-C to stop)"):format(
    n, table.concat(pids, " "), port, redis))
  io.stdout:flush()
  local stopping = false
  local checks = duplex.every(1, function()
    for _, w in ipairs(workers) do
      if not stopping and not alive(w.pid) and duplex.now() - w.started >= w.delay then
        -- a worker that dies at once is started again less and less often
        w.delay = duplex.now() - w.started < 10 and math.min(w.delay * 2, 30) or 1
        io.stderr:write("cluster: worker ", w.pid, " died; starting another\n")
        w.pid, w.started = start_worker(port, redis), duplex.now()
      end
    end
  end)
  local function stop()
    if stopping then return end
    stopping = true
    checks:stop()
    for _, w in ipairs(workers) do os.execute("kill -TERM " .. w.pid .. " 2>/dev/null") end
    local deadline = duplex.now() + 8
    for _, w in ipairs(workers) do
      while alive(w.pid) and duplex.now() < deadline do duplex.sleep(0.05) end
      if alive(w.pid) then os.execute("kill -KILL " .. w.pid .. " 2>/dev/null") end
    end
    duplex.stop()
  end
  duplex.on_signal("SIGTERM", stop)
  duplex.on_signal("SIGINT", stop)
  duplex.run()
end

if arg[1] == "--worker" then
  worker(tonumber(arg[2]), arg[3])
else
  local n = tonumber(arg[1]) or 2
  local port = tonumber(arg[2]) or 8080
  supervise(n, port, arg[3] or "redis://127.0.0.1:6379")
end
