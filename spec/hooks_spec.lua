-- The server and scheduling hooks: accept before the 101, request params,
-- receive with a timeout, timers, and option names checked. Written
-- without yields inside pcall or a for iterator, so PUC Lua 5.1 runs it.
local helpers = require "helpers"
local duplex = helpers.duplex
local url = require "duplex.url"
local run = helpers.run

-- A raw upgrade to port with the given path: the response head and body.
local function raw_upgrade(port, path)
  local raw = assert(helpers.raw_client(port))
  assert(raw:send(helpers.upgrade_request({ path = path })))
  local head = assert(raw:read_head(3))
  local body = ""
  local n = tonumber(head.headers["content-length"] or "0")
  if n > 0 then body = assert(raw:read(n, 3)) end
  return head, body, raw
end

-- Reads the handler's first message on a fresh client.
local function first_message(port, path)
  local ws, err, response = helpers.connect(helpers.url(port, path))
  if not ws then return nil, err, response end
  local msg = ws:receive(3)
  ws:close()
  return msg
end

describe("the accept hook", function()
  it("accepts when it returns nothing or true, and its req becomes ws.request", function()
    run(function()
      local seen = {}
      local server = helpers.serve({
        accept = function(req)
          seen[#seen + 1] = req
          req.user = "user-" .. req.params.name
          if req.params.name == "t" then return true end
        end,
      }, function(ws)
        ws:send(ws.request.user .. " " .. ws.request.path .. " " .. tostring(ws.request == seen[#seen]))
      end)
      assert.are.equal("user-n /a true", first_message(server.port, "/a?name=n"))
      assert.are.equal("user-t /b true", first_message(server.port, "/b?name=t"))
      assert.are.equal(2, #seen)
      assert.are.equal("GET", seen[1].method)
      assert.are.equal("/a?name=n", seen[1].target)
      assert.are.equal("name=n", seen[1].query)
      assert.are.equal("websocket", seen[1].headers.upgrade:lower())
      assert.matches("^127%.0%.0%.1:%d+$", seen[1].remote)
      server:close()
    end)
  end)

  it("refuses with the status, headers and body it returns", function()
    run(function()
      local handled = 0
      local server = helpers.serve({
        accept = function(req)
          if req.path == "/private" then
            return 401, { ["WWW-Authenticate"] = 'Bearer realm="x"', ["X-Why"] = "no token" }, "token required\n"
          elseif req.path == "/forbidden" then
            return 403
          elseif req.path == "/slow-down" then
            return 429, { ["Retry-After"] = "5" }
          end
        end,
      }, function(ws)
        handled = handled + 1
        ws:send("in")
      end)
      local head, body, raw = raw_upgrade(server.port, "/private")
      assert.are.equal(401, head.status)
      assert.are.equal('Bearer realm="x"', head.headers["www-authenticate"])
      assert.are.equal("no token", head.headers["x-why"])
      assert.are.equal("token required\n", body)
      assert.is_nil(head.headers["sec-websocket-accept"])
      assert.is_true(raw:wait_eof(3))
      head = raw_upgrade(server.port, "/forbidden")
      assert.are.equal(403, head.status)
      -- our own client sees the refusal and its headers
      local ws, err, response = helpers.connect(helpers.url(server.port, "/slow-down"))
      assert.is_nil(ws)
      assert.are.equal("server refused the upgrade: HTTP 429 Too Many Requests", err)
      assert.are.equal(429, response.status)
      assert.are.equal("5", response.headers["retry-after"])
      assert.are.equal(0, handled)
      assert.are.equal("in", first_message(server.port, "/open"))
      assert.are.equal(1, handled)
      server:close()
    end)
  end)

  it("may wait, without holding up other connections", function()
    run(function()
      local order = {}
      local server = helpers.serve({
        accept = function(req)
          if req.params.slow then duplex.sleep(0.3) end
          req.at = duplex.now()
        end,
      }, function(ws)
        order[#order + 1] = ws.request.path
        ws:send(ws.request.path)
      end)
      local t0 = duplex.now()
      local slow = helpers.connect_async(helpers.url(server.port, "/slow?slow=1"))
      duplex.sleep(0.05)
      assert.are.equal("/fast", first_message(server.port, "/fast"))
      assert.is_true(duplex.now() - t0 < 0.25, "the fast one waited for the slow accept")
      assert.truthy(helpers.wait_until(function() return slow.done end, 3))
      assert.truthy(slow.ws, slow.err)
      assert.are.equal("/slow", slow.ws:receive(3))
      assert.is_true(duplex.now() - t0 >= 0.29)
      assert.are.same({ "/fast", "/slow" }, order)
      slow.ws:close()
      server:close()
    end)
  end)

  it("is bounded by handshake_timeout: the connection is dropped", function()
    run(function()
      local verdicts, handled = 0, 0
      local server = helpers.serve({
        handshake_timeout = 0.2,
        accept = function()
          duplex.sleep(0.5)
          verdicts = verdicts + 1
        end,
      }, function() handled = handled + 1 end)
      local t0 = duplex.now()
      local ws, err = helpers.connect(helpers.url(server.port))
      assert.is_nil(ws)
      assert.are.equal("connection closed during the handshake", err)
      local took = duplex.now() - t0
      assert.is_true(took >= 0.15 and took < 0.45, "dropped after " .. took .. " s")
      -- the verdict that comes too late goes nowhere
      assert.truthy(helpers.wait_until(function() return verdicts == 1 end, 3))
      duplex.sleep(0.05)
      assert.are.equal(0, handled)
      server:close()
    end)
  end)

  it("answers 500 when it raises, and reports the error to on_error", function()
    run(function()
      local reported = {}
      local server = helpers.serve({
        accept = function(req)
          if req.path == "/bad-verdict" then return "yes" end
          error("lookup failed")
        end,
        on_error = function(req, err, trace)
          reported[#reported + 1] = { req = req, err = err, trace = trace }
        end,
      }, function() end)
      local head, body = raw_upgrade(server.port, "/boom")
      assert.are.equal(500, head.status)
      assert.are.equal("internal server error\n", body)
      assert.truthy(helpers.wait_until(function() return #reported == 1 end, 3))
      assert.are.equal("/boom", reported[1].req.path)
      assert.matches("lookup failed", reported[1].err)
      assert.matches("traceback", reported[1].trace)
      head = raw_upgrade(server.port, "/bad-verdict")
      assert.are.equal(500, head.status)
      assert.truthy(helpers.wait_until(function() return #reported == 2 end, 3))
      assert.matches("accept must return nothing or true", reported[2].err)
      assert.is_true(helpers.check_echo(helpers.echo_server().port))
      server:close()
    end)
  end)

  it("answers 500 for a refusal with a header it cannot send", function()
    run(function()
      local reported = {}
      local server = helpers.serve({
        accept = function() return 400, { ["Bad Name"] = "x" } end,
        on_error = function(_, err) reported[#reported + 1] = err end,
      }, function() end)
      local head = raw_upgrade(server.port, "/")
      assert.are.equal(500, head.status)
      assert.truthy(helpers.wait_until(function() return #reported == 1 end, 3))
      assert.matches("invalid header name or value", reported[1])
      server:close()
    end)
  end)

  it("copes with a client that leaves while it waits", function()
    run(function()
      local verdicts, ended = 0, 0
      local server = helpers.serve({
        accept = function(req)
          duplex.sleep(0.1)
          verdicts = verdicts + 1
          if req.params.refuse then return 403 end
        end,
      }, function(ws)
        while true do
          local msg = ws:receive()
          if not msg then break end
          ws:send(msg)
        end
        ended = ended + 1
      end)
      for _, path in ipairs({ "/", "/?refuse=1" }) do
        local raw = assert(helpers.raw_client(server.port))
        assert(raw:send(helpers.upgrade_request({ path = path })))
        duplex.sleep(0.02)
        raw:close()
      end
      assert.truthy(helpers.wait_until(function() return verdicts == 2 end, 3))
      -- nothing is read while the verdict is pending, so the accepted one
      -- opens, and its handler then sees the connection end
      assert.truthy(helpers.wait_until(function() return ended == 1 end, 3))
      assert.is_true(helpers.check_echo(server.port))
      server:close()
    end)
  end)

  it("keeps the other checks: a bad origin or request never reaches it", function()
    run(function()
      local called = 0
      local server = helpers.serve({
        origins = { "https://ok.example" },
        accept = function() called = called + 1 end,
      }, function() end)
      local head = raw_upgrade(server.port, "/")
      assert.are.equal(403, head.status)
      local raw = assert(helpers.raw_client(server.port))
      assert(raw:send(helpers.upgrade_request({ version = "8" })))
      assert.are.equal(426, assert(raw:read_head(3)).status)
      assert.are.equal(0, called)
      server:close()
    end)
  end)

  it("sees frames sent right behind the request once it accepts", function()
    run(function()
      local server = helpers.serve({
        accept = function() duplex.sleep(0.05) end,
      }, function(ws) ws:send("got " .. tostring(ws:receive(3))) end)
      local raw = assert(helpers.raw_client(server.port))
      assert(raw:send(helpers.upgrade_request() .. helpers.frame({ payload = "early" })))
      assert.are.equal(101, assert(raw:read_head(3)).status)
      local f = assert(raw:read_frame(3))
      assert.are.equal("got early", f.payload)
      server:close()
    end)
  end)
end)

describe("the accept hook over TLS", function()
  it("accepts and refuses wss:// upgrades", function()
    run(function()
      local p = require("helpers.pki").get()
      local server = helpers.serve({
        tls = { cert = p.server_cert, key = p.server_key, ca = p.ca },
        accept = function(req)
          duplex.sleep(0.02)
          if req.params.no then return 403, {}, "no\n" end
        end,
      }, function(ws) ws:send("tls " .. ws.request.path) end)
      local url = "wss://localhost:" .. server.port
      local ws = assert(helpers.connect(url .. "/in", { tls = { ca = p.ca } }))
      assert.are.equal("tls /in", ws:receive(3))
      assert.is_true(ws:close())
      local none, err, response = helpers.connect(url .. "/out?no=1", { tls = { ca = p.ca } })
      assert.is_nil(none)
      assert.matches("HTTP 403", err)
      assert.are.equal(403, response.status)
      server:close()
    end)
  end)
end)

describe("request params", function()
  it("parses the query string: decoded, first value wins, bad escapes kept", function()
    assert.are.same({}, url.params(nil))
    assert.are.same({}, url.params(""))
    assert.are.same({
      a = "1", b = "two words", c = "x y", flag = "", e = "%zz", f = "50%", A = "b", plus = "+", eq = "x=y",
      ["sp ace"] = "v", utf = "\195\169",
    }, url.params("a=1&b=two%20words&c=x+y&a=2&flag&e=%zz&f=50%&%41=b&plus=%2B&&=noname&eq=x=y&sp+ace=v&utf=%C3%A9"))
  end)

  it("reaches ws.request, the accept hook and the http handler; query stays raw", function()
    run(function()
      local from = {}
      local server = helpers.serve({
        accept = function(req) from.accept = req.params end,
        http = function(req)
          from.http = req.params
          return 200, {}, req.query or ""
        end,
      }, function(ws)
        from.ws = ws.request.params
        ws:send(ws.request.query)
      end)
      assert.are.equal("room=a%20b&x=1&x=2", first_message(server.port, "/chat?room=a%20b&x=1&x=2"))
      assert.are.same({ room = "a b", x = "1" }, from.ws)
      assert.are.same({ room = "a b", x = "1" }, from.accept)
      local raw = assert(helpers.raw_client(server.port))
      assert(raw:send("GET /page?q=lua+ws HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.are.equal(200, assert(raw:read_head(3)).status)
      assert.are.same({ q = "lua ws" }, from.http)
      server:close()
      -- without a query: an empty table
      local plain = helpers.serve({}, function(ws) ws:send(tostring(next(ws.request.params))) end)
      assert.are.equal("nil", first_message(plain.port, "/"))
      plain:close()
    end)
  end)

  it("is on a client's ws.request too", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port, "/?k=v%21")))
      assert.are.same({ k = "v!" }, ws.request.params)
      assert.are.equal("k=v%21", ws.request.query)
      ws:close()
      server:close()
    end)
  end)
end)

describe("ws:receive(timeout)", function()
  it("gives nil, \"timeout\" and the connection stays open", function()
    run(function()
      local server = helpers.serve({}, function(ws)
        local msg, err = ws:receive(0.2)
        ws:send(tostring(msg) .. "/" .. tostring(err))
        msg = ws:receive(3) -- later receives still work
        ws:send("then " .. tostring(msg))
        ws:receive()
      end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      local t0 = duplex.now()
      assert.are.equal("nil/timeout", ws:receive(3))
      local took = duplex.now() - t0
      assert.is_true(took >= 0.18 and took < 0.6, "timed out after " .. took .. " s")
      assert.are.equal("open", ws.state)
      ws:send("x")
      assert.are.equal("then x", ws:receive(3))
      -- a client-side timeout, then a message
      local msg, err = ws:receive(0.05)
      assert.is_nil(msg)
      assert.are.equal("timeout", err)
      assert.are.equal("open", ws.state)
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("returns a message that comes in time, and waits with timeout 0 for nothing", function()
    run(function()
      local server = helpers.serve({}, function(ws)
        duplex.sleep(0.05)
        ws:send("soon")
        ws:receive()
      end)
      local ws = assert(helpers.connect(helpers.url(server.port)))
      assert.are.same({ nil, "timeout" }, { ws:receive(0) })
      -- a long timeout called off by the message: the loop must still
      -- drain at the end (helpers.run checks)
      assert.are.same({ "soon", "text" }, { ws:receive(60) })
      assert.is_true(ws:close())
      assert.are.same({ nil, "closed", 1000, "" }, { ws:receive(1) })
      server:close()
    end)
  end)

  it("many timed receives on one connection at once each get their own deadline", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      local results = {}
      for i = 1, 5 do
        duplex.spawn(function()
          local msg, err = ws:receive(i * 0.05)
          results[i] = msg or err
        end)
      end
      duplex.sleep(0.13)
      ws:send("one")
      assert.truthy(helpers.wait_until(function() return results[5] end, 3))
      -- the first two timed out; one of the others got the message
      assert.are.equal("timeout", results[1])
      assert.are.equal("timeout", results[2])
      local got = 0
      for i = 3, 5 do if results[i] == "one" then got = got + 1 end end
      assert.are.equal(1, got)
      assert.is_true(ws:close())
      server:close()
    end)
  end)

  it("raises for a bad timeout", function()
    run(function()
      local server = helpers.echo_server()
      local ws = assert(helpers.connect(helpers.url(server.port)))
      assert.has_error(function() ws:receive(-1) end)
      assert.has_error(function() ws:receive("1") end)
      assert.has_error(function() ws:receive(0 / 0) end)
      assert.is_true(ws:close())
      server:close()
    end)
  end)
end)

describe("timers", function()
  it("after runs once, in its own coroutine, and may wait", function()
    run(function()
      local t0, ran, co = duplex.now(), {}, nil
      local timer = duplex.after(0.1, function(t)
        ran[#ran + 1] = duplex.now() - t0
        co = coroutine.running()
        duplex.sleep(0.02)
        ran.slept = t
      end)
      assert.truthy(helpers.wait_until(function() return ran.slept end, 3))
      assert.are.equal(timer, ran.slept)
      assert.are.equal(1, #ran)
      assert.is_true(ran[1] >= 0.095 and ran[1] < 0.3, "ran after " .. ran[1])
      assert.truthy(co)
      duplex.sleep(0.15)
      assert.are.equal(1, #ran)
      assert.is_false(timer:stop()) -- nothing left to stop
    end)
  end)

  it("every keeps to its planned times, however long each run takes", function()
    run(function()
      local t0, starts = duplex.now(), {}
      local timer
      timer = duplex.every(0.05, function()
        starts[#starts + 1] = duplex.now() - t0
        if #starts == 8 then timer:stop() end
        duplex.sleep(0.12) -- longer than the period: runs overlap
      end)
      assert.truthy(helpers.wait_until(function() return #starts == 8 end, 3))
      duplex.sleep(0.2)
      assert.are.equal(8, #starts)
      for i = 1, 8 do
        assert.is_true(math.abs(starts[i] - 0.05 * i) < 0.04,
          ("run %d started at %.3f s, planned %.3f s"):format(i, starts[i], 0.05 * i))
      end
    end)
  end)

  it("every does not drift over many runs", function()
    run(function()
      local t0, n, last = duplex.now(), 0, nil
      local timer = duplex.every(0.01, function()
        n = n + 1
        last = duplex.now() - t0
        -- some work each time: drift would add it up
        local x = 0
        for i = 1, 20000 do x = x + i end
      end)
      assert.truthy(helpers.wait_until(function() return n >= 50 end, 5))
      timer:stop()
      assert.is_true(math.abs(last - 0.5) < 0.1, "run 50 at " .. last .. " s")
    end)
  end)

  it("stop() before a run, and stop() inside the function", function()
    run(function()
      local ran = 0
      local t = duplex.after(0.05, function() ran = ran + 1 end)
      assert.is_true(t:stop())
      assert.is_false(t:stop())
      local e = duplex.every(0.02, function(self)
        ran = ran + 10
        self:stop()
      end)
      duplex.sleep(0.2)
      assert.are.equal(10, ran)
      assert.is_false(e:stop())
    end)
  end)

  it("fire in order when most of many are stopped", function()
    run(function()
      local fired, timers = {}, {}
      for i = 1, 300 do
        local delay = 0.02 + (i * 7919 % 300) / 3000 -- 0.02 .. 0.12 s, shuffled
        timers[i] = { delay = delay, t = duplex.after(delay, function() fired[#fired + 1] = i end) }
      end
      local keep = {}
      for i = 1, 300 do
        if i % 50 == 0 then keep[#keep + 1] = i else assert.is_true(timers[i].t:stop()) end
      end
      table.sort(keep, function(a, b) return timers[a].delay < timers[b].delay end)
      assert.truthy(helpers.wait_until(function() return #fired == #keep end, 3))
      duplex.sleep(0.15)
      assert.are.same(keep, fired)
    end)
  end)

  it("an error in one run is reported like a spawned coroutine's, and the others go on", function()
    run(function()
      local written = {}
      local real = io.stderr
      io.stderr = { write = function(_, ...) for i = 1, select("#", ...) do written[#written + 1] = select(i, ...) end end }
      local n = 0
      local timer = duplex.every(0.02, function()
        n = n + 1
        if n == 2 then error("tick failed") end
      end)
      local ok = helpers.wait_until(function() return n >= 4 end, 3)
      timer:stop()
      io.stderr = real
      assert.truthy(ok)
      local text = table.concat(written)
      assert.matches("duplex: error in coroutine: ", text, 1, true)
      assert.matches("tick failed", text, 1, true)
    end)
  end)

  it("a pending timer keeps duplex.run going; a stopped one does not", function()
    local fired = false
    local t0 = duplex.now()
    duplex.run(function()
      duplex.after(0.1, function() fired = true end)
    end)
    assert.is_true(fired)
    assert.is_true(duplex.now() - t0 >= 0.09)
    t0 = duplex.now()
    duplex.run(function()
      local t = duplex.every(5, function() end)
      local u = duplex.after(5, function() end)
      duplex.sleep(0.01)
      t:stop()
      u:stop()
    end)
    assert.is_true(duplex.now() - t0 < 1, "run waited for stopped timers")
    assert.is_false(require("duplex.core").alive())
  end)

  it("raises for bad arguments", function()
    assert.has_error(function() duplex.every(0, function() end) end)
    assert.has_error(function() duplex.every(-1, function() end) end)
    assert.has_error(function() duplex.after(0 / 0, function() end) end)
    assert.has_error(function() duplex.after(1) end)
    assert.has_error(function() duplex.every("1", function() end) end)
  end)
end)

describe("option checks", function()
  -- f raises; the message, which must point at this file's line `line`.
  local function raised_at(f, line)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.matches("hooks_spec%.lua:" .. line .. ": ", err)
    return (err:gsub("^.-:%d+: ", ""))
  end
  local function noop() end

  it("names an unknown option, with the close known name", function()
    local line = debug.getinfo(1, "l").currentline
    assert.are.equal("unknown option 'protocol' (did you mean 'protocols'?)",
      raised_at(function() duplex.serve({ protocol = { "chat" } }, noop) end, line + 2))
    assert.are.equal("unknown option 'hanshake_timeout' (did you mean 'handshake_timeout'?)",
      raised_at(function() duplex.serve({ hanshake_timeout = 1 }, noop) end, line + 4))
    assert.are.equal("unknown option 'prot' (did you mean 'port'?)",
      raised_at(function() duplex.serve({ prot = 1 }, noop) end, line + 6))
    assert.are.equal("unknown option 'wibble'",
      raised_at(function() duplex.serve({ wibble = true }, noop) end, line + 8))
    assert.are.equal("unknown option '1'",
      raised_at(function() duplex.serve({ "x" }, noop) end, line + 10))
    assert.are.equal("unknown option 'timout' (did you mean 'timeout'?)",
      raised_at(function() duplex.connect("ws://127.0.0.1:1/", { timout = 1 }) end, line + 12))
    assert.are.equal("unknown option 'handshake_timeout' (did you mean 'timeout'?)",
      raised_at(function() duplex.connect("ws://127.0.0.1:1/", { handshake_timeout = 1 }) end, line + 14))
  end)

  it("checks the names in tls, its sni entries and compression", function()
    local line = debug.getinfo(1, "l").currentline
    assert.are.equal("unknown option 'tls.cetr' (did you mean 'tls.cert'?)",
      raised_at(function() duplex.serve({ tls = { cetr = "a" } }, noop) end, line + 2))
    assert.are.equal("unknown option 'tls.sni.a.example.kye' (did you mean 'tls.sni.a.example.key'?)",
      raised_at(function() duplex.serve({ tls = { sni = { ["a.example"] = { kye = "k" } } } }, noop) end, line + 4))
    assert.are.equal("unknown option 'compression.lvl' (did you mean 'compression.level'?)",
      raised_at(function() duplex.serve({ compression = { lvl = 1 } }, noop) end, line + 6))
    assert.are.equal("unknown option 'tls.sni'",
      raised_at(function() duplex.connect("wss://127.0.0.1:1/", { tls = { sni = {} } }) end, line + 8))
    assert.are.equal("unknown option 'compression.context' (did you mean 'compression.context_takeover'?)",
      raised_at(function() duplex.connect("ws://127.0.0.1:1/", { compression = { context = false } }) end, line + 10))
  end)

  it("raises bad values at the caller's line, those the core finds too", function()
    local line = debug.getinfo(1, "l").currentline
    assert.are.equal("option 'max_message' must be a number (got string)",
      raised_at(function() duplex.serve({ max_message = "big" }, noop) end, line + 2))
    assert.are.equal("option 'host' must be a string (got number)",
      raised_at(function() duplex.serve({ host = 1 }, noop) end, line + 4))
    assert.are.equal("option 'accept' must be a function (got boolean)",
      raised_at(function() duplex.serve({ accept = true }, noop) end, line + 6))
    assert.are.equal("option 'high_water' must be a size in bytes from 1 to 8589934592",
      raised_at(function() duplex.serve({ high_water = 0 }, noop) end, line + 8))
    assert.are.equal("option 'tls' must be a table",
      raised_at(function() duplex.serve({ tls = "yes" }, noop) end, line + 10))
    assert.are.equal("option 'close_timeout' must be between 0 and 1e9 seconds",
      raised_at(function() duplex.connect("ws://127.0.0.1:1/", { close_timeout = -1 }) end, line + 12))
    assert.are.equal("option 'on_backlog' must be \"drop\" or \"close\"",
      raised_at(function() duplex.serve({ on_backlog = "wait" }, noop) end, line + 14))
  end)

  it("knows every option the server and client take", function()
    run(function()
      local server = helpers.serve({
        backlog = 16, protocols = { "p" }, origins = {}, on_error = noop, handshake_timeout = 5, max_head = 4096,
        max_message = 1024, high_water = 4096, close_timeout = 1, ping_interval = 10, ping_timeout = 5,
        compression = { level = 1, window_bits = 10, mem_level = 4, threshold = 10, context_takeover = false },
        max_backlog = 1024, on_backlog = "close", http = function() return 404 end, accept = noop,
      }, function(ws) ws:send(ws.protocol) end)
      local ws = assert(helpers.connect(helpers.url(server.port), {
        protocols = { "p" }, headers = { ["X-A"] = "b" }, origin = "http://o.example", timeout = 5, max_head = 4096,
        max_message = 1024, high_water = 4096, close_timeout = 1, ping_interval = 10, ping_timeout = 5,
        compression = { level = 1, window_bits = 10, mem_level = 4, threshold = 10, context_takeover = false },
        tls = { verify = true },
      }))
      assert.are.equal("p", ws:receive(3))
      assert.is_true(ws:close())
      local line = debug.getinfo(1, "l").currentline
      assert.are.equal("unknown option 'tls.crt' (did you mean 'tls.cert'?)",
        raised_at(function() server:reload_tls({ crt = "x" }) end, line + 2))
      server:close()
    end)
  end)
end)
