-- A client that stays connected: duplex.connect with `reconnect`. The ws it
-- returns outlives its TCP connections. One coroutine (the supervisor)
-- watches the current connection and, when it ends, decides whether to try
-- again (by HTTP status, close code, error, or should_retry), waits a
-- backoff delay with full jitter and dials again; on_open runs on every
-- connection before what was queued offline goes out. The first dial runs
-- in the caller's coroutine, so connect returns once the first connection
-- is open or retries have stopped.
local core = require "duplex.core"
local scheduler = require "duplex.scheduler"
local WS = require "duplex.ws"

local wait, wake, spawn, now_ms, current =
  scheduler.wait, scheduler.wake, scheduler.spawn, scheduler.now_ms, scheduler.current
local type, error, tostring, tonumber, setmetatable, rawget, pairs, ipairs =
  type, error, tostring, tonumber, setmetatable, rawget, pairs, ipairs
local floor, huge, min, max, byte = math.floor, math.huge, math.min, math.max, string.byte
local io, os = io, os

local M = {}

-- The most seconds the first retry after a server's close frame waits (a
-- random share of it), as RFC 6455 section 7.2.3 asks, so that the clients
-- of a restarting server do not all come back at once. Tests shorten it.
M.close_delay = 5

local DEFAULTS = { min = 0.5, max = 30, factor = 2, jitter = true, attempts = huge, min_uptime = 5 }
local DEFAULT_QUEUE = 256
local DEFAULT_HIGH_WATER = 1024 * 1024

-- Options that only a reconnecting client reads.
local ONLY = { "on_open", "on_close", "queue", "should_retry" }

-- The first of them set in opts, or nil.
function M.only_option(opts)
  for _, name in ipairs(ONLY) do
    if opts[name] ~= nil then return name end
  end
  return nil
end

-- Random numbers of our own (Park-Miller): math.random is the
-- application's, and LuaJIT and Lua 5.1 seed it alike in every process,
-- which would bring every client back at the same instant.
local seed = (tonumber(tostring({}):match("0x(%x+)") or "7", 16) + floor(core.now() * 1000) +
  os.time() + floor(os.clock() * 1e6)) % 2147483646 + 1

local function random()
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647
end

-- Checks -----------------------------------------------------------------------

local function check_number(v, name, lo)
  if type(v) ~= "number" or v ~= v or v < lo then
    error("option 'reconnect." .. name .. "' must be a number >= " .. lo, 5)
  end
end

-- The backoff settings of opts.reconnect (true or a table); raises at the
-- line that called duplex.connect.
local function config(v)
  if v == true then v = {} end
  if type(v) ~= "table" then error("option 'reconnect' must be true or a table", 4) end
  local cfg = {}
  for name, default in pairs(DEFAULTS) do
    if v[name] == nil then cfg[name] = default else cfg[name] = v[name] end
  end
  check_number(cfg.min, "min", 0)
  check_number(cfg.max, "max", cfg.min)
  check_number(cfg.factor, "factor", 1)
  check_number(cfg.attempts, "attempts", 1)
  check_number(cfg.min_uptime, "min_uptime", 0)
  return cfg
end

-- Offline sends are checked as the connection would check them.
local function valid_utf8(s)
  if not s:find("[\128-\255]") then return true end
  local i, n = 1, #s
  local function cont(j, lo, hi)
    local b = byte(s, j)
    return b and b >= (lo or 0x80) and b <= (hi or 0xBF)
  end
  while i <= n do
    local c = byte(s, i)
    local len, lo, hi = 1, nil, nil
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c == 0xE0 then len, lo = 3, 0xA0
    elseif c == 0xED then len, hi = 3, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then len = 3
    elseif c == 0xF0 then len, lo = 4, 0x90
    elseif c >= 0xF1 and c <= 0xF3 then len = 4
    elseif c == 0xF4 then len, hi = 4, 0x8F
    else return false end
    if len > 1 and not cont(i + 1, lo, hi) then return false end
    for j = i + 2, i + len - 1 do
      if not cont(j) then return false end
    end
    i = i + len
  end
  return true
end

-- What retries --------------------------------------------------------------------

local RETRY_STATUS = { [408] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }
local STOP_CODE = { [1002] = true, [1003] = true, [1007] = true, [1008] = true, [1009] = true, [1010] = true }
-- Failures that another try cannot mend: the URL, the TLS settings, the proxy's URL.
local FINAL = { "^invalid URL", "^URL scheme", "^a WebSocket URL", "^user information", "^invalid host",
  "^invalid port", "^certificate verify failed", "^cannot load", "^a TLS", "^invalid proxy",
  "^unsupported proxy", "^proxy credentials" }

