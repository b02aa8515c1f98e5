-- Shared test code for the duplex specs.
--
-- helpers.run(fn, timeout) runs fn as duplex's main coroutine with a
-- watchdog, then tears down whatever the test left (servers, raw sockets,
-- connections) and checks that the loop really drained, so that one test
-- can never hang the next: busted runs every spec file in one Lua state and
-- duplex.core keeps one loop per state.
--
-- The raw peers (helpers.raw_client, helpers.raw_server) are LuaSocket
-- sockets in non-blocking mode, polled with duplex.sleep from inside a duplex
-- coroutine, so they share the scheduler with the code under test. Every
-- read takes a timeout. Only 127.0.0.1 (and ::1 for the IPv6 case) is used.
local duplex = require "duplex"
local core = require "duplex.core"
local scheduler = require "duplex.scheduler"
local socket = require "socket"

local helpers = { duplex = duplex, socket = socket }

helpers.PUC51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")
helpers.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local floor, char, byte, concat = math.floor, string.char, string.byte, table.concat
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

-- Bitwise XOR of two bytes on every Lua we run on ---------------------------

local bxor
if rawget(_G, "jit") then
  bxor = require("bit").bxor
elseif _VERSION == "Lua 5.1" or _VERSION == "Lua 5.2" then
  local nib = {}
  for a = 0, 15 do
    nib[a] = {}
    for b = 0, 15 do
      local r, bit = 0, 1
      for _ = 1, 4 do
        local x, y = floor(a / bit) % 2, floor(b / bit) % 2
        if x ~= y then r = r + bit end
        bit = bit * 2
      end
      nib[a][b] = r
    end
  end
  bxor = function(a, b)
    return nib[floor(a / 16)][floor(b / 16)] * 16 + nib[a % 16][b % 16]
  end
else
  bxor = load("return function(a, b) return a ~ b end")()
end
helpers.bxor = bxor

