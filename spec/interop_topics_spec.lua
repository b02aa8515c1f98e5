-- Topics with Python's `websockets` clients as subscribers: a few hundred
-- of them (half with permessage-deflate) in one Python process against a
-- duplex server in this process, and a live stream with Python clients
-- leaving and re-joining a topic in the middle of it. The script is
-- spec/interop/topic_clients.py; spec/interop/support.lua runs it.
local duplex = require "duplex"
local support = require "interop.support"

local PY = support.PYTHON
local SCRIPT = "spec/interop/topic_clients.py"

local version = support.websockets_version()

describe("topics with Python websockets " .. tostring(version) .. " subscribers", function()
  if not version then
    it("needs /usr/bin/python3 with the websockets module (apt-get install python3-websockets)", function()
      pending("python3-websockets is not installed")
    end)
    return
  end

  after_each(support.cleanup)

  it("fans out to 300 Python subscribers, compressed and not: each message once and in order, own sends in FIFO order, the publisher skipped", function()
    local N, K = 300, 20
    local fields, seen = nil, { subs = {} }
    support.run(function()
      local server = assert(support.serve({ port = 0, compression = { context_takeover = false } }, function(ws)
        local path = ws.request.path
        local i = tonumber(path:match("^/py(%d+)$"))
        if i then
          assert(ws:subscribe("py"))
          seen.subs[i] = ws
          while ws:receive() do end
          return
        end
        -- the publisher: subscribed too, and skipped by its own publishes
        assert(ws:subscribe("py"))
        assert.equal("go", ws:receive())
        local deadline = duplex.now() + 10
        while duplex.subscribers("py") < N + 1 and duplex.now() < deadline do duplex.sleep(0.01) end
        assert.equal(N + 1, duplex.subscribers("py"))
        local total = 0
        for r = 1, K do
          local q, d = ws:publish("py", ("p %d "):format(r) .. ("."):rep(100))
          assert.equal(N, q)
          assert.equal(0, d)
          total = total + q
          for s = 1, N, 2 do assert(seen.subs[s]:send(("own %d %d"):format(s, r))) end
        end
        assert(ws:send("published " .. total))
        seen.compressed = 0
        for s = 1, N do
          if seen.subs[s].compression then seen.compressed = seen.compressed + 1 end
        end
        -- everything is queued: a close goes after it
        for s = 1, N do
          local sub = seen.subs[s]
          duplex.spawn(function() sub:close(1000) end)
        end
        assert.equal("bye", ws:receive())
        ws:close(1000)
        seen.done = true
      end))
      local p = support.start({ PY, SCRIPT, "fanout", "ws://127.0.0.1:" .. server.port, N, K }, 30)
      local rc, out = support.wait(p, 30)
      assert(rc == 0 and out:match("OK\n$"), "the clients failed: " .. support.describe(p))
      fields = support.fields(out)
      if os.getenv("TOPICS_VERBOSE") then io.stderr:write(out) end
      local deadline = duplex.now() + 5
      while duplex.subscribers("py") > 0 and duplex.now() < deadline do duplex.sleep(0.02) end
    end, 40)
    assert.is_true(seen.done)
    assert.equal(tostring(N), fields.subscribers)
    assert.equal(tostring(N), fields.ok)
    assert.equal(tostring(N * K), fields.published)
    assert.equal(N / 2, seen.compressed)
    assert.equal(0, duplex.subscribers("py"))
  end)

  it("keeps a live stream gapless for Python subscribers that unsubscribe and re-subscribe in the middle of it", function()
    local N = 60
    local fields, state = nil, { back = 0, left = 0 }
    support.run(function()
      local server = assert(support.serve({ port = 0, compression = true }, function(ws)
        assert(ws:subscribe("live"))
        while true do
          local msg = ws:receive()
          if not msg then break end
          if msg == "unsub" then
            assert.is_true(ws:unsubscribe("live"))
            assert(ws:send("unsubscribed"))
            state.left = state.left + 1
          elseif msg == "sub" then
            assert.is_true(ws:subscribe("live"))
            assert(ws:send("subscribed"))
            state.back = state.back + 1
          end
        end
      end))
      local p = support.start({ PY, SCRIPT, "churn", "ws://127.0.0.1:" .. server.port, N }, 30)
      local deadline = duplex.now() + 15
      while duplex.subscribers("live") < N and duplex.now() < deadline do duplex.sleep(0.01) end
      assert.equal(N, duplex.subscribers("live"))
      -- publish until every client has left and come back, then a few more;
      -- at a pace the 60 clients in one Python process keep up with on a
      -- loaded machine (published faster, they fall behind the stream, and
      -- reach the point where they leave it later and later)
      deadline = duplex.now() + 20
      local r, extra = 0, 0
      while extra < 5 do
        r = r + 1
        local q, d = duplex.publish("live", "m " .. r)
        assert.equal(0, d)
        assert(q <= N)
        if state.back == N then extra = extra + 1 end
        duplex.sleep(0.004)
        assert(duplex.now() < deadline, "not every client re-subscribed: " .. state.back .. " of " .. N)
      end
      local q = duplex.publish("live", "end")
      assert.equal(N, q)
      local rc, out = support.wait(p, 20)
      assert(rc == 0 and out:match("OK\n$"), "the clients failed: " .. support.describe(p))
      fields = support.fields(out)
      state.published = r
      if os.getenv("TOPICS_VERBOSE") then io.stderr:write(out, "published=", r, "\n") end
    end, 40)
    assert.equal(tostring(N), fields.clients)
    assert.equal(N, state.left)
    assert(state.published > 120)
  end)
end)
