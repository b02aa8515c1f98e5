-- HTTP proxies: CONNECT tunnels through a real Debian tinyproxy started
-- here (on a free port, 127.0.0.1 only, killed after each case), for ws://
-- and wss:// (TLS to the origin through the tunnel, verified with the test
-- CA), proxy authentication refused (407) and accepted, no_proxy, and the
-- environment variables (set for a child process only, never for this one).
local duplex = require "duplex"
local proxy = require "duplex.proxy"
local support = require "interop.support"
local pki = require "helpers.pki"

local TINYPROXY = "/usr/bin/tinyproxy"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function free_port()
  local s = assert(duplex.serve({ port = 0 }, function() end))
  local port = s.port
  s:close()
  return port
end

-- An echo server (TLS with tls), counting its connections in seen.n.
local function echo_server(seen, tls)
  local opts = { port = 0 }
  if tls then opts.tls = { cert = pki.get().server_cert, key = pki.get().server_key } end
  return assert(support.serve(opts, function(ws)
    seen.n = seen.n + 1
    while true do
      local msg = ws:receive()
      if not msg then break end
      ws:send("echo " .. msg)
    end
  end))
end

-- Starts tinyproxy allowing CONNECT to the ports given; auth "user pass"
-- turns on BasicAuth. Returns its port and the path of its log.
local running = {}
local function tinyproxy(ports, auth)
  local port = free_port()
  local conf, log = os.tmpname(), os.tmpname()
  local lines = { "Port " .. port, "Listen 127.0.0.1", "Timeout 10", "Allow 127.0.0.1", "MaxClients 20",
    "LogFile \"" .. log .. "\"", "LogLevel Info", "DisableViaHeader Yes" }
  for _, p in ipairs(ports) do lines[#lines + 1] = "ConnectPort " .. p end
  if auth then lines[#lines + 1] = "BasicAuth " .. auth end
  local f = assert(io.open(conf, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local p = support.start({ TINYPROXY, "-d", "-c", conf }, 30)
  running[#running + 1] = { conf = conf, log = log }
  local deadline = duplex.now() + 10
  while not (support.read_file(log) or ""):find("Accepting connections", 1, true) do
    assert(duplex.now() < deadline, "tinyproxy did not start: " .. support.describe(p))
    assert(not support.status(p), "tinyproxy exited: " .. support.describe(p))
    duplex.sleep(0.02)
  end
  return port, log
end

-- How many CONNECTs to port the proxy's log shows.
local function connects(log, port)
  local n = 0
  for _ in (support.read_file(log) or ""):gmatch("CONNECT 127%.0%.0%.1:" .. port .. " ") do n = n + 1 end
  return n
end

local function echo_through(url, opts)
  local ws = assert(duplex.connect(url, opts))
  assert(ws:send("hi"))
  assert.equal("echo hi", (ws:receive(5)))
  return ws
end

-- Runs spec/interop/proxy_client.lua with env (a table) as its only proxy
-- variables; returns its key=value fields.
local VARS = { "ws_proxy", "WS_PROXY", "wss_proxy", "WSS_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy",
  "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY" }
local function child(env, url, ca)
  local argv = { "env" }
  for _, v in ipairs(VARS) do argv[#argv + 1] = "-u"; argv[#argv + 1] = v end
  if os.getenv("LD_PRELOAD") then argv[#argv + 1] = "LD_PRELOAD=" .. os.getenv("LD_PRELOAD") end
  for k, v in pairs(env) do argv[#argv + 1] = k .. "=" .. v end
  for _, a in ipairs(support.lua_argv("spec/interop/proxy_client.lua", url, ca or "")) do argv[#argv + 1] = a end
  local p = support.start(argv, 20)
  local rc, out = support.wait(p, 20)
  assert(rc == 0, "the child failed: " .. support.describe(p))
  return support.fields(out)
end

describe("HTTP proxies", function()
  describe("choosing the proxy", function()
    local function env(t) return function(name) return t[name] end end
    local ws = { host = "example.org", secure = false }
    local wss = { host = "example.org", secure = true }

    it("reads the variables curl reads, the option first", function()
      assert.same({ host = "p", port = 1, auth = nil }, proxy.for_url(ws, nil, env({ http_proxy = "http://p:1" })))
      assert.is_nil(proxy.for_url(ws, nil, env({ HTTP_PROXY = "http://p:1" }))) -- not read, as in curl
      assert.same({ host = "w", port = 2 }, proxy.for_url(ws, nil, env({ ws_proxy = "w:2", http_proxy = "p:1" })))
      assert.same({ host = "s", port = 3 }, proxy.for_url(wss, nil, env({ HTTPS_PROXY = "s:3", http_proxy = "p:1" })))
      assert.same({ host = "s", port = 4 }, proxy.for_url(wss, nil, env({ https_proxy = "s:4", HTTPS_PROXY = "s:3" })))
      assert.is_nil(proxy.for_url(wss, nil, env({ http_proxy = "p:1" })))
      assert.same({ host = "o", port = 5 }, proxy.for_url(ws, "http://o:5", env({ http_proxy = "p:1" })))
      assert.is_nil(proxy.for_url(ws, false, env({ http_proxy = "p:1" })))
      assert.same({ host = "p", port = 1080 }, proxy.for_url(ws, nil, env({ http_proxy = "p" })))
      assert.same({ nil, "unsupported proxy scheme socks5 (duplex speaks to http:// proxies only) (from http_proxy)" },
        { proxy.for_url(ws, nil, env({ http_proxy = "socks5://p:1" })) })
    end)

    it("percent-decodes user:pass", function()
      assert.equal("us er:p@ss:w", proxy.parse("http://us%20er:p%40ss%3Aw@h:1/").auth)
      assert.equal("u:", proxy.parse("http://u@h:1").auth)
    end)

    it("honours no_proxy as curl does", function()
      local function exempt(host, list)
        return proxy.for_url({ host = host }, "http://p:1", env({ no_proxy = list })) == nil
      end
      assert.is_true(exempt("example.org", "*"))
      assert.is_true(exempt("example.org", "example.org"))
      assert.is_true(exempt("www.example.org", "example.org"))
      assert.is_true(exempt("www.example.org", ".example.org"))
      assert.is_true(exempt("WWW.Example.org.", "example.org"))
      assert.is_false(exempt("notexample.org", "example.org"))
      assert.is_true(exempt("b.test", "a.test, b.test"))
      assert.is_true(exempt("b.test", "a.test b.test"))
      assert.is_false(exempt("b.test", "b.test:80")) -- ports never match in curl
      assert.is_false(exempt("b.test", "a.test,*"))   -- "*" only alone
      assert.is_true(exempt("127.0.0.1", "127.0.0.0/8"))
      assert.is_false(exempt("127.0.0.1", "10.0.0.0/8"))
      assert.is_true(exempt("::1", "::1"))
      assert.is_true(exempt("fd00::1", "fd00::/16"))
      assert.is_false(exempt("127.0.0.1", "localhost"))
      assert.is_true(proxy.for_url({ host = "h" }, "http://p:1", env({ NO_PROXY = "h" })) == nil)
    end)
  end)

  describe("the CONNECT exchange, against a scripted proxy", function()
    local helpers = require "helpers"

    -- A raw proxy: accepts one client, reads its CONNECT head into got.head
    -- and sends answer; then (with then_101) plays the origin's handshake.
    local function fake_proxy(answer, got, then_101)
      local raw = helpers.raw_server()
      duplex.spawn(function()
        local peer = raw:accept()
        if not peer then return end
        got.head = peer:read_head()
        if answer then peer:send(answer) end
        if then_101 then
          local req = peer:read_head()
          peer:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
            "Sec-WebSocket-Accept: " .. helpers.accept_key(req.headers["sec-websocket-key"]) .. "\r\n\r\n")
          got.peer = peer
        else
          duplex.sleep(0.2)
          peer.sock:close()
        end
      end)
      return "http://127.0.0.1:" .. raw.port
    end

    it("asks for host:port with Host and Basic credentials, then speaks WebSocket through the tunnel", function()
      helpers.run(function()
        local got = {}
        local via = fake_proxy("HTTP/1.1 200 Connection established\r\n\r\n", got, true)
        local ws = assert(helpers.connect("ws://example.invalid:8080/x",
          { proxy = via:gsub("//", "//us%%20er:p%%40ss@"), close_timeout = 0.2 }))
        assert.equal("CONNECT example.invalid:8080 HTTP/1.1", got.head.line)
        assert.equal("example.invalid:8080", got.head.headers.host)
        -- base64 of "us er:p@ss"
        assert.equal("Basic dXMgZXI6cEBzcw==", got.head.headers["proxy-authorization"])
        assert.equal(101, ws.response.status)
        ws:abort()
      end)
    end)

    it("brackets an IPv6 origin", function()
      helpers.run(function()
        local got = {}
        local via = fake_proxy("HTTP/1.1 200 OK\r\n\r\n", got, true)
        local ws = assert(helpers.connect("ws://[::1]:9/", { proxy = via }))
        assert.equal("CONNECT [::1]:9 HTTP/1.1", got.head.line)
        assert.is_nil(got.head.headers["proxy-authorization"])
        ws:abort()
      end)
    end)

    it("keeps what follows the proxy's answer: the origin's reply in the same read", function()
      helpers.run(function()
        local via = fake_proxy("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", {})
        local ws, err, response = helpers.connect("ws://127.0.0.1:9/", { proxy = via })
        assert.is_nil(ws)
        assert.equal("server refused the upgrade: HTTP 403 Forbidden", err)
        assert.equal(403, response.status)
      end)
    end)

    it("fails on a malformed, oversized or missing answer", function()
      helpers.run(function()
        local _, err = helpers.connect("ws://127.0.0.1:9/", { proxy = fake_proxy("SSH-2.0-OpenSSH\r\n\r\n", {}) })
        assert.equal("malformed proxy response", err)
        _, err = helpers.connect("ws://127.0.0.1:9/", { max_head = 256,
          proxy = fake_proxy("HTTP/1.1 200 OK\r\nX-Pad: " .. ("x"):rep(300) .. "\r\n\r\n", {}) })
        assert.equal("proxy response head too large", err)
        _, err = helpers.connect("ws://127.0.0.1:9/", { proxy = fake_proxy(nil, {}) })
        assert.equal("the proxy closed the connection", err)
        _, err = helpers.connect("ws://127.0.0.1:9/", { timeout = 0.1, proxy = fake_proxy("HTTP/1.1 200", {}) })
        assert.equal("handshake timed out", err)
      end)
    end)
  end)

  if not exists(TINYPROXY) then
    it("needs tinyproxy (apt-get install tinyproxy)", function() pending("tinyproxy is not installed") end)
    return
  end

  after_each(function()
    support.cleanup()
    for i = #running, 1, -1 do
      os.remove(running[i].conf)
      os.remove(running[i].log)
      running[i] = nil
    end
  end)

  it("tunnels ws:// through tinyproxy", function()
    support.run(function()
      local seen = { n = 0 }
      local server = echo_server(seen)
      local pport, log = tinyproxy({ server.port })
      local ws = echo_through("ws://127.0.0.1:" .. server.port .. "/", { proxy = "http://127.0.0.1:" .. pport })
      assert.equal(1, connects(log, server.port))
      assert.equal(1, seen.n)
      assert.is_true(ws:close())
    end, 20)
  end)

  it("tunnels wss:// through tinyproxy: TLS to the origin, verified", function()
    support.run(function()
      local seen = { n = 0 }
      local server = echo_server(seen, true)
      local pport, log = tinyproxy({ server.port })
      local via = "http://127.0.0.1:" .. pport
      local ws = echo_through("wss://127.0.0.1:" .. server.port .. "/", { proxy = via, tls = { ca = pki.get().ca } })
      assert.equal(1, connects(log, server.port))
      assert.is_true(ws:close())
      -- the origin's certificate is checked through the tunnel as on a direct dial
      local none, err = duplex.connect("wss://127.0.0.1:" .. server.port .. "/", { proxy = via })
      assert.is_nil(none)
      assert.matches("^certificate verify failed", err)
    end, 20)
  end)

  it("reports a refusal: 407 without credentials, 403 for a port it does not allow", function()
    support.run(function()
      local seen = { n = 0 }
      local server = echo_server(seen)
      local pport = tinyproxy({ server.port }, "user s3cret")
      local url = "ws://127.0.0.1:" .. server.port .. "/"
      local ws, err, response = duplex.connect(url, { proxy = "http://127.0.0.1:" .. pport })
      assert.is_nil(ws)
      assert.equal("proxy refused: HTTP 407 Proxy Authentication Required", err)
      assert.equal(407, response.status)
      assert.equal("Proxy Authentication Required", response.reason)
      assert.matches("^Basic", response.headers["proxy-authenticate"])
      -- tinyproxy answers wrong credentials with 401
      ws, err, response = duplex.connect(url, { proxy = "http://user:wrong@127.0.0.1:" .. pport })
      assert.is_nil(ws)
      assert.equal("proxy refused: HTTP " .. response.status .. " " .. response.reason, err)
      assert.is_true(response.status == 401 or response.status == 407)
      -- accepted, the password percent-encoded in the URL
      ws = echo_through(url, { proxy = "http://user:s%33cret@127.0.0.1:" .. pport })
      assert.is_true(ws:close())
      assert.equal(1, seen.n)
      -- a reconnecting client stops at a 407
      ws, err = duplex.connect(url, { proxy = "http://127.0.0.1:" .. pport, reconnect = true })
      assert.equal("proxy refused: HTTP 407 Proxy Authentication Required", err)
      local other = free_port()
      ws, err, response = duplex.connect("ws://127.0.0.1:" .. other .. "/",
        { proxy = "http://user:s3cret@127.0.0.1:" .. pport })
      assert.is_nil(ws)
      assert.matches("^proxy refused: HTTP 403", err)
      assert.equal(403, response.status)
    end, 20)
  end)

  it("goes direct with proxy = false, and a dead proxy fails the dial", function()
    support.run(function()
      local seen = { n = 0 }
      local server = echo_server(seen)
      local ws = echo_through("ws://127.0.0.1:" .. server.port .. "/", { proxy = false })
      ws:close()
      local none, err = duplex.connect("ws://127.0.0.1:" .. server.port .. "/",
        { proxy = "http://127.0.0.1:" .. free_port() })
      assert.is_nil(none)
      assert.equal("connection refused", err)
      assert.has_error(function() duplex.connect("ws://127.0.0.1:1/", { proxy = 3128 }) end,
        "option 'proxy' must be a proxy URL string or false")
    end, 20)
  end)

  it("reads http_proxy, https_proxy and no_proxy from the environment", function()
    support.run(function()
      local seen, tls_seen = { n = 0 }, { n = 0 }
      local server, tls_server = echo_server(seen), echo_server(tls_seen, true)
      local pport, log = tinyproxy({ server.port, tls_server.port })
      local via = "http://127.0.0.1:" .. pport
      local url = "ws://127.0.0.1:" .. server.port .. "/"
      local wss = "wss://127.0.0.1:" .. tls_server.port .. "/"
      assert.same({ echo = "echo hi" }, child({ http_proxy = via }, url))
      assert.equal(1, connects(log, server.port))
      assert.same({ echo = "echo hi" }, child({ https_proxy = via }, wss, pki.get().ca))
      assert.equal(1, connects(log, tls_server.port))
      assert.same({ echo = "echo hi" }, child({ HTTPS_PROXY = via }, wss, pki.get().ca))
      assert.equal(2, connects(log, tls_server.port))
      -- https_proxy is for wss:// only
      assert.same({ echo = "echo hi" }, child({ https_proxy = via }, url))
      assert.equal(1, connects(log, server.port))
      -- no_proxy: direct, the proxy untouched
      assert.same({ echo = "echo hi" }, child({ http_proxy = via, no_proxy = "localhost,127.0.0.0/8" }, url))
      assert.same({ echo = "echo hi" }, child({ https_proxy = via, NO_PROXY = "*" }, wss, pki.get().ca))
      assert.equal(1, connects(log, server.port))
      assert.equal(2, connects(log, tls_server.port))
      -- a proxy that is not there shows that the variable was read
      local fields = child({ http_proxy = "http://127.0.0.1:" .. free_port() }, url)
      assert.equal("connection refused", fields.error)
      assert.equal(3, seen.n)
      assert.equal(3, tls_seen.n)
    end, 40)
  end)
end)
