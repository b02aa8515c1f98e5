-- duplex.broker: topics joined across processes through a real
-- redis-server (spec/helpers/redis.lua). Each duplex process is a child
-- (spec/helpers/broker_node.lua) driven by a client in this process.
local helpers = require "helpers"
local redis = require "helpers.redis"
local duplex = helpers.duplex
local socket = helpers.socket
local run = helpers.run

local HERE = debug.getinfo(1, "S").source:match("^@(.*)broker_spec%.lua$") or "spec/"
local NODE = HERE .. "helpers/broker_node.lua"
local LUA = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Starts a node on r (port: fixed, with reuseport); returns { pid, port }.
local function start_node(r, port)
  local file = os.tmpname()
  os.remove(file)
  local cmd = ("%s %s %s %s %s %s </dev/null >/dev/null 2>>/tmp/duplex-broker-node.err & echo $!"):format(
    LUA, NODE, r:url(), file, port or 0, port and "reuseport" or "")
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("*l"))
  p:close()
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline do
    local s = read_file(file)
    if s and s:match("%d+\n") then
      os.remove(file)
      return { pid = pid, port = tonumber(s:match("%d+")) }
    end
    socket.sleep(0.02)
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  error("broker node did not start")
end

local function stop_node(n)
  os.execute("kill " .. n.pid .. " 2>/dev/null")
end