-- code: an HTTP status (below 1000) of a refused dial, or a close code.
local function default_retry(err, code)
  if code and code < 1000 then return RETRY_STATUS[code] or false end
  if code then return not (STOP_CODE[code] or (code >= 4500 and code <= 4999)) end
  for _, pattern in ipairs(FINAL) do
    if err:find(pattern) then return false end
  end
  return true
end

local function should_retry(self, err, code, reason)
  if self._tries >= self._cfg.attempts then return false end
  local hook = self._should_retry
  if hook then
    local verdict = hook(err, code, reason)
    if verdict ~= nil then return verdict and true or false end
  end
  return default_retry(err, code)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
  Nov = 11, Dec = 12 }

-- Seconds a refusal's Retry-After asks for (delay-seconds or an HTTP date), or nil.
local function retry_after(response)
  local v = response and response.headers and response.headers["retry-after"]
  if not v then return nil end
  local seconds = tonumber(v:match("^%s*(%d+)%s*$"))
  if seconds then return seconds end
  local d, mon, y, h, mi, s = v:match("(%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT")
  if not d or not MONTHS[mon] then return nil end
  -- os.time reads a table as local time: read now the same way, as UTC
  local at = os.time({ year = tonumber(y), month = MONTHS[mon], day = tonumber(d), hour = tonumber(h),
    min = tonumber(mi), sec = tonumber(s), isdst = false })
  local now = os.time(os.date("!*t"))
  return max(0, at - now)
end

-- The next delay: full jitter (uniform in 0..bound), the bound growing by
-- factor up to max. at_least: the bound for this one is no less (the
-- close-frame rule).
local function backoff(self, at_least)
  local cfg = self._cfg
  local bound = self._bound
  self._bound = min(bound * cfg.factor, cfg.max)
  if at_least then bound = max(bound, at_least) end
  return cfg.jitter and random() * bound or bound
end

-- The offline queue and unread messages --------------------------------------------

local function enqueue(self, data, kind)
  if self._limit == 0 then return nil, "offline" end
  if kind ~= "binary" and not valid_utf8(data) then return nil, "text message is not valid UTF-8" end
  if self._qn >= self._limit or self._qbytes + #data > self._high then return nil, "offline queue full" end
  local t = self._qh + self._qn
  self._qd[t], self._qk[t] = data, kind
  self._qn, self._qbytes = self._qn + 1, self._qbytes + #data
  return true
end

local function dequeue(self)
  local h = self._qh
  local data = self._qd[h]
  self._qd[h], self._qk[h] = nil, nil
  self._qh, self._qn, self._qbytes = h + 1, self._qn - 1, self._qbytes - #data
end

local function drop_queue(self)
  while self._qn > 0 do dequeue(self) end
end

-- Sends what was queued, in order, on ws. false when the connection ended
-- first (the rest stays queued for the next one).
local function flush(self, ws)
  while self._qn > 0 do
    local h = self._qh
    local ok, err = ws:send(self._qd[h], self._qk[h])
    if not ok and err == "closed" then return false end
    dequeue(self) -- sent, or one that no connection could take
  end
  return true
end

-- Messages a finished connection received that were not read yet move
-- here, to be read before those of the next connection.
local function keep_unread(self, ws)
  local c = rawget(ws, "_c")
  while true do
    local msg, kind = c:recv()
    if not msg then return end
    local t = self._ph + self._pn
    self._pd[t], self._pk[t] = msg, kind
    self._pn = self._pn + 1
  end
end

local function take_unread(self)
  local h = self._ph
  local msg, kind = self._pd[h], self._pk[h]
  self._pd[h], self._pk[h] = nil, nil
  self._ph, self._pn = h + 1, self._pn - 1
  return msg, kind
end

-- States --------------------------------------------------------------------------

local function set_state(self, state)
  self.state = state
  wake(self._id)
end

-- Retries have stopped, or the application closed: the ws is over.
local function finish(self)
  self._ws, self._dialing, self._ready = nil, nil, false
  drop_queue(self)
  set_state(self, "closed")
end

-- on_open(ws, info) in a coroutine of its own (it may wait; its sends go
-- straight out); an error in it is reported and fails this connection.
local function run_on_open(self, ws, info)
  local done = false
  local co = spawn(function()
    self._on_open(self, info)
    done = true
    wake(self._sid)
  end, function(_, err, trace)
    done = true
    self._failed = "on_open failed: " .. tostring(err)
    io.stderr:write("duplex: error in on_open: ", trace, "\n")
    ws:abort()
    wake(self._sid)
  end)
  self._opener = co
  while not done do wait(self._sid) end
  self._opener = nil
end

