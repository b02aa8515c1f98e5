-- Interop with Python's `websockets` library (asyncio API), both ways:
-- Python as a client against a duplex server running in this process, and
-- Python as a server for a duplex client. The Python programs live in
-- spec/interop/ and run in the background (see spec/interop/support.lua).
local duplex = require "duplex"
local support = require "interop.support"

local PY = support.PYTHON
local CLIENT_PY = "spec/interop/ws_client.py"
local SERVER_PY = "spec/interop/ws_server.py"


local version = support.websockets_version()

describe("interop with Python websockets " .. tostring(version), function()
  if not version then
    it("needs /usr/bin/python3 with the websockets module (apt-get install python3-websockets)", function()
      pending("python3-websockets is not installed")
    end)
    return
  end

  after_each(support.cleanup)

  describe("as a client of our server", function()
    -- Our server: echoes, records what it saw in `seen`, and closes with
    -- 4002 "bye" when asked to with "close-me".
    local seen

    local function start_server()
      seen = { messages = 0 }
      local server = assert(support.serve({ port = 0, protocols = { "chat", "superchat" } },
        support.recording_echo(seen, function(ws)
          seen.protocol = ws.protocol
          seen.user_agent = ws.request.headers["user-agent"]
          seen.path = ws.request.path
        end)))
      assert.is_true(server.port > 0)
      return server
    end

    -- Runs ws_client.py CASE against our server; returns its key=value fields.
    local function python_client(case)
      local fields
      support.run(function()
        local server = start_server()
        fields = support.with_peer_client(
          { PY, CLIENT_PY, ("ws://127.0.0.1:%d/interop?case=%s"):format(server.port, case), case }, seen)
      end, 30)
      return fields
    end

    it("negotiates a subprotocol and sees the request", function()
      local f = python_client("headers")
      assert.equal("chat", f.subprotocol)
      assert.equal("chat", seen.protocol)
      assert.equal("/interop", seen.path)
      assert.matches("websockets", seen.user_agent)
    end)

    it("echoes text", function()
      python_client("text")
      assert.equal(2, seen.messages)
    end)

    it("echoes binary", function()
      python_client("binary")
      assert.equal(1, seen.messages)
    end)

    it("echoes empty text and binary messages", function()
      python_client("empty")
      assert.equal(2, seen.messages)
    end)

    it("echoes 1 MiB messages", function()
      python_client("big")
      assert.equal(2, seen.messages)
    end)

    it("reassembles fragmented messages", function()
      local f = python_client("fragmented")
      assert.equal("ok", f.fragments)
      assert.equal(2, seen.messages)  -- one message each, not one per fragment
    end)

    it("answers pings with pongs", function()
      local f = python_client("ping")
      assert.equal("ok", f.pong)
    end)

    it("sees the client's close code and reason", function()
      local f = python_client("client_close")
      assert.is_true(seen.done)
      assert.equal(4001, seen.close_code)
      assert.equal("done", seen.close_reason)
      assert.is_true(seen.close_clean)
      -- the close frame we sent back echoes the code
      assert.equal("4001", f.close_code)
    end)

    it("closes with its own code and reason", function()
      local f = python_client("server_close")
      assert.equal("4002", f.close_code)
      assert.equal("bye", f.close_reason)
      assert.is_true(seen.closed_ok)
      assert.equal(4002, seen.close_code)
      assert.is_true(seen.close_clean)
    end)
  end)

  describe("as a server for our client", function()
    -- Starts ws_server.py, connects to it and runs fn(ws); returns the
    -- server's key=value fields once it has exited.
    local function python_server(fn, opts)
      local o = { protocols = { "chat" } }
      for k, v in pairs(opts or {}) do o[k] = v end
      local fields
      support.run(function() fields = support.with_peer_server({ PY, SERVER_PY }, "/py?x=1", o, fn) end, 30)
      return fields
    end

    local echo = support.echo

    it("exchanges text, binary and empty messages, then closes with a code", function()
      local f = python_server(function(ws)
        assert.equal("chat", ws.protocol)
        echo(ws, "hello")
        echo(ws, "h\195\169llo \226\156\147 \240\159\152\128")
        local bytes = {}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        echo(ws, table.concat(bytes), "binary")
        echo(ws, "")
        echo(ws, "", "binary")
        assert.is_true(ws:close(4004, "lua-done"))
        assert.equal(4004, ws.close_code)
        assert.is_true(ws.close_clean)
      end)
      assert.equal("/py?x=1", f.path)
      assert.equal("chat", f.subprotocol)
      assert.equal("4004", f.close_code)
      assert.equal("lua-done", f.close_reason)
    end)

    it("exchanges 1 MiB messages", function()
      python_server(function(ws)
        local chunk = {}
        for i = 1, 1024 do chunk[i] = string.char((i * 7) % 256) end
        chunk = table.concat(chunk)
        echo(ws, chunk:rep(1024), "binary")
        echo(ws, ("0123456789abcdef"):rep(65536))
        assert.is_true(ws:close())
      end)
    end)

    it("receives a fragmented message whole", function()
      python_server(function(ws)
        assert(ws:send("frag"))
        local got, kind = ws:receive()
        assert.equal("one two three", got)
        assert.equal("text", kind)
        assert(ws:ping("still there?"))
        echo(ws, "after ping")
        -- Python pings us and waits for the pong that carries its payload
        assert(ws:send("ping-me"))
        assert.equal("pong=ok", (ws:receive()))
        assert.is_true(ws:close())
      end)
    end)

    it("gets Python's pongs to our keepalive pings", function()
      local f = python_server(function(ws)
        duplex.sleep(1.2) -- pings every 0.2 s of silence; a missing pong fails us with 1011
        assert.equal("open", ws.state)
        echo(ws, "still open")
        assert.is_true(ws:close())
      end, { ping_interval = 0.2, ping_timeout = 1 })
      assert.is_true(tonumber(f.pings_received) >= 3, "Python saw " .. tostring(f.pings_received) .. " pings")
    end)

    it("sees the server's close code and reason", function()
      local f = python_server(function(ws)
        assert(ws:send("close-me"))
        local msg, err, code, reason = ws:receive()
        assert.is_nil(msg)
        assert.equal("closed", err)
        assert.equal(4003, code)
        assert.equal("py-bye", reason)
        assert.equal(4003, ws.close_code)
        assert.equal("py-bye", ws.close_reason)
        assert.is_true(ws.close_clean)
      end)
      assert.equal("4003", f.close_code)
    end)
  end)
end)
