-- Interop with Node's `ws` (spec/interop/node, installed by `make test` with
-- npm ci), both ways and with permessage-deflate on and off: ws as a client
-- of a duplex server in this process, and as a server for a duplex client.
local support = require "interop.support"

local NODE = support.find_program("node", "nodejs")
local DIR = "spec/interop/node/"
local installed = support.read_file(DIR .. "node_modules/ws/package.json")

describe("interop with Node ws", function()
  if not NODE or not installed then
    it("needs node and spec/interop/node/node_modules (make test runs npm ci there)", function()
      pending("Node ws is not installed")
    end)
    return
  end

  after_each(support.cleanup)

  for _, deflate in ipairs({ true, false }) do
    local label = deflate and "with permessage-deflate" or "without compression"

    describe("as a client of our server, " .. label, function()
      local function node_client(case)
        local seen = { messages = 0 }
        local fields
        support.run(function()
          local server = assert(support.serve({ port = 0, protocols = { "chat" }, compression = deflate },
            support.recording_echo(seen, function(ws)
              seen.compression = ws.compression
              seen.path = ws.request.path
            end)))
          fields = support.with_peer_client({ NODE, DIR .. "client.js", ("ws://127.0.0.1:%d/node"):format(server.port),
            deflate and "1" or "0", case }, seen)
        end, 30)
        return fields, seen
      end

      it("exchanges text, binary, empty, 1 MiB and fragmented messages, a ping, and a close", function()
        local f, seen = node_client("all")
        assert.equal("chat", f.subprotocol)
        assert.equal("/node", seen.path)
        if deflate then
          assert.matches("^permessage%-deflate", f.extensions)
          assert.is_true(seen.compression)
        else
          assert.equal("none", f.extensions)
          assert.is_false(seen.compression)
        end
        assert.equal("ok", f.fragments)
        assert.equal("ok", f.pong)
        assert.equal(10, seen.messages) -- fragments arrive as one message each
        assert.equal("4001", f.close_code)
        assert.equal("done", f.close_reason)
        assert.equal(4001, seen.close_code)
        assert.is_true(seen.close_clean)
      end)

      it("sees our server's close code and reason", function()
        local f, seen = node_client("server_close")
        assert.equal("4002", f.close_code)
        assert.equal("bye", f.close_reason)
        assert.is_true(seen.close_clean)
      end)
    end)

    describe("as a server for our client, " .. label, function()
      local function node_server(fn)
        local fields
        support.run(function()
          fields = support.with_peer_server({ NODE, DIR .. "server.js", deflate and "1" or "0" }, "/from-lua?x=1",
            { protocols = { "chat" }, compression = deflate }, fn)
        end, 30)
        return fields
      end

      local echo = support.echo

      it("exchanges messages, fragments and pings, then closes with a code", function()
        local f = node_server(function(ws)
          assert.equal("chat", ws.protocol)
          assert.equal(deflate, ws.compression)
          echo(ws, "hello")
          echo(ws, "h\195\169llo \226\156\147")
          local bytes = {}
          for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
          echo(ws, table.concat(bytes):rep(4096), "binary") -- 1 MiB
          echo(ws, ("{\"k\":\"json\"}"):rep(50000))
          echo(ws, "")
          echo(ws, "", "binary")
          assert(ws:send("frag"))
          assert.same({ "one two three", "text" }, { ws:receive() })
          assert(ws:send("ping-me"))
          assert.equal("pong=ok", (ws:receive()))
          assert.is_true(ws:close(4004, "lua-done"))
          assert.is_true(ws.close_clean)
        end)
        assert.equal("/from-lua?x=1", f.path)
        assert.equal("chat", f.subprotocol)
        if deflate then assert.matches("^permessage%-deflate", f.extensions) else assert.equal("none", f.extensions) end
        assert.equal("4004", f.close_code)
        assert.equal("lua-done", f.close_reason)
      end)

      it("sees the server's close code and reason", function()
        node_server(function(ws)
          assert(ws:send("close-me"))
          local msg, err, code, reason = ws:receive()
          assert.is_nil(msg)
          assert.equal("closed", err)
          assert.equal(4003, code)
          assert.equal("node-bye", reason)
          assert.is_true(ws.close_clean)
        end)
      end)
    end)
  end
end)
