-- A client/server session for the valgrind leak check (.ci/valgrind):
-- inside one duplex.run it starts a plain server, a permessage-deflate
-- server and a TLS server (certificate made by the openssl CLI in a
-- temporary directory), runs connect / echo / close cycles against them and
-- a set of abnormal endings (abort, handler error, protocol error, RST
-- mid-frame, handshake timeout, refused upgrade, malformed head, failed TLS
-- verification, connection refused, http answers, event streams), then
-- closes everything.
-- The process then exits normally, so lua_close runs every finalizer and
-- whatever is still allocated is a leak.
--
--   lua5.4 spec/hostile/cycles.lua [CYCLES]      (default 200)
--
-- Needs LUA_PATH to find lua/ and spec/helpers, LUA_CPATH the core.
local helpers = require "helpers"
local duplex = helpers.duplex

local CYCLES = tonumber(arg and arg[1]) or 200

-- A self-signed certificate for 127.0.0.1 ------------------------------------

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. dir))
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
local ok = os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes " ..
  "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 2 -keyout %s -out %s 2>/dev/null"):format(key, cert))
local have_tls = ok == true or ok == 0
if not have_tls then io.stderr:write("cycles: openssl could not make a certificate: TLS cycles skipped\n") end

local counts = {}
local function count(what) counts[what] = (counts[what] or 0) + 1 end

local function echo(ws)
  while true do
    local msg, kind = ws:receive()
    if not msg then return end
    ws:send(msg, kind)
  end
end

local function handler(ws)
  local path = ws.request.path
  if path == "/error" then
    ws:receive()
    error("deliberate handler error")
  elseif path == "/topic" then
    assert(ws:subscribe("cycle"))
    assert(ws:subscribe("cycle:" .. tostring(ws.remote)))
    assert(ws:send("subscribed"))
    echo(ws)
  elseif path == "/server-closes" then
    ws:receive()
    ws:close(4000, "server leaves")
  else
    echo(ws)
  end
end

local errors_reported = 0
local function on_error() errors_reported = errors_reported + 1 end

local function client_cycle(url, opts, payload)
  local ws = assert(duplex.connect(url, opts))
  assert(ws:send(payload, "binary"))
  local got = assert(ws:receive())
  assert(got == payload, "echo mismatch")
  assert(ws:send("text é"))
  assert(ws:receive() == "text é")
  assert(ws:close(1000, "bye"))
end

