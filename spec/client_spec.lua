-- Our client against a raw server whose every byte the spec controls.
local helpers = require "helpers"
local duplex = helpers.duplex
local run = helpers.run
local frame = helpers.frame

describe("the client handshake", function()
  it("sends a well-formed upgrade request", function()
    run(function()
      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url("/room?id=7"), {
        protocols = { "chat", "superchat" },
        headers = { ["X-Token"] = "abc" },
        origin = "http://example.test",
      })
      local peer, req = rs:handshake({ headers = { "Sec-WebSocket-Protocol: superchat" } })
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      assert.truthy(r.ws, r.err)
      assert.are.equal("GET /room?id=7 HTTP/1.1", req.line)
      assert.are.equal("127.0.0.1:" .. rs.port, req.headers["host"])
      assert.are.equal("websocket", req.headers["upgrade"]:lower())
      assert.matches("upgrade", req.headers["connection"]:lower())
      assert.are.equal("13", req.headers["sec-websocket-version"])
      local key = req.headers["sec-websocket-key"]
      assert.are.equal(24, #key)
      assert.matches("^[%w+/]+==$", key)
      assert.are.equal("chat, superchat", req.headers["sec-websocket-protocol"])
      assert.are.equal("abc", req.headers["x-token"])
      assert.are.equal("http://example.test", req.headers["origin"])
      assert.are.equal("superchat", r.ws.protocol)
      assert.matches("^127%.0%.0%.1:" .. rs.port .. "$", r.ws.remote)
      -- what we asked for and what the server answered
      local sent = r.ws.request
      assert.are.equal("GET", sent.method)
      assert.are.equal("/room?id=7", sent.target)
      assert.are.equal("/room", sent.path)
      assert.are.equal("id=7", sent.query)
      assert.are.equal("abc", sent.headers["x-token"])
      assert.are.equal("http://example.test", sent.headers["origin"])
      assert.are.equal(101, r.ws.response.status)
      assert.are.equal("superchat", r.ws.response.headers["sec-websocket-protocol"])
      assert.are.equal("websocket", r.ws.response.headers["upgrade"]:lower())
      -- a fresh key per connection
      local r2 = helpers.connect_async(rs:url())
      local peer2, req2 = rs:handshake()
      assert.truthy(helpers.wait_until(function() return r2.done end, 3))
      assert.are_not.equal(key, req2.headers["sec-websocket-key"])
      r.ws:abort()
      r2.ws:abort()
      peer:close()
      peer2:close()
      rs:close()
    end)
  end)

  it("masks every frame it sends", function()
    run(function()
      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url())
      local peer = rs:handshake()
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      local ws = assert(r.ws, r.err)
      local big = ("0123456789"):rep(7000)
      ws:send("hello")
      ws:send(big, "binary")
      ws:ping("p")
      local keys = {}
      for _, want in ipairs({ { 1, "hello" }, { 2, big }, { 9, "p" } }) do
        local f = assert(peer:read_frame(3))
        assert.is_true(f.masked)
        assert.are.equal(want[1], f.opcode)
        assert.is_true(f.payload == want[2])
        assert.is_true(f.fin)
        assert.are.equal(0, f.rsv)
        keys[#keys + 1] = f.key
      end
      assert.is_false(keys[1] == keys[2] and keys[2] == keys[3])
      -- the close frame is masked too
      duplex.spawn(function() ws:close(1000, "done") end)
      local f = assert(peer:read_frame(3))
      assert.are.equal(8, f.opcode)
      assert.is_true(f.masked)
      assert.are.same({ 1000, "done" }, { helpers.parse_close(f.payload) })
      peer:send_frame({ opcode = 8, payload = helpers.close_payload(1000, "done"), mask = false })
      assert.truthy(helpers.wait_until(function() return ws.state == "closed" end, 3))
      assert.is_true(ws.close_clean)
      peer:close()
      rs:close()
    end)
  end)

  -- Our client against a raw server whose side of the handshake is
  -- answer(rs) (returning the peer); the result of connect once it is done.
  local function dial_raw(opts, answer)
    local rs = helpers.raw_server()
    local r = helpers.connect_async(rs:url(), opts)
    local peer = answer(rs)
    assert.truthy(helpers.wait_until(function() return r.done end, 3))
    peer:close()
    rs:close()
    return r
  end

  -- a 101 from rs:handshake with these options
  local function handshake(o) return function(rs) return (rs:handshake(o)) end end

  -- reads the request, then sends response(req) as it is
  local function raw_answer(response)
    return function(rs)
      local peer = assert(rs:accept(3))
      local req = assert(peer:read_head(3))
      assert(peer:send(response(req)))
      return peer
    end
  end

  local function accept_line(req)
    return "Sec-WebSocket-Accept: " .. helpers.accept_key(req.headers["sec-websocket-key"]) .. "\r\n"
  end

  it("returns the response of a server that answers 404", function()
    run(function()
      local r = dial_raw(nil, handshake({ status = 404, reason = "Not Found", headers = { "X-Why: gone" } }))
      assert.is_nil(r.ws)
      assert.are.equal("server refused the upgrade: HTTP 404 Not Found", r.err)
      assert.are.equal(404, r.response.status)
      assert.are.equal("Not Found", r.response.reason)
      assert.are.equal("gone", r.response.headers["x-why"])
    end)
  end)

  -- answers that are not a WebSocket upgrade we can take, each with its error
  for _, case in ipairs({
    { "a wrong Sec-WebSocket-Accept", nil, handshake({ accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" }),
      "wrong Sec-WebSocket-Accept" },
    { "a subprotocol it did not offer", { protocols = { "chat" } },
      handshake({ headers = { "Sec-WebSocket-Protocol: superchat" } }), "server chose a subprotocol we did not offer" },
    { "a subprotocol when it offered none", nil, handshake({ headers = { "Sec-WebSocket-Protocol: chat" } }),
      "server chose a subprotocol we did not offer" },
    { "an extension it did not offer", nil, handshake({ headers = { "Sec-WebSocket-Extensions: x-never-offered" } }),
      "server chose an extension we did not offer" },
    { "a server that hangs up during the handshake", nil, function(rs)
        local peer = assert(rs:accept(3))
        assert.truthy(peer:read_head(3))
        peer:close()
        return peer
      end, "connection closed during the handshake" },
    { "garbage instead of a status line", nil, raw_answer(function() return "garbage\r\n\r\n" end),
      "malformed HTTP response" },
    { "a 9 KiB head", nil, raw_answer(function(req)
        return "HTTP/1.1 101 Switching Protocols\r\nX-Pad: " .. ("p"):rep(9216) .. "\r\n" .. accept_line(req) .. "\r\n"
      end), "response head too large" },
    { "no Upgrade header", nil, raw_answer(function(req)
        return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" .. accept_line(req) .. "\r\n"
      end), "missing Upgrade: websocket" },
    { "no Connection header", nil, raw_answer(function(req)
        return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" .. accept_line(req) .. "\r\n"
      end), "missing Connection: upgrade" },
    { "no Sec-WebSocket-Accept", nil, raw_answer(function()
        return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
      end), "missing Sec-WebSocket-Accept" },
  }) do
    it("refuses " .. case[1] .. " with \"" .. case[4] .. "\"", function()
      run(function()
        local r = dial_raw(case[2], case[3])
        assert.is_nil(r.ws)
        assert.are.equal(case[4], r.err)
      end)
    end)
  end

  it("reads frames that arrive in the same segment as the 101", function()
    run(function()
      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url())
      local peer = assert(rs:accept(3))
      local req = assert(peer:read_head(3))
      peer:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Accept: " .. helpers.accept_key(req.headers["sec-websocket-key"]) .. "\r\n\r\n"
        .. frame({ opcode = 1, payload = "early", mask = false }))
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      local ws = assert(r.ws, r.err)
      assert.are.same({ "early", "text" }, { ws:receive() })
      ws:abort()
      peer:close()
      rs:close()
    end)
  end)
end)

