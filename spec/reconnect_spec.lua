-- The reconnecting client (duplex.connect with `reconnect`) against real
-- servers on 127.0.0.1: Python websockets servers that this spec kills,
-- restarts and has misbehave (spec/interop/reconnect_server.py), and
-- duplex servers in this process. Every wait is bounded.
local duplex = require "duplex"
local reconnect = require "duplex.reconnect"
local support = require "interop.support"

local PY = support.PYTHON
local SERVER_PY = "spec/interop/reconnect_server.py"

local function python(port, mode, ...)
  local p = support.start({ PY, SERVER_PY, tostring(port), mode, ... }, 40)
  local got = support.wait_for_output(p, "port=(%d+)\n", 15)
  assert(got, "the server did not start: " .. support.describe(p))
  return p, tonumber(got)
end

-- The values of key=value lines of p's output, in order.
local function values(p, key)
  local t = {}
  for v in support.output(p):gmatch(key .. "=([^\n]*)\n") do t[#t + 1] = v end
  return t
end

local function wait_until(cond, limit)
  local deadline = duplex.now() + (limit or 5)
  while not cond() do
    if duplex.now() > deadline then return false end
    duplex.sleep(0.01)
  end
  return true
end

local version = support.websockets_version()

describe("a reconnecting client", function()
  if not version then
    it("needs /usr/bin/python3 with the websockets module (apt-get install python3-websockets)", function()
      pending("python3-websockets is not installed")
    end)
    return
  end

  local saved_close_delay
  before_each(function() saved_close_delay = reconnect.close_delay end)
  after_each(function()
    reconnect.close_delay = saved_close_delay
    support.cleanup()
  end)

  it("comes back after its server restarts: on_open again, then the queue, in order, once", function()
    support.run(function()
      local p, port = python(0, "echo")
      local opens, opened_at = {}, {}
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", {
        reconnect = { min = 0.05, max = 0.3, min_uptime = 0.2 },
        on_open = function(w, info)
          opens[#opens + 1] = info
          opened_at[#opened_at + 1] = duplex.now()
          assert(w:send("subscribe"))
          assert.equal("subscribe", (w:receive(5))) -- on_open reads its own answers
        end,
      }))
      assert.equal("open", ws.state)
      assert.equal(0, ws.reconnects)
      assert.equal(1, #opens)
      assert.same({ attempt = 1, reconnects = 0, downtime = 0 }, opens[1])
      support.echo(ws, "before")

      support.kill(p)
      assert(support.wait(p, 10))
      assert.is_true(wait_until(function() return ws.state == "reconnecting" end))
      -- the offline queue, in order
      for i = 1, 5 do assert.is_true(ws:send("q" .. i)) end
      assert.equal(5, ws.queued)

      duplex.sleep(0.3) -- a few failed tries while nobody listens
      local p2 = python(port, "echo")
      local up_at = duplex.now()
      for i = 1, 5 do
        local msg = ws:receive(5)
        assert.equal("q" .. i, msg)
      end
      assert.equal("open", ws.state)
      assert.equal(1, ws.reconnects)
      assert.equal(0, ws.queued)
      assert.equal(2, #opens)
      -- within the backoff bound (max) of the server being there again
      assert.is_true(opened_at[2] - up_at < 0.3 + 0.5, "reconnected after " .. (opened_at[2] - up_at) .. " s")
      assert.equal(1, opens[2].reconnects)
      assert.is_true(opens[2].attempt >= 2)
      assert.is_true(opens[2].downtime >= 0.3)
      -- the last failure: a try while nobody listened
      assert.equal("connection refused", opens[2].last_error)
      assert.is_nil(opens[2].last_code)
      -- nothing twice: nothing more arrives
      assert.same({ nil, "timeout" }, { ws:receive(0.2) })
      assert.same({ "subscribe", "q1", "q2", "q3", "q4", "q5" }, values(p2, "got"))
      assert.is_true(ws:close())
      assert.equal("closed", ws.state)
      assert.same({ nil, "closed", 1000, "" }, { ws:receive() })
    end, 30)
  end)

  it("retries a server that accepts and drops at once with growing delays, each in its jitter bound", function()
    support.run(function()
      local _, port = python(0, "drop")
      local closes = {}
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", {
        reconnect = { min = 0.05, max = 0.4, factor = 2, min_uptime = 5 },
        on_close = function(_, info) closes[#closes + 1] = { at = duplex.now(), info = info } end,
      }))
      local opens = {}
      -- each connection is dropped at once; on_close tells the delay chosen
      assert.is_true(wait_until(function() return #closes >= 6 end, 10))
      ws:close()
      for i = 1, 6 do
        local info = closes[i].info
        local bound = math.min(0.05 * 2 ^ (i - 1), 0.4)
        assert.is_true(info.retry)
        assert.equal(1006, info.code)
        assert.is_true(info.delay >= 0 and info.delay <= bound + 1e-9,
          ("delay %d: %.3f past its bound %.3f"):format(i, info.delay, bound))
        if i < 6 then
          -- the next try came no sooner than the delay said
          local gap = closes[i + 1].at - closes[i].at
          assert.is_true(gap >= info.delay - 0.01, ("gap %.3f shorter than the delay %.3f"):format(gap, info.delay))
          assert.is_true(gap <= info.delay + 0.5, ("gap %.3f much longer than the delay %.3f"):format(gap, info.delay))
        end
        opens[i] = info.delay
      end
    end, 30)
  end)

  it("without jitter waits exactly min, min*factor, ... up to max", function()
    support.run(function()
      local _, port = python(0, "drop")
      local delays = {}
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", {
        reconnect = { min = 0.02, max = 0.1, factor = 2, jitter = false },
        on_close = function(_, info) delays[#delays + 1] = info.delay end,
      }))
      assert.is_true(wait_until(function() return #delays >= 5 end, 10))
      ws:close()
      for i, want in ipairs({ 0.02, 0.04, 0.08, 0.1, 0.1 }) do
        assert.is_true(math.abs(delays[i] - want) < 1e-9, "delay " .. i .. ": " .. delays[i])
      end
    end, 20)
  end)

  it("stops on a 403 (after a restart), and connect returns it at once", function()
    support.run(function()
      local p, port = python(0, "echo")
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", { reconnect = { min = 0.02, max = 0.05 } }))
      support.kill(p)
      assert(support.wait(p, 10))
      local p2 = python(port, "status", "403")
      local msg, err, code, _, last = ws:receive(10)
      assert.is_nil(msg)
      assert.equal("closed", err)
      assert.equal(1006, code)
      assert.equal("server refused the upgrade: HTTP 403 Forbidden", last)
      assert.equal("closed", ws.state)
      assert.equal(1, #values(p2, "request"))
      -- a first connection refused with 403: one try
      local t0 = duplex.now()
      local none, cerr, response = duplex.connect("ws://127.0.0.1:" .. port .. "/", { reconnect = true })
      assert.is_nil(none)
      assert.equal("server refused the upgrade: HTTP 403 Forbidden", cerr)
      assert.equal(403, response.status)
      assert.is_true(duplex.now() - t0 < 1)
      assert.equal(2, #values(p2, "request"))
    end, 30)
  end)

  it("stops on a close 1008, and should_retry can have it retried", function()
    support.run(function()
      local p, port = python(0, "close", "1008")
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", { reconnect = { min = 0.02, max = 0.05 } }))
      local msg, err, code, reason = ws:receive(5)
      assert.is_nil(msg)
      assert.equal("closed", err)
      assert.equal(1008, code)
      assert.equal("bye", reason)
      assert.equal("closed", ws.state)
      assert.equal(0, ws.reconnects)
      assert.equal(1, #values(p, "open"))

      reconnect.close_delay = 0.05 -- the close-frame rule's bound
      local seen = {}
      local ws2 = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", {
        reconnect = { min = 0.02, max = 0.05 },
        should_retry = function(e, c, r)
          seen[#seen + 1] = { e, c, r }
          return #seen < 3
        end,
      }))
      ws2:wait_closed()
      assert.equal(2, ws2.reconnects)
      assert.equal(3, #seen)
      assert.same({ "closed by the server", 1008, "bye" }, seen[1])
      assert.equal(4, #values(p, "open"))
    end, 30)
  end)

  it("should_retry can stop a close that retries by default (4000)", function()
    support.run(function()
      local p, port = python(0, "close", "4000")
      reconnect.close_delay = 0.05
      local args
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", {
        reconnect = { min = 0.02, max = 0.05 },
        should_retry = function(e, c, r)
          args = { e, c, r }
          return false
        end,
      }))
      ws:wait_closed()
      assert.same({ "closed by the server", 4000, "bye" }, args)
      assert.equal(0, ws.reconnects)
      assert.equal(1, #values(p, "open"))
      -- by default 4000 retries
      local ws2 = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", { reconnect = { min = 0.02, max = 0.05 } }))
      assert.is_true(wait_until(function() return ws2.reconnects >= 2 end, 5))
      ws2:close()
    end, 30)
  end)

  it("retries 503 after its Retry-After, and gives up after `attempts` tries", function()
    support.run(function()
      local p, port = python(0, "status", "503", "1")
      local t0 = duplex.now()
      local ws, err, response = duplex.connect("ws://127.0.0.1:" .. port .. "/",
        { reconnect = { min = 0.01, max = 0.02, attempts = 2 } })
      assert.is_nil(ws)
      assert.equal("server refused the upgrade: HTTP 503 Service Unavailable", err)
      assert.equal(503, response.status)
      assert.equal("1", response.headers["retry-after"])
      local requests = values(p, "request")
      assert.equal(2, #requests)
      local gap = tonumber(requests[2]) - tonumber(requests[1])
      assert.is_true(gap >= 0.95, "second try after " .. gap .. " s, not the 1 s asked")
      assert.is_true(duplex.now() - t0 < 3)
    end, 30)
  end)

  it("gives up after `attempts` tries on a port nobody listens on", function()
    support.run(function()
      local probe = assert(duplex.serve({ port = 0 }, function() end))
      local port = probe.port
      probe:close()
      duplex.sleep(0.05)
      local tries = 0
      local ws, err = duplex.connect(function()
        tries = tries + 1
        return "ws://127.0.0.1:" .. port .. "/"
      end, { reconnect = { min = 0.01, max = 0.02, attempts = 4 } })
      assert.is_nil(ws)
      assert.equal("connection refused", err)
      assert.equal(4, tries)
    end, 10)
  end)

  it("ends a backoff wait promptly on ws:close()", function()
    support.run(function()
      local p, port = python(0, "echo")
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/",
        { reconnect = { min = 5, max = 5, jitter = false } }))
      support.kill(p)
      assert(support.wait(p, 10))
      assert.is_true(wait_until(function() return ws.state == "reconnecting" end))
      assert.is_true(ws:send("dropped with the ws"))
      local t0 = duplex.now()
      assert.is_true(ws:close())
      assert.is_true(duplex.now() - t0 < 0.2, "close took " .. (duplex.now() - t0) .. " s")
      assert.equal("closed", ws.state)
      assert.equal(0, ws.queued)
      assert.same({ nil, "closed" }, { ws:send("late") })
      local msg, err, code = ws:receive(1)
      assert.is_nil(msg)
      assert.equal("closed", err)
      assert.equal(1006, code)
    end, 20)
  end)

  it("gives urls and headers from functions before each try, and bounds the offline queue", function()
    support.run(function()
      local seen = {}
      local server = assert(support.serve({ port = 0 }, function(w)
        seen[#seen + 1] = { path = w.request.path, token = w.request.headers["x-token"] }
        if #seen == 1 then w:abort() return end -- the first connection drops at once
        while true do -- not `for ... in w:messages()`: PUC Lua 5.1 runs this too
          local msg = w:receive()
          if not msg then break end
          w:send(msg)
        end
      end))
      local n = 0
      local ws = assert(duplex.connect(function() return "ws://127.0.0.1:" .. server.port .. "/try" .. n + 1 end, {
        reconnect = { min = 0.3, max = 0.3, jitter = false },
        headers = function()
          n = n + 1
          return { ["X-Token"] = "t" .. n }
        end,
        queue = 2,
      }))
      assert.is_true(wait_until(function() return ws.state == "reconnecting" end))
      assert.is_true(ws:send("a"))
      assert.is_true(ws:send("b"))
      assert.same({ nil, "offline queue full" }, { ws:send("c") })
      assert.same({ nil, "text message is not valid UTF-8" }, { ws:send("\255") })
      assert.equal("a", (ws:receive(3)))
      assert.equal("b", (ws:receive(3)))
      assert.same({ path = "/try1", token = "t1" }, seen[1])
      assert.same({ path = "/try2", token = "t2" }, seen[2])
      assert.equal("ws://127.0.0.1:" .. server.port .. "/try2", ws.url)
      ws:close()
    end, 20)
  end)

  it("keeps no offline queue with queue = 0 and at most high_water bytes otherwise", function()
    support.run(function()
      local p, port = python(0, "echo")
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/",
        { reconnect = { min = 5, max = 5 }, queue = 0 }))
      local wsb = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/",
        { reconnect = { min = 5, max = 5 }, high_water = 1000 }))
      support.kill(p)
      assert(support.wait(p, 10))
      assert.is_true(wait_until(function() return ws.state == "reconnecting" and wsb.state == "reconnecting" end))
      assert.same({ nil, "offline" }, { ws:send("x") })
      assert.is_true(wsb:send(("x"):rep(600)))
      assert.same({ nil, "offline queue full" }, { wsb:send(("x"):rep(600)) })
      assert.is_true(wsb:send(("x"):rep(400)))
      assert.equal(2, wsb.queued)
      ws:close()
      wsb:close()
    end, 20)
  end)

  it("raises for bad reconnect options at the caller's line", function()
    support.run(function()
      local ok, err = pcall(duplex.connect, "ws://127.0.0.1:1/", { reconnect = { minn = 1 } })
      assert.is_false(ok)
      assert.matches("unknown option 'reconnect.minn' %(did you mean 'reconnect.min'%?%)", err)
      ok, err = pcall(duplex.connect, "ws://127.0.0.1:1/", { reconnect = { factor = 0.5 } })
      assert.is_false(ok)
      assert.matches("option 'reconnect.factor' must be a number >= 1", err)
      ok, err = pcall(duplex.connect, "ws://127.0.0.1:1/", { reconnect = "yes" })
      assert.matches("option 'reconnect' must be true or a table", err)
      ok, err = pcall(duplex.connect, "ws://127.0.0.1:1/", { on_open = function() end })
      assert.matches("option 'on_open' needs the option 'reconnect'", err)
      ok, err = pcall(duplex.connect, 42, { reconnect = true })
      assert.matches("URL string or function expected, got number", err)
    end, 10)
  end)

  it("soak: 200 server restarts under a steady stream leak nothing and deliver nothing twice", function()
    support.run(function()
      reconnect.close_delay = 0.005
      local function fds()
        local stat = assert(io.open("/proc/self/stat")):read("*l")
        local pid = stat:match("^(%d+)")
        local f = io.popen("ls /proc/" .. pid .. "/fd | wc -l")
        local n = tonumber(f:read("*l"))
        f:close()
        return n
      end
      local function rss_kib()
        local f = assert(io.open("/proc/self/status"))
        local s = f:read("*a")
        f:close()
        return tonumber(s:match("VmRSS:%s*(%d+)"))
      end
      local CYCLES, QUEUE = 200, 8
      local p, port = python(0, "cycle", tostring(CYCLES), "0.03", "0.005")
      collectgarbage()
      local fds0, rss0 = fds(), nil
      local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/", {
        reconnect = { min = 0.002, max = 0.01, min_uptime = 0.01 }, queue = QUEUE,
      }))
      local sent, full, max_queued, odd = 0, 0, 0, {}
      local received, last, dup = 0, 0, 0
      local finished = false
      duplex.spawn(function()
        while not finished do
          local ok, err = ws:send(tostring(sent + 1))
          if ok then
            sent = sent + 1
          elseif err == "offline queue full" then
            full = full + 1
          else
            odd[#odd + 1] = err
          end
          if ws.queued > max_queued then max_queued = ws.queued end
          duplex.sleep(0.001)
        end
      end)
      duplex.spawn(function()
        while true do
          local msg = ws:receive()
          if not msg then break end
          local n = tonumber(msg)
          if n <= last then dup = dup + 1 end
          last = n
          received = received + 1
        end
      end)
      -- the RSS baseline once the loop's buffers and the first allocations
      -- are made, and LuaJIT has compiled its traces (its RSS climbs over
      -- the first hundred restarts, then stays flat)
      assert.is_true(wait_until(function() return ws.reconnects >= 80 end, 15), "no reconnects: " .. support.describe(p))
      collectgarbage()
      collectgarbage()
      rss0 = rss_kib()
      assert.is_true(wait_until(function() return support.output(p):find("done=") ~= nil end, 25),
        "the server did not finish its cycles: " .. support.describe(p))
      finished = true
      ws:close()
      assert(support.wait(p, 10))
      assert.equal(0, dup)
      assert.same({}, odd)
      assert.is_true(max_queued <= QUEUE)
      assert.is_true(ws.reconnects >= CYCLES * 0.75, "only " .. ws.reconnects .. " reconnects")
      assert.is_true(received > CYCLES, "only " .. received .. " echoes")
      ws = nil
      collectgarbage()
      collectgarbage()
      duplex.sleep(0.05)
      assert.is_true(fds() <= fds0 + 1, ("%d fds after, %d before"):format(fds(), fds0))
      -- (under ASan freed memory sits in its quarantine: RSS tells nothing)
      local grown = rss_kib() - rss0
      if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
        assert.is_true(grown < 2 * 1024, "RSS grew by " .. grown .. " KiB over the last 120 restarts")
      end
    end, 40)
  end)
end)
