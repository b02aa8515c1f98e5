-- Timeouts, keepalive and backpressure.
local helpers = require "helpers"
local duplex = helpers.duplex
local run = helpers.run

describe("close_timeout", function()
  it("bounds our client's close when the server never answers", function()
    run(function()
      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url(), { close_timeout = 0.5 })
      local peer = rs:handshake()
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      local ws = assert(r.ws, r.err)
      local t0 = duplex.now()
      local ok, err = ws:close(1000, "bye")
      local elapsed = duplex.now() - t0
      assert.is_nil(ok)
      assert.is_string(err)
      assert.is_true(elapsed >= 0.4 and elapsed < 1.5, "close took " .. elapsed .. " s")
      assert.are.equal("closed", ws.state)
      assert.is_false(ws.close_clean)
      -- the close frame did go out
      local f = assert(peer:read_frame(1))
      assert.are.equal(8, f.opcode)
      assert.are.same({ 1000, "bye" }, { helpers.parse_close(f.payload) })
      peer:close()
      rs:close()
    end)
  end)

  it("bounds our server's close when the client never answers", function()
    run(function()
      local result
      local server = helpers.serve({ close_timeout = 0.5 }, function(ws)
        ws:receive()
        local t0 = duplex.now()
        local ok, err = ws:close(4001, "server leaves")
        result = { ok = ok, err = err, elapsed = duplex.now() - t0, clean = ws.close_clean }
      end)
      local raw = helpers.raw_ws_client(server.port)
      raw:send_frame({ opcode = 1, payload = "go" })
      assert.are.equal(4001, raw:read_close(2))
      assert.truthy(helpers.wait_until(function() return result end, 3))
      assert.is_nil(result.ok)
      assert.is_string(result.err)
      assert.is_true(result.elapsed >= 0.4 and result.elapsed < 1.5, "close took " .. result.elapsed .. " s")
      assert.is_false(result.clean)
      assert.truthy(raw:wait_eof(2))
      raw:close()
      server:close()
    end)
  end)

  it("drops TCP after a failure when the peer never closes its side", function()
    run(function()
      local server = helpers.echo_server({ close_timeout = 0.3 })
      local raw = helpers.raw_ws_client(server.port)
      raw:send_frame({ opcode = 1, payload = "x", mask = false })
      assert.are.equal(1002, raw:read_close(2))
      -- we keep our side open and say nothing: the server must not wait forever
      local t0 = duplex.now()
      assert.truthy(raw:wait_eof(2))
      assert.is_true(duplex.now() - t0 < 1.0)
      raw:close()
      server:close()
    end)
  end)
end)