-- A connection is open: on_open, then the queue, then sends go straight out.
local function opened(self, ws)
  if self._ever then self.reconnects = self.reconnects + 1 end
  self._ever = true
  self._ws, self._last, self._failed = ws, ws, nil
  self._up_since = now_ms()
  local info = { attempt = self._tries, reconnects = self.reconnects,
    downtime = self._down_since and (now_ms() - self._down_since) / 1000 or 0,
    last_error = self._last_error, last_code = self._last_code }
  set_state(self, "open")
  if self._on_open then run_on_open(self, ws, info) end
  if not self._failed and flush(self, ws) then self._ready = true end
  wake(self._id)
end

-- One dial, with the url and headers of the moment.
local function attempt(self, dial)
  local target, opts = self._target, self._opts
  if type(target) == "function" then
    target = target()
    if type(target) ~= "string" then return nil, "the url function returned " .. type(target) end
  end
  if type(opts.headers) == "function" then
    local fresh = {}
    for k, v in pairs(opts) do fresh[k] = v end
    fresh.headers = opts.headers()
    opts = fresh
  end
  self.url = target
  local ws, err, response, raised = dial(target, opts, self)
  self._dialing = nil
  return ws, err, response, raised
end

-- Dials (after waiting delay seconds) until a connection opens: true; or
-- until retries stop: false; or "raised", err for a bad option value.
local function establish(self, dial, delay)
  while true do
    if delay > 0 then wait(self._sid, delay) end
    if self._closing then return false end
    self._tries = self._tries + 1
    local ws, err, response, raised = attempt(self, dial)
    if raised then return "raised", err end
    if self._closing then
      if ws then ws:abort() end
      return false
    end
    if ws then
      opened(self, ws)
      return true
    end
    local code = response and response.status
    self._last_error, self._last_code, self._last_response = err, code, response
    if not should_retry(self, err, code, response and response.reason) then return false end
    delay = backoff(self)
    local asked = code and retry_after(response)
    if asked then delay = max(delay, asked) end
  end
end

-- The current connection ended: what it tells on_close and decides.
local function ended(self, ws)
  local up = (now_ms() - self._up_since) / 1000
  local code, reason, clean, err = ws._c:close_info()
  err = self._failed or err or (clean and "closed by the server") or "closed"
  keep_unread(self, ws)
  self._ws, self._ready = nil, false
  self._down_since = now_ms()
  if up >= self._cfg.min_uptime then self._bound, self._tries = self._cfg.min, 0 end
  self._last_error, self._last_code, self._last_response = err, code, nil
  if self._closing then
    self._last_error = not clean and err or nil
    return false
  end
  local again = should_retry(self, err, code, reason)
  -- a server's close frame: its first retry waits a random 0..close_delay
  local delay = again and backoff(self, clean and M.close_delay or nil) or nil
  if self._on_close then
    spawn(self._on_close, nil, self, { code = code, reason = reason, clean = clean, error = err, uptime = up,
      retry = again, delay = delay })
  end
  return again, delay
end

-- The supervisor: from one connection to the next, until retries stop.
local function supervise(self, dial)
  while true do
    self._ws:wait_closed()
    local again, delay = ended(self, self._ws)
    if not again then break end
    set_state(self, "reconnecting")
    local ok, err = establish(self, dial, delay)
    if ok == "raised" then error(err, 0) end
    if not ok then break end
  end
  finish(self)
end

local function supervisor_failed(co, err, trace)
  local self = M._of[co]
  io.stderr:write("duplex: error in the reconnecting client: ", trace, "\n")
  self._last_error = tostring(err)
  if self._ws then self._ws:abort() end
  finish(self)
end

M._of = setmetatable({}, { __mode = "k" }) -- supervisor coroutine -> its ws

