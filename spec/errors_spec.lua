-- Error messages that say what is wrong and what to do: each mistake a new
-- user makes, with the exact words they get back.
local helpers = require "helpers"
local pki = require "helpers.pki"
local duplex = require "duplex"

local run = helpers.run

describe("errors that help", function()
  it("a ws:// client answered with TLS names wss://", function()
    run(function()
      local rs = helpers.raw_server()
      local client = helpers.connect_async(rs:url())
      local peer = assert(rs:accept(3))
      assert.truthy(peer:read_head(3))
      -- a TLS alert record (fatal, protocol_version), as some TLS servers answer plaintext
      assert(peer:send("\21\3\3\0\2\2\70"))
      assert.truthy(helpers.wait_until(function() return client.done end, 3))
      assert.is_nil(client.ws)
      assert.are.equal("the server answered in TLS, not HTTP (a wss:// server? use wss://)", client.err)
      peer:close()
    end)
  end)

  it("a duplex wss:// server answers plain HTTP with a 400 that names wss://", function()
    run(function()
      local p = pki.get()
      local s = helpers.serve({ tls = { cert = p.server_cert, key = p.server_key } }, function(ws)
        ws:send("over TLS")
      end)
      local t0 = duplex.now()
      local ws, err, response = duplex.connect(helpers.url(s.port))
      assert.is_nil(ws)
      assert.are.equal("server refused the upgrade: HTTP 400 This port speaks TLS: use wss://", err)
      assert.are.equal(400, response.status)
      assert.is_true(duplex.now() - t0 < 3)
      -- a raw look: the whole answer, then the server hangs up
      local raw = assert(helpers.raw_client(s.port))
      assert(raw:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      local head = assert(raw:read_head(3))
      assert.are.equal(400, head.status)
      assert.are.equal("This port speaks TLS: use wss://\n", raw:read(tonumber(head.headers["content-length"]), 3))
      assert.is_true(raw:wait_eof(3))
      -- and TLS clients are served as before
      local good = assert(duplex.connect("wss://127.0.0.1:" .. s.port .. "/", { tls = { ca = p.ca } }))
      assert.are.same({ "over TLS", "text" }, { good:receive(3) })
      good:close()
      raw:close()
    end)
  end)

  it("serve with a host name says it wants an IP address", function()
    run(function()
      local s, err = duplex.serve({ host = "localhost" }, function() end)
      assert.is_nil(s)
      assert.are.equal('host must be an IP address such as "127.0.0.1" or "::1" (got "localhost")', err)
      -- an address that is an IP literal keeps the listen error
      s, err = duplex.serve({ host = "192.0.2.1", port = 1 }, function() end)
      assert.is_nil(s)
      assert.matches("^cannot listen on 192%.0%.2%.1:1: ", err)
    end)
  end)

  it("a timeout of the wrong type names the option and the type", function()
    run(function()
      local ok, err = pcall(duplex.connect, "ws://127.0.0.1:1/", { timeout = "x" })
      assert.is_false(ok)
      assert.matches("option 'timeout' must be a number (got string)", err, 1, true)
      ok, err = pcall(duplex.serve, { handshake_timeout = {} }, function() end)
      assert.is_false(ok)
      assert.matches("option 'handshake_timeout' must be a number (got table)", err, 1, true)
    end)
  end)

  it("a missing CA, certificate or key file is named with the reason", function()
    run(function()
      local p = pki.get()
      local ws, err = duplex.connect("wss://127.0.0.1:1/", { tls = { ca = "x.pem" } })
      assert.is_nil(ws)
      assert.are.equal('cannot load the CA file "x.pem": No such file or directory', err)
      local s
      s, err = duplex.serve({ tls = { cert = p.dir .. "/none.pem", key = p.server_key } }, function() end)
      assert.is_nil(s)
      assert.matches('cannot load the certificate "' .. p.dir .. '/none.pem": No such file or directory', err, 1, true)
      s, err = duplex.serve({ tls = { cert = p.server_cert, key = p.dir .. "/none.key" } }, function() end)
      assert.is_nil(s)
      assert.matches('cannot load the private key "' .. p.dir .. '/none.key": No such file or directory', err, 1, true)
      -- a file that exists but is not PEM: its name and OpenSSL's reason
      ws, err = duplex.connect("wss://127.0.0.1:1/", { tls = { ca = "spec/errors_spec.lua" } })
      assert.is_nil(ws)
      assert.matches('^cannot load the CA file "spec/errors_spec.lua": .', err)
    end)
  end)

  for _, case in ipairs({
    { "ws://127.0.0.1:abc/", "invalid port in URL: ws://127.0.0.1:abc/" },
    { "ws://127.0.0.1:80x/", "invalid port in URL: ws://127.0.0.1:80x/" },
    { "ws://[::1]:abc/", "invalid port in URL: ws://[::1]:abc/" },
    { "ws://[::1]x/", "invalid port in URL: ws://[::1]x/" },
    { "ws://:80/", "invalid host in URL: ws://:80/" },
  }) do
    it("says which part of " .. case[1] .. " is wrong", function()
      run(function()
        local ws, err = duplex.connect(case[1])
        assert.is_nil(ws)
        assert.are.equal(case[2], err)
      end)
    end)
  end

  it("a handler that waits inside a C function is told the while form", function()
    run(function()
      local got
      local s = helpers.serve({ on_error = function(_, err) got = err end }, function(ws)
        if _VERSION == "Lua 5.1" and not jit then
          for _ in ws:messages() do end -- PUC 5.1: cannot yield in the iterator
        else
          table.sort({ 3, 2, 1 }, function(a, b) ws:receive() return a < b end)
        end
      end)
      local ws = assert(helpers.connect(helpers.url(s.port)))
      assert.truthy(helpers.wait_until(function() return got end, 3))
      assert.matches("attempt to yield across", got, 1, true)
      assert.matches("while true do local msg, kind = ws:receive() if not msg then break end ... end", got, 1, true)
      assert.are.same({ nil, "closed", 1011, "internal error" }, { ws:receive(3) })
    end)
  end)
end)
