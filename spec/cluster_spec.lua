-- examples/cluster.lua as a user runs it: two chat workers on one port
-- (reuseport), joined through a real redis-server; clients spread over both
-- chat across them; SIGTERM to the supervisor closes every client with 1001
-- and leaves no worker behind.
local duplex = require "duplex"
local support = require "interop.support"
local redis = require "helpers.redis"

local WORKERS = 2

-- pid -> established connections on port, from ss (iproute2).
local function holders(port)
  local p = assert(io.popen(("ss -tnpH state established '( sport = :%d )' 2>/dev/null"):format(port)))
  local out = p:read("*a")
  p:close()
  local by_pid = {}
  for pid in out:gmatch("pid=(%d+)") do by_pid[tonumber(pid)] = (by_pid[tonumber(pid)] or 0) + 1 end
  return by_pid
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return false end
  local zombie = f:read("*a"):find("State:%s*Z")
  f:close()
  return not zombie
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Reads until a chat message with text `text` comes, counting the ones
-- with text `count_text` on the way; nil when it does not come in time.
local function read_until(ws, text, count_text)
  local seen = 0
  local deadline = duplex.now() + 5
  while duplex.now() < deadline do
    local msg = ws:receive(deadline - duplex.now())
    if not msg then return nil end
    if msg:find('"text":"' .. count_text .. '"', 1, true) then seen = seen + 1 end
    if msg:find('"text":"' .. text .. '"', 1, true) then return seen end
  end
end

describe("examples/cluster.lua", function()
  local r
  before_each(function() r = redis.start() end)
  after_each(function()
    support.cleanup()
    if r then r:stop() end
  end)

  it("spreads clients over its workers, joins their rooms through Redis and stops them all on SIGTERM", function()
    support.run(function()
      local port = redis.free_port()
      local p = support.start(support.lua_argv("examples/cluster.lua", WORKERS, port, r:url()), 60)
      local pids = support.wait_for_output(p, "workers %(pids ([%d ]+)%) on http://127%.0%.0%.1:" .. port, 10)
      assert(pids, "cluster.lua did not start: " .. support.describe(p))
      local workers = {}
      for pid in pids:gmatch("%d+") do workers[#workers + 1] = tonumber(pid) end
      assert.equal(WORKERS, #workers)

      -- clients until both workers hold some (the kernel spreads them by hash)
      local clients = {}
      local deadline = duplex.now() + 15
      while duplex.now() < deadline and (#clients < 4 or count(holders(port)) < WORKERS) and #clients < 40 do
        local ws = duplex.connect(("ws://127.0.0.1:%d/chat?nick=u%d"):format(port, #clients + 1))
        if ws then
          assert.matches('"type":"welcome"', ws:receive(5), 1, true)
          clients[#clients + 1] = ws
        else
          duplex.sleep(0.05) -- a worker still starting
        end
      end
      local held = holders(port)
      assert.equal(WORKERS, count(held), "the clients did not spread over the workers")
      for pid in pairs(held) do
        local ours = false
        for _, w in ipairs(workers) do ours = ours or w == pid end
        assert.is_true(ours, "a connection held by pid " .. pid .. ", not a worker")
      end

      -- one message, then a marker: everyone gets the first exactly once
      assert(clients[1]:send("hello, cluster"))
      assert(clients[1]:send("marker"))
      for i, ws in ipairs(clients) do
        assert.equal(1, read_until(ws, "marker", "hello, cluster"), "client " .. i)
      end

      support.kill(p) -- SIGTERM to the supervisor
      for i, ws in ipairs(clients) do
        local msg, err, code = ws:receive(8)
        while msg do msg, err, code = ws:receive(8) end
        assert.equal("closed", err, "client " .. i)
        assert.equal(1001, code, "client " .. i)
      end
      assert(support.wait(p, 10), "the supervisor did not exit: " .. support.describe(p))
      for _, pid in ipairs(workers) do assert.is_false(alive(pid), "worker " .. pid .. " still runs") end
    end, 60)
  end)
end)