-- Every reconnecting ws not closed yet: duplex.shutdown closes these
-- through their own close, so that they stop retrying.
function M.open_clients()
  local list = {}
  for _, ws in pairs(M._of) do
    if ws.state ~= "closed" then list[#list + 1] = ws end
  end
  return list
end

-- The reconnecting ws --------------------------------------------------------------

local methods = {}
local RWS = {}

-- Fields of the current connection (or the last one).
local delegated = { protocol = true, remote = true, peer_cert = true, compression = true, request = true,
  response = true, close_code = true, close_reason = true, close_clean = true, buffered = true, dropped = true }

function RWS.__index(self, key)
  local m = methods[key]
  if m then return m end
  if key == "queued" then return rawget(self, "_qn") end
  if delegated[key] then
    local ws = rawget(self, "_ws") or rawget(self, "_last")
    return ws and ws[key]
  end
  return nil
end

function RWS.__tostring(self)
  return "duplex.ws(reconnecting " .. tostring(rawget(self, "url")) .. ", " .. tostring(rawget(self, "state")) .. ")"
end

-- The connection sends may use now: open, and on_open and the queue done
-- (on_open's own coroutine may use it before).
local function usable(self)
  local ws = self._ws
  if ws and (self._ready or (self._opener and current() == self._opener)) then return ws end
  return nil
end

local kinds = { text = true, binary = true }

function methods:send(data, kind)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2) end
  if kind ~= nil and not kinds[kind] then error("bad argument #2 to 'send' (\"text\" or \"binary\" expected)", 2) end
  local ws = usable(self)
  if ws then
    local ok, err = ws:send(data, kind)
    if ok or err ~= "closed" then return ok, err end
  end
  local state = self.state
  if state == "closed" or state == "closing" then return nil, "closed" end
  return enqueue(self, data, kind)
end

function methods:receive(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("bad argument #1 to 'receive' (seconds expected, a number >= 0)", 2)
  end
  local deadline = timeout and now_ms() + timeout * 1000
  while true do
    if self._pn > 0 then return take_unread(self) end
    local left = deadline and max(0, deadline - now_ms()) / 1000
    local ws = usable(self)
    if ws then
      local msg, kind = ws:receive(left)
      if msg or kind == "timeout" then return msg, kind end
      -- that connection is over: on to the next one, once there is one
      if self._pn > 0 then return take_unread(self) end
    end
    if self.state == "closed" then
      local last = self._last
      return nil, "closed", last and last.close_code, last and last.close_reason, self._last_error
    end
    if left and left <= 0 then return nil, "timeout" end
    wait(self._id, left)
  end
end

methods.messages = WS.messages

-- Waits until retries have stopped or the ws was closed.
function methods:wait_closed()
  while self.state ~= "closed" do wait(self._id) end
end

-- Ends the ws: the close handshake on the open connection (as ws:close),
-- or the end of the backoff wait or the dial in progress. What is queued
-- offline is dropped.
function methods:close(code, reason)
  if code ~= nil and type(code) ~= "number" then error("bad argument #1 to 'close' (number expected)", 2) end
  if reason ~= nil and type(reason) ~= "string" then error("bad argument #2 to 'close' (string expected)", 2) end
  if self.state == "closed" then
    local last = self._last
    if last and last.close_clean then return true end
    return nil, "closed"
  end
  self._closing = true
  set_state(self, "closing")
  wake(self._sid)
  if self._dialing then self._dialing:abort("closed by the application") end
  local ok, err = true, nil
  local ws = self._ws
  if ws then ok, err = ws:close(code, reason) end
  self:wait_closed()
  return ok, err
end

-- Drops the connection without a close frame, and retries stop.
function methods:abort()
  if self.state == "closed" then return end
  self._closing = true
  set_state(self, "closing")
  wake(self._sid)
  if self._dialing then self._dialing:abort("aborted by the application") end
  if self._ws then self._ws:abort() end
end

function methods:ping(data)
  local ws = usable(self)
  if ws then return ws:ping(data) end
  return nil, self.state == "closed" and "closed" or "offline"
end

-- Topics are the current connection's: a subscription ends with it, so
-- on_open is where to subscribe again.
local function on_connection(name, offline)
  methods[name] = function(self, ...)
    local ws = self._ws
    if ws then return ws[name](ws, ...) end
    if offline ~= nil then return offline end
    return nil, self.state == "closed" and "closed" or "offline"
  end
end
on_connection("subscribe")
on_connection("unsubscribe", false)
on_connection("subscribed", false)
on_connection("publish")
function methods:topics()
  local ws = self._ws
  return ws and ws:topics() or {}
end

-- duplex.connect(target, opts) with opts.reconnect set: dial is init.lua's
-- dial(target, opts, watcher). Raises at the line that called connect.
function M.connect(dial, target, opts)
  local tt = type(target)
  if tt ~= "string" and tt ~= "function" then
    error("bad argument #1 to 'connect' (URL string or function expected, got " .. tt .. ")", 3)
  end
  local cfg = config(opts.reconnect)
  local limit = opts.queue or DEFAULT_QUEUE
  if type(limit) ~= "number" or limit < 0 or limit ~= floor(limit) then
    error("option 'queue' must be a whole number >= 0", 3)
  end
  local self = setmetatable({ state = "connecting", reconnects = 0, _target = target, _opts = opts, _cfg = cfg,
    _id = core.new_id(), _sid = core.new_id(), _bound = cfg.min, _tries = 0,
    _qd = {}, _qk = {}, _qh = 1, _qn = 0, _qbytes = 0, _limit = limit, _high = opts.high_water or DEFAULT_HIGH_WATER,
    _pd = {}, _pk = {}, _ph = 1, _pn = 0,
    _on_open = opts.on_open, _on_close = opts.on_close, _should_retry = opts.should_retry }, RWS)
  local ok, err = establish(self, dial, 0)
  if ok == "raised" then error(err, 3) end
  if not ok then
    finish(self)
    return nil, self._last_error, self._last_response
  end
  M._of[spawn(supervise, supervisor_failed, self, dial)] = self
  return self
end

return M
