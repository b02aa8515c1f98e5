-- Topic history (in memory): ids from publish, replay with
-- ws:subscribe(topic, { since = id }) then live messages with no gap and no
-- duplicate, "not recovered" when the messages after an id are gone (size,
-- ttl, bytes) or the id is not ours, the backlog policy over a replay,
-- duplex.last_id and duplex.history(topic, false). Only 127.0.0.1; every
-- wait is bounded. Reads use while loops (PUC Lua 5.1 cannot yield in a
-- generic for).
local helpers = require "helpers"
local duplex = helpers.duplex

local format = string.format

-- A server subscribing each connection to the topic in its path (/topic),
-- with since from the query (?since=...) when given; conns[topic] gets
-- { ws, ok, recovered }.
local function history_server(opts, conns)
  return helpers.serve(opts or {}, function(ws)
    local topic = ws.request.path:sub(2)
    local since = (ws.request.query or ""):match("since=([^&]+)")
    local e = { ws = ws }
    if since then
      e.ok, e.recovered = ws:subscribe(topic, { since = since })
    else
      e.ok = ws:subscribe(topic)
    end
    conns[#conns + 1] = e
    conns[topic] = e
    while ws:receive() do end
  end)
end

local reader = helpers.reader

local function same_list(want, got)
  for i = 1, math.max(#want, #got) do
    if want[i] ~= got[i] then
      error(format("message %d is %q, expected %q (got %d, expected %d)", i, tostring(got[i]),
        tostring(want[i]), #got, #want), 2)
    end
  end
end

-- Connects to topic with since (nil: plain subscribe); the client's reader
-- and the server side's entry.
local function join(port, conns, topic, since)
  local path = "/" .. topic .. (since and ("?since=" .. since) or "")
  local ws = assert(helpers.connect(helpers.url(port, path)))
  assert(helpers.wait_until(function() return conns[topic] ~= nil end, 3))
  local e = conns[topic]
  conns[topic] = nil
  return reader(ws), e
end

local function publish_n(topic, from, to)
  local ids = {}
  for i = from, to do
    local q, d, id = duplex.publish(topic, "m" .. i)
    assert(q and d, "publish failed")
    ids[i] = id
  end
  return ids
end

local function msgs(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = "m" .. i end
  return t
end

describe("history", function()
  it("replays exactly what came after since, then live messages, with no duplicate", function()
    helpers.run(function()
      local conns = {}
      local server = history_server({}, conns)
      assert.is_true(duplex.history("h1", { size = 100 }))
      -- a history-only topic counts no subscribers
      assert.equal(0, duplex.subscribers("h1"))
      local ids = publish_n("h1", 1, 10)
      local r, e = join(server.port, conns, "h1", ids[4])
      assert.is_true(e.ok)
      assert.is_true(e.recovered)
      assert.equal(1, duplex.subscribers("h1"))
      publish_n("h1", 11, 13)
      assert(helpers.wait_until(function() return #r.got >= 9 end, 3))
      duplex.sleep(0.05)
      same_list(msgs(5, 13), r.got)
      -- "earliest" replays all held
      local r2, e2 = join(server.port, conns, "h1", "earliest")
      assert.is_true(e2.recovered)
      assert(helpers.wait_until(function() return #r2.got >= 13 end, 3))
      duplex.sleep(0.05)
      same_list(msgs(1, 13), r2.got)
      -- the newest id, a plain subscribe still works
      local id14 = select(3, duplex.publish("h1", "m14"))
      assert.equal(id14, duplex.last_id("h1"))
      local r3, e3 = join(server.port, conns, "h1")
      assert.is_true(e3.ok)
      assert.is_nil(e3.recovered)
      duplex.publish("h1", "m15")
      assert(helpers.wait_until(function() return #r3.got >= 1 end, 3))
      same_list({ "m15" }, r3.got)
      r.ws:close(); r2.ws:close(); r3.ws:close()
      duplex.history("h1", false)
    end, 10)
  end)

  it("gives increasing ids from publish (duplex.publish and ws:publish) and last_id", function()
    helpers.run(function()
      local conns = {}
      local server = history_server({}, conns)
      assert.is_nil(duplex.last_id("h2"))
      -- no history: the old two values
      assert.equal(2, select("#", duplex.publish("h2", "x")))
      duplex.history("h2", { size = 5 })
      assert.is_nil(duplex.last_id("h2"))
      local r, e = join(server.port, conns, "other")
      local prev_seq, prev_epoch
      for i = 1, 5 do
        local q, d, id
        if i % 2 == 0 then
          q, d, id = e.ws:publish("h2", "x")
        else
          q, d, id = duplex.publish("h2", "x")
        end
        assert.equal(0, q); assert.equal(0, d)
        assert.is_string(id)
        local epoch, seq = id:match("^(%x+)%-(%d+)$")
        assert(epoch, "id format: " .. id)
        seq = tonumber(seq)
        if prev_seq then
          assert.equal(prev_epoch, epoch)
          assert(seq > prev_seq, "ids increase")
        end
        prev_seq, prev_epoch = seq, epoch
        assert.equal(id, duplex.last_id("h2"))
      end
      r.ws:close()
      duplex.history("h2", false)
      assert.is_nil(duplex.last_id("h2"))
    end, 10)
  end)

  it("is not recovered when trimmed by size, for a made-up id, or an id of another epoch", function()
    helpers.run(function()
      local conns = {}
      local server = history_server({}, conns)
      duplex.history("h3", { size = 3 })
      local ids = publish_n("h3", 1, 6)
      -- only m4..m6 held: after m2 is m3, gone
      local r, e = join(server.port, conns, "h3", ids[2])
      assert.is_true(e.ok)
      assert.is_false(e.recovered)
      -- after m3: m4..m6, all held
      local r2, e2 = join(server.port, conns, "h3", ids[3])
      assert.is_true(e2.recovered)
      local epoch, seq = ids[3]:match("^(%x+)%-(%d+)$")
      local other = (epoch:sub(1, 1) == "0" and "1" or "0") .. epoch:sub(2)
      local r3, e3 = join(server.port, conns, "h3", other .. "-" .. seq)
      assert.is_false(e3.recovered)
      local r4, e4 = join(server.port, conns, "h3", "made-up")
      assert.is_false(e4.recovered)
      local r5, e5 = join(server.port, conns, "h3", epoch .. "-999")
      assert.is_false(e5.recovered)
      publish_n("h3", 7, 7)
      assert(helpers.wait_until(function()
        return #r.got >= 1 and #r2.got >= 4 and #r3.got >= 1 and #r4.got >= 1 and #r5.got >= 1
      end, 3))
      duplex.sleep(0.05)
      -- not recovered: nothing replayed, live messages only
      same_list({ "m7" }, r.got)
      same_list(msgs(4, 7), r2.got)
      same_list({ "m7" }, r3.got)
      same_list({ "m7" }, r4.got)
      same_list({ "m7" }, r5.got)
      for _, x in ipairs({ r, r2, r3, r4, r5 }) do x.ws:close() end
      duplex.history("h3", false)
    end, 10)
  end)

  it("trims by ttl and by bytes", function()
    helpers.run(function()
      local conns = {}
      local server = history_server({}, conns)
      duplex.history("ttl", { size = 100, ttl = 0.1 })
      local ids = publish_n("ttl", 1, 3)
      duplex.sleep(0.3)
      local r, e = join(server.port, conns, "ttl", ids[1])
      assert.is_false(e.recovered)
      local r2, e2 = join(server.port, conns, "ttl", "earliest")
      assert.is_true(e2.recovered) -- nothing held: nothing missed since the earliest
      -- bytes: 10 bytes hold five "mN" messages
      duplex.history("bytes", { size = 100, bytes = 10 })
      local bids = publish_n("bytes", 1, 8)
      local r3, e3 = join(server.port, conns, "bytes", bids[2])
      assert.is_false(e3.recovered)
      local r4, e4 = join(server.port, conns, "bytes", bids[3])
      assert.is_true(e4.recovered)
      assert(helpers.wait_until(function() return #r4.got >= 5 end, 3))
      duplex.sleep(0.05)
      same_list(msgs(4, 8), r4.got)
      assert.equal(0, #r.got)
      assert.equal(0, #r2.got)
      assert.equal(0, #r3.got)
      for _, x in ipairs({ r, r2, r3, r4 }) do x.ws:close() end
      duplex.history("ttl", false)
      duplex.history("bytes", false)
    end, 10)
  end)

  it("queues a replay under max_backlog: a client that does not read gets drops counted", function()
    helpers.run(function()
      local conns = {}
      local MAXB = 256 * 1024
      local server = history_server({ max_backlog = MAXB }, conns)
      duplex.history("big", { size = 200 })
      local pad = ("p"):rep(16 * 1024)
      for i = 1, 200 do duplex.publish("big", format("%08d", i) .. pad, "binary") end
      local raw = helpers.raw_ws_client(server.port, { path = "/big?since=earliest", rcvbuf = 4096 })
      assert(helpers.wait_until(function() return conns.big ~= nil end, 3))
      local e = conns.big
      assert.is_true(e.recovered)
      assert(e.ws.dropped > 0, "the replay never passed max_backlog")
      assert(e.ws.buffered < 200 * #pad, "the whole replay was queued")
      raw:close()
      duplex.history("big", false)
    end, 10)
  end)

  it("closes a subscriber with 1013 whose replay passes max_backlog under on_backlog = \"close\"", function()
    helpers.run(function()
      local conns = {}
      local server = history_server({ max_backlog = 64 * 1024, on_backlog = "close", close_timeout = 1 }, conns)
      duplex.history("bigc", { size = 100 })
      local pad = ("q"):rep(16 * 1024)
      for i = 1, 100 do duplex.publish("bigc", format("%08d", i) .. pad, "binary") end
      local raw = helpers.raw_ws_client(server.port, { path = "/bigc?since=earliest", rcvbuf = 4096 })
      assert(helpers.wait_until(function() return conns.bigc ~= nil end, 3))
      local ws = conns.bigc.ws
      assert(ws.dropped > 0)
      assert.are_not.equal("open", ws.state) -- closing with 1013
      assert.equal(0, duplex.subscribers("bigc")) -- it left the topic on closing
      local q, d = duplex.publish("bigc", "after")
      assert.equal(0, q); assert.equal(0, d)
      raw:close()
      assert(helpers.wait_until(function() return ws.state == "closed" end, 3))
      duplex.history("bigc", false)
    end, 10)
  end)

  it("history(topic, false) lets the topic go; checks its options", function()
    helpers.run(function()
      local conns = {}
      local server = history_server({}, conns)
      duplex.history("h6", { size = 2 })
      local ids = publish_n("h6", 1, 2)
      assert.is_true(duplex.history("h6", false))
      assert.is_nil(duplex.last_id("h6"))
      assert.equal(2, select("#", duplex.publish("h6", "x")))
      local r, e = join(server.port, conns, "h6", ids[1])
      assert.is_true(e.ok)
      assert.is_false(e.recovered)
      r.ws:close()
      assert(helpers.wait_until(function() return duplex.subscribers("h6") == 0 end, 3))
      -- a new history has new ids: the old ones are not recovered
      duplex.history("h6", { size = 2 })
      local r2, e2 = join(server.port, conns, "h6", ids[1])
      assert.is_false(e2.recovered)
      r2.ws:close()
      duplex.history("h6", false)
      local bad = {
        { nil, "options table" }, { {}, "size" }, { { size = 0 }, "size" }, { { size = 1.5 }, "size" },
        { { size = "3" }, "size" }, { { size = 3, ttl = -1 }, "ttl" }, { { size = 3, bytes = 0 }, "bytes" },
        { { size = 3, sise = 1 }, "sise" },
      }
      for _, b in ipairs(bad) do
        local ok, err = pcall(duplex.history, "h7", b[1])
        assert(not ok, "accepted " .. tostring(b[2]))
        assert.matches(b[2], err, 1, true)
      end
      local _, err = pcall(function() local x = duplex.history("h7", {}); return x end)
      assert.matches("history_spec.lua", err, 1, true)
      assert.is_nil(duplex.last_id("h7"))
      -- subscribe's options
      local r3, e3 = join(server.port, conns, "h8")
      assert.error_matches(function() e3.ws:subscribe("h8", { sinse = "x" }) end, "sinse")
      assert.error_matches(function() e3.ws:subscribe("h8", 5) end, "options table")
      r3.ws:close()
    end, 10)
  end)
end)
