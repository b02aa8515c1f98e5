-- The defaults README.md and DESIGN.md promise, checked with no option set:
-- every other spec passes its own limits, so only these would notice if a
-- default drifted. The timeouts take their real time (10 s and 5 s), run
-- side by side in one case.
local helpers = require "helpers"
local duplex = helpers.duplex
local run = helpers.run

local MiB = 1024 * 1024

-- duplex.serve with no option but the handler: host and port are defaults too.
local function default_server(handler)
  local server = assert(duplex.serve({}, handler or helpers.echo_handler()))
  helpers.track_server(server)
  return server
end

describe("defaults", function()
  it("handshake_timeout is 10 s, close_timeout 5 s, connect's timeout 10 s", function()
    run(function()
      local closed
      local server = default_server(function(ws)
        local t0 = duplex.now()
        local ok, err = ws:close(4000, "the peer never answers")
        closed = { ok = ok, err = err, elapsed = duplex.now() - t0 }
      end)
      local silent = assert(helpers.raw_client(server.port)) -- says nothing at all
      local mute = helpers.raw_ws_client(server.port)       -- never answers the close
      local rs = helpers.raw_server()                         -- never answers the upgrade
      local t0 = duplex.now()
      local dialed = helpers.connect_async(rs:url())
      local peer = assert(rs:accept(2))
      assert.truthy(peer:read_head(2))
      local dropped
      duplex.spawn(function()
        if silent:wait_eof(14) then dropped = duplex.now() - t0 end
      end)
      assert.truthy(helpers.wait_until(function() return dialed.done and dropped and closed end, 15),
        "a timeout did not fire")
      local dial_time = duplex.now() - t0 -- dialed.done came last or close to it
      assert.is_true(dropped > 9.5 and dropped < 12, "a silent client was dropped after " .. dropped .. " s")
      assert.is_nil(dialed.ws)
      assert.are.equal("handshake timed out", dialed.err)
      assert.is_true(dial_time > 9.5 and dial_time < 13, "connect gave up after " .. dial_time .. " s")
      assert.is_nil(closed.ok)
      assert.are.equal("close handshake timed out", closed.err)
      assert.is_true(closed.elapsed > 4.5 and closed.elapsed < 7, "close waited " .. closed.elapsed .. " s")
      assert.are.equal(4000, mute:read_close(1))
      mute:close()
      silent:close()
      peer:close()
      rs:close()
      server:close()
    end, 25)
  end)

  it("max_message is 16 MiB: exactly that much is echoed, one byte more gets 1009", function()
    run(function()
      local server = default_server()
      local ws = assert(duplex.connect(helpers.url(server.port), { compression = false }))
      helpers.track_ws(ws)
      local big = ("m"):rep(16 * MiB)
      assert(ws:send(big, "binary"))
      local echo = ws:receive()
      assert.are.equal(16 * MiB, #echo)
      assert.is_true(echo == big)
      assert.is_true(ws:close())
      -- a frame that announces one byte more is refused from its header
      local raw = helpers.raw_ws_client(server.port)
      assert(raw:send("\130\255" .. helpers.be(16 * MiB + 1, 8) .. "\0\0\0\0"))
      assert.are.equal(1009, raw:read_close(2))
      raw:close()
      server:close()
    end, 20)
  end)

  it("max_head is 8192 bytes", function()
    run(function()
      local server = default_server()
      local function head_of(size)
        local base = helpers.upgrade_request({ extra = { "X-Pad: " } })
        return base:gsub("X%-Pad: ", "X-Pad: " .. ("p"):rep(size - #base), 1)
      end
      local fits = head_of(8192)
      assert.are.equal(8192, #fits)
      local raw = assert(helpers.raw_client(server.port))
      assert(raw:send(fits))
      assert.are.equal(101, assert(raw:read_head(2)).status)
      raw:close()
      raw = assert(helpers.raw_client(server.port))
      assert(raw:send(head_of(8193)))
      assert.are.equal(431, assert(raw:read_head(2)).status)
      raw:close()
      server:close()
    end)
  end)

  it("high_water is 1 MiB: send waits once that much is queued", function()
    run(function()
      local state = { sent = 0, buffered = 0, last = 0 }
      local server = default_server(function(ws)
        local msg = ("h"):rep(65536)
        while ws:send(msg, "binary") do
          state.sent, state.buffered, state.last = state.sent + 1, ws.buffered, duplex.now()
        end
      end)
      local raw = helpers.raw_ws_client(server.port, { rcvbuf = 4096 }) -- and never reads
      -- the kernel's buffers fill first; then the queue, until send waits
      assert.truthy(helpers.wait_until(function()
        return state.sent > 0 and duplex.now() - state.last > 0.5
      end, 10), "send never started waiting")
      assert.is_true(state.buffered >= MiB, "send waited at " .. state.buffered .. " bytes")
      assert.is_true(state.buffered < MiB + 65536 + 14, "the queue reached " .. state.buffered .. " bytes")
      raw:close()
      server:close()
    end, 15)
  end)

  it("sends no keepalive pings unless asked", function()
    run(function()
      local server = default_server()
      local raw = helpers.raw_ws_client(server.port)
      local f, err = raw:read_frame(0.6)
      assert.is_nil(f)
      assert.are.equal("timeout", err)
      raw:close()
      server:close()
    end)
  end)

  it("compression: a server declines it, a client offers a 12-bit window and a threshold of 32", function()
    run(function()
      local server = default_server()
      local raw, head = helpers.raw_ws_client(server.port, { extra = { "Sec-WebSocket-Extensions: permessage-deflate" } })
      assert.is_nil(head.headers["sec-websocket-extensions"])
      raw:close()
      server:close()

      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url())
      local peer, req = rs:handshake({ headers = { "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12" } })
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      assert.truthy(r.ws, r.err)
      assert.are.equal("permessage-deflate; client_max_window_bits=12; server_max_window_bits=12",
        req.headers["sec-websocket-extensions"])
      assert.is_true(r.ws.compression)
      assert(r.ws:send(("t"):rep(31)))
      assert.are.equal(0, assert(peer:read_frame(1)).rsv)
      assert(r.ws:send(("t"):rep(32)))
      assert.are.equal(4, assert(peer:read_frame(1)).rsv)
      r.ws:abort()
      peer:close()
      rs:close()
    end)
  end)
end)
