-- wss:// : our client and our server over TLS, certificate checks, mutual
-- TLS, SNI, reloading, wrong-protocol peers, records cut at every byte.
-- Certificates come from spec/helpers/pki.lua (made with the openssl
-- command, once per run). Every case runs inside helpers.run, bounded in
-- time, and closes what it opens.
local helpers = require "helpers"
local pki = require "helpers.pki"
local duplex = require "duplex"
local socket = require "socket"

local has_luasec, ssl = pcall(require, "ssl")

local P -- the certificates, made on first use

local function certs()
  P = P or pki.get()
  return P
end

local function wss(port, path, host)
  return "wss://" .. (host or "localhost") .. ":" .. port .. (path or "/")
end

-- An echo server over TLS; tls fields are merged over cert/key = server.
local function tls_echo(tls, log, extra)
  local p = certs()
  local o = { tls = { cert = p.server_cert, key = p.server_key } }
  for k, v in pairs(tls or {}) do o.tls[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return helpers.echo_server(o, log)
end

-- Our client trusting the test CA (plus extra tls fields).
local function trusting(extra)
  local o = { tls = { ca = certs().ca } }
  for k, v in pairs(extra or {}) do o.tls[k] = v end
  return o
end

-- A message of n bytes that is not one byte repeated.
local function blob(n)
  local parts, chunk = {}, {}
  for i = 0, 255 do chunk[#chunk + 1] = string.char((i * 7 + 3) % 256) end
  chunk = table.concat(chunk)
  for i = 1, math.ceil(n / 256) do parts[i] = chunk end
  return table.concat(parts):sub(1, n)
end

-- Runs `openssl s_client -connect 127.0.0.1:PORT ARGS` in the background,
-- so that the loop goes on serving while it talks to us, and returns its
-- output once it has finished (it gives up after 5 s). Call in a coroutine.
local function s_client(port, args)
  local out = os.tmpname()
  os.remove(out)
  os.execute(("( sleep 0.3 | timeout 5 openssl s_client -connect 127.0.0.1:%d %s >%s.part 2>&1; mv %s.part %s )"
    .. " </dev/null >/dev/null 2>&1 &"):format(port, args, out, out, out))
  local result = helpers.wait_until(function()
    local f = io.open(out)
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    os.remove(out)
    return s
  end, 15)
  assert(result, "openssl s_client did not finish")
  return result
end

local function round_trip(ws, msg, kind)
  assert(ws:send(msg, kind))
  return ws:receive()
end

-- A TCP proxy between one client and 127.0.0.1:port, polled on the duplex
-- loop. Each direction forwards at most sizes(i) bytes per step (i counts
-- chunks), so TLS records reach each side cut at chosen boundaries.
-- px.cut = true drops both sockets at once (no FIN of the TLS layer).
local function start_proxy(port, sizes)
  local ls = assert(socket.bind("127.0.0.1", 0))
  ls:settimeout(0)
  helpers.track_socket(ls)
  local _, lport = ls:getsockname()
  local px = { port = tonumber(lport), forwarded = { 0, 0 }, chunks = 0, cut = false, done = false }
  duplex.spawn(function()
    local deadline = duplex.now() + 5
    local a
    while not a do
      a = ls:accept()
      if not a then
        if duplex.now() > deadline or px.cut then
          px.done = true
          return
        end
        duplex.sleep(0.002)
      end
    end
    helpers.track_socket(a)
    local b = assert(socket.tcp())
    helpers.track_socket(b)
    b:settimeout(2)
    assert(b:connect("127.0.0.1", port))
    for _, s in ipairs({ a, b }) do
      s:settimeout(0)
      s:setoption("tcp-nodelay", true)
    end
    local pipes = { { from = a, to = b, data = "", pos = 1 }, { from = b, to = a, data = "", pos = 1 } }
    while not px.cut do
      local busy = false
      for d, pipe in ipairs(pipes) do
        if not pipe.eof then
          local data, err, partial = pipe.from:receive(65536)
          local got = data or partial
          if got and #got > 0 then
            pipe.data = pipe.data:sub(pipe.pos) .. got
            pipe.pos = 1
          end
          if not data and err ~= "timeout" then pipe.eof = true end
        end
        if pipe.pos <= #pipe.data then
          px.chunks = px.chunks + 1
          local j = math.min(#pipe.data, pipe.pos + sizes(px.chunks) - 1)
          local last, err, part = pipe.to:send(pipe.data, pipe.pos, j)
          local upto = last or part or pipe.pos - 1
          px.forwarded[d] = px.forwarded[d] + (upto - pipe.pos + 1)
          pipe.pos = upto + 1
          if not last and err ~= "timeout" then pipe.eof, pipe.pos, pipe.data = true, 1, "" end
          busy = true
        elseif pipe.eof and not pipe.shut then
          pipe.to:shutdown("send")
          pipe.shut = true
        end
      end
      if pipes[1].shut and pipes[2].shut then break end
      duplex.sleep(busy and 0 or 0.002)
    end
    a:close()
    b:close()
    px.done = true
  end)
  return px
end

-- A raw WebSocket peer over TLS (LuaSec), wrapped in helpers.Raw so it reads
-- and writes frames by hand: for fragmented messages and pings over TLS.
local function tls_raw_client(port, params)
  local sock = assert(socket.tcp())
  sock:settimeout(2)
  assert(sock:connect("127.0.0.1", port))
  sock:setoption("tcp-nodelay", true)
  local cfg = { mode = "client", protocol = "any", verify = "peer", cafile = certs().ca, options = { "all" } }
  for k, v in pairs(params or {}) do cfg[k] = v end
  local conn = assert(ssl.wrap(sock, cfg))
  conn:sni("localhost")
  conn:settimeout(0)
  local adapter = {}
  function adapter.receive(_, n)
    local data, err, partial = conn:receive(n)
    if err == "wantread" or err == "wantwrite" then err = "timeout" end
    return data, err, partial
  end
  function adapter.send(_, data, i, j)
    local last, err, partial = conn:send(data, i, j)
    if err == "wantread" or err == "wantwrite" then err = "timeout" end
    return last, err, partial
  end
  function adapter.close() conn:close() end
  helpers.track_socket(adapter)
  local deadline = duplex.now() + 5
  while true do
    local ok, err = conn:dohandshake()
    if ok then break end
    if err ~= "wantread" and err ~= "wantwrite" then return nil, err end
    if duplex.now() > deadline then return nil, "handshake timeout" end
    duplex.sleep(0.002)
  end
  return setmetatable({ sock = adapter, buf = "", eof = false, ssl = conn }, helpers.Raw)
end

describe("wss://", function()
  describe("our client and our server", function()
    it("echo text, binary, empty and a 4 MiB message; peer_cert names the server", function()
      helpers.run(function()
        local log = {}
        local s = tls_echo(nil, log)
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert.are.same({ "hello over TLS", "text" }, { round_trip(ws, "hello over TLS") })
        assert.are.same({ "\0\1\2\255", "binary" }, { round_trip(ws, "\0\1\2\255", "binary") })
        assert.are.same({ "", "text" }, { round_trip(ws, "") })
        assert.are.same({ "", "binary" }, { round_trip(ws, "", "binary") })
        local big = blob(4 * 1024 * 1024)
        local got, kind = round_trip(ws, big, "binary")
        assert.are.equal("binary", kind)
        assert.are.equal(#big, #got)
        assert.is_true(got == big, "the 4 MiB echo differs")
        local utf8big = string.rep("h\195\169llo \226\130\172 ", math.floor(4 * 1024 * 1024 / 12))
        got, kind = round_trip(ws, utf8big, "text")
        assert.are.equal("text", kind)
        assert.is_true(got == utf8big, "the 4 MiB text echo differs")
        assert.is_true(ws:close())
        assert.is_true(helpers.wait_until(function() return log.closed end, 3) ~= nil)
        assert.are.equal(6, log.count)
        assert.is_nil(log.ws.peer_cert) -- the client showed no certificate
      end, 30)
    end)

    it("close code and reason cross in both directions, cleanly", function()
      helpers.run(function()
        local log = {}
        local s = tls_echo(nil, log)
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.same({ "x", "text" }, { round_trip(ws, "x") })
        assert.is_true(ws:close(4000, "bye"))
        assert.are.equal(4000, ws.close_code)
        assert.are.equal("bye", ws.close_reason)
        assert.is_true(ws.close_clean)
        assert.is_truthy(helpers.wait_until(function() return log.closed end, 3))
        assert.are.equal(4000, log.code)
        assert.are.equal("bye", log.reason)
        log.ws:wait_closed()
        assert.is_true(log.ws.close_clean)

        -- and the server closing first
        local seen = {}
        local s2 = helpers.serve({ tls = { cert = certs().server_cert, key = certs().server_key } }, function(sws)
          sws:receive()
          seen.ok, seen.err = sws:close(4001, "server says bye")
          seen.clean = sws.close_clean
        end)
        local c = assert(helpers.connect(wss(s2.port), trusting()))
        assert(c:send("go"))
        local msg, err, code, reason = c:receive()
        assert.is_nil(msg)
        assert.are.equal("closed", err)
        assert.are.equal(4001, code)
        assert.are.equal("server says bye", reason)
        c:wait_closed()
        assert.is_true(c.close_clean)
        assert.is_truthy(helpers.wait_until(function() return seen.ok ~= nil or seen.err end, 3))
        assert.is_true(seen.ok)
        assert.is_true(seen.clean)
      end)
    end)

    it("connects to an IP address checked against the certificate's IP SAN", function()
      helpers.run(function()
        local s = tls_echo()
        local ws = assert(helpers.connect(wss(s.port, "/", "127.0.0.1"), trusting()))
        assert.are.same({ "ip", "text" }, { round_trip(ws, "ip") })
        assert.is_true(ws:close())
        local o = tls_echo({ cert = certs().other_cert, key = certs().other_key })
        local t0 = duplex.now()
        local bad, err = helpers.connect(wss(o.port, "/", "127.0.0.1"), trusting())
        assert.is_nil(bad)
        assert.matches("certificate verify failed", err, 1, true)
        assert.matches("IP address mismatch", err, 1, true)
        assert.is_true(duplex.now() - t0 < 3)
      end)
    end)
  end)

  describe("certificate checks by our client", function()
    local function refused(which, pattern, opts)
      helpers.run(function()
        local p = certs()
        local s = tls_echo({ cert = p[which .. "_cert"], key = p[which .. "_key"] })
        local t0 = duplex.now()
        local ws, err = helpers.connect(wss(s.port), opts or trusting())
        assert.is_nil(ws)
        assert.is_string(err)
        assert.matches("certificate verify failed", err, 1, true)
        assert.matches(pattern, err, 1, true)
        assert.is_true(duplex.now() - t0 < 3, "took too long to fail")
        helpers.check_echo(helpers.echo_server({}).port) -- the loop is fine
      end)
    end

    it("refuses an expired certificate", function()
      refused("expired", "certificate has expired")
    end)

    it("refuses a certificate for another host name", function()
      refused("other", "hostname mismatch")
    end)

    it("refuses a self-signed certificate", function()
      refused("self", "self-signed certificate")
    end)

    it("refuses a certificate from a CA it does not trust (system store by default)", function()
      refused("server", "unable to get local issuer certificate", {})
    end)

    it("connects with verify = false to a self-signed server, and sees its subject", function()
      helpers.run(function()
        local s = tls_echo({ cert = certs().self_cert, key = certs().self_key })
        local ws = assert(helpers.connect(wss(s.port), { tls = { verify = false } }))
        assert.are.equal("/CN=localhost/O=self-signed", ws.peer_cert)
        assert.are.same({ "unverified", "text" }, { round_trip(ws, "unverified") })
        assert.is_true(ws:close())
      end)
    end)
  end)

  describe("mutual TLS", function()
    local function mtls_server(log)
      return tls_echo({ ca = certs().ca, verify = true }, log)
    end

    it("accepts a client with a certificate from the CA; ws.peer_cert names it", function()
      helpers.run(function()
        local log = {}
        local s = mtls_server(log)
        local ws = assert(helpers.connect(wss(s.port),
          trusting({ cert = certs().client_cert, key = certs().client_key })))
        assert.are.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert.are.same({ "me", "text" }, { round_trip(ws, "me") })
        assert.is_true(ws:close(4000, "bye"))
        assert.is_truthy(helpers.wait_until(function() return log.closed end, 3))
        assert.are.equal("/CN=test client/O=duplex tests", log.ws.peer_cert)
        assert.are.equal(4000, log.code)
      end)
    end)

    it("refuses a client without a certificate, and still serves the next one", function()
      helpers.run(function()
        local handled = 0
        local s = helpers.serve({ tls = { cert = certs().server_cert, key = certs().server_key, ca = certs().ca, verify = true } },
          function(ws)
            handled = handled + 1
            helpers.echo_handler()(ws)
          end)
        local t0 = duplex.now()
        local ws, err = helpers.connect(wss(s.port), trusting())
        assert.is_nil(ws)
        assert.is_string(err)
        assert.is_true(duplex.now() - t0 < 3)
        assert.are.equal(0, handled)
        local ok = assert(helpers.connect(wss(s.port),
          trusting({ cert = certs().client_cert, key = certs().client_key })))
        assert.are.same({ "next", "text" }, { round_trip(ok, "next") })
        assert.is_true(ok:close())
        assert.are.equal(1, handled)
      end)
    end)

    -- Browsers resume cached sessions; without a session id context OpenSSL
    -- answers every resumption on a verifying server with an internal error.
    it("lets a client resume its session (TLS 1.2 and 1.3)", function()
      helpers.run(function()
        local p = certs()
        local s = mtls_server()
        for _, version in ipairs({ "-tls1_2", "-tls1_3" }) do
          local sess = os.tmpname()
          local args = ("%s -cert %s -key %s -CAfile %s"):format(version, p.client_cert, p.client_key, p.ca)
          local out = s_client(s.port, args .. " -sess_out " .. sess) .. s_client(s.port, args .. " -sess_in " .. sess)
          os.remove(sess)
          assert.matches("New, TLSv1", out, 1, true)
          assert.matches("Reused, TLSv1", out, 1, true)
          assert.is_nil(out:find("alert internal error", 1, true), out)
        end
      end, 30)
    end)

    it("refuses a client whose certificate is from another CA", function()
      helpers.run(function()
        local s = mtls_server()
        local ws, err = helpers.connect(wss(s.port),
          trusting({ cert = certs().self_cert, key = certs().self_key }))
        assert.is_nil(ws)
        -- the server's alert reaches the client (over TLS 1.3 it comes after
        -- the client's side of the handshake, on the first read)
        assert.matches("alert unknown ca", err, 1, true)
      end)
    end)

    -- The server's alert ("certificate required") must reach the client, so
    -- that it can say why it was refused instead of "connection closed".
    it("tells the refused client why (the server's TLS alert is sent)", function()
      helpers.run(function()
        local s = mtls_server()
        local ws, err = helpers.connect(wss(s.port), trusting())
        assert.is_nil(ws)
        assert.matches("certificate required", err, 1, true)
      end)
    end)
  end)

  describe("SNI", function()
    it("serves the certificate configured for the name the client asks for", function()
      helpers.run(function()
        local p = certs()
        -- default: other.example; for "localhost": the localhost certificate
        local s = tls_echo({ cert = p.other_cert, key = p.other_key,
          sni = { localhost = { cert = p.server_cert, key = p.server_key } } })
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert.are.same({ "sni", "text" }, { round_trip(ws, "sni") })
        assert.is_true(ws:close())
        -- an IP address sends no SNI: the default certificate, which fails
        local bad, err = helpers.connect(wss(s.port, "/", "127.0.0.1"), trusting())
        assert.is_nil(bad)
        assert.matches("IP address mismatch", err, 1, true)
        -- verify = false still sees which certificate came
        local any = assert(helpers.connect(wss(s.port, "/", "127.0.0.1"), { tls = { verify = false } }))
        assert.are.equal("/CN=other.example", any.peer_cert)
        assert.is_true(any:close())
      end)
    end)

    -- The SNI entry has no ca of its own: the server's ca and verify must
    -- still apply after the switch to the SNI certificate.
    it("keeps requiring and checking client certificates for an SNI name (mutual TLS)", function()
      helpers.run(function()
        local p = certs()
        local log = {}
        local s = tls_echo({ cert = p.other_cert, key = p.other_key, ca = p.ca, verify = true,
          sni = { localhost = { cert = p.server_cert, key = p.server_key } } }, log)
        local ws, err = helpers.connect(wss(s.port), trusting({ cert = p.client_cert, key = p.client_key }))
        assert.is_truthy(ws, "a client with a good certificate was refused: " .. tostring(err))
        assert.are.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert.is_true(ws:close())
        assert.is_truthy(helpers.wait_until(function() return log.closed end, 3))
        assert.are.equal("/CN=test client/O=duplex tests", log.ws.peer_cert)
        local bad = helpers.connect(wss(s.port), trusting())
        assert.is_nil(bad)
      end)
    end)

    -- OpenSSL keeps the verify mode of the default context when the name
    -- switches contexts: the name's own rule must apply, both ways.
    it("applies an SNI name's own verify = true though the default does not verify", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo({ cert = p.other_cert, key = p.other_key,
          sni = { localhost = { cert = p.server_cert, key = p.server_key, ca = p.ca, verify = true } } })
        local ws, err = helpers.connect(wss(s.port), trusting())
        assert.is_nil(ws)
        assert.matches("certificate required", err, 1, true)
        local good = assert(helpers.connect(wss(s.port), trusting({ cert = p.client_cert, key = p.client_key })))
        assert.are.equal("/CN=localhost/O=duplex tests", good.peer_cert)
        assert.is_true(good:close())
        -- no SNI (an IP address): the default context, which asks for nothing
        local plain = assert(helpers.connect(wss(s.port, "/", "127.0.0.1"), { tls = { verify = false } }))
        assert.are.equal("/CN=other.example", plain.peer_cert)
        assert.is_true(plain:close())
      end)
    end)

    it("applies an SNI name's own verify = false though the default requires certificates", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo({ cert = p.other_cert, key = p.other_key, ca = p.ca, verify = true,
          sni = { localhost = { cert = p.server_cert, key = p.server_key, verify = false } } })
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.same({ "open", "text" }, { round_trip(ws, "open") })
        assert.is_true(ws:close())
        local refused, err = helpers.connect(wss(s.port, "/", "127.0.0.1"), { tls = { verify = false } })
        assert.is_nil(refused)
        assert.matches("certificate required", err, 1, true)
      end)
    end)

    -- OpenSSL decides on resumption before the server_name callback: a
    -- session made without SNI (default context, no client certificate)
    -- must not resume under the name that requires one.
    it("does not resume a session across contexts to skip a client-certificate rule", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo({ cert = p.other_cert, key = p.other_key,
          sni = { localhost = { cert = p.server_cert, key = p.server_key, ca = p.ca, verify = true } } })
        for _, version in ipairs({ "-tls1_2", "-tls1_3" }) do
          local sess = os.tmpname()
          local args = ("%s -CAfile %s"):format(version, p.ca)
          local first = s_client(s.port, args .. " -noservername -sess_out " .. sess)
          assert.matches("New, TLSv1", first, 1, true) -- the default context asks for no certificate
          local second = s_client(s.port, args .. " -servername localhost -sess_in " .. sess)
          os.remove(sess)
          assert.is_nil(second:find("Reused, TLSv1", 1, true), version .. ": the session was resumed:\n" .. second)
          assert.truthy(second:find("alert certificate required", 1, true) or second:find("alert handshake failure", 1, true),
            version .. ": no certificate was asked for:\n" .. second)
        end
      end, 40)
    end)

    it("does not resume a session made before reload_tls", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo()
        local sess = os.tmpname()
        local args = "-tls1_3 -servername localhost -CAfile " .. p.ca
        local first = s_client(s.port, args .. " -sess_out " .. sess)
        assert.truthy(first:find("New, TLSv1", 1, true), first)
        -- the same session resumes while the configuration stands
        local again = s_client(s.port, args .. " -sess_in " .. sess)
        assert.truthy(again:find("Reused, TLSv1", 1, true), again)
        -- the new configuration requires client certificates
        assert.is_true(s:reload_tls({ cert = p.server_cert, key = p.server_key, ca = p.ca, verify = true }))
        local after = s_client(s.port, args .. " -sess_in " .. sess)
        os.remove(sess)
        assert.is_nil(after:find("Reused, TLSv1", 1, true), after)
        assert.matches("alert certificate required", after, 1, true)
      end, 40)
    end)

    it("raises for a malformed sni table, in serve and in reload_tls", function()
      helpers.run(function()
        local p = certs()
        local want = "option 'tls.sni' must map host names to {cert=, key=}"
        local ok, err = pcall(duplex.serve, { tls = { cert = p.server_cert, key = p.server_key, sni = { x = 1 } } },
          function() end)
        assert.is_false(ok)
        assert.matches(want, err, 1, true)
        local s = tls_echo()
        ok, err = pcall(s.reload_tls, s, { cert = p.server_cert, key = p.server_key, sni = { [1] = {} } })
        assert.is_false(ok)
        assert.matches(want, err, 1, true)
        -- the server goes on with its old certificate
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.is_true(ws:close())
      end)
    end)

    it("matches SNI names without regard to case", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo({ cert = p.other_cert, key = p.other_key,
          sni = { LocalHost = { cert = p.server_cert, key = p.server_key } } })
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert.is_true(ws:close())
      end)
    end)
  end)

  describe("reload_tls", function()
    it("swaps the certificate for new connections; open ones go on", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo()
        local before = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.equal("/CN=localhost/O=duplex tests", before.peer_cert)
        assert.is_true(s:reload_tls({ cert = p.reload_cert, key = p.reload_key }))
        local after = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.equal("/CN=reloaded/O=duplex tests", after.peer_cert)
        assert.are.same({ "new", "text" }, { round_trip(after, "new") })
        assert.are.same({ "old", "text" }, { round_trip(before, "old") })
        assert.is_true(after:close())
        assert.is_true(before:close())
      end)
    end)

    it("keeps the old certificate when the new one cannot be loaded", function()
      helpers.run(function()
        local p = certs()
        local s = tls_echo()
        local ok, err = s:reload_tls({ cert = p.dir .. "/missing.pem", key = p.server_key })
        assert.is_nil(ok)
        assert.matches("cannot load the certificate", err, 1, true)
        ok, err = s:reload_tls({ cert = p.reload_cert, key = p.server_key })
        assert.is_nil(ok)
        assert.matches("key values mismatch", err, 1, true)
        local ws = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert.is_true(ws:close())
      end)
    end)
  end)

  describe("configuration errors", function()
    it("serve returns nil, err for a bad TLS setup", function()
      helpers.run(function()
        local p = certs()
        local s, err = duplex.serve({ port = 0, host = "127.0.0.1", tls = { cert = p.server_cert } }, function() end)
        assert.is_nil(s)
        assert.matches("needs both cert and key", err, 1, true)
        s, err = duplex.serve({ port = 0, host = "127.0.0.1", tls = { cert = p.dir .. "/nope.pem", key = p.server_key } },
          function() end)
        assert.is_nil(s)
        assert.matches("cannot load the certificate", err, 1, true)
        s, err = duplex.serve({ port = 0, host = "127.0.0.1",
          tls = { cert = p.server_cert, key = p.server_key, sni = { x = { cert = p.server_cert, key = p.other_key } } } },
          function() end)
        assert.is_nil(s)
        assert.matches("key values mismatch", err, 1, true)
        local ws
        ws, err = duplex.connect("wss://localhost:1/", { tls = { ca = p.dir .. "/nope.pem" } })
        assert.is_nil(ws)
        assert.matches("cannot load the CA file", err, 1, true)
      end)
    end)
  end)

  describe("wrong-protocol peers", function()
    it("a ws:// client on the TLS port fails cleanly; TLS clients are not hurt", function()
      helpers.run(function()
        local s = tls_echo()
        local steady = assert(helpers.connect(wss(s.port), trusting()))
        local t0 = duplex.now()
        local ws, err = helpers.connect("ws://127.0.0.1:" .. s.port .. "/")
        assert.is_nil(ws)
        assert.is_string(err)
        assert.is_true(duplex.now() - t0 < 3, "took too long to fail")
        -- raw garbage too: the server hangs up
        local raw = assert(helpers.raw_client(s.port))
        assert(raw:send("\22\3\1\0\5hello, not a real handshake at all\r\n\r\n"))
        assert.is_true(raw:wait_eof(3))
        assert.are.same({ "steady", "text" }, { round_trip(steady, "steady") })
        local fresh = assert(helpers.connect(wss(s.port), trusting()))
        assert.are.same({ "fresh", "text" }, { round_trip(fresh, "fresh") })
        assert.is_true(fresh:close())
        assert.is_true(steady:close())
      end)
    end)

    it("a wss:// client on a plain port fails cleanly; plain clients are not hurt", function()
      helpers.run(function()
        local s = helpers.echo_server({})
        local steady = assert(helpers.connect(helpers.url(s.port)))
        local t0 = duplex.now()
        local ws, err = helpers.connect(wss(s.port, "/", "127.0.0.1"), trusting())
        assert.is_nil(ws)
        assert.is_string(err)
        assert.matches("wrong version number", err, 1, true)
        assert.is_true(duplex.now() - t0 < 3, "took too long to fail")
        assert.are.same({ "steady", "text" }, { round_trip(steady, "steady") })
        helpers.check_echo(s.port)
        assert.is_true(steady:close())
      end)
    end)

    it("the handshake timeout covers a TLS handshake that never finishes", function()
      helpers.run(function()
        local s = tls_echo(nil, nil, { handshake_timeout = 0.5 })
        local raw = assert(helpers.raw_client(s.port))
        assert(raw:send("\22\3\1")) -- the start of a record, and then nothing
        local t0 = duplex.now()
        assert.is_true(raw:wait_eof(4))
        local took = duplex.now() - t0
        assert.is_true(took > 0.3 and took < 2, "closed after " .. took .. " s")
      end)
    end)

    it("connect's timeout covers a server that never answers the ClientHello", function()
      helpers.run(function()
        local rs = helpers.raw_server()
        local t0 = duplex.now()
        local r = helpers.connect_async(wss(rs.port), { timeout = 0.5, tls = { ca = certs().ca } })
        local peer = assert(rs:accept(2))
        assert.truthy(peer:fill(5, 2), "no ClientHello came")
        assert.are.equal(22, peer.buf:byte(1)) -- a TLS handshake record
        assert.truthy(helpers.wait_until(function() return r.done end, 4))
        local took = duplex.now() - t0
        assert.is_nil(r.ws)
        assert.are.equal("handshake timed out", r.err)
        assert.is_true(took > 0.4 and took < 2, "gave up after " .. took .. " s")
        peer:close()
        rs:close()
      end)
    end)
  end)

  describe("handshake budget", function()
    -- At most LOOP_TLS_STEPS (16) handshake steps run per loop step; the
    -- rest wait, input kept, for the next steps.
    local function flood(port, n, results)
      for i = 1, n do
        duplex.spawn(function()
          local ws, err = duplex.connect(wss(port), trusting())
          if ws then helpers.track_ws(ws) end
          local msg = "client " .. i
          local ok = ws and ws:send(msg) and ws:receive() == msg and ws:close()
          results[i] = ok and true or tostring(err)
          results.done = results.done + 1
        end)
      end
    end

    it("many simultaneous TLS clients all complete; an open connection is served meanwhile", function()
      helpers.run(function()
        local s = tls_echo()
        local steady = assert(helpers.connect(wss(s.port), trusting()))
        local n, results = 300, { done = 0 }
        flood(s.port, n, results)
        local trips, worst = 0, 0
        while results.done < n do
          local t0 = duplex.now()
          assert.are.same({ "steady", "text" }, { round_trip(steady, "steady") })
          worst = math.max(worst, duplex.now() - t0)
          trips = trips + 1
        end
        for i = 1, n do assert.are.equal(true, results[i], "client " .. i) end
        assert.is_true(trips >= 1)
        assert.is_true(worst < 5, "a round trip took " .. worst .. " s")
        assert.is_true(steady:close())
      end, 60)
    end)

    it("handshakes stuck mid-record take steps but hold no one back", function()
      helpers.run(function()
        local s = tls_echo(nil, nil, { handshake_timeout = 20 })
        local stuck = {}
        for i = 1, 64 do
          stuck[i] = assert(helpers.raw_client(s.port))
          assert(stuck[i]:send("\22\3\1")) -- the start of a record, then nothing
        end
        local n, results = 100, { done = 0 }
        flood(s.port, n, results)
        assert.truthy(helpers.wait_until(function() return results.done == n end, 30))
        for i = 1, n do assert.are.equal(true, results[i], "client " .. i) end
        for i = 1, #stuck do stuck[i]:close() end
      end, 60)
    end)
  end)

  describe("records cut anywhere", function()
    it("works with every byte forwarded on its own (handshake, messages, close)", function()
      helpers.run(function()
        local log = {}
        local s = tls_echo(nil, log)
        local px = start_proxy(s.port, function() return 1 end)
        local ws = assert(helpers.connect(wss(px.port), trusting()))
        assert.are.same({ "byte by byte", "text" }, { round_trip(ws, "byte by byte") })
        local msg = blob(300)
        assert.are.same({ msg, "binary" }, { round_trip(ws, msg, "binary") })
        assert.is_true(ws:close(4000, "bye"))
        assert.is_truthy(helpers.wait_until(function() return log.closed end, 3))
        assert.are.equal(4000, log.code)
        assert.is_truthy(helpers.wait_until(function() return px.done end, 3))
        -- one chunk per byte: as many chunks as bytes forwarded
        assert.are.equal(px.forwarded[1] + px.forwarded[2], px.chunks)
        assert.is_true(px.chunks > 1000)
      end, 30)
    end)

    it("works with chunks of every size from 1 to 97 bytes", function()
      helpers.run(function()
        local s = tls_echo()
        local px = start_proxy(s.port, function(i) return (i - 1) % 97 + 1 end)
        local ws = assert(helpers.connect(wss(px.port), trusting()))
        for _, n in ipairs({ 1, 17, 125, 126, 16383, 16384, 16385, 100000 }) do
          local msg = blob(n)
          local got, kind = round_trip(ws, msg, "binary")
          assert.are.equal("binary", kind)
          assert.is_true(got == msg, "echo of " .. n .. " bytes differs")
        end
        assert.is_true(ws:close())
      end, 60)
    end)

    it("a TCP stream cut without close_notify is an abnormal close (1006), never a clean one", function()
      helpers.run(function()
        local log = {}
        local s = tls_echo(nil, log)
        local px = start_proxy(s.port, function() return 65536 end)
        local ws = assert(helpers.connect(wss(px.port), trusting()))
        assert.are.same({ "before the cut", "text" }, { round_trip(ws, "before the cut") })
        px.cut = true
        local msg, err, code = ws:receive()
        assert.is_nil(msg)
        assert.are.equal("closed", err)
        assert.are.equal(1006, code)
        assert.is_false(ws.close_clean)
        assert.is_truthy(helpers.wait_until(function() return log.closed end, 3))
        assert.are.equal(1006, log.code)
        log.ws:wait_closed()
        assert.is_false(log.ws.close_clean)
      end)
    end)
  end)

  describe("with a raw TLS peer (LuaSec)", function()
    if not has_luasec then
      it("needs LuaSec (apt-get install lua-sec)", function() pending("LuaSec is not installed") end)
      return
    end

    it("reassembles fragmented messages and answers pings between fragments", function()
      helpers.run(function()
        local log = {}
        local s = tls_echo(nil, log)
        local raw = assert(tls_raw_client(s.port))
        assert(raw:send(helpers.upgrade_request({ host = "localhost" })))
        local head = assert(raw:read_head(3))
        assert.are.equal(101, head.status)
        assert(raw:send_frame({ opcode = 1, fin = false, payload = "Hello, " }))
        assert(raw:send_frame({ opcode = 0, fin = false, payload = "fragmented " }))
        assert(raw:send_frame({ opcode = 9, payload = "ping!" }))
        assert(raw:send_frame({ opcode = 0, fin = true, payload = "TLS \226\130\172" }))
        local pong = assert(raw:read_frame(3))
        assert.are.same({ 10, "ping!" }, { pong.opcode, pong.payload })
        local f = assert(raw:read_frame(3))
        assert.are.same({ 1, true, false, "Hello, fragmented TLS \226\130\172" }, { f.opcode, f.fin, f.masked, f.payload })
        -- 64 KiB in 64-byte fragments
        local big = blob(65536)
        local frames = {}
        for i = 1, #big, 64 do
          frames[#frames + 1] = helpers.frame({ opcode = i == 1 and 2 or 0, fin = i + 64 > #big, payload = big:sub(i, i + 63) })
        end
        assert(raw:send(table.concat(frames)))
        f = assert(raw:read_frame(5))
        assert.are.equal(2, f.opcode)
        assert.is_true(f.payload == big, "64 KiB fragmented echo differs")
        assert(raw:send_frame({ opcode = 8, payload = helpers.close_payload(4000, "bye") }))
        local code, reason = raw:read_close(3)
        assert.are.equal(4000, code)
        assert.are.equal("bye", reason)
        assert.is_true(raw:wait_eof(3))
        -- the TLS layer ended with close_notify, not a bare TCP FIN
        assert.are.equal("closed", raw.eof_err)
        assert.is_truthy(helpers.wait_until(function() return log.closed end, 3))
        assert.are.same({ 4000, "bye", 2 }, { log.code, log.reason, log.count })
      end)
    end)

    it("negotiates ALPN http/1.1 and speaks TLS 1.2 as well as 1.3", function()
      helpers.run(function()
        local s = tls_echo()
        for _, proto in ipairs({ "tlsv1_2", "tlsv1_3" }) do
          local raw = assert(tls_raw_client(s.port, { protocol = proto, alpn = "http/1.1" }))
          assert.are.equal("http/1.1", raw.ssl:getalpn())
          assert(raw:send(helpers.upgrade_request({ host = "localhost" })))
          assert.are.equal(101, assert(raw:read_head(3)).status)
          assert(raw:send_frame({ payload = proto }))
          local f = assert(raw:read_frame(3))
          assert.are.equal(proto, f.payload)
          assert(raw:send_frame({ opcode = 8, payload = helpers.close_payload(1000) }))
          assert.are.equal(1000, (raw:read_close(3)))
          raw:close()
        end
      end)
    end)

    it("refuses TLS 1.1", function()
      helpers.run(function()
        local s = tls_echo()
        local raw, err = tls_raw_client(s.port, { protocol = "tlsv1_1", ciphers = "DEFAULT:@SECLEVEL=0" })
        assert.is_nil(raw)
        assert.matches("protocol version", err, 1, true)
        helpers.check_echo(helpers.echo_server({}).port)
      end)
    end)

    it("takes only ECDHE with AES-GCM or ChaCha20-Poly1305 on TLS 1.2", function()
      helpers.run(function()
        local s = tls_echo()
        -- the test certificates have P-256 keys: these CBC suites would work
        -- with them, so only our cipher list turns them away
        for _, suite in ipairs({ "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384",
                                 "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA" }) do
          local raw, err = tls_raw_client(s.port, { protocol = "tlsv1_2", ciphers = suite })
          assert.is_nil(raw, suite .. " was accepted")
          assert.matches("handshake failure", err, 1, true)
        end
        for _, suite in ipairs({ "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                 "ECDHE-ECDSA-CHACHA20-POLY1305" }) do
          local raw = assert(tls_raw_client(s.port, { protocol = "tlsv1_2", ciphers = suite }))
          assert.are.equal(suite, (raw.ssl:info("cipher")))
          raw:close()
        end
      end)
    end)
  end)
end)
