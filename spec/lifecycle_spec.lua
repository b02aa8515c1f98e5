-- The lifecycle: duplex.shutdown and server:shutdown, signals (on_signal,
-- and SIGINT/SIGTERM ending duplex.run in a child process), and dead peers
-- noticed while a handler has stopped reading. Written without yields
-- inside pcall or a for iterator, so PUC Lua 5.1 runs it.
local helpers = require "helpers"
local support = require "interop.support"
local duplex = helpers.duplex
local run = helpers.run

local PY = support.PYTHON
local has_python = support.websockets_version() ~= nil

-- A child Lua process running `code` (a chunk given duplex); stdout lines
-- are flushed at once.
local function lua_child(code, limit)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write('io.stdout:setvbuf("no")\nlocal duplex = require "duplex"\n',
    'local stat = io.open("/proc/self/stat"):read("*l")\nprint("pid=" .. stat:match("^%d+"))\n', code)
  f:close()
  local p = support.start(support.lua_argv(path), limit or 10)
  p.script = path
  p.own_pid = tonumber(support.wait_for_output(p, "pid=(%d+)\n", 5))
  return p
end

local function chat_child()
  local p = support.start(support.lua_argv("examples/chat.lua", 0), 10)
  local port = support.wait_for_output(p, "chat on http://127%.0%.0%.1:(%d+)/", 5)
  assert(port, "chat.lua did not start: " .. support.describe(p))
  return p, tonumber(port)
end

-- timeout(1) passes INT and TERM on but dies of USR1: a child that prints
-- `pid=N` (lua_child) gets its signals straight.
local function signal(p, name)
  local pid = p.own_pid or assert(support.pid(p), "no pid")
  os.execute(("kill -%s %d"):format(name, pid))
end

-- Sends the signal and returns the exit status and the seconds it took.
local function signal_and_wait(p, name, limit)
  local t0 = duplex.now()
  signal(p, name)
  local rc = support.wait(p, limit or 3)
  return rc, duplex.now() - t0
end

local function python_clients(url, n)
  local c = support.start({ PY, "spec/interop/lifecycle_clients.py", url, tostring(n) }, 15)
  assert(support.wait_for_output(c, "connected=(%d+)", 8), "the clients did not connect: " .. support.describe(c))
  return c
end

-- A handler that never reads and records how its connection ended.
local function never_reading(seen)
  return function(ws)
    seen.ws = ws
    ws:wait_closed()
    seen.closed_at = duplex.now()
    seen.code = ws.close_code
  end
end

local function flood(raw)
  local frames = {}
  for i = 1, 64 do frames[i] = helpers.frame({ payload = ("x"):rep(1024) }) end
  assert(raw:send(table.concat(frames)))
end