helpers.run(function()
  local plain = helpers.serve({ handshake_timeout = 0.5, close_timeout = 1, on_error = on_error,
    http = function(req) return 200, { ["Content-Type"] = "text/plain" }, "hello " .. req.path end,
    sse = function(req) return { req.path:sub(2) } end }, handler)
  local deflate = helpers.serve({ compression = true, close_timeout = 1, on_error = on_error }, handler)
  local deflate_nct = helpers.serve({ compression = { context_takeover = false, level = 1 }, on_error = on_error }, handler)
  local tls
  if have_tls then
    tls = helpers.serve({ tls = { cert = cert, key = key }, compression = true, on_error = on_error }, handler)
  end
  local strict = helpers.serve({ origins = { "http://good.example" } }, handler)

  local big = ("0123456789abcdef"):rep(4096) -- 64 KiB, compressible
  local kinds = { "plain", "deflate", "deflate_nct", "plain_nocomp", "tls" }
  for i = 1, CYCLES do
    local kind = kinds[(i - 1) % #kinds + 1]
    local payload = (i % 7 == 0) and big or ("m" .. i)
    if kind == "plain" then
      client_cycle(helpers.url(plain.port, "/echo"), nil, payload)
    elseif kind == "deflate" then
      client_cycle(helpers.url(deflate.port, "/echo"), nil, payload)
    elseif kind == "deflate_nct" then
      client_cycle(helpers.url(deflate_nct.port, "/echo"), { compression = { context_takeover = false } }, payload)
    elseif kind == "plain_nocomp" then
      client_cycle(helpers.url(deflate.port, "/echo"), { compression = false }, payload)
    elseif tls then
      client_cycle("wss://127.0.0.1:" .. tls.port .. "/echo", { tls = { ca = cert } }, payload)
    end
    count(kind)
  end

  -- Topics: one publish shared by plain, compressed (with and without
  -- context takeover) and TLS subscribers, who then leave by abort and close
  for round = 1, 10 do
    local subs = {
      assert(duplex.connect(helpers.url(plain.port, "/topic"))),
      assert(duplex.connect(helpers.url(deflate.port, "/topic"))),
      assert(duplex.connect(helpers.url(deflate_nct.port, "/topic"), { compression = { context_takeover = false } })),
    }
    if tls then subs[#subs + 1] = assert(duplex.connect("wss://127.0.0.1:" .. tls.port .. "/topic", { tls = { ca = cert } })) end
    for _, ws in ipairs(subs) do assert(ws:receive() == "subscribed") end
    local payload = (round % 2 == 0) and big or "hello topic"
    local queued = duplex.publish("cycle", payload)
    assert(queued == #subs, "published to " .. tostring(queued))
    for _, ws in ipairs(subs) do assert(ws:receive() == payload) end
    subs[1]:abort()
    subs[1]:wait_closed()
    for i = 2, #subs do assert(subs[i]:close()) end
    count("topic")
  end

  -- Event streams: a topic with history, a resume, a binary message skipped,
  -- a stream that ends cleanly and one reset with events queued
  duplex.history("feed", { size = 8 })
  local function stream(extra)
    local r = assert(helpers.raw_client(plain.port))
    assert(r:send("GET /feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" .. (extra or "") .. "\r\n"))
    assert(assert(r:read_head(3)).status == 200)
    return r
  end
  for round = 1, 10 do
    local a = stream()
    assert(helpers.wait_until(function() return duplex.subscribers("feed") == 1 end, 3))
    local _, _, id = duplex.publish("feed", "event " .. round .. "\nsecond line")
    duplex.publish("feed", "\0", "binary")
    local b = stream("Last-Event-ID: " .. id .. "\r\n")
    assert(helpers.wait_until(function() return duplex.subscribers("feed") == 2 end, 3))
    duplex.publish("feed", big)
    assert(a:fill(#big, 3))
    b.sock:setoption("linger", { on = true, timeout = 0 })
    b:close()
    a:close()
    assert(helpers.wait_until(function() return duplex.subscribers("feed") == 0 end, 3))
    count("event stream")
  end
  duplex.history("feed", false)

  -- Abnormal endings ----------------------------------------------------------

  for _, port in ipairs({ plain.port, deflate.port }) do
    -- our client aborts mid-session
    local ws = assert(duplex.connect(helpers.url(port, "/echo")))
    assert(ws:send(big))
    ws:abort()
    ws:wait_closed()
    count("abort")

    -- the handler raises: the client sees 1011
    ws = assert(duplex.connect(helpers.url(port, "/error")))
    assert(ws:send("boom"))
    local msg, _, code = ws:receive()
    assert(msg == nil and code == 1011, "expected 1011, got " .. tostring(code))
    count("handler error")

    -- the server starts the close
    ws = assert(duplex.connect(helpers.url(port, "/server-closes")))
    assert(ws:send("x"))
    msg, _, code = ws:receive()
    assert(msg == nil and code == 4000)
    count("server close")

    -- a raw peer breaks the protocol (unmasked frame): 1002
    local raw = helpers.raw_ws_client(port)
    assert(raw:send_frame({ opcode = 1, payload = "x", mask = false }))
    assert(raw:read_close(3) == 1002)
    raw:close()
    count("protocol error")

    -- a raw peer sends invalid UTF-8: 1007
    raw = helpers.raw_ws_client(port)
    assert(raw:send_frame({ opcode = 1, payload = "ok\255" }))
    assert(raw:read_close(3) == 1007)
    raw:close()
    count("bad utf-8")

    -- a raw peer vanishes mid-frame (RST)
    raw = helpers.raw_ws_client(port)
    assert(raw:send("\130\254\16\0\0\0\0\0" .. ("z"):rep(1000)))
    duplex.sleep(0.05)
    raw.sock:setoption("linger", { on = true, timeout = 0 })
    raw:close()
    count("rst")
  end

  -- a compressed message that is not valid deflate data: 1007
  local raw = helpers.raw_ws_client(deflate.port, { extra = { "Sec-WebSocket-Extensions: permessage-deflate" } })
  assert(raw:send_frame({ opcode = 2, rsv = 4, payload = "\255\255\255\255garbage" }))
  assert(raw:read_close(3) == 1007)
  raw:close()
  count("bad deflate")

  -- slow handshake: dropped at the 0.5 s timeout
  raw = assert(helpers.raw_client(plain.port))
  assert(raw:send("GET / HTTP/1.1\r\n"))
  assert(raw:wait_eof(3))
  raw:close()
  count("handshake timeout")

  -- malformed and oversized heads
  raw = assert(helpers.raw_client(plain.port))
  assert(raw:send("garbage\r\n\r\n"))
  assert(raw:wait_eof(3))
  raw:close()
  raw = assert(helpers.raw_client(plain.port))
  raw:send("GET / HTTP/1.1\r\nX: " .. ("y"):rep(20000) .. "\r\n\r\n")
  raw:wait_eof(3)
  raw:close()
  count("bad head")

  -- plain HTTP through the http option
  raw = assert(helpers.raw_client(plain.port))
  assert(raw:send("GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
  local head = assert(raw:read_head(3))
  assert(head.status == 200)
  raw:close()
  count("http")

  -- refused upgrade (origin) and refused connection
  local ws, err = duplex.connect(helpers.url(strict.port), { origin = "http://evil.example" })
  assert(not ws and err:match("403"), err)
  ws, err = duplex.connect(helpers.url(helpers.closed_port()))
  assert(not ws and err, "connected to a closed port")
  count("refused")

  if tls then
    -- TLS: a client that does not trust the certificate; an aborted session
    ws, err = duplex.connect("wss://127.0.0.1:" .. tls.port .. "/")
    assert(not ws and err:match("certificate verify failed"), err)
    ws = assert(duplex.connect("wss://127.0.0.1:" .. tls.port .. "/echo", { tls = { ca = cert } }))
    assert(ws:send(big))
    ws:abort()
    ws:wait_closed()
    ws = assert(duplex.connect("wss://127.0.0.1:" .. tls.port .. "/error", { tls = { ca = cert } }))
    assert(ws:send("boom"))
    assert(select(3, ws:receive()) == 1011)
    -- plain bytes to the TLS port
    raw = assert(helpers.raw_client(tls.port))
    raw:send("GET / HTTP/1.1\r\n\r\n")
    raw:wait_eof(3)
    raw:close()
    count("tls failures")
  end

  duplex.sleep(0.2) -- let the servers finish the aborted connections
  plain:close()
  deflate:close()
  deflate_nct:close()
  strict:close()
  if tls then tls:close() end
end, 120)

assert(errors_reported >= 2, "the handler errors were not reported")
os.execute("rm -rf " .. dir)

local parts = {}
for k, v in pairs(counts) do parts[#parts + 1] = k .. "=" .. v end
table.sort(parts)
print("cycles: done: " .. table.concat(parts, " "))

-- drop every reference and collect, so that what remains at lua_close is ours
helpers = nil
duplex = nil
package.loaded.helpers = nil
for _ = 1, 4 do collectgarbage("collect") end
