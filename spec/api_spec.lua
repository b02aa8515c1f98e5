-- The public API: our client against our server.
local helpers = require "helpers"
local duplex = helpers.duplex
local socket = helpers.socket
local run = helpers.run

describe("duplex round trips", function()
  local cases = {
    { "text", "hello", "text" },
    { "binary", "\0\1\2\127\128\254\255", "binary" },
    { "an empty text message", "", "text" },
    { "an empty binary message", "", "binary" },
    { "unicode text", "h\195\169llo w\195\182rld \226\156\147 \240\159\142\137 \228\184\173\230\150\135", "text" },
    { "1 MiB of binary", ("\0\1\2\3\4\5\6\7\250\251\252\253\254\255xy"):rep(65536), "binary" },
    { "1 MiB of text", ("abcdefghijklmno\n"):rep(65536), "text" },
  }
  for _, case in ipairs(cases) do
    it("echoes " .. case[1] .. " and returns its kind", function()
      run(function()
        local server = helpers.echo_server()
        local ws = assert(helpers.connect(helpers.url(server.port)))
        assert.is_true(ws:send(case[2], case[3]))
        local msg, kind = ws:receive()
        assert.are.equal(#case[2], #msg)
        assert.is_true(msg == case[2])
        assert.are.equal(case[3], kind)
        assert.is_true(ws:close())
        server:close()
      end)
    end)
  end

  it("sends text when no kind is given", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      assert.is_true(ws:send("plain"))
      assert.are.same({ "plain", "text" }, { ws:receive() })
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("refuses to send invalid UTF-8 as text", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      local ok, err = ws:send("\255\254", "text")
      assert.is_nil(ok)
      assert.matches("UTF%-8", err)
      assert.is_true(ws:send("\255\254", "binary"))
      assert.are.same({ "\255\254", "binary" }, { ws:receive() })
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("raises on wrong argument types", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      assert.has_error(function() ws:send(42) end)
      assert.has_error(function() ws:send("x", "json") end)
      assert.has_error(function() ws:close("1000") end)
      assert.has_error(function() ws:ping(12) end)
      assert.has_error(function() ws:ping(("p"):rep(126)) end)
      assert.is_true(ws:ping(("p"):rep(125)))
      assert.are.equal(2 + 4 + 125, ws.buffered) -- queued until the next step
      duplex.sleep(0.01)
      assert.are.equal(0, ws.buffered)
      assert.has_error(function() duplex.serve({}, "not a function") end)
      assert.has_error(function() duplex.connect("ws://127.0.0.1:1/", 5) end)
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("keeps whole messages and per-sender order with concurrent senders", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port), { high_water = 32 * 1024 }))
      local senders, per = 4, 40
      -- sizes vary so that some sends have to wait for the queue, and some
      -- messages are larger than high_water by themselves
      local function size_of(i)
        return (i % 4 == 0) and 100000 or (i % 4 == 1) and 10 or (i % 4 == 2) and 3000 or 20000
      end
      local received, finished = {}, 0
      local expected = senders * per
      duplex.spawn(function()
        while #received < expected do
          local msg = ws:receive()
          if not msg then break end
          received[#received + 1] = msg
        end
      end)
      for s = 1, senders do
        duplex.spawn(function()
          for i = 1, per do
            local size = size_of(i)
            local head = s .. ":" .. i .. ":"
            assert(ws:send(head .. ("x"):rep(size - #head)))
            if i % 7 == 0 then duplex.sleep(0) end
          end
          finished = finished + 1
        end)
      end
      assert.truthy(helpers.wait_until(function() return #received == expected end, 8))
      assert.are.equal(senders, finished)
      local next_of = {}
      for s = 1, senders do next_of[s] = 1 end
      for _, msg in ipairs(received) do
        local s, i, rest = msg:match("^(%d+):(%d+):(x*)$")
        assert.truthy(s, "a message came back mangled")
        s, i = tonumber(s), tonumber(i)
        assert.are.equal(size_of(i), #msg)
        assert.are.equal(next_of[s], i)
        next_of[s] = i + 1
        assert.truthy(rest)
      end
      for s = 1, senders do assert.are.equal(per + 1, next_of[s]) end
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("sends messages larger than high_water on both sides", function()
    run(function()
      local server = helpers.echo_server({ high_water = 16 * 1024 })
      local ws = assert(helpers.connect(helpers.url(server.port), { high_water = 16 * 1024 }))
      local big = ("0123456789abcdef"):rep(65536)
      for i = 1, 3 do
        assert.is_true(ws:send(big .. i, "binary"))
      end
      for i = 1, 3 do
        local msg = ws:receive()
        assert.is_true(msg == big .. i)
      end
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("lets two coroutines receive on one connection", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      local got = {}
      for r = 1, 2 do
        duplex.spawn(function()
          while true do
            local msg = ws:receive()
            if not msg then return end
            got[#got + 1] = r .. msg
          end
        end)
      end
      for i = 1, 10 do ws:send(tostring(i)) end
      assert.truthy(helpers.wait_until(function() return #got == 10 end, 3))
      local seen = {}
      for _, m in ipairs(got) do seen[tonumber(m:sub(2))] = true end
      for i = 1, 10 do assert.is_true(seen[i]) end
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  -- PUC Lua 5.1 cannot yield inside a generic for (README): no such case there
  local it_yielding_for = helpers.PUC51 and function() end or it
  it_yielding_for("iterates with ws:messages()", function()
    run(function()
      local got = {}
      local server = helpers.serve({}, function(ws)
        for msg, kind in ws:messages() do got[#got + 1] = msg .. "/" .. kind end
      end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      ws:send("a")
      ws:send("b", "binary")
      assert.is_true(ws:close())
      assert.truthy(helpers.wait_until(function() return #got == 2 end, 2))
      assert.are.same({ "a/text", "b/binary" }, got)
      server:close()
    end)
  end)
end)

describe("handshake details", function()
  it("negotiates the subprotocol", function()
    run(function()
      local seen
      local server = helpers.serve({ protocols = { "chat", "superchat" } }, function(ws)
        seen = ws.protocol or false
        helpers.echo_handler()(ws)
      end)
      local ws = assert(helpers.connect(helpers.url(server.port), { protocols = { "superchat" } }))
      assert.are.equal("superchat", ws.protocol)
      assert.is_true(ws:close())
      assert.are.equal("superchat", seen)

      seen = nil
      ws = assert(helpers.connect(helpers.url(server.port), { protocols = { "other", "chat" } }))
      assert.are.equal("chat", ws.protocol)
      assert.is_true(ws:close())

      seen = nil
      ws = assert(helpers.connect(helpers.url(server.port), { protocols = { "nope" } }))
      assert.is_nil(ws.protocol)
      assert.is_true(ws:close())
      assert.truthy(helpers.wait_until(function() return seen ~= nil end, 2))
      assert.are.equal(false, seen)
      server:close()
    end)
  end)

  it("shows the request, the remote address and the port", function()
    run(function()
      local req, remote
      local server = helpers.serve({ port = 0 }, function(ws)
        req, remote = ws.request, ws.remote
        helpers.echo_handler()(ws)
      end)
      assert.is_number(server.port)
      assert.is_true(server.port > 0)
      local ws = assert(helpers.connect(helpers.url(server.port, "/chat/room?x=1&y=2"),
        { headers = { ["X-Custom-Thing"] = "yes please" } }))
      assert.matches("^127%.0%.0%.1:" .. server.port .. "$", ws.remote)
      assert.truthy(helpers.wait_until(function() return req end, 2))
      assert.are.equal("GET", req.method)
      assert.are.equal("/chat/room", req.path)
      assert.are.equal("x=1&y=2", req.query)
      assert.are.equal("yes please", req.headers["x-custom-thing"])
      assert.are.equal("websocket", req.headers["upgrade"]:lower())
      assert.are.equal("13", req.headers["sec-websocket-version"])
      assert.are.equal("127.0.0.1:" .. server.port, req.headers["host"])
      for name in pairs(req.headers) do assert.are.equal(name:lower(), name) end
      assert.matches("^127%.0%.0%.1:%d+$", remote)
      assert.are_not.equal("127.0.0.1:" .. server.port, remote)
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  -- ws.request is built from the head the C side keeps, on first use
  it("gives the same ws.request when first read after the connection ended", function()
    run(function()
      local req, first, again
      local server = helpers.serve({}, function(ws)
        ws:wait_closed()
        req = ws.request
        first, again = req.path, ws.request
      end)
      local ws = assert(helpers.connect(helpers.url(server.port, "/late?q=1"), { headers = { ["X-Late"] = "1" } }))
      assert.is_true(ws:close())
      assert.truthy(helpers.wait_until(function() return req end, 2))
      assert.are.equal("/late", first)
      assert.are.equal("q=1", req.query)
      assert.are.equal("1", req.headers["x-late"])
      assert.are.equal(req, again) -- built once
      server:close()
    end)
  end)

  it("serves and connects over IPv6 on ::1", function()
    local probe = socket.tcp6 and socket.tcp6()
    local can = probe and probe:bind("::1", 0)
    if probe then probe:close() end
    if not can then
      pending("::1 cannot be bound here")
      return
    end
    run(function()
      local remote
      local server = helpers.serve({ host = "::1" }, function(ws)
        remote = ws.remote
        helpers.echo_handler()(ws)
      end)
      local ws = assert(helpers.connect("ws://[::1]:" .. server.port .. "/"))
      ws:send("six")
      assert.are.same({ "six", "text" }, { ws:receive() })
      assert.matches("^%[::1%]:%d+$", remote)
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("checks the Origin against the origins option", function()
    run(function()
      local server = helpers.echo_server({ origins = { "http://good.example" } })
      local ws, err = helpers.connect(helpers.url(server.port), { origin = "http://good.example" })
      assert.truthy(ws, err)
      assert.is_true(ws:close())
      -- compared without regard to case, as host names are
      ws, err = helpers.connect(helpers.url(server.port), { origin = "HTTP://Good.Example" })
      assert.truthy(ws, err)
      assert.is_true(ws:close())
      local resp
      ws, err, resp = helpers.connect(helpers.url(server.port), { origin = "http://evil.example" })
      assert.is_nil(ws)
      assert.is_string(err)
      assert.are.equal(403, resp.status)
      ws, err, resp = helpers.connect(helpers.url(server.port))
      assert.is_nil(ws)
      assert.are.equal(403, resp and resp.status)
      server:close()
    end)
  end)

  it("answers plain HTTP requests with the http option", function()
    run(function()
      local seen
      local server = helpers.echo_server({
        http = function(req)
          seen = req
          return 200, { ["Content-Type"] = "text/plain", ["X-Thing"] = "1" }, "hello " .. req.path
        end,
      })
      local raw = assert(helpers.raw_client(server.port))
      raw:send("GET /page?q=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: spec\r\n\r\n")
      local head = assert(raw:read_head(3))
      assert.are.equal(200, head.status)
      assert.are.equal("text/plain", head.headers["content-type"])
      assert.are.equal("1", head.headers["x-thing"])
      local len = tonumber(head.headers["content-length"])
      assert.are.equal(#"hello /page", len)
      assert.are.equal("hello /page", raw:read(len, 3))
      assert.truthy(raw:wait_eof(3))
      raw:close()
      assert.are.equal("GET", seen.method)
      assert.are.equal("/page", seen.path)
      assert.are.equal("q=2", seen.query)
      assert.are.equal("spec", seen.headers["user-agent"])
      assert.matches("^127%.0%.0%.1:%d+$", seen.remote)
      -- WebSocket clients still get through
      assert.truthy(helpers.check_echo(server.port))
      server:close()
    end)
  end)

  it("answers 500 when the http handler fails", function()
    run(function()
      local reported
      local server = helpers.echo_server({
        http = function() error("http boom") end,
        on_error = function(_, err) reported = tostring(err) end,
      })
      local raw = assert(helpers.raw_client(server.port))
      raw:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      local head = assert(raw:read_head(3))
      assert.are.equal(500, head.status)
      raw:close()
      assert.matches("http boom", reported)
      server:close()
    end)
  end)

  it("answers 426 to a plain GET without the http option", function()
    run(function()
      local server = helpers.echo_server()
      local raw = assert(helpers.raw_client(server.port))
      raw:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      local head = assert(raw:read_head(3))
      assert.are.equal(426, head.status)
      assert.truthy(raw:wait_eof(3))
      raw:close()
      server:close()
    end)
  end)
end)

describe("servers", function()
  it("returns nil, err when the port is taken", function()
    run(function()
      local server = helpers.echo_server()
      local s2, err = duplex.serve({ host = "127.0.0.1", port = server.port }, function() end)
      assert.is_nil(s2)
      assert.matches("in use", err)
      server:close()
    end)
  end)

  it("keeps serving open connections after server:close()", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      server:close()
      server:close() -- twice is fine
      ws:send("after close")
      assert.are.equal("after close", ws:receive())
      local ws2, err = duplex.connect(helpers.url(server.port))
      assert.is_nil(ws2)
      assert.matches("refused", err:lower())
      assert.is_true(ws:close())
      assert.is_true(ws:close()) -- a second close reports the same result
    end)
  end)

  it("raises for options out of range, NaN included", function()
    local nan = 0 / 0
    for _, case in ipairs({
      { { handshake_timeout = nan }, "option 'handshake_timeout' must be between 0 and 1e9 seconds" },
      { { close_timeout = -1 }, "option 'close_timeout' must be between 0 and 1e9 seconds" },
      { { ping_interval = nan }, "option 'ping_interval' must be between 0 and 1e9 seconds" },
      { { max_message = nan }, "option 'max_message' must be a size in bytes from 1 to" },
      { { high_water = 0 }, "option 'high_water' must be a size in bytes from 1 to 8589934592" },
      { { max_head = 2 * 1024 * 1024 }, "option 'max_head' must be a size in bytes from 256 to 1048576" },
      { { compression = { level = 10 } }, "option 'level' must be a zlib level from 0 to 9" },
      { { compression = { window_bits = 8 } }, "option 'window_bits' must be a window size in bits from 9 to 15" },
    }) do
      local ok, err = pcall(duplex.serve, case[1], function() end)
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    run(function()
      local ok, err = pcall(duplex.sleep, nan)
      assert.is_false(ok)
      assert.matches("NaN", err, 1, true)
      assert.is_true(duplex.step(nan)) -- step never raises: NaN waits for nothing
    end)
  end)
end)

describe("the C module", function()
  -- a host program that links a library with names like tls_read (LibreSSL's
  -- libtls) must not capture the module's internal calls
  it("exports luaopen_duplex_core and nothing else", function()
    local path
    for pattern in package.cpath:gmatch("[^;]+") do
      local candidate = pattern:gsub("%?", "duplex/core")
      local f = io.open(candidate)
      if f then
        f:close()
        path = candidate
        break
      end
    end
    assert.truthy(path, "duplex/core.so not found on package.cpath")
    local p = assert(io.popen("nm -D --defined-only " .. path .. " 2>&1"))
    local names = {}
    for line in p:lines() do names[#names + 1] = line:match("%S+$") end
    p:close()
    assert.are.same({ "luaopen_duplex_core" }, names)
  end)
end)

describe("duplex.connect failures", function()
  it("reports a refused connection", function()
    run(function()
      local port = helpers.closed_port()
      local ws, err = duplex.connect(helpers.url(port))
      assert.is_nil(ws)
      assert.matches("refused", err:lower())
    end)
  end)

  for _, case in ipairs({
    { "http://127.0.0.1/", "URL scheme must be ws or wss, not http" },
    { "ws://", "invalid host in URL: ws://" },
    { "not a url", "invalid URL: not a url" },
    { "ws://127.0.0.1:99999/", "invalid port in URL: ws://127.0.0.1:99999/" },
    { "ws://127.0.0.1:0/", "invalid port in URL: ws://127.0.0.1:0/" },
    { "ws://user@127.0.0.1/", "user information in a WebSocket URL is not supported" },
    { "ws://127.0.0.1/#frag", "a WebSocket URL cannot have a fragment" },
  }) do
    it("rejects the bad URL " .. case[1], function()
      run(function()
        local ws, err = duplex.connect(case[1])
        assert.is_nil(ws)
        assert.are.equal(case[2], err)
      end)
    end)
  end

  it("refuses CR/LF in the target and header values instead of injecting headers", function()
    run(function()
      local rs = helpers.raw_server()
      local ws, err = duplex.connect(rs:url("/a\r\nX-Injected: 1"))
      assert.is_nil(ws)
      assert.is_string(err)
      ws, err = duplex.connect(rs:url(), { headers = { ["X-Ok"] = "a\r\nX-Injected: 1" } })
      assert.is_nil(ws)
      assert.is_string(err)
      ws, err = duplex.connect(rs:url(), { protocols = { "chat\r\nX-Injected: 1" } })
      assert.is_nil(ws)
      assert.is_string(err)
      -- nothing reached the server
      duplex.sleep(0.05)
      assert.is_nil(rs.sock:accept())
      rs:close()
    end)
  end)

  it("raises for a URL that is not a string (a programming error)", function()
    local ok, err = pcall(duplex.connect, 42)
    assert.is_false(ok)
    assert.are.equal("bad argument #1 to 'connect' (URL string expected, got number)", err)
  end)

  it("gives up after the timeout when the server never answers", function()
    run(function()
      local rs = helpers.raw_server()
      local t0 = duplex.now()
      local r = helpers.connect_async(rs:url(), { timeout = 0.3 })
      local peer = assert(rs:accept(2))
      assert.truthy(peer:read_head(2)) -- it asked; we never answer
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      local elapsed = duplex.now() - t0
      assert.is_nil(r.ws)
      assert.matches("time", r.err)
      assert.is_true(elapsed >= 0.25 and elapsed < 1.5, "took " .. elapsed .. " s")
      peer:close()
      rs:close()
    end)
  end)
end)

describe("the life of a connection", function()
  it("goes open -> closing -> closed; ping and send then say closed", function()
    run(function()
      local rs = helpers.raw_server()
      local r = helpers.connect_async(rs:url())
      local peer = rs:handshake()
      assert.truthy(helpers.wait_until(function() return r.done end, 3))
      local ws = assert(r.ws, r.err)
      assert.are.equal("open", ws.state)
      local result
      duplex.spawn(function() result = { ws:close(1000, "bye") } end)
      assert.truthy(helpers.wait_until(function() return ws.state == "closing" end, 2))
      assert.are.same({ nil, "closed" }, { ws:ping("late") })
      assert.are.same({ nil, "closed" }, { ws:send("late") })
      local f = assert(peer:read_frame(2))
      assert.are.equal(8, f.opcode)
      assert(peer:send_frame({ opcode = 8, payload = f.payload, mask = false }))
      peer:close()
      assert.truthy(helpers.wait_until(function() return result end, 3))
      assert.are.same({ true }, result)
      assert.are.equal("closed", ws.state)
      assert.is_true(ws.close_clean)
      assert.are.same({ nil, "closed" }, { ws:ping() })
      rs:close()
    end)
  end)

  it("sends the registered codes 1012, 1013 and 1014", function()
    run(function()
      for _, code in ipairs({ 1012, 1013, 1014 }) do
        local log = {}
        local server = helpers.echo_server({}, log)
        local ws = assert(helpers.connect(helpers.url(server.port)))
        assert.is_true(ws:close(code, "code " .. code))
        assert.truthy(helpers.wait_until(function() return log.closed end, 2))
        assert.are.equal(code, log.code)
        assert.are.equal(code, ws.close_code)
        server:close()
      end
    end)
  end)

  it("reports a handler's error on stderr by default and keeps serving", function()
    -- run a server in a child process, so that its stderr is ours to read
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local duplex = require "duplex"
local server = assert(duplex.serve({ port = 0 }, function(ws)
  local msg = ws:receive()
  if msg == "boom" then error("the handler blew up") end
  if msg == "stop" then duplex.stop() end
  ws:send(msg)
end))
io.stdout:write(server.port, "\n")
io.stdout:flush()
duplex.spawn(function() duplex.sleep(10) duplex.stop() end) -- in case
duplex.run()
]])
    f:close()
    local errfile = os.tmpname()
    local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local p = assert(io.popen(("LUA_PATH=%q LUA_CPATH=%q %s %s 2>%s"):format(package.path, package.cpath, lua, script, errfile)))
    local port = tonumber(p:read("*l"))
    run(function()
      assert.truthy(port, "the child server did not start")
      local ws = assert(helpers.connect(helpers.url(port)))
      assert(ws:send("boom"))
      local msg, err, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal(1011, code)
      helpers.check_echo(port)
      local stopper = assert(helpers.connect(helpers.url(port)))
      assert(stopper:send("stop"))
      stopper:receive()
    end)
    p:close() -- waits for the child to exit
    local ef = assert(io.open(errfile))
    local stderr = ef:read("*a")
    ef:close()
    os.remove(script)
    os.remove(errfile)
    assert.matches("duplex: error in handler: ", stderr, 1, true)
    assert.matches("the handler blew up", stderr, 1, true)
    assert.matches("stack traceback", stderr, 1, true)
  end)
end)

describe("close codes", function()
  it("carries the client's code and reason to the server", function()
    run(function()
      local log = {}
      local server = helpers.echo_server({}, log)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      ws:send("one")
      assert.are.equal("one", ws:receive())
      assert.is_true(ws:close(4000, "bye"))
      assert.are.equal(4000, ws.close_code)
      assert.are.equal("bye", ws.close_reason)
      assert.is_true(ws.close_clean)
      assert.are.equal("closed", ws.state)
      assert.truthy(helpers.wait_until(function() return log.closed end, 2))
      assert.are.equal("closed", log.closed)
      assert.are.equal(4000, log.code)
      assert.are.equal("bye", log.reason)
      assert.are.equal(4000, log.ws.close_code)
      assert.are.equal("bye", log.ws.close_reason)
      assert.is_true(log.ws.close_clean)
      -- after the close, calls fail softly
      assert.are.same({ nil, "closed", 4000, "bye" }, { ws:receive() })
      local ok, err = ws:send("late")
      assert.is_nil(ok)
      assert.are.equal("closed", err)
      server:close()
    end)
  end)

  it("carries the server's close to the client", function()
    run(function()
      local server = helpers.serve({}, function(ws)
        ws:receive()
        ws:close(1001, "going away")
      end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      ws:send("x")
      assert.are.same({ nil, "closed", 1001, "going away" }, { ws:receive() })
      assert.truthy(helpers.wait_until(function() return ws.state == "closed" end, 2))
      assert.are.equal(1001, ws.close_code)
      assert.is_true(ws.close_clean)
      server:close()
    end)
  end)

  it("closes with 1000 when the handler returns", function()
    run(function()
      local server = helpers.serve({}, function() end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      local msg, closed, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal("closed", closed)
      assert.are.equal(1000, code)
      server:close()
    end)
  end)

  it("refuses close codes that may not be sent", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      for _, code in ipairs({ 999, 1004, 1005, 1006, 1015, 2000, 5000 }) do
        assert.has_error(function() ws:close(code) end)
      end
      assert.has_error(function() ws:close(1000, ("r"):rep(124)) end)
      assert.is_true(ws:close(1000, ("r"):rep(123)))
      server:close()
    end)
  end)

  it("reports a handler error, closes with 1011 and keeps serving", function()
    run(function()
      local reports = {}
      local server = helpers.serve({
        on_error = function(ws, err, trace)
          reports[#reports + 1] = { ws = ws, err = tostring(err), trace = trace }
        end,
      }, function(ws)
        local msg = ws:receive()
        if msg == "fail" then error("handler boom") end
        ws:send(msg)
        helpers.echo_handler()(ws)
      end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      ws:send("fail")
      local msg, closed, code = ws:receive()
      assert.is_nil(msg)
      assert.are.equal("closed", closed)
      assert.are.equal(1011, code)
      assert.are.equal(1, #reports)
      assert.matches("handler boom", reports[1].err)
      assert.matches("stack traceback", reports[1].trace)
      assert.truthy(reports[1].ws.remote)
      assert.truthy(helpers.check_echo(server.port))
      server:close()
    end)
  end)

  it("ws:abort drops the connection without a close frame", function()
    run(function()
      local log = {}
      local server = helpers.echo_server({}, log)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      ws:send("x")
      assert.are.equal("x", ws:receive())
      ws:abort()
      assert.are.equal("closed", ws.state)
      assert.are.equal(1006, ws.close_code)
      assert.is_false(ws.close_clean)
      assert.truthy(helpers.wait_until(function() return log.closed end, 2))
      assert.are.equal(1006, log.code)
      assert.is_false(log.ws.close_clean)
      server:close()
    end)
  end)
end)

describe("the scheduler", function()
  it("wakes sleepers in order of their deadlines", function()
    run(function()
      local order = {}
      for _, d in ipairs({ 0.06, 0.02, 0.04, 0 }) do
        duplex.spawn(function()
          duplex.sleep(d)
          order[#order + 1] = d
        end)
      end
      local t0 = duplex.now()
      duplex.sleep(0.1)
      assert.is_true(duplex.now() - t0 >= 0.09)
      assert.are.same({ 0, 0.02, 0.04, 0.06 }, order)
    end)
  end)

  -- csrc/transport/loop.c loop_step(): with a timeout other than 0 it calls
  -- uv_run(UV_RUN_ONCE), which runs due timers first and then polls with
  -- uv_backend_timeout(). When a sleeper's deadline passed while Lua was
  -- busy, the sleep timer fires at the top of that uv_run and wakes the
  -- coroutine, yet the poll still blocks until the next timer or I/O (for
  -- ever when there is none: duplex.run hangs with nready > 0).
  it("resumes a sleeper whose deadline passed while Lua was busy", function()
    -- straight duplex.run (helpers.run may drive the loop another way); the
    -- 1 s sleeper bounds the damage: without it this would hang for ever
    local woke
    local t_start = socket.gettime()
    duplex.run(function()
      duplex.spawn(function() duplex.sleep(1.0) end) -- the only other timer
      duplex.spawn(function()
        local t0 = socket.gettime()
        duplex.sleep(0.005)
        woke = socket.gettime() - t0
      end)
      duplex.spawn(function()
        socket.sleep(0.03) -- busy in Lua: the 5 ms deadline passes meanwhile
      end)
    end)
    assert.is_true(socket.gettime() - t_start < 2)
    assert.is_true(helpers.drain(1))
    assert.truthy(woke)
    assert.is_true(woke < 0.3, "the sleeper woke after " .. woke .. " s, not about 0.03 s")
  end)

  it("passes spawn's arguments, nils included", function()
    run(function()
      local got
      local co = duplex.spawn(function(...) got = { n = select("#", ...), ... } end, 1, nil, "x", nil)
      assert.are.equal("thread", type(co))
      duplex.sleep(0)
      assert.are.same({ n = 4, 1, nil, "x", nil }, got)
    end)
  end)

  it("raises a clear error when a waiting call runs outside a coroutine", function()
    local err = select(2, pcall(duplex.sleep, 0.01))
    assert.matches("coroutine", tostring(err))
    -- a connection: set up from a coroutine, then used from the main thread
    local server = helpers.echo_server()
    local ws
    duplex.spawn(function() ws = helpers.connect(helpers.url(server.port)) end)
    local deadline = socket.gettime() + 3
    while not ws and socket.gettime() < deadline do duplex.step(0.01) end
    assert.truthy(ws)
    local ok, rerr = pcall(ws.receive, ws)
    assert.is_false(ok)
    assert.matches("coroutine", tostring(rerr))
    local done
    duplex.spawn(function() done = ws:close() end)
    server:close()
    deadline = socket.gettime() + 3
    while done == nil and socket.gettime() < deadline do duplex.step(0.01) end
    assert.is_true(done)
    assert.is_true(helpers.drain(3))
  end)

  it("duplex.run returns when nothing is left", function()
    local t0 = socket.gettime()
    duplex.run()
    local ran = false
    duplex.run(function()
      duplex.sleep(0.01)
      ran = true
    end)
    assert.is_true(ran)
    -- a server that is closed and a finished connection leave nothing
    local echoed
    duplex.run(function()
      local server = helpers.echo_server()
      -- a watchdog, so that a hang fails here instead of stalling the suite;
      -- it sleeps in steps so that it ends with the rest
      duplex.spawn(function()
        local deadline = duplex.now() + 5
        while not echoed and duplex.now() < deadline do duplex.sleep(0.05) end
        if not echoed then
          server:close()
          duplex.stop()
        end
      end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      ws:send("bye")
      echoed = ws:receive()
      ws:close()
      server:close()
    end)
    assert.are.equal("bye", echoed)
    assert.is_true(socket.gettime() - t0 < 2)
  end)

  it("duplex.run re-raises the main function's error", function()
    local ok, err = pcall(duplex.run, function()
      duplex.sleep(0)
      error("main failed")
    end)
    assert.is_false(ok)
    assert.matches("main failed", tostring(err))
    assert.is_true(helpers.drain(1))
  end)

  it("duplex.stop makes run return", function()
    local t0 = socket.gettime()
    duplex.run(function()
      duplex.spawn(function()
        duplex.sleep(0.05)
        duplex.stop()
      end)
      duplex.sleep(0.6)
    end)
    assert.is_true(socket.gettime() - t0 < 0.45, "run returned after the sleep, not at stop()")
    assert.is_true(helpers.drain(1))
  end)
end)