local function rss_kb(pid)
  return tonumber((read_file("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
end

-- A client of a node: cmd() sends a command and waits for its "ok";
-- whatever else arrives (published messages) goes to got.
local Client = {}
Client.__index = Client

local function client(port)
  local ws = assert(helpers.connect(helpers.url(port)))
  return setmetatable({ ws = ws, got = {} }, Client)
end

function Client:cmd(text, kind)
  assert(self.ws:send(text, kind))
  while true do
    local m = assert(self.ws:receive(5))
    if m:sub(1, 2) == "ok" then return m end
    self.got[#self.got + 1] = m
  end
end

-- Waits until n messages arrived (bounded): the list.
function Client:collect(n, timeout)
  local deadline = duplex.now() + (timeout or 5)
  while #self.got < n do
    local left = deadline - duplex.now()
    if left <= 0 then break end
    local m = self.ws:receive(left)
    if not m then break end
    self.got[#self.got + 1] = m
  end
  return self.got
end

-- Nothing more arrives within t seconds.
function Client:quiet(t)
  local m = self.ws:receive(t)
  if m then self.got[#self.got + 1] = m end
  return m == nil
end

-- Waits until Redis counts n subscribers of the channel.
local function await_subscribers(r, channel, n)
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline do
    local count = tonumber(r:cli("PUBSUB NUMSUB " .. channel):match("\n(%d+)"))
    if count == n then return true end
    duplex.sleep(0.02)
  end
  error("Redis never counted " .. n .. " subscribers of " .. channel)
end

describe("duplex.broker", function()
  local r, nodes
  before_each(function()
    r = redis.start()
    nodes = {}
  end)
  after_each(function()
    for _, n in ipairs(nodes) do stop_node(n) end
    r:stop()
  end)

  local function spawn(k, port)
    for i = 1, k do nodes[#nodes + 1] = start_node(r, port) end
  end

  -- Each client's messages: by tag, the numbers in arrival order.
  local function by_tag(got)
    local t = {}
    for _, m in ipairs(got) do
      local tag, k = m:match("^(%S+) (%d+)$")
      if tag then
        t[tag] = t[tag] or {}
        table.insert(t[tag], tonumber(k))
      end
    end
    return t
  end

  local function one_to(n)
    local t = {}
    for i = 1, n do t[i] = i end
    return t
  end

  it("delivers each publish from every process to every other subscriber exactly once, in order", function()
    spawn(3)
    run(function()
      local cs = {}
      for i, n in ipairs(nodes) do
        cs[i] = client(n.port)
        cs[i]:cmd("sub news")
      end
      await_subscribers(r, "duplex:news", 3)
      for i = 1, 3 do cs[i]:cmd("burst news 100 p" .. i) end
      for _, c in ipairs(cs) do
        local t = by_tag(c:collect(300))
        for i = 1, 3 do assert.are.same(one_to(100), t["p" .. i]) end
        assert.is_true(c:quiet(0.2))
        assert.are.equal(300, #c.got)
      end
    end, 15)
  end)

  it("two processes: publishes cross both ways", function()
    spawn(2)
    run(function()
      local a, b = client(nodes[1].port), client(nodes[2].port)
      a:cmd("sub t")
      b:cmd("sub t")
      await_subscribers(r, "duplex:t", 2)
      a:cmd("pub t x 1")
      b:cmd("pub t y 1")
      for _, c in ipairs({ a, b }) do
        local t = by_tag(c:collect(2))
        assert.are.same({ 1 }, t.x)
        assert.are.same({ 1 }, t.y)
      end
    end)
  end)

  it("ws:publish excludes only the sender", function()
    spawn(2)
    run(function()
      local a1, a2, b = client(nodes[1].port), client(nodes[1].port), client(nodes[2].port)
      for _, c in ipairs({ a1, a2, b }) do c:cmd("sub room") end
      await_subscribers(r, "duplex:room", 2)
      a1:cmd("wspub room m 1")
      assert.are.same({ "m 1" }, a2:collect(1))
      assert.are.same({ "m 1" }, b:collect(1))
      assert.is_true(a1:quiet(0.3))
      assert.are.same({}, a1.got)
    end)
  end)

  it("unsubscribes in Redis when a topic has no subscriber left", function()
    spawn(1)
    run(function()
      local a, b = client(nodes[1].port), client(nodes[1].port)
      a:cmd("sub gone")
      b:cmd("sub gone")
      await_subscribers(r, "duplex:gone", 1)
      a:cmd("unsub gone")
      assert.is_truthy(r:cli("PUBSUB CHANNELS"):find("duplex:gone", 1, true))
      b.ws:close()
      await_subscribers(r, "duplex:gone", 0)
      assert.is_nil(r:cli("PUBSUB CHANNELS"):find("duplex:gone", 1, true))
    end)
  end)

  it("counts and drops what is not an envelope, and goes on", function()
    spawn(2)
    run(function()
      local a, b = client(nodes[1].port), client(nodes[2].port)
      b:cmd("sub g")
      await_subscribers(r, "duplex:g", 1)
      r:cli("PUBLISH duplex:g garbage")
      r:cli("PUBLISH duplex:g ''")
      a:cmd("pub g ok 1")
      assert.are.same({ "ok 1" }, b:collect(1))
      assert.are.equal("2", b:cmd("stats"):match("(%d+)$"))
    end)
  end)

  it("carries a binary message with every byte intact", function()
    spawn(2)
    run(function()
      local a, b = client(nodes[1].port), client(nodes[2].port)
      b:cmd("sub bin")
      await_subscribers(r, "duplex:bin", 1)
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local data = table.concat(bytes) .. table.concat(bytes)
      a:cmd("bin\n" .. data, "binary")
      local deadline = duplex.now() + 5
      local msg, kind
      repeat msg, kind = b.ws:receive(1) until msg or duplex.now() > deadline
      assert.are.equal("binary", kind)
      assert.are.equal(data, msg)
    end)
  end)

  it("shares one port between two processes with reuseport", function()
    local port = redis.free_port()
    spawn(2, port)
    assert.are.equal(port, nodes[1].port)
    assert.are.equal(port, nodes[2].port)
    run(function()
      local cs = {}
      for i = 1, 8 do
        cs[i] = client(port)
        cs[i]:cmd("sub s")
      end
      await_subscribers(r, "duplex:s", 2) -- both processes got clients
      cs[1]:cmd("pub s z 1")
      for i = 1, 8 do assert.are.same({ "z 1" }, cs[i]:collect(1)) end
    end)
  end)

  it("keeps local delivery through a Redis restart and resumes across processes, no duplicate", function()
    spawn(2)
    run(function()
      local a, a2, b = client(nodes[1].port), client(nodes[1].port), client(nodes[2].port)
      a:cmd("sub o")
      a2:cmd("sub o")
      b:cmd("sub o")
      await_subscribers(r, "duplex:o", 2)
      a:cmd("pub o before 1")
      assert.are.same({ "before 1" }, b:collect(1))
      r:stop()
      a:cmd("pub o during 1")
      assert.are.same({ "before 1", "during 1" }, a2:collect(2))
      r:restart()
      -- resubscribed within the backoff bound (0.3 s) plus a connect
      local t0 = duplex.now()
      await_subscribers(r, "duplex:o", 2)
      assert.is_true(duplex.now() - t0 < 1.5, "resubscribed after " .. (duplex.now() - t0) .. " s")
      local deadline = duplex.now() + 3
      while a:cmd("stats"):match("^ok (%S+)") ~= "connected" and duplex.now() < deadline do duplex.sleep(0.02) end
      a:cmd("pub o after 1")
      assert.are.same({ "before 1", "after 1" }, b:collect(2))
      assert.are.same({ "before 1", "during 1", "after 1" }, a2:collect(3))
      assert.is_true(b:quiet(0.3))
      assert.are.equal(2, #b.got)
    end, 15)
  end)

  it("drops and counts publishes while Redis does not read, with memory bounded", function()
    spawn(1)
    run(function()
      local a = client(nodes[1].port)
      a:cmd("sub p")
      local before = rss_kb(nodes[1].pid)
      r:pause()
      for _ = 1, 20 do a:cmd("burst p 5000 " .. string.rep("x", 200)) end
      local published, dropped = a:cmd("stats"):match("^ok %S+ (%d+) %d+ (%d+)")
      r:resume()
      assert.is_true(tonumber(dropped) > 0)
      assert.are.equal(100000, tonumber(published) + tonumber(dropped))
      local grown = rss_kb(nodes[1].pid) - before
      io.stdout:write(("broker: paused Redis: %s published, %s dropped, RSS +%d KiB\n"):format(published, dropped, grown))
      -- (under ASan freed memory sits in its quarantine: RSS tells nothing)
      if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
        assert.is_true(grown < 64 * 1024, "RSS grew by " .. grown .. " KiB")
      end
    end, 20)
  end)

  it("reports a wrong password, a missing one and an unreachable Redis", function()
    r:stop()
    r = redis.start(nil, "secret")
    run(function()
      local b, err = duplex.broker("redis://:wrong@127.0.0.1:" .. r.port, { timeout = 2 })
      assert.is_nil(b)
      assert.are.equal("redis 127.0.0.1:" .. r.port .. ": wrong password", err)
      b, err = duplex.broker("redis://127.0.0.1:" .. r.port, { timeout = 2 })
      assert.is_nil(b)
      assert.are.equal("redis 127.0.0.1:" .. r.port .. ": a password is required", err)
      local port = redis.free_port()
      b, err = duplex.broker("redis://127.0.0.1:" .. port, { timeout = 2 })
      assert.is_nil(b)
      assert.are.equal("redis 127.0.0.1:" .. port .. ": connection refused", err)
      b = assert(duplex.broker(r:url(), { timeout = 2 }))
      assert.are.equal("connected", b.state)
      local b2, err2 = duplex.broker(r:url())
      assert.is_nil(b2)
      assert.matches("set already", err2)
      b:close()
      assert.are.equal("closed", b.state)
      assert.has_error(function() duplex.broker(r:url(), { prefx = "x" }) end)
      assert.has_error(function() duplex.broker(r:url(), { timeout = 0 }) end, "option 'timeout' must be a number of seconds > 0")
      assert.has_error(function() duplex.broker(r:url(), { reconnect = { min = -1 } }) end,
        "option 'reconnect.min' must be seconds >= 0")
      b, err = duplex.broker("http://x")
      assert.is_nil(b)
      assert.matches("bad broker URL", err)
    end)
  end)

  it("reports a Redis that accepts but never answers as timed out", function()
    r:pause()
    run(function()
      local t0 = duplex.now()
      local b, err = duplex.broker(r:url(), { timeout = 0.3 })
      assert.is_nil(b)
      assert.are.equal("redis 127.0.0.1:" .. r.port .. ": connection timed out", err)
      assert.is_true(duplex.now() - t0 < 2)
    end)
    r:resume()
  end)

  it("connects through a unix socket, with SELECT", function()
    r:stop()
    local path = os.tmpname()
    os.remove(path)
    r = redis.start(nil, nil, path)
    run(function()
      local b = assert(duplex.broker("unix:" .. path, { timeout = 2 }))
      assert.are.equal("connected", b.state)
      b:close()
      b = assert(duplex.broker("redis://127.0.0.1:" .. r.port .. "/3", { timeout = 2 }))
      assert.are.equal("connected", b.state)
      b:close()
      local err
      b, err = duplex.broker("unix:" .. path .. ".none", { timeout = 2 })
      assert.is_nil(b)
      assert.are.equal("redis " .. path .. ".none: no such file or directory", err)
    end)
    os.remove(path)
  end)
end)