describe("keepalive", function()
  it("drops a client that never answers pings after about interval + timeout", function()
    run(function()
      local log = {}
      local server = helpers.echo_server({ ping_interval = 0.2, ping_timeout = 0.2 }, log)
      local raw = helpers.raw_ws_client(server.port)
      local t0 = duplex.now()
      local ping = assert(raw:read_frame(1))
      local t_ping = duplex.now() - t0
      assert.are.equal(9, ping.opcode)
      assert.is_true(t_ping > 0.1 and t_ping < 0.5, "first ping after " .. t_ping .. " s")
      -- we never answer: the server gives up at about 0.4 s
      local code, reason = raw:read_close(2)
      assert.truthy(code, "no close frame: " .. tostring(reason))
      assert.truthy(raw:wait_eof(2))
      local elapsed = duplex.now() - t0
      assert.is_true(elapsed > 0.3 and elapsed < 1.0, "dropped after " .. elapsed .. " s")
      assert.truthy(helpers.wait_until(function() return log.closed end, 2))
      -- locally the connection failed with the code it sent
      assert.are.equal(1011, code)
      assert.are.equal(1011, log.code)
      assert.is_false(log.ws.close_clean)
      raw:close()
      server:close()
    end)
  end)

  it("keeps a client that answers pings", function()
    run(function()
      -- a roomy timeout: a loaded machine may stall the process for a while,
      -- and libuv runs due timers before it reads the pong already waiting
      local server = helpers.echo_server({ ping_interval = 0.1, ping_timeout = 1 })
      local raw = helpers.raw_ws_client(server.port)
      local pings = 0
      local t0 = duplex.now()
      local log = {}
      while duplex.now() - t0 < 0.6 do
        local f = assert(raw:read_frame(1))
        log[#log + 1] = ("%.3f op%d"):format(duplex.now() - t0, f.opcode)
        assert.are.equal(9, f.opcode, "got " .. f.payload .. "; " .. table.concat(log, ", "))
        pings = pings + 1
        raw:send_frame({ opcode = 10, payload = f.payload })
        log[#log + 1] = ("%.3f pong"):format(duplex.now() - t0)
      end
      assert.is_true(pings >= 3, pings .. " pings")
      raw:send_frame({ opcode = 1, payload = "still here" })
      local f
      repeat f = assert(raw:read_frame(1)) until f.opcode ~= 9
      assert.are.equal("still here", f.payload)
      raw:close()
      server:close()
    end)
  end)

  it("counts any traffic from the peer as a sign of life, so pings wait for silence", function()
    run(function()
      -- wide margins: the raw peer lives in this process, so a stall of the
      -- machine delays both sides
      local server = helpers.echo_server({ ping_interval = 0.5, ping_timeout = 1 })
      local raw = helpers.raw_ws_client(server.port)
      -- a message every 50 ms for 1.5 s: never 0.5 s of silence, so no ping
      local t0 = duplex.now()
      while duplex.now() - t0 < 1.5 do
        assert(raw:send_frame({ opcode = 1, payload = "chatter" }))
        local f = assert(raw:read_frame(1))
        assert.are.equal(1, f.opcode, "a ping came although the peer kept talking")
        duplex.sleep(0.05)
      end
      -- then silence: a ping about 0.5 s later, and we answer it with data
      -- instead of a pong, which keeps the connection too
      local ping = assert(raw:read_frame(2))
      assert.are.equal(9, ping.opcode)
      assert(raw:send_frame({ opcode = 1, payload = "not a pong" }))
      local f = assert(raw:read_frame(1))
      assert.are.equal("not a pong", f.payload)
      duplex.sleep(0.3)
      assert(raw:send_frame({ opcode = 1, payload = "still open" }))
      repeat f = assert(raw:read_frame(1)) until f.opcode ~= 9
      assert.are.equal("still open", f.payload)
      raw:close()
      server:close()
    end)
  end)

  it("has our client fail a server that never answers pings (1011)", function()
    run(function()
      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url(), { ping_interval = 0.2, ping_timeout = 0.2 })
      local peer = rs:handshake()
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      assert.truthy(r.ws, r.err)
      local t0 = duplex.now()
      local ping = assert(peer:read_frame(1))
      assert.are.equal(9, ping.opcode)
      assert.is_true(ping.masked, "a client's ping must be masked")
      local code = peer:read_close(2)
      assert.are.equal(1011, code)
      local msg, err, rcode = r.ws:receive()
      local elapsed = duplex.now() - t0
      assert.is_nil(msg)
      assert.are.equal("closed", err)
      assert.are.equal(1011, rcode)
      assert.are.equal(1011, r.ws.close_code)
      assert.are.equal("keepalive ping timed out", r.ws.close_reason)
      assert.is_false(r.ws.close_clean)
      assert.is_true(elapsed < 1.5, "failed after " .. elapsed .. " s")
      peer:close()
      rs:close()
    end)
  end)

  it("waits ping_interval for the pong when ping_timeout is not given", function()
    run(function()
      local log = {}
      local server = helpers.echo_server({ ping_interval = 0.4 }, log)
      local t0 = duplex.now()
      local raw = helpers.raw_ws_client(server.port)
      assert.are.equal(9, assert(raw:read_frame(2)).opcode)
      assert.are.equal(1011, raw:read_close(3))
      -- about interval + interval (a stall can only make it later); a
      -- timeout of 0 would drop us at about 0.4 s
      local total = duplex.now() - t0
      assert.is_true(total > 0.7 and total < 3, "dropped after " .. total .. " s")
      raw:close()
      server:close()
    end)
  end)

  it("does not fail a live peer while a slow handler has paused reading", function()
    run(function()
      local got = {}
      -- the pause (1.5 s) outlasts interval + timeout (0.6 s) many times over;
      -- the timeout leaves room for a loaded machine to stall this process
      -- (whose own client must read the ping before its pong can come back)
      local server = helpers.serve({ ping_interval = 0.2, ping_timeout = 0.4, high_water = 65536 }, function(ws)
        duplex.sleep(1.5) -- behind: the inbox passes high_water and reading pauses
        while true do
          local msg = ws:receive()
          if not msg then break end
          got[#got + 1] = #msg
          ws:send(msg, "binary")
        end
      end)
      -- our client answers pings by itself, so the peer is alive throughout
      local ws = assert(helpers.connect(helpers.url(server.port), { compression = false }))
      local chunk = ("k"):rep(65536)
      for _ = 1, 8 do assert(ws:send(chunk, "binary")) end
      for i = 1, 8 do
        local msg, err, code = ws:receive()
        assert.truthy(msg, ("echo %d: %s %s"):format(i, tostring(err), tostring(code)))
        assert.are.equal(65536, #msg)
      end
      assert.are.equal("open", ws.state)
      assert.are.equal(8, #got)
      assert.is_true(ws:close())
      server:close()
    end, 15)
  end)

  -- A stall longer than ping_timeout right after reading resumes: libuv
  -- then runs the expired timer before it reads the pong waiting in the
  -- socket (a 0 ms grace timer ran again before the poll: found in review).
  it("does not fail a live peer when a handler computes past the pong deadline", function()
    run(function()
      local server = helpers.serve({ ping_interval = 0.1, ping_timeout = 0.1, high_water = 65536 }, function(ws)
        duplex.sleep(1) -- the first message fills the inbox: reading pauses, a ping is out
        while true do
          local msg = ws:receive() -- reading resumes
          if not msg then break end
          local t0 = os.clock()
          while os.clock() - t0 < 0.15 do end -- and the whole process is busy
          assert(ws:send(msg, "binary"))
        end
      end)
      local ws = assert(helpers.connect(helpers.url(server.port), { compression = false }))
      assert(ws:send(("k"):rep(65536), "binary"))
      assert.are.equal(65536, #assert(ws:receive()))
      assert(ws:send("again", "binary"))
      local msg, err, code = ws:receive()
      assert.are.equal("again", msg, ("second echo: %s %s"):format(tostring(err), tostring(code)))
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  -- The ping waits behind up to high_water of our data, and the pong
  -- behind it: a reader that only reads, slowly, is there all the same (the
  -- kernel taking more of our queue shows it). The timeout allows for the
  -- kernel, which frees room in bursts (0.4 s apart here).
  it("does not fail a slow reader that never sends, behind a deep queue", function()
    run(function()
      local failed
      local server = helpers.serve({ ping_interval = 0.3, ping_timeout = 1, high_water = 4 * 1048576 }, function(ws)
        local chunk = ("q"):rep(65536)
        while ws:send(chunk, "binary") do end
        failed = ("%s %s"):format(tostring(ws.close_code), tostring(ws.close_reason))
      end)
      local ws = assert(helpers.connect(helpers.url(server.port), { compression = false, high_water = 65536 }))
      local got, t0 = 0, duplex.now()
      while duplex.now() - t0 < 2.5 do
        local msg, err, code = ws:receive()
        assert.truthy(msg, ("after %d messages: %s %s"):format(got, tostring(err), tostring(code)))
        got = got + 1
        duplex.sleep(0.04) -- about 1.6 MB/s: the ping waits 2.5 s behind 4 MiB
      end
      assert.is_true(got >= 30, "only " .. got .. " messages")
      -- the server's side (the client still reads what was queued before a close)
      assert.is_nil(failed, "the server failed the connection: " .. tostring(failed))
      ws:abort()
      server:close()
    end)
  end)

  it("keeps our own client and server alive with keepalive on both sides", function()
    run(function()
      local server = helpers.echo_server({ ping_interval = 0.05, ping_timeout = 1 })
      local ws = assert(helpers.connect(helpers.url(server.port), { ping_interval = 0.05, ping_timeout = 1 }))
      duplex.sleep(0.4)
      assert.are.equal("open", ws.state)
      ws:send("ok")
      assert.are.equal("ok", ws:receive())
      assert.is_true(ws:close())
      server:close()
    end)
  end)
end)

describe("backpressure", function()
  it("suspends send above high_water and resumes when the peer reads", function()
    run(function()
      local high_water, size, total = 256 * 1024, 64 * 1024, 400
      local stats = { sent = 0, max_buffered = 0, done = false }
      local payload = ("b"):rep(size)
      local server = helpers.serve({ high_water = high_water }, function(ws)
        for i = 1, total do
          assert(ws:send(payload, "binary"))
          stats.sent = i
          local b = ws.buffered
          if b > stats.max_buffered then stats.max_buffered = b end
        end
        stats.done = true
        helpers.echo_handler()(ws)
      end)
      -- a small receive window so that the kernel cannot swallow it all
      local raw = helpers.raw_ws_client(server.port, { rcvbuf = 16 * 1024 })
      duplex.sleep(0.3)
      local stalled_at = stats.sent
      duplex.sleep(0.2)
      assert.are.equal(stalled_at, stats.sent, "send kept going although nobody reads")
      assert.is_true(stats.sent < total, "everything fit in kernel buffers; the test proves nothing")
      assert.is_false(stats.done)
      assert.is_true(stats.max_buffered <= high_water + size + 14,
        "buffered reached " .. stats.max_buffered)
      -- now read everything: the sender resumes and finishes
      for i = 1, total do
        local f = assert(raw:read_frame(5))
        assert.are.equal(2, f.opcode)
        assert.are.equal(size, #f.payload, "message " .. i)
      end
      assert.truthy(helpers.wait_until(function() return stats.done end, 3))
      assert.is_true(stats.max_buffered <= high_water + size + 14,
        "buffered reached " .. stats.max_buffered)
      raw:close()
      server:close()
    end, 20)
  end)

  it("wakes a sender blocked on backpressure when the peer closes", function()
    run(function()
      local result
      local server = helpers.serve({ high_water = 64 * 1024, close_timeout = 0.5 }, function(ws)
        local payload = ("s"):rep(64 * 1024)
        while true do
          local ok, err = ws:send(payload, "binary")
          if not ok then
            result = { err = err, at = duplex.now() }
            return
          end
        end
      end)
      local raw = helpers.raw_ws_client(server.port, { rcvbuf = 16 * 1024 })
      duplex.sleep(0.3) -- the server is blocked in send now
      local t0 = duplex.now()
      raw:send_frame({ opcode = 8, payload = helpers.close_payload(1000) })
      assert.truthy(helpers.wait_until(function() return result end, 3))
      assert.are.equal("closed", result.err)
      assert.is_true(result.at - t0 < 0.3, "send stayed blocked for " .. (result.at - t0) .. " s")
      raw:close()
      server:close()
    end)
  end)

  it("stops reading from a peer whose messages the handler does not take", function()
    run(function()
      local release = false
      local got = 0
      local server = helpers.serve({ high_water = 64 * 1024 }, function(ws)
        helpers.wait_until(function() return release end, 5)
        while true do
          local msg = ws:receive()
          if not msg then return end
          got = got + 1
          if got == 256 then ws:send("all") end
        end
      end)
      local ws = assert(helpers.connect(helpers.url(server.port), { high_water = 64 * 1024 }))
      -- 16 MiB: more than the kernel buffers on both sides can hold
      local payload = ("q"):rep(64 * 1024)
      local sent = 0
      duplex.spawn(function()
        for _ = 1, 256 do
          if not ws:send(payload) then return end
          sent = sent + 1
        end
      end)
      duplex.sleep(0.4)
      local stalled = sent
      assert.is_true(stalled < 256, "the client never had to wait")
      duplex.sleep(0.1)
      assert.are.equal(stalled, sent)
      release = true
      assert.are.equal("all", ws:receive())
      assert.are.equal(256, sent)
      assert.is_true(ws:close())
      server:close()
    end, 15)
  end)
end)