describe("the client checks the server's frames", function()
  -- connects our client to a raw server; returns ws and the raw peer
  local function open(opts)
    local rs = helpers.raw_server()
    local r = helpers.connect_async(rs:url(), opts)
    local peer = rs:handshake()
    assert.truthy(helpers.wait_until(function() return r.done end, 3))
    return assert(r.ws, r.err), peer, rs
  end

  it("receives unmasked text, binary and fragmented messages", function()
    run(function()
      local ws, peer, rs = open()
      peer:send(frame({ opcode = 1, payload = "one", mask = false })
        .. frame({ opcode = 2, payload = "\0two", mask = false })
        .. frame({ opcode = 1, fin = false, payload = "thr", mask = false })
        .. frame({ opcode = 9, payload = "ping!", mask = false })
        .. frame({ opcode = 0, fin = true, payload = "ee", mask = false }))
      assert.are.same({ "one", "text" }, { ws:receive() })
      assert.are.same({ "\0two", "binary" }, { ws:receive() })
      assert.are.same({ "three", "text" }, { ws:receive() })
      local pong = assert(peer:read_frame(3))
      assert.are.equal(10, pong.opcode)
      assert.is_true(pong.masked)
      assert.are.equal("ping!", pong.payload)
      ws:abort()
      peer:close()
      rs:close()
    end)
  end)

  it("fails a masked server frame with 1002", function()
    run(function()
      local ws, peer, rs = open()
      peer:send_frame({ opcode = 1, payload = "masked!", mask = "abcd" })
      local msg, closed, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal("closed", closed)
      assert.are.equal(1002, code)
      local got = peer:read_close(3)
      assert.are.equal(1002, got)
      assert.truthy(peer:wait_eof(3))
      assert.are.equal(1002, ws.close_code)
      assert.is_false(ws.close_clean)
      peer:close()
      rs:close()
    end)
  end)

  it("fails invalid UTF-8 from the server with 1007", function()
    run(function()
      local ws, peer, rs = open()
      peer:send_frame({ opcode = 1, payload = "bad \255", mask = false })
      local msg, _, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal(1007, code)
      assert.are.equal(1007, peer:read_close(3))
      peer:close()
      rs:close()
    end)
  end)

  it("enforces max_message on the client", function()
    run(function()
      local ws, peer, rs = open({ max_message = 100 })
      peer:send_frame({ opcode = 2, payload = ("x"):rep(100), mask = false })
      peer:send_frame({ opcode = 2, payload = ("x"):rep(101), mask = false })
      assert.are.equal(100, #ws:receive())
      local msg, _, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal(1009, code)
      assert.are.equal(1009, peer:read_close(3))
      peer:close()
      rs:close()
    end)
  end)

  it("answers the server's close and reports it", function()
    run(function()
      local ws, peer, rs = open()
      peer:send_frame({ opcode = 8, payload = helpers.close_payload(3001, "later"), mask = false })
      assert.are.same({ nil, "closed", 3001, "later" }, { ws:receive() })
      local f = assert(peer:read_frame(3))
      assert.are.equal(8, f.opcode)
      assert.is_true(f.masked)
      assert.are.same({ 3001, "later" }, { helpers.parse_close(f.payload) })
      peer:close()
      assert.truthy(helpers.wait_until(function() return ws.state == "closed" end, 3))
      assert.is_true(ws.close_clean)
      rs:close()
    end)
  end)

  it("reports 1006 when the server drops TCP without a close frame", function()
    run(function()
      local ws, peer, rs = open()
      peer:send_frame({ opcode = 1, payload = "last words", mask = false })
      duplex.sleep(0.02)
      peer:close()
      assert.are.same({ "last words", "text" }, { ws:receive() })
      local msg, closed, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal("closed", closed)
      assert.are.equal(1006, code)
      assert.is_false(ws.close_clean)
      rs:close()
    end)
  end)
end)
