-- Topics over real connections: fan-out, order, membership changes in the
-- middle of a stream, slow subscribers (max_backlog, on_backlog), control
-- frames to a backlogged peer, compression mixed on one topic, and the API's
-- argument errors. Every wait is bounded; only 127.0.0.1 is used.
--
-- PUC Lua 5.1 cannot yield across pcall or inside a for-in iterator, so
-- every coroutine here reads with a while loop over ws:receive().
local helpers = require "helpers"
local duplex = helpers.duplex
local socket = helpers.socket

local format = string.format
-- ASan's quarantine keeps freed blocks resident (a publish frees its frame
-- once written), so RSS says nothing about the queue's bound there
local SANITIZED = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil

-- TOPICS_VERBOSE=1 prints the measured figures (RSS, drops, pong position).
local function note(...)
  if os.getenv("TOPICS_VERBOSE") then io.stderr:write(format(...), "\n") end
end

-- The soft limit on open files of this process (inherited by the shell).
local function nofile()
  local p = io.popen("ulimit -n")
  local s = p:read("*l")
  p:close()
  if s == "unlimited" then return math.huge end
  return tonumber(s) or 0
end

-- VmRSS of this process in KiB.
local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- A server whose handler subscribes each connection to the topics named in
-- the query (?t=a,b), keeps it in `conns` under the name in the path
-- (/name), and reads until the connection closes, recording what it read.
local function topic_server(opts, conns)
  return helpers.serve(opts or {}, function(ws)
    local name = ws.request.path:sub(2)
    local entry = { ws = ws, got = {} }
    conns[name] = entry
    for t in (ws.request.query or ""):gmatch("t=([^&]+)") do
      for one in t:gmatch("[^,]+") do assert(ws:subscribe(one)) end
    end
    entry.ready = true
    while true do
      local msg = ws:receive()
      if not msg then break end
      entry.got[#entry.got + 1] = msg
    end
    entry.done = true
  end)
end

local reader = helpers.reader

-- Connects n clients to urls(i) with at most `batch` handshakes at a time;
-- returns them in order.
local function connect_many(n, url_of, opts, batch)
  local out, started, finished = {}, 0, 0
  batch = batch or 50
  while finished < n do
    while started < n and started - finished < batch do
      started = started + 1
      local i = started
      duplex.spawn(function()
        local ws, err = helpers.connect(url_of(i), opts)
        out[i] = ws or err
        finished = finished + 1
      end)
    end
    duplex.sleep(0.002)
  end
  for i = 1, n do
    assert(type(out[i]) ~= "string", "client " .. i .. " could not connect: " .. tostring(out[i]))
  end
  return out
end

-- Checks that r.got is exactly `want` (a list), naming the first difference.
local function same_list(want, got, who)
  for i = 1, math.max(#want, #got) do
    if want[i] ~= got[i] then
      error(format("%s: message %d is %q, expected %q (got %d messages, expected %d)", who, i,
        tostring(got[i]), tostring(want[i]), #got, #want), 2)
    end
  end
end

describe("topics", function()
  describe("API", function()
    it("raises for bad topic names, naming the function", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local c = assert(helpers.connect(helpers.url(server.port, "/a")))
        assert(helpers.wait_until(function() return conns.a and conns.a.ready end, 3))
        local ws = conns.a.ws
        local long = ("x"):rep(1025)
        local calls = {
          -- not tail calls: the error names the caller's line, which must be here
          { "subscribe", function(t) local r = ws:subscribe(t); return r end },
          { "unsubscribe", function(t) local r = ws:unsubscribe(t); return r end },
          { "subscribed", function(t) local r = ws:subscribed(t); return r end },
          { "publish", function(t) local r = ws:publish(t, "x"); return r end },
          { "publish", function(t) local r = duplex.publish(t, "x"); return r end },
          { "subscribers", function(t) local r = duplex.subscribers(t); return r end },
        }
        for _, call in ipairs(calls) do
          for _, bad in ipairs({ "", long, 42, false }) do
            local ok, err = pcall(call[2], bad)
            assert(not ok, call[1] .. " accepted a bad topic")
            assert.matches("'" .. call[1] .. "'", err, 1, true)
            assert.matches("topic", err, 1, true)
          end
          -- the error points at the caller's line, this file
          local _, err = pcall(call[2], "")
          assert.matches("topics_spec.lua", err, 1, true)
        end
        -- 1024 bytes is the longest name
        local longest = ("y"):rep(1024)
        assert.is_true(ws:subscribe(longest))
        assert.equal(1, duplex.subscribers(longest))
        assert.is_true(ws:unsubscribe(longest))
        -- bad data and kinds raise too
        assert.has_error(function() duplex.publish("t", 12) end)
        assert.has_error(function() duplex.publish("t", "x", "json") end)
        assert.has_error(function() ws:publish("t", {}) end)
        assert(c:close())
      end)
    end)

    local function refused(opts)
      opts.host, opts.port = "127.0.0.1", 0
      local ok, err = pcall(duplex.serve, opts, function() end)
      if ok and err then err:close() end
      assert(not ok, "accepted")
      return err
    end

    -- Fails on the topics branch at 64abbb1: a number option of the wrong
    -- type raises "bad argument #-1 to 'listen' (number expected, got
    -- string)" at lua/duplex/init.lua, naming neither the option nor the
    -- caller's line (opts.c reads numbers with luaL_checknumber).
    it("names max_backlog when it is not a number", function()
      assert.matches("max_backlog", refused({ max_backlog = "lots" }), 1, true)
    end)

    it("checks max_backlog and on_backlog, naming the option", function()
      assert.matches("option 'max_backlog' must be a size in bytes", refused({ max_backlog = -1 }), 1, true)
      assert.matches("option 'on_backlog' must be \"drop\" or \"close\"", refused({ on_backlog = "wait" }), 1, true)
      assert.matches("on_backlog", refused({ on_backlog = 1 }), 1, true)
      local ok = duplex.serve({ host = "127.0.0.1", port = 0, max_backlog = 0, on_backlog = "close" }, function() end)
      assert(ok)
      ok:close()
      assert(helpers.drain(3))
    end)

    it("subscribes idempotently, unsubscribes once, and rejects invalid UTF-8 text", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local c = reader(assert(helpers.connect(helpers.url(server.port, "/a"))))
        assert(helpers.wait_until(function() return conns.a and conns.a.ready end, 3))
        local ws = conns.a.ws
        assert.is_false(ws:subscribed("room"))
        assert.equal(0, duplex.subscribers("room"))
        assert.is_true(ws:subscribe("room"))
        assert.is_true(ws:subscribe("room"))
        assert.is_true(ws:subscribed("room"))
        assert.equal(1, duplex.subscribers("room"))
        assert.same({ "room" }, ws:topics())
        -- subscribed twice, delivered once
        local q, d = duplex.publish("room", "once")
        assert.equal(1, q)
        assert.equal(0, d)
        local nq, err = duplex.publish("room", "\255\254 bad")
        assert.is_nil(nq)
        assert.equal("text message is not valid UTF-8", err)
        nq, err = ws:publish("room", "caf\195")
        assert.is_nil(nq)
        assert.equal("text message is not valid UTF-8", err)
        -- the same bytes as binary are fine
        q = duplex.publish("room", "\255\254 bin", "binary")
        assert.equal(1, q)
        assert.is_true(ws:unsubscribe("room"))
        assert.is_false(ws:unsubscribe("room"))
        assert.is_false(ws:subscribed("room"))
        assert.equal(0, duplex.subscribers("room"))
        q, d = duplex.publish("room", "nobody")
        assert.equal(0, q)
        assert.equal(0, d)
        assert(ws:send("end"))
        assert(helpers.wait_until(function() return #c.got == 3 end, 3))
        same_list({ "once", "\255\254 bin", "end" }, c.got, "client")
        assert(c.ws:close())
      end)
    end)

    it("returns nil, 'closed' from subscribe on a closed connection, which is in no topic", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local c = assert(helpers.connect(helpers.url(server.port, "/a?t=x,y")))
        assert(helpers.wait_until(function() return conns.a and conns.a.ready end, 3))
        local ws = conns.a.ws
        assert.equal(1, duplex.subscribers("x"))
        assert(c:close())
        assert(helpers.wait_until(function() return ws.state == "closed" end, 3))
        local ok, err = ws:subscribe("x")
        assert.is_nil(ok)
        assert.equal("closed", err)
        -- our client's connection too
        ok, err = c:subscribe("z")
        assert.is_nil(ok)
        assert.equal("closed", err)
        assert.same({}, ws:topics())
        assert.is_false(ws:subscribed("x"))
        assert.equal(0, duplex.subscribers("x"))
        assert.equal(0, duplex.subscribers("y"))
        assert.equal(0, (duplex.publish("x", "late")))
      end)
    end)

    it("returns nil, 'closed' from subscribe while closing, and a closing connection has left its topics", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({ close_timeout = 2 }, conns)
        -- a raw peer that will not answer the close
        local raw = helpers.raw_ws_client(server.port, { path = "/r?t=x" })
        assert(helpers.wait_until(function() return conns.r and conns.r.ready end, 3))
        local ws = conns.r.ws
        assert.equal(1, duplex.subscribers("x"))
        duplex.spawn(function() ws:close(4001, "going") end)
        assert(helpers.wait_until(function() return ws.state == "closing" end, 3))
        local ok, err = ws:subscribe("y")
        assert.is_nil(ok)
        assert.equal("closed", err)
        assert.equal(0, duplex.subscribers("x"))
        assert.equal(0, duplex.subscribers("y"))
        assert.equal(0, (duplex.publish("x", "not for a closing one")))
        local code, reason, frames = raw:read_close(3)
        assert.equal(4001, code)
        assert.equal("going", reason)
        assert.equal(0, #frames)
        raw:close()
      end)
    end)

    it("gives a copy from topics(): unsubscribing while walking it works", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local c = assert(helpers.connect(helpers.url(server.port, "/a")))
        assert(helpers.wait_until(function() return conns.a and conns.a.ready end, 3))
        local ws = conns.a.ws
        local names = {}
        for i = 1, 50 do
          names[i] = "t" .. i
          assert.is_true(ws:subscribe(names[i]))
        end
        local list = ws:topics()
        assert.equal(50, #list)
        local seen = {}
        for i, t in ipairs(list) do
          assert.is_true(ws:unsubscribe(t), "unsubscribe " .. t)
          -- subscribing anew while walking does not change the copy either
          if i % 10 == 0 then assert.is_true(ws:subscribe("new" .. i)) end
          seen[t] = (seen[t] or 0) + 1
        end
        for i = 1, 50 do assert.equal(1, seen["t" .. i], "t" .. i .. " walked once") end
        assert.equal(50, #list)
        local now = ws:topics()
        table.sort(now)
        assert.same({ "new10", "new20", "new30", "new40", "new50" }, now)
        -- a fresh table each call
        assert.are_not.equal(ws:topics(), ws:topics())
        assert(c:close())
      end)
    end)
  end)

  describe("names and membership", function()
    it("matches topic names exactly (case, NUL bytes, prefixes)", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local c = reader(assert(helpers.connect(helpers.url(server.port, "/a"))))
        assert(helpers.wait_until(function() return conns.a and conns.a.ready end, 3))
        local ws = conns.a.ws
        assert.is_true(ws:subscribe("a\0b"))
        assert.is_true(ws:subscribe("Room"))
        assert.is_false(ws:subscribed("a"))
        assert.is_false(ws:subscribed("room"))
        assert.equal(0, duplex.subscribers("a"))
        assert.equal(0, duplex.subscribers("a\0"))
        assert.equal(0, duplex.subscribers("a\0b\0"))
        assert.equal(1, duplex.subscribers("a\0b"))
        assert.equal(0, (duplex.publish("a", "no")))
        assert.equal(0, (duplex.publish("room", "no")))
        assert.equal(0, (duplex.publish("Room ", "no")))
        assert.equal(1, (duplex.publish("a\0b", "yes 1")))
        assert.equal(1, (duplex.publish("Room", "yes 2")))
        local list = ws:topics()
        table.sort(list)
        assert.same({ "Room", "a\0b" }, list)
        assert(helpers.wait_until(function() return #c.got >= 2 end, 3))
        duplex.sleep(0.02)
        same_list({ "yes 1", "yes 2" }, c.got, "client")
        assert(c.ws:close())
      end)
    end)

    it("keeps counts right over thousands of topics, and a closing connection leaves them all", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local T = 3000
        local clients = connect_many(3, function(i) return helpers.url(server.port, "/c" .. i) end)
        assert(helpers.wait_until(function() return conns.c1 and conns.c2 and conns.c3 and conns.c3.ready end, 3))
        local w1, w2, w3 = conns.c1.ws, conns.c2.ws, conns.c3.ws
        for i = 1, T do
          assert.is_true(w1:subscribe("topic/" .. i))
          if i % 2 == 0 then assert.is_true(w2:subscribe("topic/" .. i)) end
          if i % 3 == 0 then assert.is_true(w3:subscribe("topic/" .. i)) end
        end
        assert.equal(T, #w1:topics())
        assert.equal(T / 2, #w2:topics())
        for i = 1, T do
          local want = 1 + (i % 2 == 0 and 1 or 0) + (i % 3 == 0 and 1 or 0)
          assert.equal(want, duplex.subscribers("topic/" .. i), "topic/" .. i)
        end
        -- the second leaves every topic by closing
        assert(clients[2]:close())
        assert(helpers.wait_until(function() return w2.state == "closed" end, 3))
        assert.same({}, w2:topics())
        for i = 1, T do
          local want = 1 + (i % 3 == 0 and 1 or 0)
          assert.equal(want, duplex.subscribers("topic/" .. i), "topic/" .. i .. " after the close")
        end
        -- the first unsubscribes from each, the third closes from the server side
        for i = 1, T do assert.is_true(w1:unsubscribe("topic/" .. i)) end
        assert(w3:close())
        for i = 1, T do assert.equal(0, duplex.subscribers("topic/" .. i)) end
        assert.equal(0, (duplex.publish("topic/6", "nobody")))
        -- and the table still works afterwards
        assert.is_true(w1:subscribe("topic/6"))
        assert.equal(1, duplex.subscribers("topic/6"))
        assert(clients[1]:close())
        assert.equal(0, duplex.subscribers("topic/6"))
      end, 20)
    end)

    it("lets our client's connections subscribe: a publish reaches their servers, masked and in order", function()
      helpers.run(function()
        local log = {}
        local got = {}
        local server = helpers.serve({}, function(ws)
          while true do
            local msg = ws:receive()
            if not msg then break end
            got[#got + 1] = msg
          end
          log.done = true
        end)
        local cs = connect_many(5, function() return helpers.url(server.port, "/") end)
        for i = 1, 5 do assert.is_true(cs[i]:subscribe("up")) end
        assert.equal(5, duplex.subscribers("up"))
        local q = cs[1]:publish("up", "from one")
        assert.equal(4, q)
        q = duplex.publish("up", ("big "):rep(20000))
        assert.equal(5, q)
        assert(helpers.wait_until(function() return #got == 9 end, 5), "server got " .. #got)
        local small, big = 0, 0
        for i = 1, #got do
          if got[i] == "from one" then small = small + 1 elseif got[i] == ("big "):rep(20000) then big = big + 1 end
        end
        assert.equal(4, small)
        assert.equal(5, big)
        for i = 1, 5 do assert(cs[i]:close()) end
        assert.equal(0, duplex.subscribers("up"))
      end)
    end)
  end)

  describe("publishing from anywhere", function()
    it("publishes from an http handler, a spawned coroutine and the handler of another connection", function()
      helpers.run(function()
        local conns = {}
        local server = helpers.serve({
          http = function(req)
            local q, d = duplex.publish("news", "from http " .. req.query)
            return 200, { ["Content-Type"] = "text/plain" }, q .. " " .. d
          end,
        }, function(ws)
          local name = ws.request.path:sub(2)
          conns[name] = ws
          if name == "sub" then assert(ws:subscribe("news")) end
          while true do
            local msg = ws:receive()
            if not msg then break end
            -- a handler publishing what its peer sent
            local q = ws:publish("news", "relay " .. msg)
            assert(ws:send("relayed to " .. q))
          end
        end)
        local sub = reader(assert(helpers.connect(helpers.url(server.port, "/sub"))))
        local other = reader(assert(helpers.connect(helpers.url(server.port, "/other"))))
        assert(helpers.wait_until(function() return duplex.subscribers("news") == 1 and conns.other end, 3))
        -- an http request
        local raw = assert(helpers.raw_client(server.port))
        assert(raw:send("GET /pub?one HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
        local head = assert(raw:read_head(3))
        assert.equal(200, head.status)
        assert(raw:wait_eof(3))
        assert.equal("1 0", raw.buf)
        -- a coroutine of its own
        local done = false
        duplex.spawn(function()
          assert.equal(1, (duplex.publish("news", "from a coroutine")))
          done = true
        end)
        assert(helpers.wait_until(function() return done end, 3))
        -- another connection's handler
        assert(other.ws:send("hi"))
        assert(helpers.wait_until(function() return #sub.got == 3 and #other.got == 1 end, 3))
        same_list({ "from http one", "from a coroutine", "relay hi" }, sub.got, "subscriber")
        same_list({ "relayed to 1" }, other.got, "the relaying client")
        assert(sub.ws:close())
        assert(other.ws:close())
      end)
    end)
  end)

  describe("fan-out", function()
    it("delivers every publish once and in order to 1000 subscribers, skips the sender and keeps FIFO order with own sends", function()
      local N, K = 1000, 10
      local limit = nofile()
      if limit < 2200 then
        pending(("needs `ulimit -n` of at least 2200 for 1000 client and 1000 server sockets, is %s"):format(limit))
        return
      end
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local clients = connect_many(N, function(i) return helpers.url(server.port, "/s" .. i .. "?t=fan") end)
        local readers = {}
        for i = 1, N do readers[i] = reader(clients[i]) end
        local pub = reader(assert(helpers.connect(helpers.url(server.port, "/pub"))))
        assert(helpers.wait_until(function() return duplex.subscribers("fan") == N and conns.pub and conns.pub.ready end, 10),
          "subscribers: " .. duplex.subscribers("fan"))
        local pws = conns.pub.ws
        local want = {}
        for i = 1, N do want[i] = {} end
        local function round(from, to)
          for r = from, to do
            local msg = "p " .. r
            local q, d = pws:publish("fan", msg)
            assert.equal(N, q)
            assert.equal(0, d)
            for i = 1, N do
              local w = want[i]
              w[#w + 1] = msg
              if i % 2 == 1 then
                local own = "own " .. i .. " " .. r
                assert(conns["s" .. i].ws:send(own))
                w[#w + 1] = own
              end
            end
          end
        end
        -- the publisher not subscribed
        round(1, K)
        -- the publisher subscribed: still skipped
        assert.is_true(pws:subscribe("fan"))
        assert.equal(N + 1, duplex.subscribers("fan"))
        round(K + 1, 2 * K)
        -- duplex.publish reaches the publisher too
        local q = duplex.publish("fan", "end")
        assert.equal(N + 1, q)
        for i = 1, N do want[i][#want[i] + 1] = "end" end
        assert(helpers.wait_until(function()
          for i = 1, N do
            if #readers[i].got < #want[i] then return false end
          end
          return #pub.got >= 1
        end, 20), "not every subscriber got every message")
        duplex.sleep(0.05) -- anything extra would come now
        for i = 1, N do same_list(want[i], readers[i].got, "subscriber " .. i) end
        same_list({ "end" }, pub.got, "publisher")
        -- every subscriber leaves when it closes
        local closed = 0
        for i = 1, N do
          duplex.spawn(function()
            clients[i]:close()
            closed = closed + 1
          end)
        end
        assert(helpers.wait_until(function() return closed == N end, 10))
        assert(helpers.wait_until(function() return duplex.subscribers("fan") == 1 end, 5),
          "subscribers after the close: " .. duplex.subscribers("fan"))
        q = duplex.publish("fan", "after")
        assert.equal(1, q)
        assert(helpers.wait_until(function() return #pub.got == 2 end, 3))
        assert(pub.ws:close())
        assert.equal(0, duplex.subscribers("fan"))
      end, 40)
    end)
  end)

  describe("slow subscribers", function()
    -- Reads messages of `size` bytes numbered %08d from 1, counting them and
    -- noting the first one out of place; keeps none.
    local function counter(ws, size)
      local r = { ws = ws, n = 0, done = false }
      duplex.spawn(function()
        while true do
          local msg, _, code = ws:receive()
          if not msg then
            r.code = code
            break
          end
          r.n = r.n + 1
          if not r.bad and (#msg ~= size or msg:sub(1, 8) ~= format("%08d", r.n)) then
            r.bad = format("message %d has %d bytes and starts %q", r.n, #msg, msg:sub(1, 8))
          end
        end
        r.done = true
      end)
      return r
    end

    -- Waits (briefly) until every server-side ws in list has at most
    -- `limit` bytes queued: the publisher keeps pace with the readers.
    local function keep_pace(list, limit)
      local deadline = duplex.now() + 5
      while true do
        local behind = false
        for i = 1, #list do
          if list[i].buffered > limit then behind = true end
        end
        if not behind then return end
        assert(duplex.now() < deadline, "a fast subscriber stopped reading")
        duplex.sleep(0.001)
      end
    end

    -- A raw client subscribed to topic that finished the handshake and reads
    -- nothing more (a 4 KiB receive buffer, so the kernel holds little).
    local function stalled_client(port, name, topic, conns)
      local raw = helpers.raw_ws_client(port, { path = "/" .. name .. "?t=" .. topic, rcvbuf = 4096 })
      assert(helpers.wait_until(function() return conns[name] and conns[name].ready end, 3))
      return raw, conns[name].ws
    end

    it("drops past max_backlog (1 MiB by default) for a subscriber that never reads, while the others get every message, and memory stays bounded", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local SIZE, P, FAST = 256 * 1024, 800, 3 -- 200 MiB published
        local fast, fast_ws = {}, {}
        local clients = connect_many(FAST, function(i) return helpers.url(server.port, "/f" .. i .. "?t=feed") end)
        for i = 1, FAST do
          fast[i] = counter(clients[i], SIZE)
          assert(helpers.wait_until(function() return conns["f" .. i] and conns["f" .. i].ready end, 3))
          fast_ws[i] = conns["f" .. i].ws
        end
        local raw, slow = stalled_client(server.port, "slow", "feed", conns)
        assert.equal(FAST + 1, duplex.subscribers("feed"))
        local pad = ("x"):rep(SIZE - 8)
        collectgarbage("collect")
        local before = rss_kib()
        local peak, dropped, max_slow = before, 0, 0
        for i = 1, P do
          keep_pace(fast_ws, 512 * 1024)
          local q, d = duplex.publish("feed", format("%08d", i) .. pad, "binary")
          assert.equal(FAST + 1, q + d, "every subscriber is counted once")
          assert(d <= 1, "a fast subscriber was dropped at publish " .. i)
          dropped = dropped + d
          if slow.buffered > max_slow then max_slow = slow.buffered end
          if i % 20 == 0 then
            local now = rss_kib()
            if now > peak then peak = now end
          end
        end
        assert(helpers.wait_until(function()
          for i = 1, FAST do
            if fast[i].n < P then return false end
          end
          return true
        end, 10), "the fast subscribers did not get every message")
        for i = 1, FAST do
          assert.is_nil(fast[i].bad)
          assert.equal(P, fast[i].n)
          assert.equal(0, fast_ws[i].dropped)
        end
        assert(dropped > P / 2, "only " .. dropped .. " of " .. P .. " publishes were dropped for the stalled subscriber")
        assert.equal(dropped, slow.dropped)
        assert.equal("open", slow.state) -- "drop" keeps it
        -- its queue stopped at max_backlog (plus the message that crossed it)
        assert(max_slow <= 1024 * 1024 + SIZE + 64, "the stalled subscriber's queue reached " .. max_slow)
        local growth = (peak - before) / 1024
        note("stalled subscriber: %d of %d dropped, queue at most %d bytes, RSS %.1f -> peak %.1f MiB",
          dropped, P, max_slow, before / 1024, peak / 1024)
        -- without the bound the stalled subscriber alone would hold ~200 MiB
        if SANITIZED then
          note("stalled subscriber: RSS not checked under ASan (the queue bound above is)")
        else
          assert(growth < 48, format("RSS grew by %.1f MiB (from %.1f MiB) publishing %d MiB", growth, before / 1024, P * SIZE / 2 ^ 20))
        end
        raw:close()
        for i = 1, FAST do assert(clients[i]:close()) end
      end, 30)
    end)

    it("drops for our own client that never calls receive (it stops reading from TCP), and memory stays bounded", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local SIZE, P = 256 * 1024, 400 -- 100 MiB published
        local client = assert(helpers.connect(helpers.url(server.port, "/f?t=feed")))
        local fast = counter(client, SIZE)
        -- never reads: no receive on it at all
        local idle = assert(helpers.connect(helpers.url(server.port, "/idle?t=feed"), { high_water = 4096 }))
        assert(helpers.wait_until(function() return conns.f and conns.idle and conns.idle.ready end, 3))
        local fws, iws = conns.f.ws, conns.idle.ws
        local pad = ("i"):rep(SIZE - 8)
        collectgarbage("collect")
        local before = rss_kib()
        local peak, dropped = before, 0
        for i = 1, P do
          keep_pace({ fws }, 512 * 1024)
          local q, d = duplex.publish("feed", format("%08d", i) .. pad, "binary")
          assert.equal(2, q + d)
          dropped = dropped + d
          if i % 20 == 0 then peak = math.max(peak, rss_kib()) end
        end
        assert(helpers.wait_until(function() return fast.n == P end, 10))
        assert.is_nil(fast.bad)
        assert.equal(0, fws.dropped)
        assert(dropped > P / 2, "only " .. dropped .. " of " .. P .. " dropped for the idle client")
        assert.equal(dropped, iws.dropped)
        note("idle client: %d of %d dropped, RSS %.1f -> peak %.1f MiB", dropped, P, before / 1024, peak / 1024)
        assert((peak - before) / 1024 < 48, format("RSS grew by %.1f MiB", (peak - before) / 1024))
        -- what it holds is still in order when it finally reads
        local first = idle:receive()
        assert.equal("00000001", first:sub(1, 8))
        idle:abort()
        assert(client:close())
      end, 30)
    end)

    it("keeps a compressing (context takeover) subscriber's stream valid across dropped publishes", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({ compression = true, max_backlog = 256 * 1024 }, conns)
        local SIZE, P = 64 * 1024, 200
        local client = assert(helpers.connect(helpers.url(server.port, "/f?t=feed"), { compression = false }))
        local fast = counter(client, SIZE)
        local idle = assert(helpers.connect(helpers.url(server.port, "/idle?t=feed"), { high_water = 4096 }))
        assert.is_true(idle.compression)
        assert(helpers.wait_until(function() return conns.f and conns.idle and conns.idle.ready end, 3))
        local fws, iws = conns.f.ws, conns.idle.ws
        -- random bytes do not shrink: the backlog fills as fast as plain
        math.randomseed(3)
        local t = {}
        for i = 1, SIZE - 8 do t[i] = string.char(math.random(0, 255)) end
        local pad = table.concat(t)
        local dropped = 0
        for i = 1, P do
          keep_pace({ fws }, 128 * 1024)
          local q, d = duplex.publish("feed", format("%08d", i) .. pad, "binary")
          assert.equal(2, q + d)
          dropped = dropped + d
        end
        assert(dropped > 0, "nothing was dropped for the idle subscriber")
        assert.equal(dropped, iws.dropped)
        assert(iws:send("end")) -- its own send, after what was queued
        -- now it reads: what it got inflates to whole messages, in order
        local last, n = 0, 0
        while true do
          local msg, err = idle:receive()
          assert(msg, err)
          if msg == "end" then break end
          local seq = tonumber(msg:sub(1, 8))
          assert(seq and seq > last, "out of order: " .. tostring(seq) .. " after " .. last)
          assert(msg:sub(9) == pad, "message " .. seq .. " differs")
          last, n = seq, n + 1
          assert(seq <= P)
        end
        assert.equal(P - dropped, n)
        -- and its compressor is still in step with the peer's inflater
        for i = P + 1, P + 20 do
          assert.equal(2, (duplex.publish("feed", format("%08d", i) .. pad, "binary")))
          local msg, err = idle:receive()
          assert(msg, err)
          assert.equal(format("%08d", i), msg:sub(1, 8))
          assert(msg:sub(9) == pad)
        end
        assert(helpers.wait_until(function() return fast.n == P + 20 end, 5))
        assert.is_nil(fast.bad)
        assert.equal("open", idle.state)
        assert(idle:close())
        assert(client:close())
      end, 20)
    end)

    it("closes a subscriber that never reads with 1013 under on_backlog = 'close', and the others go on", function()
      helpers.run(function()
        local conns = {}
        local SIZE, MAXB = 64 * 1024, 256 * 1024
        local server = topic_server({ on_backlog = "close", max_backlog = MAXB, close_timeout = 3 }, conns)
        local client = assert(helpers.connect(helpers.url(server.port, "/f?t=feed")))
        local fast = counter(client, SIZE)
        assert(helpers.wait_until(function() return conns.f and conns.f.ready end, 3))
        local raw, slow = stalled_client(server.port, "slow", "feed", conns)
        local pad = ("y"):rep(SIZE - 8)
        local i, closed_at = 0, nil
        while i < 2000 do
          keep_pace({ conns.f.ws }, MAXB / 2)
          i = i + 1
          local q, d = duplex.publish("feed", format("%08d", i) .. pad, "binary")
          if closed_at then
            -- a closing subscriber is not counted, as queued or as dropped
            assert.equal(1, q)
            assert.equal(0, d)
            if i >= closed_at + 20 then break end
          elseif d == 1 then
            assert.equal(1, q)
            closed_at = i
            assert.equal("closing", slow.state)
            assert.equal(1, slow.dropped)
          else
            assert.equal(2, q)
          end
        end
        assert(closed_at, "the stalled subscriber was never closed")
        -- the peer finally reads: what was in flight, then the close frame
        local code, reason, frames = raw:read_close(10)
        assert.equal(1013, code)
        assert.equal("subscriber too slow", reason)
        assert(#frames < closed_at, "more frames than were published before the close")
        note("close: closed at publish %d, the peer read %d data frames before the close frame", closed_at, #frames)
        for n, f in ipairs(frames) do
          assert.equal(format("%08d", n), f.payload:sub(1, 8))
        end
        assert(raw:send_frame({ opcode = 8, payload = helpers.close_payload(1013, "") }))
        assert(helpers.wait_until(function() return slow.state == "closed" end, 5))
        assert.equal(1013, slow.close_code)
        assert.equal(1, duplex.subscribers("feed"))
        assert(helpers.wait_until(function() return fast.n == i end, 5))
        assert.is_nil(fast.bad)
        assert.equal(0, conns.f.ws.dropped)
        assert(client:close())
      end, 20)
    end)

    it("closes several stalled subscribers met in one publish, each with 1013", function()
      helpers.run(function()
        local conns = {}
        local SIZE, MAXB, S = 64 * 1024, 128 * 1024, 5
        local server = topic_server({ on_backlog = "close", max_backlog = MAXB, close_timeout = 3 }, conns)
        local client = assert(helpers.connect(helpers.url(server.port, "/f?t=feed")))
        local fast = counter(client, SIZE)
        assert(helpers.wait_until(function() return conns.f and conns.f.ready end, 3))
        local raws, slows = {}, {}
        for i = 1, S do raws[i], slows[i] = stalled_client(server.port, "slow" .. i, "feed", conns) end
        -- the stalled ones joined last: fill their kernel buffers, and then
        -- one publish meets them all over the bound
        local pad = ("w"):rep(SIZE - 8)
        local i, closed = 0, 0
        while closed < S and i < 2000 do
          keep_pace({ conns.f.ws }, MAXB / 2)
          i = i + 1
          local q, d = duplex.publish("feed", format("%08d", i) .. pad, "binary")
          assert.equal(q + d + closed, S + 1, "publish " .. i)
          closed = closed + d
        end
        assert.equal(S, closed)
        for k = 1, S do
          assert.equal("closing", slows[k].state)
          assert.equal(1, slows[k].dropped)
        end
        assert.equal(1, duplex.subscribers("feed")) -- a closing connection has left already
        for k = 1, S do
          local code, reason, frames = raws[k]:read_close(10)
          assert.equal(1013, code, "stalled subscriber " .. k)
          assert.equal("subscriber too slow", reason)
          for n, f in ipairs(frames) do assert.equal(format("%08d", n), f.payload:sub(1, 8)) end
          assert(raws[k]:send_frame({ opcode = 8, payload = helpers.close_payload(1013, "") }))
        end
        assert(helpers.wait_until(function()
          for k = 1, S do
            if slows[k].state ~= "closed" then return false end
          end
          return true
        end, 5))
        for k = 1, S do assert.equal(1013, slows[k].close_code) end
        assert.equal(1, (duplex.publish("feed", format("%08d", i + 1) .. pad, "binary")))
        assert(helpers.wait_until(function() return fast.n == i + 1 end, 5))
        assert.is_nil(fast.bad)
        assert(client:close())
      end, 20)
    end)

    it("answers a ping from a backlogged peer ahead of the queued data", function()
      helpers.run(function()
        local conns = {}
        local SIZE, MAXB = 64 * 1024, 4 * 1024 * 1024
        local server = topic_server({ max_backlog = MAXB }, conns)
        local raw, slow = stalled_client(server.port, "slow", "feed", conns)
        local pad = ("z"):rep(SIZE - 8)
        local queued = 0
        for i = 1, 1000 do
          local q = duplex.publish("feed", format("%08d", i) .. pad, "binary")
          if q == 0 then break end
          queued = queued + 1
          if i % 16 == 0 then duplex.sleep(0.001) end -- let the kernel take what it takes
        end
        assert(slow.dropped > 0, "the queue never passed max_backlog")
        local backlog = slow.buffered
        assert(backlog >= MAXB, "queued: " .. backlog)
        assert(raw:send_frame({ opcode = 9, payload = "are you there" }))
        duplex.sleep(0.1) -- the server reads it while its queue is full
        local before, after, pong = 0, 0, false
        local n = 0
        while n < queued or not pong do
          local f, err = raw:read_frame(10)
          assert(f, err)
          if f.opcode == 10 then
            assert.is_false(pong, "two pongs")
            assert.equal("are you there", f.payload)
            pong = true
          else
            n = n + 1
            assert.equal(2, f.opcode)
            assert.equal(format("%08d", n), f.payload:sub(1, 8))
            if pong then after = after + #f.payload else before = before + #f.payload end
          end
        end
        assert.equal(queued, n)
        note("ping: %d messages queued, %d bytes in the queue at the ping, %d bytes before the pong, %d after",
          queued, backlog, before, after)
        -- the pong came before what was queued at the ping, but for what was
        -- already on its way
        assert(after >= backlog / 2, format("%d bytes before the pong, %d after, %d were queued", before, after, backlog))
        raw:close()
      end, 20)
    end)
    -- Fails on the topics branch at 64abbb1: see the report. The first
    -- pong goes ahead; the pong for a later ping is held (one pong queued
    -- already, the queue past high_water) and let go only in after_drain,
    -- once a flush has moved the whole backlog into the kernel: the peer
    -- reads every queued byte before it.
    it("answers the latest of many pings from a backlogged peer, in order and ahead of the queued data", function()
      helpers.run(function()
        local conns = {}
        local SIZE, MAXB = 64 * 1024, 2 * 1024 * 1024
        local server = topic_server({ max_backlog = MAXB }, conns)
        local raw, slow = stalled_client(server.port, "slow", "feed", conns)
        local pad = ("q"):rep(SIZE - 8)
        local queued = 0
        for i = 1, 1000 do
          if duplex.publish("feed", format("%08d", i) .. pad, "binary") == 0 then break end
          queued = queued + 1
          if i % 16 == 0 then duplex.sleep(0.001) end
        end
        assert(slow.dropped > 0)
        local backlog = slow.buffered
        local PINGS = 20
        for k = 1, PINGS do
          assert(raw:send_frame({ opcode = 9, payload = "ping " .. k }))
          if k % 20 == 0 then duplex.sleep(0.005) end
        end
        duplex.sleep(0.1)
        assert.equal("open", slow.state)
        local n, pongs, last, after = 0, 0, 0, 0
        local positions, seen_bytes = {}, 0
        while n < queued or last < PINGS do
          local f, err = raw:read_frame(10)
          assert(f, err)
          if f.opcode == 10 then
            local k = tonumber(f.payload:match("^ping (%d+)$"))
            assert(k and k > last, "pong " .. tostring(f.payload) .. " after pong " .. last)
            last, pongs = k, pongs + 1
            positions[#positions + 1] = format("ping %d after %d bytes", k, seen_bytes)
          else
            seen_bytes = seen_bytes + #f.payload
            n = n + 1
            assert.equal(format("%08d", n), f.payload:sub(1, 8))
            if last == PINGS then after = after + #f.payload end
          end
        end
        assert.equal(queued, n)
        note("%d pings: %d pongs, %d bytes of data after the last pong, %d were queued", PINGS, pongs, after, backlog)
        assert(after >= backlog / 2, format("%d bytes of data after the last pong, %d were queued at the pings; pongs: %s",
          after, backlog, table.concat(positions, ", ")))
        raw:close()
      end, 20)
    end)
  end)

  describe("compression", function()
    it("gives compressed and plain subscribers on one topic the same messages, sharing one compressed frame without context takeover", function()
      helpers.run(function()
        local conns = {}
        local a = topic_server({ compression = { context_takeover = false } }, conns)
        local b = topic_server({ compression = true }, conns)
        local clients, readers, expect = {}, {}, {}
        local function add(port, name, compression, compressed)
          local ws = assert(helpers.connect(helpers.url(port, "/" .. name .. "?t=mixed"), { compression = compression }))
          assert.equal(compressed, ws.compression, name)
          clients[#clients + 1] = ws
          readers[#readers + 1] = reader(ws)
          expect[#expect + 1] = compressed
        end
        for i = 1, 3 do
          add(a.port, "a_on" .. i, nil, true)
          add(a.port, "a_off" .. i, false, false)
          add(b.port, "b_on" .. i, true, true)
          add(b.port, "b_off" .. i, false, false)
        end
        -- raw peers that show the bytes: two with permessage-deflate, one without
        local pmd = { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" }
        local raws, heads = {}, {}
        for i = 1, 3 do
          raws[i], heads[i] = helpers.raw_ws_client(a.port, { path = "/raw" .. i .. "?t=mixed", extra = i < 3 and pmd or nil })
        end
        assert.matches("server_no_context_takeover", heads[1].headers["sec-websocket-extensions"], 1, true)
        assert.is_nil(heads[3].headers["sec-websocket-extensions"])
        assert(helpers.wait_until(function() return duplex.subscribers("mixed") == #clients + 3 end, 3))
        for i = 1, 3 do
          assert.equal(i < 3, conns["raw" .. i].ws.compression)
        end
        local msgs, kinds = {}, {}
        math.randomseed(7)
        for i = 1, 40 do
          local m, kind = nil, "text"
          if i % 4 == 0 then
            m = "short " .. i -- under the threshold: sent plain
          elseif i % 4 == 1 then
            m = ("line %d: the quick brown fox jumps over the lazy dog. "):format(i):rep(60)
          elseif i % 4 == 2 then
            local t = {}
            for j = 1, 3000 do t[j] = string.char(math.random(0, 255)) end
            m, kind = table.concat(t), "binary"
          else
            m = i == 3 and "" or ("caf\195\169 \226\156\147 %d "):format(i):rep(100)
          end
          msgs[i], kinds[i] = m, kind
          local q, d = duplex.publish("mixed", m, kind)
          assert.equal(#clients + 3, q)
          assert.equal(0, d)
        end
        assert(helpers.wait_until(function()
          for i = 1, #readers do
            if #readers[i].got < #msgs then return false end
          end
          return true
        end, 5))
        for i = 1, #readers do same_list(msgs, readers[i].got, "subscriber " .. i .. " (compressed: " .. tostring(expect[i]) .. ")") end
        local frames = {}
        for r = 1, 3 do
          frames[r] = {}
          for i = 1, #msgs do
            local f = assert(raws[r]:read_frame(5))
            assert.equal(kinds[i] == "binary" and 2 or 1, f.opcode)
            frames[r][i] = f
          end
        end
        for i = 1, #msgs do
          -- the two compressed peers get the very same bytes
          assert.equal(frames[1][i].rsv, frames[2][i].rsv)
          assert.equal(frames[1][i].payload, frames[2][i].payload, "frame " .. i)
          assert.equal(0, frames[3][i].rsv)
          assert.equal(msgs[i], frames[3][i].payload)
          if i % 4 == 1 then
            assert.equal(4, frames[1][i].rsv, "message " .. i .. " compressed")
            assert(#frames[1][i].payload < #msgs[i] / 4)
          elseif i % 4 == 0 then
            assert.equal(0, frames[1][i].rsv)
            assert.equal(msgs[i], frames[1][i].payload)
          end
        end
        for i = 1, 3 do raws[i]:close() end
        for i = 1, #clients do assert(clients[i]:close()) end
      end, 15)
    end)
  end)

  describe("TLS", function()
    local pki = require "helpers.pki"

    -- n TLS subscribers (our client, trusting the test CA) and n plain ones
    -- on topic "mix"; returns the readers, TLS ones first.
    local function mixed(n)
      local p = pki.get()
      local conns = {}
      local tls = topic_server({ tls = { cert = p.server_cert, key = p.server_key } }, conns)
      local plain = topic_server({}, conns)
      local readers = {}
      for i = 1, n do
        local ws = assert(helpers.connect(("wss://localhost:%d/t%d?t=mix"):format(tls.port, i), { tls = { ca = p.ca } }))
        readers[i] = reader(ws)
        ws = assert(helpers.connect(helpers.url(plain.port, "/p" .. i .. "?t=mix")))
        readers[n + i] = reader(ws)
      end
      assert(helpers.wait_until(function() return duplex.subscribers("mix") == 2 * n end, 5))
      return readers
    end

    local function all_got(readers, n, timeout)
      return helpers.wait_until(function()
        for k = 1, #readers do
          if #readers[k].got < n then return false end
        end
        return true
      end, timeout)
    end

    local function counts(readers)
      local t = {}
      for k = 1, #readers do t[k] = #readers[k].got end
      return table.concat(t, " ")
    end

    -- Fails on the topics branch at 64abbb1: see the report. A TLS
    -- connection encrypts about 64 KiB of its queue per flush; when the
    -- kernel takes those records at once, the rest of the queue waits for
    -- the next write on that connection (there may be none).
    it("delivers three 70 000-byte publishes queued in one turn to a TLS subscriber", function()
      helpers.run(function()
        local readers = mixed(1)
        local m = ("t"):rep(70000)
        for _ = 1, 3 do assert.equal(2, (duplex.publish("mix", m))) end
        assert(all_got(readers, 3, 3), "messages received (TLS, plain): " .. counts(readers))
        for k = 1, #readers do assert(readers[k].ws:close()) end
      end)
    end)

    it("fans out to TLS and plain subscribers on one topic", function()
      helpers.run(function()
        local readers = mixed(4)
        local msgs = {}
        for i = 1, 30 do
          -- up to 300 KiB, past the 64 KiB that TLS encrypts at a time
          msgs[i] = format("%04d", i) .. ("abcdefghij"):rep(i * 1000)
          local q, d = duplex.publish("mix", msgs[i])
          assert(q == 8 and d == 0, format("publish %d: queued %s, dropped %s", i, tostring(q), tostring(d)))
          -- below max_backlog for all: wait for every reader now and then
          if i % 3 == 0 then
            assert(all_got(readers, i, 3), "after publish " .. i .. ", messages received (4 TLS, 4 plain): " .. counts(readers))
          end
        end
        for i = 1, #readers do
          assert.equal(#msgs, #readers[i].got, "subscriber " .. i)
          for k = 1, #msgs do assert(readers[i].got[k] == msgs[k], "subscriber " .. i .. " message " .. k) end
        end
        for i = 1, #readers do assert(readers[i].ws:close()) end
      end, 20)
    end)
  end)

  describe("order with large frames", function()
    for _, compression in ipairs({ false, true }) do
      it("keeps publishes and own sends of 64 KiB and more in FIFO order, written directly or queued (compression " .. tostring(compression) .. ")", function()
        helpers.run(function()
          local conns = {}
          local server = topic_server({ max_backlog = 64 * 1024 * 1024, high_water = 16 * 1024 * 1024, compression = compression }, conns)
          local N, R = 3, 120
          local clients = connect_many(N, function(i) return helpers.url(server.port, "/s" .. i .. "?t=big") end)
          local heads = {}
          for i = 1, N do
            local r = { n = 0, got = {} }
            heads[i] = r
            local ws = clients[i]
            duplex.spawn(function()
              while true do
                local msg = ws:receive()
                if not msg then break end
                -- only the head of each message is kept, with its length
                r.got[#r.got + 1] = msg:sub(1, 12) .. "/" .. #msg
                if #r.got % 7 == 0 then duplex.sleep(0.001) end -- a reader a little behind at times
              end
            end)
          end
          assert(helpers.wait_until(function() return duplex.subscribers("big") == N end, 3))
          local want = {}
          for i = 1, N do want[i] = {} end
          local big_pub = ("P"):rep(100 * 1024)
          local big_own = ("O"):rep(70 * 1024)
          for r = 1, R do
            local head = format("pub %08d", r)
            local size = (r % 3 == 0) and 200 or #big_pub + 12
            local q, d = duplex.publish("big", head .. big_pub:sub(1, size - 12), "binary")
            assert.equal(N, q)
            assert.equal(0, d)
            for i = 1, N do
              want[i][#want[i] + 1] = head .. "/" .. size
              if (r + i) % 2 == 0 then
                local own = format("own %08d", r)
                local osize = (r % 5 == 0) and 100 or #big_own + 12
                assert(conns["s" .. i].ws:send(own .. big_own:sub(1, osize - 12), "binary"))
                want[i][#want[i] + 1] = own .. "/" .. osize
              end
            end
            if r % 4 == 0 then duplex.sleep(0) end
          end
          assert(helpers.wait_until(function()
            for i = 1, N do
              if #heads[i].got < #want[i] then return false end
            end
            return true
          end, 10))
          for i = 1, N do same_list(want[i], heads[i].got, "subscriber " .. i) end
          for i = 1, N do
            assert.equal(compression, clients[i].compression)
            assert(clients[i]:close())
          end
        end, 20)
      end)
    end
  end)

  describe("membership in the middle of a stream", function()
    it("keeps the message published just before an unsubscribe, then nothing; a subscribe takes effect for the next publish; a closed subscriber leaves", function()
      helpers.run(function()
        local conns = {}
        local server = topic_server({}, conns)
        local N = 6
        local clients = connect_many(N, function(i) return helpers.url(server.port, "/s" .. i .. "?t=live") end)
        local readers = {}
        for i = 1, N do readers[i] = reader(clients[i]) end
        assert(helpers.wait_until(function() return duplex.subscribers("live") == N end, 5))
        local sws = {}
        for i = 1, N do sws[i] = conns["s" .. i].ws end
        local want = {}
        for i = 1, N do want[i] = {} end
        local member = {}
        for i = 1, N do member[i] = true end
        local function publish(r)
          local msg = "m " .. r
          local n = 0
          for i = 1, N do
            if member[i] then
              n = n + 1
              want[i][#want[i] + 1] = msg
            end
          end
          local q, d = duplex.publish("live", msg)
          assert.equal(n, q, "queued for publish " .. r)
          assert.equal(0, d)
          assert.equal(n, duplex.subscribers("live"))
        end
        local function mark(i, what)
          assert(sws[i]:send(what))
          want[i][#want[i] + 1] = what
        end
        for r = 1, 200 do
          publish(r)
          if r == 50 then
            -- in the same turn as publish 50, before the loop wrote it
            assert.is_true(sws[1]:unsubscribe("live"))
            member[1] = false
            mark(1, "unsubscribed")
            assert.is_true(sws[2]:unsubscribe("live"))
            assert.is_true(sws[2]:subscribe("live")) -- leave and come back at once: nothing lost
          elseif r == 100 then
            assert.is_true(sws[1]:subscribe("live"))
            member[1] = true
            mark(1, "subscribed")
          elseif r == 120 then
            -- the client closes (once it has read all so far); it leaves the
            -- topic once the close is done
            member[3] = false
            assert(helpers.wait_until(function() return readers[3].got[120] end, 3))
            local done = false
            duplex.spawn(function()
              clients[3]:close()
              done = true
            end)
            assert(helpers.wait_until(function() return done end, 3))
            assert(helpers.wait_until(function() return duplex.subscribers("live") == N - 1 end, 3))
            assert.is_false(sws[3]:subscribed("live"))
            assert.same({}, sws[3]:topics())
          elseif r == 150 then
            -- the server closes one
            member[4] = false
            local ok = sws[4]:close(4000, "bye")
            assert.is_true(ok)
            assert.equal(N - 2, duplex.subscribers("live"))
          end
          if r % 25 == 0 then duplex.sleep(0.002) end -- let some go out between
        end
        for i = 1, N do
          if member[i] then mark(i, "done") end
        end
        assert(helpers.wait_until(function()
          for i = 1, N do
            if member[i] and readers[i].got[#readers[i].got] ~= "done" then return false end
          end
          return readers[3].done and readers[4].done
        end, 5))
        -- what the closed ones got: everything up to their close, nothing after
        want[3] = {}
        for r = 1, 120 do want[3][r] = "m " .. r end
        for i = 1, N do same_list(want[i], readers[i].got, "subscriber " .. i) end
        assert.equal(4000, readers[4].code)
        for i = 1, N do
          if member[i] then assert(clients[i]:close()) end
        end
        assert.equal(0, duplex.subscribers("live"))
      end, 15)
    end)
  end)
end)
