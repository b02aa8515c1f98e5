-- wss:// interop with peers nobody here wrote: Python `websockets` (as a
-- client of our TLS server and as a TLS server for our client) and headless
-- Chromium loading a page over https from our server and echoing over
-- wss://. External programs run in the background (spec/interop/support.lua)
-- while our server runs in this process; certificates come from
-- spec/helpers/pki.lua.
local duplex = require "duplex"
local support = require "interop.support"
local pki = require "helpers.pki"

local PY = support.PYTHON
local CLIENT_PY = "spec/interop/tls_client.py"
local SERVER_PY = "spec/interop/tls_server.py"

local py_version = support.websockets_version()
local CHROMIUM = support.CHROMIUM

local P
local function certs()
  P = P or pki.get()
  return P
end

local function tls_opts(extra)
  local o = { cert = certs().server_cert, key = certs().server_key }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("wss:// interop with Python websockets " .. tostring(py_version), function()
  if not py_version then
    it("needs /usr/bin/python3 with the websockets module (apt-get install python3-websockets)", function()
      pending("python3-websockets is not installed")
    end)
    return
  end

  after_each(support.cleanup)

  describe("as a client of our TLS server", function()
    local seen

    local function start_server(tls)
      seen = { messages = 0 }
      local server = assert(support.serve({ port = 0, host = "127.0.0.1", tls = tls_opts(tls) },
        support.recording_echo(seen, function(ws) seen.peer_cert = ws.peer_cert end)))
      return server
    end

    -- Runs tls_client.py CASE against our server; returns its fields.
    local function python_client(case, tls, client_cert)
      local fields
      support.run(function()
        local server = start_server(tls)
        local argv = { PY, CLIENT_PY, ("wss://localhost:%d/tls?case=%s"):format(server.port, case), certs().ca, case }
        if client_cert then
          argv[#argv + 1] = certs().client_cert
          argv[#argv + 1] = certs().client_key
        end
        fields = support.with_peer_client(argv, seen)
        assert(seen.done, "our handler did not finish")
      end, 35)
      return fields
    end

    it("echoes text over TLS 1.3 with ALPN http/1.1 and our certificate", function()
      local f = python_client("text")
      assert.equal("TLSv1.3", f.tls_version)
      assert.equal("http/1.1", f.alpn)
      assert.equal("localhost", f.server_cn)
      assert.equal(3, seen.messages)
      assert.is_nil(seen.peer_cert)
    end)

    it("echoes binary and a 4 MiB message", function()
      python_client("binary")
      assert.equal(2, seen.messages)
      python_client("big")
      assert.equal(1, seen.messages)
    end)

    it("reassembles fragmented messages", function()
      local f = python_client("fragmented")
      assert.equal("ok", f.fragments)
      assert.equal(2, seen.messages)
    end)

    it("close codes cross both ways, cleanly", function()
      local f = python_client("client_close")
      assert.equal("4001", f.close_code)
      assert.equal("done", f.close_reason)
      assert.same({ 4001, "done", true }, { seen.close_code, seen.close_reason, seen.close_clean })
      f = python_client("server_close")
      assert.equal("4002", f.close_code)
      assert.equal("bye", f.close_reason)
      assert.is_true(seen.closed_ok)
      assert.is_true(seen.close_clean)
    end)

    it("mutual TLS: accepts Python's client certificate and names it", function()
      python_client("text", { ca = certs().ca, verify = true }, true)
      assert.equal("/CN=test client/O=duplex tests", seen.peer_cert)
    end)

    it("mutual TLS: refuses Python without a client certificate", function()
      support.run(function()
        local server = start_server({ ca = certs().ca, verify = true })
        local p = support.start({ PY, CLIENT_PY, ("wss://localhost:%d/"):format(server.port), certs().ca, "text" }, 25)
        local rc, out = support.wait(p, 25)
        assert(rc, "python client did not finish: " .. support.describe(p))
        assert(rc ~= 0, "python got in without a certificate: " .. support.describe(p))
        assert.matches("FAIL:", out, 1, true)
        assert.equal(0, seen.messages)
      end, 35)
    end)
  end)

  describe("as a TLS server for our client", function()
    local function python_server(cert, key, ca)
      local argv = { PY, SERVER_PY, cert or certs().server_cert, key or certs().server_key }
      if ca then argv[#argv + 1] = ca end
      local p = support.start(argv, 25)
      local port = support.wait_for_output(p, "port=(%d+)", 10)
      assert(port, "python server did not start: " .. support.describe(p))
      return p, tonumber(port)
    end

    local function finish(p)
      local rc, out = support.wait(p, 10)
      assert(rc == 0, "python server failed: " .. support.describe(p))
      return support.fields(out)
    end

    it("echoes text and binary, sends fragments, and closes with its code", function()
      local f
      support.run(function()
        local p, port = python_server()
        local ws = assert(duplex.connect(("wss://localhost:%d/py"):format(port), { tls = { ca = certs().ca } }))
        assert.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
        assert(ws:send("hello python"))
        assert.same({ "hello python", "text" }, { ws:receive() })
        assert(ws:send("\0\1\2\255", "binary"))
        assert.same({ "\0\1\2\255", "binary" }, { ws:receive() })
        local big = string.rep("0123456789abcdef", 65536)
        assert(ws:send(big, "binary"))
        local got = ws:receive()
        assert.is_true(got == big, "1 MiB echo differs")
        assert(ws:send("frag"))
        assert.same({ "one two three", "text" }, { ws:receive() })
        assert(ws:send("close-me"))
        local msg, err, code, reason = ws:receive()
        assert.is_nil(msg)
        assert.same({ "closed", 4003, "py-bye" }, { err, code, reason })
        ws:wait_closed()
        assert.is_true(ws.close_clean)
        f = finish(p)
      end, 30)
      assert.equal("/py", f.path)
      assert.equal("TLSv1.3", f.tls_version)
      assert.equal("4003", f.close_code)
    end)

    it("our close code reaches Python; mutual TLS with our client certificate", function()
      local f
      support.run(function()
        local p, port = python_server(nil, nil, certs().ca)
        local ws = assert(duplex.connect(("wss://localhost:%d/mtls"):format(port),
          { tls = { ca = certs().ca, cert = certs().client_cert, key = certs().client_key } }))
        assert(ws:send("x"))
        assert.same({ "x", "text" }, { ws:receive() })
        assert.is_true(ws:close(4000, "bye"))
        f = finish(p)
      end, 30)
      assert.equal("test client", f.client_cn)
      assert.equal("4000", f.close_code)
      assert.equal("bye", f.close_reason)
    end)

    it("our client refuses Python's certificate for another host name", function()
      support.run(function()
        local _, port = python_server(certs().other_cert, certs().other_key)
        local t0 = duplex.now()
        local ws, err = duplex.connect(("wss://localhost:%d/"):format(port), { tls = { ca = certs().ca } })
        assert.is_nil(ws)
        assert.matches("certificate verify failed: hostname mismatch", err, 1, true)
        assert.is_true(duplex.now() - t0 < 3)
      end, 30)
    end)
  end)
end)

describe("wss:// interop with headless Chromium", function()
  if not CHROMIUM then
    it("needs chromium (apt-get install chromium)", function() pending("chromium is not installed") end)
    return
  end

  local profile
  before_each(function()
    profile = support.new_profile()
  end)
  after_each(function()
    support.cleanup()
    support.remove_profile(profile)
  end)

  -- The page opens wss:// back to where it came from, sends a message, puts
  -- the echo into the DOM and closes with 4000. /hold (a script at the end
  -- of the page) answers only once our server saw that close, so the load
  -- event, and with it --dump-dom, waits for the exchange.
  local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>wss echo</title></head><body>
<pre id="result">pending</pre>
<script>
var out = document.getElementById("result");
var ws = new WebSocket("wss://" + location.host + "/echo");
ws.onopen = function () { ws.send("hello from chromium over wss \u2713"); };
ws.onmessage = function (e) { out.textContent = "echoed: " + e.data; ws.close(4000, "browser-bye"); };
ws.onerror = function () { out.textContent = "websocket error"; };
</script>
<script src="/hold"></script>
</body></html>
]]

  it("loads a page over https from our server and echoes a message over wss://", function()
    local seen = {}
    support.run(function()
      local server
      server = assert(support.serve({
        port = 0, host = "127.0.0.1", handshake_timeout = 30, tls = tls_opts(),
        http = function(req)
          if req.path == "/" then
            seen.page = true
            return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, PAGE
          elseif req.path == "/hold" then
            local deadline = duplex.now() + 20
            while not seen.closed and duplex.now() < deadline do duplex.sleep(0.05) end
            return 200, { ["Content-Type"] = "application/javascript" }, "// released\n"
          end
          return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
        end,
      }, function(ws)
        seen.origin = ws.request.headers["origin"]
        seen.user_agent = ws.request.headers["user-agent"]
        seen.peer_cert = ws.peer_cert
        while true do
          local msg, kind = ws:receive()
          if not msg then break end
          seen.message = msg
          assert(ws:send(msg, kind))
        end
        ws:wait_closed()
        seen.close = { ws.close_code, ws.close_reason, ws.close_clean }
        seen.closed = true
      end))
      local url = ("https://127.0.0.1:%d/"):format(server.port)
      local p = support.start({ CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--ignore-certificate-errors", "--user-data-dir=" .. profile,
        "--dump-dom", url }, 45)
      local rc, dom = support.wait(p, 45)
      assert(rc == 0, "chromium did not finish cleanly: " .. support.describe(p))
      seen.dom = dom
    end, 60)
    assert.is_true(seen.page)
    assert.matches('<pre id="result">echoed: hello from chromium over wss \226\156\147</pre>', seen.dom, 1, true)
    assert.equal("hello from chromium over wss \226\156\147", seen.message)
    assert.matches("^https://127%.0%.0%.1:%d+$", seen.origin)
    assert.matches("Chrome/", seen.user_agent, 1, true)
    assert.is_nil(seen.peer_cert)
    assert.same({ 4000, "browser-bye", true }, seen.close)
  end)
end)

describe("examples/tls_echo.lua", function()
  after_each(support.cleanup)

  local function start(...)
    local p = support.start(support.lua_argv("examples/tls_echo.lua", ...), 40)
    local port = support.wait_for_output(p, "wss://localhost:(%d+)/", 15)
    assert(port, "tls_echo.lua did not start: " .. support.describe(p))
    return p, tonumber(port)
  end

  local function echo_with(port, tls)
    local ws = assert(duplex.connect(("wss://localhost:%d/"):format(port), { tls = tls }))
    assert(ws:send("through the example"))
    assert.same({ "through the example", "text" }, { ws:receive() })
    assert(ws:send("\0\255", "binary"))
    assert.same({ "\0\255", "binary" }, { ws:receive() })
    assert.is_true(ws:close())
    return ws
  end

  it("makes a self-signed certificate when given none, and echoes", function()
    support.run(function()
      local p, port = start(0)
      local cert = support.output(p):match("self%-signed certificate: (%S+)")
      assert(cert, "no certificate path printed: " .. support.describe(p))
      local ws = echo_with(port, { ca = cert })
      assert.equal("/CN=localhost", ws.peer_cert)
      local bad, err = duplex.connect(("wss://localhost:%d/"):format(port), { tls = { ca = certs().ca } })
      assert.is_nil(bad)
      assert.matches("certificate verify failed", err, 1, true)
      os.execute("rm -rf " .. support.quote(cert:match("^(.*)/[^/]+$")))
    end, 30)
  end)

  it("serves the certificate and key it is given", function()
    support.run(function()
      local _, port = start(certs().server_cert, certs().server_key, 0)
      local ws = echo_with(port, { ca = certs().ca })
      assert.equal("/CN=localhost/O=duplex tests", ws.peer_cert)
    end, 30)
  end)
end)
