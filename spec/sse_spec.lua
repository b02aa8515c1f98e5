-- Server-Sent Events on topics (serve{ sse = fn }): the wire format as
-- curl sees it (head, retry:, multi-line data, heartbeat comments), Python's
-- http.client reading a stream, Last-Event-ID replay (header and query,
-- across topics of one stream), refusals and hand-over to `http`, binary
-- messages skipped and counted, the backlog policy and the stalled-client
-- drop, shutdown, and 1000 event streams beside 1000 WebSockets on one
-- topic. Only 127.0.0.1; every wait is bounded.
local helpers = require "helpers"
local support = require "interop.support"
local duplex = helpers.duplex

local CURL = support.find_program("curl")

-- An event stream read over a raw socket: its head, then events parsed as
-- the HTML standard's EventSource does (comments counted, not kept).
local Stream = {}
Stream.__index = Stream

local function open_stream(port, path, extra)
  local raw = assert(helpers.raw_client(port))
  local lines = { "GET " .. (path or "/events") .. " HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream" }
  for _, line in ipairs(extra or {}) do lines[#lines + 1] = line end
  assert(raw.sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  local head = assert(raw:read_head(5))
  return setmetatable({ raw = raw, head = head, events = {}, comments = 0, retry = nil }, Stream)
end

-- Parses every complete event in the buffer.
function Stream:parse()
  local raw = self.raw
  raw:poll()
  while true do
    local e = raw.buf:find("\n\n", 1, true)
    if not e then return end
    local block = raw.buf:sub(1, e)
    raw.buf = raw.buf:sub(e + 2)
    local ev, data = {}, nil
    for line in block:gmatch("([^\n]*)\n") do
      if line:sub(1, 1) == ":" then
        self.comments = self.comments + 1
      else
        local field, value = line:match("^([^:]*): ?(.*)$")
        if field == "data" then
          data = data and (data .. "\n" .. value) or value
        elseif field == "retry" then
          self.retry = tonumber(value)
        elseif field then
          ev[field] = value
        end
      end
    end
    if data then
      ev.data = data
      self.events[#self.events + 1] = ev
    end
  end
end

-- Waits until n events came (true), or the stream ended or the time ran out.
function Stream:wait_events(n, timeout)
  return helpers.wait_until(function()
    self:parse()
    return #self.events >= n or (self.raw.eof and #self.events < n and "ended")
  end, timeout or 5) == true
end

local function datas(s, from)
  local out = {}
  for i = from or 1, #s.events do out[#out + 1] = s.events[i].data end
  return out
end

-- sse: by default the topics named in the path ("/a,b"); handler: the
-- WebSocket side's.
local function sse_server(opts, sse, handler)
  opts = opts or {}
  opts.sse = opts.sse or sse or function(req)
    local topics = {}
    for t in (req.path:sub(2)):gmatch("[^,]+") do topics[#topics + 1] = t end
    return topics
  end
  return helpers.serve(opts, handler or function(ws) while ws:receive() do end end)
end

local function subscribed(topic, n)
  return helpers.wait_until(function() return duplex.subscribers(topic) >= (n or 1) end, 5)
end

describe("Server-Sent Events", function()
  after_each(support.cleanup)

  it("answers a stream's head and sends each text message as an event, lines split, binary skipped", function()
    helpers.run(function()
      local server = sse_server({ sse_retry = 1.25 })
      local s = open_stream(server.port, "/news")
      assert.equal(200, s.head.status)
      assert.equal("text/event-stream", s.head.headers["content-type"])
      assert.equal("no-cache, no-transform", s.head.headers["cache-control"])
      assert.equal("no", s.head.headers["x-accel-buffering"])
      assert.is_nil(s.head.headers["content-length"])
      assert(subscribed("news"))
      assert.equal(1, duplex.publish("news", "one"))
      duplex.publish("news", "\1\2", "binary")
      duplex.publish("news", "a\nb\r\nc\rd")
      duplex.publish("news", "")
      duplex.publish("news", "trailing\n")
      assert.is_true(s:wait_events(4))
      assert.equal(1250, s.retry)
      assert.same({ "one", "a\nb\nc\nd", "", "trailing\n" }, datas(s))
      assert.equal("news", s.events[1].event)
      assert.is_nil(s.events[1].id) -- no history, no id
      local list = server:streams()
      assert.equal(1, #list)
      assert.same({ "news" }, list[1].topics)
      assert.equal(1, list[1].skipped)
      assert.equal(0, list[1].dropped)
    end)
  end)

  it("gives each event its history id, and replays after Last-Event-ID (header or query) with no gap", function()
    helpers.run(function()
      duplex.history("h", { size = 50 })
      local server = sse_server()
      local ids = {}
      for i = 1, 5 do ids[i] = select(3, duplex.publish("h", "m" .. i)) end
      local s = open_stream(server.port, "/h", { "Last-Event-ID: " .. ids[2] })
      assert.is_true(s:wait_events(3))
      assert.same({ "m3", "m4", "m5" }, datas(s))
      assert.equal(ids[5], s.events[3].id)
      duplex.publish("h", "m6")
      assert.is_true(s:wait_events(4))
      assert.equal("m6", s.events[4].data)
      -- the query parameter, for a browser's first request
      local q = open_stream(server.port, "/h?last_event_id=" .. ids[4])
      assert.is_true(q:wait_events(2))
      assert.same({ "m5", "m6" }, datas(q))
      -- an id that is not ours replays nothing, and the stream goes live
      local x = open_stream(server.port, "/h", { "Last-Event-ID: 00-1" })
      assert(subscribed("h", 3))
      duplex.publish("h", "m7")
      assert.is_true(x:wait_events(1))
      assert.same({ "m7" }, datas(x))
      duplex.history("h", false)
    end)
  end)

  it("resumes every topic of a stream from the one id the browser keeps", function()
    helpers.run(function()
      duplex.history("ta", { size = 50 })
      duplex.history("tb", { size = 50 })
      local server = sse_server()
      local s = open_stream(server.port, "/ta,tb")
      assert(subscribed("ta") and subscribed("tb"))
      duplex.publish("ta", "a1")
      duplex.publish("tb", "b1")
      assert.is_true(s:wait_events(2))
      local last = s.events[2].id -- tb's id: where ta resumes too
      s.raw.sock:close()
      duplex.publish("ta", "a2")
      duplex.publish("tb", "b2")
      duplex.publish("ta", "a3")
      local r = open_stream(server.port, "/ta,tb", { "Last-Event-ID: " .. last })
      assert.is_true(r:wait_events(3))
      -- each topic in its own order; together, every missed message once
      local got = datas(r)
      table.sort(got)
      assert.same({ "a2", "a3", "b2" }, got)
      duplex.history("ta", false)
      duplex.history("tb", false)
    end)
  end)

  it("refuses with the status sse returns, passes nothing to http, and answers non-stream requests there", function()
    helpers.run(function()
      local seen = {}
      local server = sse_server({
        http = function(req) return 200, { ["Content-Type"] = "text/plain" }, "page " .. req.path end,
      }, function(req)
        seen[#seen + 1] = req.headers["last-event-id"] or req.path
        if req.path == "/private" then return 403, { ["Content-Type"] = "text/plain" }, "no\n" end
        if req.path == "/feed" then return { "feed" }, { ["Access-Control-Allow-Origin"] = "*" } end
        return nil
      end)
      local r = open_stream(server.port, "/private")
      assert.equal(403, r.head.status)
      local p = open_stream(server.port, "/other")
      assert.equal(200, p.head.status)
      assert.is_true(helpers.wait_until(function() p.raw:poll() return p.raw.buf == "page /other" end, 3) or false)
      local f = open_stream(server.port, "/feed")
      assert.equal(200, f.head.status)
      assert.equal("*", f.head.headers["access-control-allow-origin"])
      assert.equal("text/event-stream", f.head.headers["content-type"])
      -- a GET that does not ask for a stream goes to http
      local raw = assert(helpers.raw_client(server.port))
      raw.sock:send("GET /feed HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(200, assert(raw:read_head()).status)
      assert.same({ "/private", "/other", "/feed" }, seen)
    end)
  end)

  it("reports a bad answer from sse through on_error, with a 500", function()
    helpers.run(function()
      local errs = {}
      local server = sse_server({ on_error = function(_, err) errs[#errs + 1] = err end }, function(req)
        if req.path == "/crlf" then return { "bad\r\ntopic" } end
        return {}
      end)
      assert.equal(500, open_stream(server.port, "/crlf").head.status)
      assert.equal(500, open_stream(server.port, "/empty").head.status)
      assert.matches("CR or LF", errs[1], 1, true)
      assert.matches("list of topics", errs[2], 1, true)
    end)
  end)

  it("drops publishes for a stream past max_backlog (counted), or ends it with on_backlog = \"close\"", function()
    helpers.run(function()
      local big = string.rep("x", 16 * 1024)
      for _, policy in ipairs({ "drop", "close" }) do
        local server = sse_server({ max_backlog = 64 * 1024, on_backlog = policy, sse_heartbeat = 0 })
        local raw = assert(helpers.raw_client(server.port, { rcvbuf = 4096 }))
        raw.sock:send("GET /slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        assert(subscribed("slow"))
        local dropped = 0
        for _ = 1, 400 do dropped = dropped + select(2, duplex.publish("slow", big)) end
        assert.is_true(dropped > 0)
        local list = server:streams()
        if policy == "drop" then
          assert.equal(1, #list)
          assert.equal(dropped, list[1].dropped)
          assert.is_true(list[1].buffered < 64 * 1024 + 2 * #big)
        else
          assert(helpers.wait_until(function() return #server:streams() == 0 end, 3), "the stream was not ended")
        end
        raw.sock:close()
        server:close()
      end
    end)
  end)

  it("sends heartbeat comments, and drops a client that takes nothing for a whole heartbeat", function()
    helpers.run(function()
      local server = sse_server({ sse_heartbeat = 0.1, max_backlog = 1073741824 })
      local s = open_stream(server.port, "/beat")
      assert(helpers.wait_until(function() s:parse() return s.comments >= 3 end, 3), "no heartbeats")
      local raw = assert(helpers.raw_client(server.port, { rcvbuf = 4096 }))
      raw.sock:send("GET /beat HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
      assert(subscribed("beat", 2))
      local chunk = string.rep("y", 64 * 1024)
      for _ = 1, 64 do duplex.publish("beat", chunk) end -- 4 MiB: far more than its buffers take
      -- s reads along; raw never does, and goes
      assert(helpers.wait_until(function()
        s:parse()
        return #server:streams() == 1
      end, 5), "the stalled client was not dropped")
      assert.equal(1, duplex.subscribers("beat"))
    end)
  end)

  it("ends every stream on shutdown, and refuses new ones meanwhile", function()
    helpers.run(function()
      local server = sse_server()
      local s = open_stream(server.port, "/end")
      assert(subscribed("end"))
      duplex.publish("end", "last")
      assert.is_true(server:shutdown({ timeout = 3 }))
      assert.is_true(s:wait_events(1))
      assert(helpers.wait_until(function() s.raw:poll() return s.raw.eof end, 3), "the stream did not end")
      assert.equal(0, duplex.subscribers("end"))
    end)
  end)

  it("is read by Python's http.client, line by line", function()
    helpers.run(function()
      local server = sse_server({ sse_retry = 0.5 })
      local script = [[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/py", headers={"Accept": "text/event-stream"})
r = c.getresponse()
print("status=%d" % r.status)
print("type=%s" % r.getheader("Content-Type"))
data, n = [], 0
while n < 3:
    line = r.fp.readline().decode("utf-8").rstrip("\n")
    if line.startswith("data: "):
        data.append(line[6:])
    elif line == "" and data:
        print("event=%s" % "|".join(data)); data = []; n += 1
print("OK", flush=True)
]]
      local p = support.start({ support.PYTHON, "-c", script, tostring(server.port) }, 20)
      assert(subscribed("py"), "python did not connect: " .. support.describe(p))
      duplex.publish("py", "first")
      duplex.publish("py", "two\nlines")
      duplex.publish("py", "caf\195\169")
      local rc, out = support.wait(p, 15)
      assert(rc == 0, support.describe(p))
      assert.equal("status=200\ntype=text/event-stream\nevent=first\nevent=two|lines\nevent=caf\195\169\nOK\n", out)
    end, 20)
  end)

  it("is read by curl -N exactly as written: head, retry, events, heartbeats, end", function()
    if not CURL then return pending("curl is not installed (apt-get install curl)") end
    helpers.run(function()
      duplex.history("c", { size = 10 })
      local server = sse_server({ sse_retry = 2, sse_heartbeat = 0.2 })
      local p = support.start({ CURL, "-sN", "-i", "--max-time", "10", "-H", "Accept: text/event-stream",
        ("http://127.0.0.1:%d/c"):format(server.port) }, 15)
      assert(subscribed("c"), "curl did not connect: " .. support.describe(p))
      local _, _, id1 = duplex.publish("c", "hello")
      local _, _, id2 = duplex.publish("c", "multi\nline")
      duplex.sleep(0.3) -- one heartbeat at least
      assert.is_true(server:shutdown({ timeout = 3 }))
      local rc, out = support.wait(p, 5)
      assert(rc == 0, support.describe(p))
      local head, body = out:match("^(.-\r\n\r\n)(.*)$")
      assert.matches("^HTTP/1%.1 200 OK\r\n", head)
      assert.matches("\r\nContent%-Type: text/event%-stream\r\n", head)
      assert.matches("\r\nConnection: close\r\n", head)
      local events = ("retry: 2000\n\nid: %s\nevent: c\ndata: hello\n\nid: %s\nevent: c\ndata: multi\ndata: line\n\n")
        :format(id1, id2)
      assert.equal(events, body:sub(1, #events))
      local rest = body:sub(#events + 1)
      assert.matches("^:\n\n", rest)
      assert.equal("", (rest:gsub(":\n\n", "")))
      duplex.history("c", false)
    end, 20)
  end)

  it("streams over TLS, as curl reads https with our CA", function()
    if not CURL then return pending("curl is not installed (apt-get install curl)") end
    helpers.run(function()
      local pki = require("helpers.pki").get()
      local server = sse_server({ tls = { cert = pki.server_cert, key = pki.server_key }, sse_retry = 0 })
      local p = support.start({ CURL, "-sN", "--max-time", "10", "--cacert", pki.ca, "-H",
        "Accept: text/event-stream", ("https://127.0.0.1:%d/secure"):format(server.port) }, 15)
      assert(subscribed("secure"), "curl did not connect: " .. support.describe(p))
      duplex.publish("secure", "over tls")
      duplex.sleep(0.1)
      assert.is_true(server:shutdown({ timeout = 3 }))
      local rc, out = support.wait(p, 5)
      assert(rc == 0, support.describe(p))
      assert.equal("event: secure\ndata: over tls\n\n", out)
    end, 20)
  end)

  it("delivers every message to 1000 event streams and 1000 WebSockets on one topic", function()
    helpers.run(function()
      local N, K = 1000, 20
      local server = sse_server({}, function() return { "many" } end, function(ws)
        assert(ws:subscribe("many"))
        while ws:receive() do end
      end)
      local script = [[
import asyncio, sys
port, n, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
async def one():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /many HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await r.readuntil(b"\r\n\r\n")
    got = []
    while len(got) < k:
        line = await r.readline()
        if line.startswith(b"data: "):
            got.append(int(line[6:]))
    w.close()
    return got == list(range(1, k + 1))
async def main():
    res = await asyncio.gather(*[one() for _ in range(n)])
    print("complete=%d" % sum(res), flush=True)
asyncio.run(main())
]]
      local p = support.start({ support.PYTHON, "-c", script, tostring(server.port), tostring(N), tostring(K) }, 40)
      local readers = {}
      for i = 1, N do
        local ws = assert(helpers.connect(helpers.url(server.port, "/ws")))
        readers[i] = helpers.reader(ws)
      end
      assert(helpers.wait_until(function() return duplex.subscribers("many") >= 2 * N end, 20),
        "subscribers: " .. duplex.subscribers("many") .. "; " .. support.describe(p))
      for i = 1, K do assert.equal(2 * N, duplex.publish("many", tostring(i))) end
      local rc, out = support.wait(p, 30)
      assert(rc == 0, support.describe(p))
      assert.equal("complete=" .. N, out:match("complete=%d+"))
      assert(helpers.wait_until(function()
        for i = 1, N do if #readers[i].got < K then return false end end
        return true
      end, 10))
      for i = 1, N do
        assert.equal(K, #readers[i].got)
        assert.equal("1", readers[i].got[1])
        assert.equal(tostring(K), readers[i].got[K])
      end
      for i = 1, N do readers[i].ws:close() end
    end, 60)
  end)
end)
