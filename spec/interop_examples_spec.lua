-- The examples run as their own processes, with this spec's Lua, and talk
-- to a Python `websockets` client, our own client, or examples/client.lua.
local duplex = require "duplex"
local support = require "interop.support"

local PY = support.PYTHON

local function have(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

local has_python = have(PY .. " -c 'import websockets'")
local has_luasocket = pcall(require, "socket")

-- Starts an example on a free port (port 0); returns the process and port.
local function start_example(script, banner)
  local p = support.start(support.lua_argv(script, 0), 40)
  local port = support.wait_for_output(p, banner, 15)
  assert(port, script .. " did not start: " .. support.describe(p))
  return p, tonumber(port)
end

local function receive_json(ws)
  local msg, err = ws:receive()
  assert(msg, err)
  return msg
end

describe("examples", function()
  after_each(support.cleanup)

  it("echo.lua echoes for a Python client", function()
    if not has_python then return pending("python3-websockets is not installed") end
    support.run(function()
      local _, port = start_example("examples/echo.lua", "ws://127.0.0.1:(%d+)/")
      for _, case in ipairs({ "text", "binary", "empty", "big", "fragmented", "ping", "client_close" }) do
        local c = support.start({ PY, "spec/interop/ws_client.py", ("ws://127.0.0.1:%d/"):format(port), case }, 25)
        local rc, out = support.wait(c, 25)
        assert(rc == 0 and out:match("OK\n$"), "case " .. case .. ": " .. support.describe(c))
      end
    end, 60)
  end)

  it("client.lua sends stdin lines to echo.lua and prints the replies", function()
    support.run(function()
      local _, port = start_example("examples/echo.lua", "ws://127.0.0.1:(%d+)/")
      local input = os.tmpname()
      local f = assert(io.open(input, "wb"))
      f:write("hello\n", "w\195\182rld\n", "\n", "last line\n")
      f:close()
      local c = support.start(support.lua_argv("examples/client.lua", ("ws://127.0.0.1:%d/"):format(port)), 20, input)
      local rc, out = support.wait(c, 20)
      os.remove(input)
      assert(rc == 0, "client.lua failed: " .. support.describe(c))
      assert.equal("hello\nw\195\182rld\n\nlast line\n", out)
      assert.matches("connected to ws://127.0.0.1:" .. port, support.errors(c), 1, true)
    end, 40)
  end)

  it("client.lua sends the messages given after the URL, and runs from a checkout without LUA_PATH", function()
    support.run(function()
      local _, port = start_example("examples/echo.lua", "ws://127.0.0.1:(%d+)/")
      local url = ("ws://127.0.0.1:%d/"):format(port)
      local argv = support.lua_argv("examples/client.lua", url, "one", "two")
      -- the plain build the example's own search path finds (not there when
      -- only the sanitized core was built)
      local built = io.open("build/" .. (jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")) .. "/duplex/core.so")
      if built then
        built:close()
        argv = { "env", "-u", "LUA_PATH", "-u", "LUA_CPATH", argv[1], "examples/client.lua", url, "one", "two" }
      end
      local c = support.start(argv, 20)
      local rc, out = support.wait(c, 20)
      assert(rc == 0, "client.lua failed: " .. support.describe(c))
      assert.equal("one\ntwo\n", out)
    end, 40)
  end)

  it("chat.lua serves its page and relays messages as JSON", function()
    support.run(function()
      local _, port = start_example("examples/chat.lua", "http://127.0.0.1:(%d+)/")
      if has_luasocket then
        -- the chat server is another process, so a blocking GET is fine here
        local http = require "socket.http"
        local body, code, headers = http.request(("http://127.0.0.1:%d/"):format(port))
        assert.equal(200, code)
        assert.matches("^text/html", headers["content-type"])
        assert.matches("<title>duplex chat</title>", body, 1, true)
        local _, missing = http.request(("http://127.0.0.1:%d/nope"):format(port))
        assert.equal(404, missing)
      end

      local base = ("ws://127.0.0.1:%d/chat"):format(port)
      local a = assert(duplex.connect(base .. "?nick=ann%20%E2%9C%93"))
      assert.equal('{"type":"welcome","nick":"ann \226\156\147","count":1}', receive_json(a))
      assert.equal('{"type":"join","nick":"ann \226\156\147","count":1}', receive_json(a))
      local b = assert(duplex.connect(base))  -- no nickname: the room picks one
      assert.equal('{"type":"welcome","nick":"guest1","count":2}', receive_json(b))
      assert.equal('{"type":"join","nick":"guest1","count":2}', receive_json(b))
      assert.equal('{"type":"join","nick":"guest1","count":2}', receive_json(a))

      assert(a:send('say "hi"\n\tand \\ bye'))
      local expect = '{"type":"message","nick":"ann \226\156\147","text":"say \\"hi\\"\\n\\tand \\\\ bye"}'
      assert.equal(expect, receive_json(a))
      assert.equal(expect, receive_json(b))

      assert(a:send("\0\1", "binary"))  -- binary messages are not relayed
      assert.is_true(a:close())
      assert.equal('{"type":"leave","nick":"ann \226\156\147","count":1}', receive_json(b))

      local long = assert(duplex.connect(base .. "?nick=" .. ("\195\169"):rep(20)))
      assert.equal('{"type":"welcome","nick":"' .. ("\195\169"):rep(12) .. '","count":2}', receive_json(long))
      long:close()
      b:close()
    end, 40)
  end)

  it("feed.lua serves one topic to a WebSocket and to an event stream, and replays it to newcomers", function()
    support.run(function()
      local p, port = start_example("examples/feed.lua", "http://127.0.0.1:(%d+)/")
      local ws = assert(duplex.connect(("ws://127.0.0.1:%d/live"):format(port)))
      assert(ws:send("first post"))
      assert.equal("first post", receive_json(ws))
      -- a reader of the stream, in Python: it asks to resume from nothing
      -- (so gets the history) and prints each event's id and data
      local script = [[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/events?last_event_id=earliest", headers={"Accept": "text/event-stream"})
r = c.getresponse()
print("status=%d" % r.status, flush=True)
ev, n = {}, 0
while n < 2:
    line = r.fp.readline().decode("utf-8").rstrip("\n")
    if line == "" and "data" in ev:
        print("event=%s %s %s" % (ev["event"], ev["id"], ev["data"]), flush=True); ev = {}; n += 1
    elif ": " in line:
        k, v = line.split(": ", 1); ev[k] = v
]]
      local reader = support.start({ PY, "-c", script, tostring(port) }, 20)
      assert(support.wait_for_output(reader, "status=200"), support.describe(reader))
      duplex.sleep(0.2)
      assert(ws:send("second post"))
      assert.equal("second post", receive_json(ws))
      local rc, out = support.wait(reader, 15)
      assert(rc == 0, support.describe(reader))
      assert.matches("\nevent=feed %x+%-%d+ first post\nevent=feed %x+%-%d+ second post\n", out)
      local web = assert(duplex.connect(("ws://127.0.0.1:%d/live"):format(port)))
      assert.equal("first post", receive_json(web)) -- replayed from the history
      assert.equal("second post", receive_json(web))
      ws:close()
      web:close()
      support.kill(p)
    end, 40)
  end)

  it("chat.lua keeps rooms apart", function()
    support.run(function()
      local _, port = start_example("examples/chat.lua", "http://127.0.0.1:(%d+)/")
      local base = ("ws://127.0.0.1:%d/chat"):format(port)
      local a = assert(duplex.connect(base .. "?nick=ann&room=red"))
      assert.equal('{"type":"welcome","nick":"ann","count":1}', receive_json(a))
      assert.equal('{"type":"join","nick":"ann","count":1}', receive_json(a))
      local b = assert(duplex.connect(base .. "?nick=bob&room=blue"))
      assert.equal('{"type":"welcome","nick":"bob","count":1}', receive_json(b))
      assert.equal('{"type":"join","nick":"bob","count":1}', receive_json(b))
      local c = assert(duplex.connect(base .. "?nick=cy&room=red"))
      assert.equal('{"type":"welcome","nick":"cy","count":2}', receive_json(c))
      assert.equal('{"type":"join","nick":"cy","count":2}', receive_json(c))
      assert.equal('{"type":"join","nick":"cy","count":2}', receive_json(a))
      assert(b:send("only blue"))
      assert.equal('{"type":"message","nick":"bob","text":"only blue"}', receive_json(b))
      assert(a:send("only red"))
      assert.equal('{"type":"message","nick":"ann","text":"only red"}', receive_json(c))
      -- nothing from red reached blue: the next thing b sees is its own
      assert(b:send("again"))
      assert.equal('{"type":"message","nick":"bob","text":"again"}', receive_json(b))
      a:close(); b:close(); c:close()
    end, 30)
  end)

  it("dashboard.lua serves its page and ticks to every viewer", function()
    support.run(function()
      local _, port = start_example("examples/dashboard.lua", "http://127.0.0.1:(%d+)/")
      if has_luasocket then
        local http = require "socket.http"
        local body, code = http.request(("http://127.0.0.1:%d/"):format(port))
        assert.equal(200, code)
        assert.matches("<title>duplex dashboard</title>", body, 1, true)
      end
      local url = ("ws://127.0.0.1:%d/live"):format(port)
      local a = assert(duplex.connect(url))
      local b = assert(duplex.connect(url))
      local seen = {}
      for _, ws in ipairs({ a, b }) do
        for _ = 1, 3 do -- the first tick at once, then one a second
          local msg = receive_json(ws)
          local seq, viewers = msg:match('^{"type":"tick","seq":(%d+),"time":"%d%d:%d%d:%d%d","viewers":(%d+),"load":"[%d.]+","rss_kib":%d+}$')
          assert.truthy(seq, msg)
          assert.is_true(tonumber(viewers) >= 1)
          seen[#seen + 1] = tonumber(seq)
        end
      end
      assert.is_true(seen[3] > seen[2] and seen[6] > seen[5])
      a:close(); b:close()
    end, 30)
  end)

  it("broadcast.lua relays messages to the others and ticks", function()
    support.run(function()
      local _, port = start_example("examples/broadcast.lua", "ws://127.0.0.1:(%d+)/")
      local url = ("ws://127.0.0.1:%d/"):format(port)
      local a = assert(duplex.connect(url))
      local b = assert(duplex.connect(url))
      duplex.sleep(0.1)  -- both registered on the server
      assert(a:send("hi all"))
      local got_relay, got_tick = false, false
      while not (got_relay and got_tick) do
        local msg = receive_json(b)
        if msg:match(": hi all$") then got_relay = true end
        if msg:match("^tick %d%d:%d%d:%d%d$") then got_tick = true end
      end
      a:close()
      b:close()
    end, 20)
  end)
end)