-- Masks (or unmasks) s with the 4-byte key.
function helpers.mask(s, key)
  if key == "\0\0\0\0" or #s == 0 then return s end
  local k = { byte(key, 1, 4) }
  local out, n = {}, #s
  for i = 1, n, 4096 do
    local j = math.min(i + 4095, n)
    local bytes = { byte(s, i, j) }
    for x = 1, #bytes do
      bytes[x] = bxor(bytes[x], k[(i + x - 2) % 4 + 1])
    end
    out[#out + 1] = char(unpack(bytes))
  end
  return concat(out)
end

-- Tracking, so that a failed test leaves nothing behind ---------------------

local tracked = { servers = {}, ws = {}, sockets = {} }

function helpers.track_server(s)
  tracked.servers[#tracked.servers + 1] = s
  return s
end

function helpers.track_ws(ws)
  tracked.ws[#tracked.ws + 1] = ws
  return ws
end

function helpers.track_socket(sock)
  tracked.sockets[#tracked.sockets + 1] = sock
  return sock
end

local function teardown()
  for _, s in ipairs(tracked.servers) do s:close() end
  for _, sock in ipairs(tracked.sockets) do sock:close() end
  for _, ws in ipairs(tracked.ws) do
    if ws.state ~= "closed" then ws:abort() end
  end
  tracked = { servers = {}, ws = {}, sockets = {} }
end

-- Runs the loop (without a main coroutine) until nothing is left, at most
-- `seconds`. true when the loop drained.
function helpers.drain(seconds)
  local deadline = socket.gettime() + (seconds or 3)
  while core.alive() do
    if socket.gettime() > deadline then return false end
    duplex.step(0.02)
  end
  return true
end

-- The harness ----------------------------------------------------------------

-- How helpers.run drives the loop:
--   "run"  - duplex.run(main) with a watchdog coroutine (the intended shape);
--   "step" - the same main coroutine, driven by duplex.step(0.05) in a plain
--            loop with the deadline checked outside the loop.
-- "run" is the default; DUPLEX_SPEC_DRIVER=step drives the same tests
-- through duplex.step, which also exercises the embedding path.
helpers.DRIVER = os.getenv("DUPLEX_SPEC_DRIVER") or "run"

local function finish(ok, err, timed_out, timeout)
  teardown()
  local drained = helpers.drain(3)
  if not ok then error(err, 0) end
  if timed_out then
    error(("test timed out after %g s (the watchdog stopped the loop)"):format(timeout), 0)
  end
  if not drained then
    error("the test left the duplex loop busy (something was still running 3 s after it)", 0)
  end
  return true
end

-- Runs fn() as the main coroutine. Fails the test when fn raises, when it
-- takes longer than timeout seconds (default 10), or when the loop does not
-- drain afterwards.
function helpers.run(fn, timeout)
  timeout = timeout or 10
  if helpers.DRIVER == "run" then
    local state = { done = false, timed_out = false }
    local ok, err = pcall(duplex.run, function()
      duplex.spawn(function()
        local deadline = duplex.now() + timeout
        while not state.done do
          if duplex.now() > deadline then
            state.timed_out = true
            duplex.stop()
            return
          end
          duplex.sleep(0.02)
        end
      end)
      fn()
      state.done = true
      duplex.stop()
    end)
    state.done = true -- lets the watchdog finish during the drain
    return finish(ok, err, state.timed_out, timeout)
  end
  local state = { done = false }
  scheduler.spawn(function()
    fn()
    state.done = true
  end, function(_, _, trace)
    state.failure = trace
    state.done = true
  end)
  local deadline = socket.gettime() + timeout
  local timed_out = false
  while not state.done do
    if socket.gettime() > deadline then
      timed_out = true
      break
    end
    duplex.step(0.05)
  end
  return finish(state.failure == nil, state.failure, timed_out, timeout)
end

-- A client that reads every message into r.got until the connection ends.
function helpers.reader(ws)
  local r = { ws = ws, got = {}, done = false }
  duplex.spawn(function()
    while true do
      local msg, kind, code, reason = ws:receive()
      if not msg then
        r.code, r.reason = code, reason
        break
      end
      r.got[#r.got + 1] = msg
    end
    r.done = true
  end)
  return r
end

-- Calls pred() every 5 ms until it returns a true value (returned) or
-- timeout seconds passed (then nil). Call from a coroutine.
function helpers.wait_until(pred, timeout)
  local deadline = duplex.now() + (timeout or 5)
  while true do
    local v = pred()
    if v then return v end
    if duplex.now() > deadline then return nil end
    duplex.sleep(0.005)
  end
end

-- Measures fn's wall time: returns elapsed seconds and fn's results packed
-- in a table (with n).
function helpers.timed(fn, ...)
  local t0 = socket.gettime()
  local r = (function(...) return { n = select("#", ...), ... } end)(fn(...))
  return socket.gettime() - t0, r
end

-- duplex servers and clients ---------------------------------------------------

-- duplex.serve with the server and every connection tracked.
function helpers.serve(opts, handler)
  opts = opts or {}
  opts.host = opts.host or "127.0.0.1"
  opts.port = opts.port or 0
  local s, err = duplex.serve(opts, function(ws)
    helpers.track_ws(ws)
    return handler(ws)
  end)
  assert(s, err)
  return helpers.track_server(s)
end

-- An echo handler written as a while loop (PUC Lua 5.1 cannot yield in a
-- generic for). `log`, if given, receives what the handler saw at the end.
function helpers.echo_handler(log)
  return function(ws)
    local n = 0
    while true do
      local msg, kind, code, reason = ws:receive()
      if not msg then
        if log then
          log.closed, log.code, log.reason, log.count = kind, code, reason, n
          log.ws = ws
        end
        return
      end
      n = n + 1
      ws:send(msg, kind)
    end
  end
end

function helpers.echo_server(opts, log)
  return helpers.serve(opts, helpers.echo_handler(log))
end

function helpers.url(port, path)
  return "ws://127.0.0.1:" .. port .. (path or "/")
end

-- duplex.connect with the connection tracked.
function helpers.connect(url, opts)
  local ws, err, response = duplex.connect(url, opts)
  if ws then helpers.track_ws(ws) end
  return ws, err, response
end

-- Connects our client to port and checks a round trip and a clean close:
-- the "the server still serves a normal client" check.
function helpers.check_echo(port)
  local ws, err = helpers.connect(helpers.url(port))
  assert(ws, "a normal client could not connect: " .. tostring(err))
  assert(ws:send("still alive"))
  local msg, kind = ws:receive()
  assert(msg == "still alive" and kind == "text", "no echo from the server: " .. tostring(msg) .. " " .. tostring(kind))
  assert(ws:close() == true, "the close handshake did not finish cleanly")
  return true
end

-- A TCP port nobody listens on.
function helpers.closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Frames -------------------------------------------------------------------

local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = char(n % 256)
    n = floor(n / 256)
  end
  return concat(t)
end
helpers.be = be

function helpers.u16(n) return be(n, 2) end

-- Builds one frame. f: { opcode = 1, fin = true, rsv = 0 (bits 1..7 as a
-- number: 4 = RSV1, 2 = RSV2, 1 = RSV3), payload = "", mask = true | false |
-- "KEYS" (a 4-byte key; true picks one), len = forced length form:
-- "7", "16" or "64" }.
function helpers.frame(f)
  local payload = f.payload or ""
  local fin = f.fin == nil and true or f.fin
  local b0 = (fin and 128 or 0) + (f.rsv or 0) * 16 + (f.opcode or 1)
  local n = #payload
  local form = f.len or (n <= 125 and "7" or n <= 65535 and "16" or "64")
  local maskbit = f.mask == false and 0 or 128
  local head
  if form == "7" then
    head = char(b0, maskbit + n)
  elseif form == "16" then
    head = char(b0, maskbit + 126) .. be(n, 2)
  else
    head = char(b0, maskbit + 127) .. be(n, 8)
  end
  if f.mask == false then return head .. payload end
  local key = type(f.mask) == "string" and f.mask or (n > 65536 and "\0\0\0\0" or "\55\250\33\61")
  return head .. key .. helpers.mask(payload, key)
end

-- A close payload: 2-byte code and reason.
function helpers.close_payload(code, reason)
  return be(code, 2) .. (reason or "")
end

-- Reads a 2-byte code and reason out of a close frame's payload.
function helpers.parse_close(payload)
  if #payload < 2 then return nil, "" end
  return byte(payload, 1) * 256 + byte(payload, 2), payload:sub(3)
end

-- The accept key for a Sec-WebSocket-Key, through the openssl CLI.
function helpers.accept_key(key)
  assert(key:match("^[%w+/=]+$"), "odd key")
  local p = io.popen("printf %s '" .. key .. helpers.GUID .. "' | openssl sha1 -binary | base64")
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+", ""))
end

-- Raw TCP peers -------------------------------------------------------------

local Raw = {}
Raw.__index = Raw

local function wrap_sock(sock)
  sock:settimeout(0)
  helpers.track_socket(sock)
  return setmetatable({ sock = sock, buf = "", eof = false }, Raw)
end

-- Reads what the kernel has, but no more than `want` bytes (default 64
-- KiB) in all. Returns true when new bytes came in.
function Raw:poll(want)
  if self.eof then return false end
  local got = false
  want = want or 65536
  while want > 0 do
    local data, err, partial = self.sock:receive(want)
    local chunk = data or partial
    if chunk and #chunk > 0 then
      self.buf = self.buf .. chunk
      want = want - #chunk
      got = true
    end
    if not data then
      if err ~= "timeout" then
        self.eof = true
        self.eof_err = err
      end
      return got
    end
  end
  return got
end

-- Waits until the buffer holds n bytes. true, or nil, "closed" | "timeout".
function Raw:fill(n, timeout)
  local deadline = duplex.now() + (timeout or 5)
  while #self.buf < n do
    self:poll(n - #self.buf)
    if #self.buf >= n then break end
    if self.eof then return nil, "closed" end
    if duplex.now() > deadline then return nil, "timeout" end
    duplex.sleep(0.002)
  end
  return true
end

-- Takes n bytes off the buffer (waiting for them).
function Raw:read(n, timeout)
  local ok, err = self:fill(n, timeout)
  if not ok then return nil, err end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

-- Reads up to and including the first CRLFCRLF: status or request line,
-- headers (lower-case names) and the raw head.
function Raw:read_head(timeout)
  local deadline = duplex.now() + (timeout or 5)
  while true do
    local e = self.buf:find("\r\n\r\n", 1, true)
    if e then
      local head = self.buf:sub(1, e + 3)
      self.buf = self.buf:sub(e + 4)
      local first = head:match("^([^\r\n]*)")
      local headers = {}
      for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        headers[name:lower()] = value
      end
      return { line = first, status = tonumber(first:match("^HTTP/1%.1 (%d%d%d)")), headers = headers, raw = head }
    end
    self:poll()
    if not self.buf:find("\r\n\r\n", 1, true) then
      if self.eof then return nil, "closed" end
      if duplex.now() > deadline then return nil, "timeout" end
      duplex.sleep(0.002)
    end
  end
end

-- Sends all of data (polling while the kernel buffer is full).
function Raw:send(data, timeout)
  local deadline = duplex.now() + (timeout or 5)
  local i = 1
  while i <= #data do
    local last, err, partial = self.sock:send(data, i)
    if last then
      i = last + 1
    else
      if err ~= "timeout" then return nil, err end
      i = (partial or i - 1) + 1
      if i <= #data then
        if duplex.now() > deadline then return nil, "timeout" end
        duplex.sleep(0.002)
      end
    end
  end
  return true
end

-- Sends data in pieces of `size` bytes with a short pause between them, so
-- that each goes out in its own TCP segment.
function Raw:send_chunked(data, size, pause)
  for i = 1, #data, size do
    local ok, err = self:send(data:sub(i, i + size - 1))
    if not ok then return nil, err end
    duplex.sleep(pause or 0.001)
  end
  return true
end

function Raw:send_frame(f) return self:send(helpers.frame(f)) end

-- Reads one frame: { opcode, fin, rsv, masked, key, payload } or nil, err.
function Raw:read_frame(timeout)
  local deadline = duplex.now() + (timeout or 5)
  local function left() return math.max(0, deadline - duplex.now()) end
  local ok, err = self:fill(2, left())
  if not ok then return nil, err end
  local b0, b1 = byte(self.buf, 1, 2)
  local n, hl = b1 % 128, 2
  if n == 126 then hl = 4 elseif n == 127 then hl = 10 end
  local masked = b1 >= 128
  if masked then hl = hl + 4 end
  ok, err = self:fill(hl, left())
  if not ok then return nil, err end
  if n == 126 then
    n = byte(self.buf, 3) * 256 + byte(self.buf, 4)
  elseif n == 127 then
    n = 0
    for i = 3, 10 do n = n * 256 + byte(self.buf, i) end
  end
  ok, err = self:fill(hl + n, left())
  if not ok then return nil, err end
  local key = masked and self.buf:sub(hl - 3, hl) or nil
  local payload = self.buf:sub(hl + 1, hl + n)
  self.buf = self.buf:sub(hl + n + 1)
  if masked then payload = helpers.mask(payload, key) end
  return {
    opcode = b0 % 16,
    fin = b0 >= 128,
    rsv = floor(b0 / 16) % 8,
    masked = masked,
    key = key,
    payload = payload,
  }
end

-- Reads frames until a close frame; returns code, reason, frames before it.
-- nil, err when the connection ends (or the time runs out) first.
function Raw:read_close(timeout)
  local deadline = duplex.now() + (timeout or 5)
  local before = {}
  while true do
    local f, err = self:read_frame(math.max(0, deadline - duplex.now()))
    if not f then return nil, err, before end
    if f.opcode == 8 then
      local code, reason = helpers.parse_close(f.payload)
      return code or "none", reason, before
    end
    before[#before + 1] = f
  end
end

-- Waits for the peer to close TCP. true, or nil, "timeout" (bytes that came
-- meanwhile stay in buf).
function Raw:wait_eof(timeout)
  local deadline = duplex.now() + (timeout or 5)
  while not self.eof do
    self:poll()
    if self.eof then break end
    if duplex.now() > deadline then return nil, "timeout" end
    duplex.sleep(0.002)
  end
  return true
end

function Raw:close()
  self.sock:close()
end

helpers.Raw = Raw

-- A raw client connected to 127.0.0.1:port. opts.rcvbuf sets SO_RCVBUF
-- before connecting.
function helpers.raw_client(port, opts)
  opts = opts or {}
  local sock = assert(opts.host and opts.host:find(":") and socket.tcp6() or socket.tcp4())
  if opts.rcvbuf then sock:setoption("recv-buffer-size", opts.rcvbuf) end
  sock:settimeout(2)
  local ok, err = sock:connect(opts.host or "127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:setoption("tcp-nodelay", true)
  return wrap_sock(sock)
end

helpers.SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

-- A hand-written upgrade request. o: path, key, version, extra (lines
-- without CRLF), host.
function helpers.upgrade_request(o)
  o = o or {}
  local lines = {
    "GET " .. (o.path or "/") .. " HTTP/1.1",
    "Host: " .. (o.host or "127.0.0.1"),
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. (o.key or helpers.SAMPLE_KEY),
    "Sec-WebSocket-Version: " .. (o.version or "13"),
  }
  for _, l in ipairs(o.extra or {}) do lines[#lines + 1] = l end
  return concat(lines, "\r\n") .. "\r\n\r\n"
end

-- A raw client that has finished the opening handshake with our server.
function helpers.raw_ws_client(port, o)
  local raw = assert(helpers.raw_client(port, o))
  assert(raw:send(helpers.upgrade_request(o)))
  local head = assert(raw:read_head(3))
  assert(head.status == 101, "expected 101, got: " .. tostring(head.line))
  assert(head.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    "bad accept key: " .. tostring(head.headers["sec-websocket-accept"]))
  return raw, head
end

-- Raw server: listens on 127.0.0.1:0 and accepts our client.
local RawServer = {}
RawServer.__index = RawServer

function helpers.raw_server(host)
  local s = assert(socket.bind(host or "127.0.0.1", 0))
  s:settimeout(0)
  helpers.track_socket(s)
  local _, port = s:getsockname()
  return setmetatable({ sock = s, port = tonumber(port) }, RawServer)
end

function RawServer:url(path) return helpers.url(self.port, path) end

function RawServer:accept(timeout)
  local deadline = duplex.now() + (timeout or 5)
  while true do
    local c = self.sock:accept()
    if c then
      c:setoption("tcp-nodelay", true)
      return wrap_sock(c)
    end
    if duplex.now() > deadline then return nil, "timeout" end
    duplex.sleep(0.002)
  end
end

function RawServer:close() self.sock:close() end

-- Accepts one client, reads its request and answers it. o.status (101),
-- o.accept (the right key unless given), o.headers (extra lines), o.raw (a
-- whole response instead). Returns the raw peer and the request head.
function RawServer:handshake(o)
  o = o or {}
  local peer = assert(self:accept(o.timeout))
  local req = assert(peer:read_head(o.timeout))
  if o.raw then
    assert(peer:send(o.raw))
    return peer, req
  end
  local status = o.status or 101
  local lines
  if status == 101 then
    lines = {
      "HTTP/1.1 101 Switching Protocols",
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Accept: " .. (o.accept or helpers.accept_key(req.headers["sec-websocket-key"])),
    }
  else
    lines = { "HTTP/1.1 " .. status .. " " .. (o.reason or "Nope"), "Content-Length: 0" }
  end
  for _, l in ipairs(o.headers or {}) do lines[#lines + 1] = l end
  assert(peer:send(concat(lines, "\r\n") .. "\r\n\r\n"))
  return peer, req
end

-- Starts duplex.connect in its own coroutine; the result table fills in
-- (done, ws, err, response) when it returns.
function helpers.connect_async(url, opts)
  local r = { done = false }
  duplex.spawn(function()
    r.ws, r.err, r.response = helpers.connect(url, opts)
    r.done = true
  end)
  return r
end

return helpers