describe("duplex.shutdown", function()
  after_each(support.cleanup)

  it("closes Python websockets clients with 1001 and a clean close", function()
    if not has_python then return pending("python3-websockets is not installed") end
    run(function()
      local finished = 0
      local s = helpers.serve({}, function(ws)
        while ws:receive() do end
        finished = finished + 1
      end)
      local c = python_clients(helpers.url(s.port, "/py"), 3)
      local ok, err, n = duplex.shutdown({ code = 1001, timeout = 5 })
      assert.is_true(ok, tostring(err) .. " " .. tostring(n))
      assert.equal(3, finished)
      local rc = support.wait(c, 5)
      assert(rc == 0, support.describe(c))
      local f = support.fields(support.output(c))
      for i = 1, 3 do
        assert.equal("1001 server shutting down", f["close" .. i])
        assert.equal("1", f["clean" .. i])
      end
      assert.is_nil(duplex.connect(helpers.url(s.port)))
    end, 14)
  end)

  it("aborts a handler that will not finish at the timeout, and says so", function()
    run(function()
      local release = false
      local s = helpers.serve({}, function(ws)
        ws:wait_closed()
        while not release do duplex.sleep(0.02) end
      end)
      local ws = assert(helpers.connect(helpers.url(s.port)))
      local t0 = duplex.now()
      local ok, err, n = duplex.shutdown({ timeout = 0.3 })
      local took = duplex.now() - t0
      assert.is_nil(ok)
      assert.equal("timed out", err)
      assert.equal(1, n)
      assert.is_true(took >= 0.25 and took < 2, "took " .. took)
      assert.equal("closed", ws.state)
      assert.equal(1001, ws.close_code)
      release = true
    end)
  end)

  it("answers 503 to a handshake in progress and to an upgrade in the accept hook", function()
    run(function()
      local s = helpers.serve({ accept = function() duplex.sleep(0.3) end }, function(ws) ws:wait_closed() end)
      local half = assert(helpers.raw_client(s.port))
      assert(half:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
      local pending = assert(helpers.raw_client(s.port))
      assert(pending:send(helpers.upgrade_request()))
      duplex.sleep(0.1) -- both are read by now: one half a head, one waiting in the hook
      assert.is_true(s:shutdown({ timeout = 2 }))
      local h1 = assert(half:read_head(3))
      assert.equal(503, h1.status)
      local h2 = assert(pending:read_head(3))
      assert.equal(503, h2.status)
      duplex.sleep(0.35) -- the hook's verdict comes after the refusal: nothing more happens
      assert.is_nil(helpers.raw_client(s.port))
    end)
  end)

  it("server:shutdown closes only that server's connections", function()
    run(function()
      local echo = helpers.echo_handler()
      local s1, s2 = helpers.serve({}, echo), helpers.serve({}, echo)
      local a = assert(helpers.connect(helpers.url(s1.port)))
      local b = assert(helpers.connect(helpers.url(s2.port)))
      assert.is_true(s1:shutdown({ code = 4000, reason = "one", timeout = 2 }))
      assert.equal("closed", a.state)
      assert.equal(4000, a.close_code)
      assert.equal("one", a.close_reason)
      assert.equal("open", b.state)
      assert(b:send("still here"))
      assert.equal("still here", (b:receive(2)))
      assert.is_true(b:close())
    end)
  end)

  it("also closes duplex.connect clients", function()
    run(function()
      local got
      local s = helpers.serve({}, function(ws)
        local _, _, code = ws:receive()
        got = code
      end)
      local ws = assert(helpers.connect(helpers.url(s.port)))
      s:close() -- only stops listening: the connection carries on
      assert.equal("open", ws.state)
      assert.is_true(duplex.shutdown({ timeout = 2 }))
      assert.equal("closed", ws.state)
      assert.is_true(ws.close_clean)
      assert.equal(1001, got)
    end)
  end)

  it("ends a dial in progress: connect returns nil, err at once", function()
    run(function()
      local silent = helpers.raw_server() -- accepts, never answers the upgrade
      local result
      duplex.spawn(function() result = { duplex.connect(silent:url(), { timeout = 5 }) } end)
      local peer = assert(silent:accept(2))
      assert.is_true(duplex.shutdown({ timeout = 1 }))
      local deadline = duplex.now() + 1
      while not result and duplex.now() < deadline do duplex.sleep(0.01) end
      assert(result, "connect still waits after shutdown")
      assert.is_nil(result[1])
      assert.equal("the process is shutting down", result[2])
      peer:close()
    end)
  end)

  it("closes a reconnecting client for good: it does not take the 1001 for a reason to retry", function()
    run(function()
      local got, opens = nil, 0
      local s = helpers.serve({}, function(ws)
        local _, _, code = ws:receive()
        got = code
      end)
      local ws = assert(duplex.connect(helpers.url(s.port), {
        reconnect = { min = 0.01, max = 0.02 },
        on_open = function() opens = opens + 1 end,
      }))
      assert.equal("open", ws.state)
      assert.is_true(duplex.shutdown({ timeout = 2 }))
      assert.equal("closed", ws.state)
      assert.equal(1001, got)
      duplex.sleep(0.1) -- a retry would have dialed by now
      assert.equal(1, opens)
      assert.equal(0, ws.reconnects)
    end)
  end)

  it("leaves nothing behind: duplex.run then returns by itself (a child process)", function()
    run(function()
      local p = lua_child([[
        local s = assert(duplex.serve({ port = 0 }, function(ws) while ws:receive() do end end))
        duplex.spawn(function()
          local ws = assert(duplex.connect("ws://127.0.0.1:" .. s.port .. "/"))
          duplex.spawn(function() print("client", ws:receive()) end)
          duplex.sleep(0.1)
          print("shutdown", duplex.shutdown({ timeout = 2 }))
        end)
        print("run", duplex.run())
      ]])
      local rc = support.wait(p, 5)
      assert(rc == 0, support.describe(p))
      local out = support.output(p)
      assert.matches("client\tnil\tclosed\t1001\tserver shutting down\n", out)
      assert.matches("shutdown\ttrue\nrun\n", out)
      os.remove(p.script)
    end)
  end)

  it("checks its options", function()
    assert.has_error(function() duplex.shutdown({ timeot = 1 }) end)
    -- the error names the line that called shutdown, not one inside duplex
    local ok, err = pcall(function() duplex.shutdown({ code = "x" }) end)
    assert.is_false(ok)
    assert.matches("^spec/lifecycle_spec%.lua:%d+: option 'code' must be a number", err)
    assert.has_error(function() duplex.shutdown({ timeout = -1 }) end)
  end)
end)

describe("signals", function()
  after_each(support.cleanup)

  it("on_signal refuses other names", function()
    assert.has_error(function() duplex.on_signal("SIGKILL", print) end,
      'bad argument #1 to \'on_signal\' (one of "SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2" expected, got SIGKILL)')
    assert.has_error(function() duplex.on_signal("SIGUSR1", 42) end)
  end)

  it("on_signal runs fn in a coroutine on each delivery (SIGUSR1 to a child)", function()
    run(function()
      local p = lua_child([[
        local n = 0
        duplex.on_signal("SIGUSR1", function(name)
          n = n + 1
          duplex.sleep(0) -- a coroutine: it may wait
          print("got " .. name .. " " .. n)
          if n == 2 then duplex.on_signal("SIGUSR1", nil); duplex.stop() end
        end)
        local s = assert(duplex.serve({ port = 0 }, function() end))
        print("ready")
        duplex.run()
        print("done")
      ]])
      assert(support.wait_for_output(p, "(ready)", 5), support.describe(p))
      signal(p, "USR1")
      assert(support.wait_for_output(p, "(got SIGUSR1 1)", 3), support.describe(p))
      signal(p, "USR1")
      local rc = support.wait(p, 3)
      assert(rc == 0, support.describe(p))
      assert.matches("got SIGUSR1 2\ndone\n", support.output(p))
      os.remove(p.script)
    end)
  end)

  it("without a handler, SIGINT and SIGTERM end an idle duplex.run at once", function()
    run(function()
      for _, sig in ipairs({ "INT", "TERM" }) do
        local p = lua_child([[
          local s = assert(duplex.serve({ port = 0 }, function() end))
          print("ready")
          print("run", duplex.run())
        ]])
        assert(support.wait_for_output(p, "(ready)", 5), support.describe(p))
        local rc, took = signal_and_wait(p, sig)
        assert(rc == 0, support.describe(p))
        assert.is_true(took < 1, "took " .. took)
        assert.matches("run\tnil\tinterrupted\tSIG" .. sig, support.output(p))
        os.remove(p.script)
      end
    end)
  end)

  it("chat.lua: Ctrl-C stops it idle (130) and busy, SIGTERM closes its clients with 1001 (0)", function()
    run(function()
      local p = chat_child()
      local rc, took = signal_and_wait(p, "INT")
      assert(rc == 130, support.describe(p))
      assert.is_true(took < 1, "took " .. took)

      p = chat_child()
      rc, took = signal_and_wait(p, "TERM")
      assert(rc == 0, support.describe(p))
      assert.is_true(took < 1, "took " .. took)

      local port
      p, port = chat_child()
      local ws = assert(helpers.connect(helpers.url(port, "/chat?nick=ann")))
      assert(ws:receive(2))
      rc, took = signal_and_wait(p, "INT")
      assert(rc == 130, support.describe(p))
      assert.is_true(took < 1, "took " .. took)
      while ws:receive(2) do end
      assert.equal(1006, ws.close_code)
    end, 14)
  end)

  it("chat.lua: SIGTERM with busy Python clients sends them 1001 and exits within a second", function()
    if not has_python then return pending("python3-websockets is not installed") end
    run(function()
      local p, port = chat_child()
      local c = python_clients(("ws://127.0.0.1:%d/chat?nick=py"):format(port), 2)
      local ws = assert(helpers.connect(helpers.url(port, "/chat?nick=ann")))
      assert(ws:receive(2))
      assert(ws:send("busy")) -- a publish to everyone in the room as the signal comes
      duplex.spawn(function() -- our client reads on, as the Python ones do
        while ws:receive(3) do end
      end)
      local rc, took = signal_and_wait(p, "TERM")
      assert(rc == 0, support.describe(p))
      assert.is_true(took < 1, "took " .. took)
      local crc = support.wait(c, 5)
      assert(crc == 0, support.describe(c))
      local f = support.fields(support.output(c))
      assert.equal("1001 server shutting down", f.close1)
      assert.equal("1001 server shutting down", f.close2)
      assert.equal("1", f.clean1)
      assert(helpers.wait_until(function() return ws.state == "closed" end, 3))
      assert.equal(1001, ws.close_code)
    end, 14)
  end)
end)

describe("dead peers", function()
  it("a never-reading handler's wait_closed returns once the peer has closed", function()
    run(function()
      local seen = {}
      local s = helpers.serve({ high_water = 4096 }, never_reading(seen))
      local raw = helpers.raw_ws_client(s.port)
      flood(raw) -- reading pauses: the inbox is past high water
      assert(helpers.wait_until(function() return seen.ws end, 2))
      duplex.sleep(0.1)
      local t0 = duplex.now()
      raw:close() -- its FIN waits behind unread data
      assert(helpers.wait_until(function() return seen.closed_at end, 3), "wait_closed did not return")
      assert.is_true(seen.closed_at - t0 < 1.5)
      assert.equal(1006, seen.code)
    end)
  end)

  it("a handler that only sends notices the peer has gone", function()
    run(function()
      local seen = {}
      local s = helpers.serve({ high_water = 4096 }, function(ws)
        seen.ws = ws
        local chunk = ("y"):rep(16 * 1024)
        while ws:send(chunk) do duplex.sleep(0.001) end
        seen.closed_at = duplex.now()
      end)
      local raw = helpers.raw_ws_client(s.port)
      flood(raw)
      assert(helpers.wait_until(function() return seen.ws end, 2))
      raw:close()
      assert(helpers.wait_until(function() return seen.closed_at end, 3), "send never failed")
      assert.equal("closed", seen.ws.state)
    end)
  end)

  it("with keepalive, a silent peer is failed while reading is paused", function()
    run(function()
      local seen = {}
      local s = helpers.serve({ high_water = 4096, ping_interval = 0.2, ping_timeout = 0.2 }, never_reading(seen))
      local raw = helpers.raw_ws_client(s.port)
      flood(raw) -- and then says nothing, reads nothing, answers no ping
      assert(helpers.wait_until(function() return seen.closed_at end, 3), "the silent peer was not failed")
      assert.equal(1011, seen.code)
      raw:close()
    end)
  end)
end)
