-- duplex: WebSockets (RFC 6455) for Lua on a C core. See README.md.
local core = require "duplex.core"
local scheduler = require "duplex.scheduler"
local WS = require "duplex.ws"
local url = require "duplex.url"
local options = require "duplex.options"
local proxy = require "duplex.proxy"
local reconnect = require "duplex.reconnect"
local sse = require "duplex.sse"

local type, error, tostring, tonumber, select, setmetatable, pairs, ipairs, rawget, rawset, pcall =
  type, error, tostring, tonumber, select, setmetatable, pairs, ipairs, rawget, rawset, pcall
local io = io

local duplex = { _VERSION = "duplex scm" }

local wait, spawn = scheduler.wait, scheduler.spawn

local function check_opts(opts, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("bad argument to '" .. fname .. "' (options table expected)", 3) end
  local err = options.check(opts, options[fname])
  if err then error(err, 3) end
  return opts
end

-- Calls a core function that reads an options table: what it raises (a bad
-- value) is raised again at the line that called duplex. The core
-- functions never yield, so this pcall is safe on PUC Lua 5.1 too.
local function core_call(f, ...)
  local ok, a, b = pcall(f, ...)
  if not ok then error(a, 3) end
  return a, b
end

local function stderr_handler(_, _, trace)
  io.stderr:write("duplex: error in handler: ", trace, "\n")
end

local split_target, request_of = WS.split_target, WS.request_of

-- Server ------------------------------------------------------------------

local Server = {}
Server.__index = Server

-- Stops listening (and drops handshakes in progress); open connections
-- carry on. Server:shutdown ends them too.
function Server:close()
  self._s:close()
end

-- The open event streams: for each, its remote address, topics, bytes
-- queued, and publishes dropped (over max_backlog) and skipped (binary).
function Server:streams()
  local list = {}
  for c, topics in pairs(self._streams) do
    local dropped, skipped = c:dropped()
    list[#list + 1] = { remote = c:remote(), topics = topics, buffered = c:buffered(), dropped = dropped,
      skipped = skipped }
  end
  return list
end

-- Swaps the certificate (and the rest of opts.tls) for new connections.
function Server:reload_tls(tls)
  if type(tls) ~= "table" then error("bad argument #1 to 'reload_tls' (table expected)", 2) end
  local err = options.check(tls, options.server_tls, "tls.")
  if err then error(err, 2) end
  return core_call(self._s.reload_tls, self._s, tls)
end

-- Shared by every connection, so that an idle one costs no closures: the
-- handler and ws are the coroutine's arguments, and a failed coroutine
-- finds its ws here.
local ws_of = setmetatable({}, { __mode = "k" })

-- Lifecycle bookkeeping: each server's running handlers (ws -> true) and
-- upgrades waiting for an accept hook (c -> true), and every client
-- connection (weak: one nobody holds is closed by the collector anyway).
local servers = setmetatable({}, { __mode = "k" }) -- server -> true
local clients = setmetatable({}, { __mode = "k" }) -- ws -> true
local dialing = setmetatable({}, { __mode = "k" }) -- core connection -> true, until open or failed
local done_id = core.new_id() -- woken whenever a handler ends (shutdown waits on it)

local function handler_done(ws)
  local server = rawget(ws, "_server")
  if server and server._live[ws] then
    server._live[ws] = nil
    server._nlive = server._nlive - 1
    scheduler.wake(done_id)
  end
end

local function run_handler(handler, ws)
  handler(ws)
  if ws.state ~= "closed" then ws:close() end
  handler_done(ws)
end

local function handler_failed(co, err, trace)
  local ws = ws_of[co]
  handler_done(ws)
  -- an internal error: tell the peer (1011) and let the close finish on its
  -- own (the waiting coroutine keeps ws alive until then)
  rawget(ws, "_c"):close(1011, "internal error")
  spawn(ws.wait_closed, nil, ws)
  ;(rawget(ws, "_on_error") or stderr_handler)(ws, err, trace)
end

local function serve_websocket(server, c, opts, handler, request)
  -- without an accept hook ws.request is built when first read
  local ws = WS.wrap(c, request and { request = request })
  ws._on_error = opts.on_error
  ws._server = server
  server._live[ws] = true
  server._nlive = server._nlive + 1
  if server._closing then c:close(server._closing.code, server._closing.reason) end
  ws_of[spawn(run_handler, handler_failed, handler, ws)] = ws
end

-- Runs in the request's coroutine.
local function answer_http(c, opts, req)
  if not opts.http then -- the server has sse only: what the core says without either
    c:respond(426, { ["Content-Type"] = "text/plain" }, "this is a WebSocket endpoint\n")
    return
  end
  local status, headers, body = opts.http(req)
  if type(status) ~= "number" then error("http handler must return a status number", 0) end
  c:respond(status, headers, body or "")
end

-- An event stream lives until the client goes or the server ends it; it
-- counts as a running handler for shutdown.
local function stream(server, c, topics, since)
  server._streams[c] = topics
  server._nlive = server._nlive + 1
  for i = 1, #topics do c:subscribe(topics[i], since) end
  if server._closing then c:close() end
  local id = c:info()
  while select(2, c:info()) ~= "closed" do wait(id) end
  server._streams[c] = nil
  server._nlive = server._nlive - 1
  scheduler.wake(done_id)
end

local function answer_sse(server, c, opts, req)
  local topics, headers, body = opts.sse(req)
  if topics == nil or topics == false then return answer_http(c, opts, req) end
  if type(topics) == "number" then
    if topics < 200 then error("sse must return an HTTP status of 200..999 to refuse, not " .. topics, 0) end
    c:respond(topics, headers, body or "")
    return
  end
  topics = sse.topics(topics)
  if c:sse(sse.headers(headers), server._sse_retry, server._sse_beat) then
    stream(server, c, topics, sse.last_event_id(req))
  end
end

local function serve_http(server, c, opts)
  local req = request_of(c)
  req.remote = c:remote()
  spawn(function()
    if opts.sse and sse.wants(req) then
      answer_sse(server, c, opts, req)
    else
      answer_http(c, opts, req)
    end
  end, function(_, err, trace)
    c:respond(500, { ["Content-Type"] = "text/plain" }, "internal server error\n")
    ;(opts.on_error or stderr_handler)(req, err, trace)
  end)
end

-- An upgrade waits (not read from, under handshake_timeout) for the accept
-- hook: nothing or true upgrades it, a status refuses it with that answer.
local function serve_pending(server, c, opts, handler)
  local req = request_of(c)
  req.remote = c:remote()
  server._pending[c] = true
  spawn(function()
    local verdict, headers, body = opts.accept(req)
    server._pending[c] = nil
    if verdict == nil or verdict == true then
      -- false: the handshake timeout (or a shutdown) dropped it meanwhile
      if c:accept() then serve_websocket(server, c, opts, handler, req) end
      return
    end
    if type(verdict) ~= "number" or verdict < 200 then
      error("accept must return nothing or true to accept, or an HTTP status (200..999) to refuse, not " ..
        tostring(verdict), 0)
    end
    c:respond(verdict, headers, body or "")
  end, function(_, err, trace)
    c:respond(500, { ["Content-Type"] = "text/plain" }, "internal server error\n")
    ;(opts.on_error or stderr_handler)(req, err, trace)
  end)
end

function duplex.serve(opts, handler)
  opts = check_opts(opts, "serve")
  if type(handler) ~= "function" then error("bad argument #2 to 'serve' (handler function expected)", 2) end
  local retry, rerr = sse.ms(opts.sse_retry, sse.RETRY, "sse_retry")
  local beat, berr = sse.ms(opts.sse_heartbeat, sse.HEARTBEAT, "sse_heartbeat")
  if not (retry and beat) then error(rerr or berr, 2) end
  local s, err = core_call(core.listen, opts)
  if not s then return nil, err end
  local id, port = s:info()
  local server = setmetatable({ _s = s, port = port, _live = {}, _nlive = 0, _pending = {}, _streams = {},
    _sse_retry = retry, _sse_beat = beat }, Server)
  servers[server] = true
  spawn(function()
    while true do
      local c, state = s:accept()
      if c then
        if server._closing and state ~= "open" then
          c:respond(503, { ["Content-Type"] = "text/plain" }, "server shutting down\n")
        elseif state == "pending" then
          serve_pending(server, c, opts, handler)
        elseif state == "http" then
          serve_http(server, c, opts)
        else
          serve_websocket(server, c, opts, handler)
        end
      elseif select(3, s:info()) then
        return
      else
        wait(id)
      end
    end
  end)
  return server
end

-- Client ------------------------------------------------------------------

-- Waits for a dial to open: the ws, or nil, err [, response].
local function await_open(c, u, target, opts)
  local id = c:info()
  while true do
    local _, state, opened = c:info()
    if opened then break end
    if state == "closed" then
      local why, status = c:error()
      if status ~= 0 then
        local code, reason, headers = c:head()
        local response = { status = code or status, reason = reason, headers = headers or {} }
        return nil, "server refused the upgrade: HTTP " .. response.status ..
          (reason and reason ~= "" and " " .. reason or ""), response
      end
      local pstatus, preason, pheaders = c:proxy_head()
      if pstatus then return nil, why, { status = pstatus, reason = preason, headers = pheaders } end
      return nil, why
    end
    wait(id)
  end
  local path, query = split_target(u.target)
  local sent = {}
  for name, value in pairs(opts.headers or {}) do sent[name:lower()] = value end
  if opts.origin then sent.origin = opts.origin end
  local status, reason, headers = c:head() -- the 101 answer; frees its buffer
  local ws = WS.wrap(c, {
    url = target,
    request = { method = "GET", target = u.target, path = path, query = query, params = url.params(query),
      headers = sent },
    response = { status = status, reason = reason, headers = headers or {} },
  })
  clients[ws] = true
  return ws
end

-- Shutdown --------------------------------------------------------------------

-- opts: checked by check_opts (types: options.shutdown), in the public
-- function itself, so that its errors name the caller's line.
local function shutdown_opts(opts, fname)
  local code, reason, timeout = opts.code or 1001, opts.reason or "server shutting down", opts.timeout or 10
  if not (timeout >= 0) then
    error("bad argument #1 to '" .. fname .. "' (timeout: seconds expected, a number >= 0)", 3)
  end
  return { code = code, reason = reason }, timeout
end

-- Stops the listener, refuses handshakes in progress (503) and starts the
-- close handshake on every open connection of server.
local function begin_server_shutdown(server, how)
  if server._closing then return end
  server._closing = how
  local s = server._s
  s:shutdown(503)
  -- what was upgraded but not yet handed out: the accept loop serves it, closing at once
  for c in pairs(server._pending) do
    server._pending[c] = nil
    c:respond(503, { ["Content-Type"] = "text/plain" }, "server shutting down\n")
  end
  for ws in pairs(server._live) do rawget(ws, "_c"):close(how.code, how.reason) end
  for c in pairs(server._streams) do c:close() end
end

local function client_open(ws)
  return ws.state ~= "closed"
end

-- Waits (bounded) until list() is empty; then aborts what is left.
local function finish(left, abort, timeout)
  local deadline = scheduler.now_ms() + timeout * 1000
  while left() > 0 do
    local ms = deadline - scheduler.now_ms()
    if ms <= 0 then break end
    wait(done_id, math.min(ms, 50) / 1000) -- a closing client wakes nobody here: poll it too
  end
  local n = left()
  if n == 0 then return true end
  abort()
  return nil, "timed out", n
end

local function run_or_spawn(fn, ...)
  if scheduler.current() then return fn(...) end
  spawn(fn, nil, ...) -- outside a coroutine: it goes on as the loop runs
  return true
end

-- Starts closing every client connection: the ws list. A reconnecting
-- one is closed as a whole (its close stops the retries), never through
-- its current connection, whose close it would take for a reason to retry.
local function close_clients(how)
  local mine, inner = {}, {}
  local rws = reconnect.open_clients()
  for i = 1, #rws do
    local w = rws[i]
    if rawget(w, "_ws") then inner[rawget(w, "_ws")] = true end
    mine[#mine + 1] = w
    spawn(w.close, nil, w, how.code, how.reason)
  end
  for c in pairs(dialing) do c:abort("the process is shutting down") end
  for ws in pairs(clients) do
    if client_open(ws) and not inner[ws] then
      mine[#mine + 1] = ws
      rawget(ws, "_c"):close(how.code, how.reason)
    end
  end
  return mine
end

local function shutdown_servers(list, how, timeout, with_clients)
  for i = 1, #list do begin_server_shutdown(list[i], how) end
  local mine = with_clients and close_clients(how) or {}
  return finish(function()
    local n = 0
    for i = 1, #list do n = n + list[i]._nlive end
    for i = 1, #mine do if client_open(mine[i]) then n = n + 1 end end
    return n
  end, function()
    for i = 1, #list do
      for ws in pairs(list[i]._live) do rawget(ws, "_c"):abort("shutdown timed out") end
      for c in pairs(list[i]._streams) do c:abort("shutdown timed out") end
    end
    for i = 1, #mine do
      local c = rawget(mine[i], "_c")
      if c then c:abort("shutdown timed out") else mine[i]:abort() end
    end
  end, timeout)
end

-- This server's connections only.
function Server:shutdown(opts)
  local how, timeout = shutdown_opts(check_opts(opts, "shutdown"), "shutdown")
  return run_or_spawn(shutdown_servers, { self }, how, timeout, false)
end

-- Every server and client connection of the process.
function duplex.shutdown(opts)
  local how, timeout = shutdown_opts(check_opts(opts, "shutdown"), "shutdown")
  local list = {}
  for server in pairs(servers) do list[#list + 1] = server end
  return run_or_spawn(shutdown_servers, list, how, timeout, true)
end

-- Signals ---------------------------------------------------------------------

local SIGNALS = { SIGINT = true, SIGTERM = true, SIGHUP = true, SIGUSR1 = true, SIGUSR2 = true }
local signals = {} -- name -> { id, fn = the application's, default = duplex.run's }

local function signal_arm(name)
  local sig = signals[name]
  if sig.fn or sig.default then core.signal(name, sig.id) else core.signal(name) end
end

local function signal_watch(name)
  local sig = signals[name]
  while true do
    wait(sig.id)
    for _ = 1, core.signal_take(name) do
      if sig.fn then
        spawn(sig.fn, nil, name)
      elseif sig.default then
        sig.default(name)
      end
    end
  end
end

local function signal_of(name)
  local sig = signals[name]
  if not sig then
    sig = { id = core.new_id() }
    signals[name] = sig
    spawn(signal_watch, nil, name) -- parked for good: it keeps nothing alive
  end
  return sig
end

function duplex.on_signal(name, fn)
  if not SIGNALS[name] then
    error("bad argument #1 to 'on_signal' (one of \"SIGINT\", \"SIGTERM\", \"SIGHUP\", \"SIGUSR1\", " ..
      "\"SIGUSR2\" expected, got " .. tostring(name) .. ")", 2)
  end
  if fn ~= nil and type(fn) ~= "function" then error("bad argument #2 to 'on_signal' (function or nil expected)", 2) end
  signal_of(name).fn = fn
  signal_arm(name)
end

-- One dial of target (a string): the ws, or nil, err [, response]. A bad
-- option value that the core raises comes back as nil, message, nil, true
-- for the caller to raise at its caller's line. watcher, if given, gets the
-- dialing connection as watcher._dialing (a reconnecting client aborts it
-- on close).
local function dial(target, opts, watcher)
  local u, err = url.parse(target)
  if not u then return nil, err end
  local p, perr = proxy.for_url(u, opts.proxy)
  if perr then return nil, perr end
  local ok, c, derr = pcall(core.dial, u.host, tostring(u.port), u.target, u.host_header, opts, u.secure,
    p and p.host, p and tostring(p.port), p and p.auth)
  if not ok then return nil, c, nil, true end
  if not c then return nil, derr end
  if watcher then watcher._dialing = c end
  dialing[c] = true
  local ws, werr, response = await_open(c, u, target, opts)
  dialing[c] = nil
  return ws, werr, response
end

function duplex.connect(target, opts)
  if opts ~= nil and type(opts) == "table" and opts.reconnect then
    opts = check_opts(opts, "connect")
    return reconnect.connect(dial, target, opts)
  end
  if type(target) ~= "string" then error("bad argument #1 to 'connect' (URL string expected, got " .. type(target) .. ")", 2) end
  opts = check_opts(opts, "connect")
  local only = reconnect.only_option(opts)
  if only then error("option '" .. only .. "' needs the option 'reconnect'", 2) end
  local ws, err, response, raised = dial(target, opts)
  if raised then error(err, 2) end
  return ws, err, response
end

-- Topics ----------------------------------------------------------------------

-- To every subscriber of topic in this process: queued, dropped, and the
-- message's id when the topic keeps history. Never waits.
function duplex.publish(topic, data, kind)
  WS.check_topic(topic, "publish")
  WS.check_message(data, kind, "publish")
  return core.publish(topic, data, kind)
end

-- Keeps the topic's last opts.size messages (at most opts.ttl seconds old,
-- at most opts.bytes payload bytes) for ws:subscribe(topic, { since = id });
-- false ends it. Calling it again starts a new history (old ids are then
-- not recovered).
function duplex.history(topic, opts)
  WS.check_topic(topic, "history")
  if opts == false then return core.history(topic, false) end
  if type(opts) ~= "table" then error("bad argument #2 to 'history' (options table or false expected)", 2) end
  if opts.size == nil then error("bad argument #2 to 'history' (size required)", 2) end
  local err = options.check(opts, options.history)
  if err then error(err, 2) end
  return core_call(core.history, topic, opts.size, opts.ttl, opts.bytes)
end

-- The newest id of the topic's history, or nil.
function duplex.last_id(topic)
  WS.check_topic(topic, "last_id")
  return core.last_id(topic)
end

function duplex.subscribers(topic)
  WS.check_topic(topic, "subscribers")
  return core.subscribers(topic)
end

-- Broker --------------------------------------------------------------------

local Broker = {}
local broker_fields = { published = 3, received = 4, dropped = 5, invalid = 6 }

function Broker.__index(self, key)
  if key == "close" then return Broker.close end
  local info = { core.broker_info(rawget(self, "_gen")) }
  if info[1] == "closed" and rawget(self, "_last") then info = rawget(self, "_last") end
  if key == "state" then return info[1] == "failed" and "connecting" or info[1] end
  if key == "error" then return info[2] end
  local i = broker_fields[key]
  return i and info[i] or nil
end

-- Stops joining topics through Redis; the counters keep their last values.
function Broker.close(self)
  local info = { core.broker_info(rawget(self, "_gen")) }
  if info[1] ~= "closed" then
    info[1] = "closed"
    rawset(self, "_last", info)
  end
  core.broker_close(rawget(self, "_gen"))
end

-- redis://[:password@]host[:port][/db] or unix:/path: host, port, path,
-- password, db; or nil, err.
local function parse_redis_url(s)
  local path = s:match("^unix:(/.+)$")
  if path then return nil, nil, path end
  local rest = s:match("^redis://(.+)$")
  if not rest then return nil, "bad broker URL (redis://[:password@]host[:port][/db] or unix:/path): " .. s end
  local password
  local userinfo, hostpart = rest:match("^(.*)@([^@]*)$")
  if userinfo then
    password = userinfo:match("^[^:]*:(.*)$") or userinfo
    rest = hostpart
  end
  local hostport, db = rest:match("^([^/]*)/?(%d*)$")
  if not hostport then return nil, "bad broker URL: " .. s end
  local host, port = hostport:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil, "bad broker URL (no host): " .. s end
  return host, tonumber(port) or 6379, nil, password ~= "" and password or nil, tonumber(db)
end

-- Joins this process's topics to every other process on the same Redis.
-- Waits for the first connection (at most opts.timeout seconds): the
-- broker, or nil, err.
function duplex.broker(target, opts)
  if type(target) ~= "string" then error("bad argument #1 to 'broker' (URL string expected, got " .. type(target) .. ")", 2) end
  opts = check_opts(opts, "broker")
  local host, port, path, password, db = parse_redis_url(target)
  if not host and not path then return nil, port end
  local rc = opts.reconnect or {}
  local timeout = opts.timeout or 5
  if not (timeout > 0 and timeout <= 86400) then error("option 'timeout' must be a number of seconds > 0", 2) end
  for _, k in ipairs({ "min", "max" }) do
    local v = rc[k]
    if v ~= nil and not (v >= 0 and v <= 86400) then error("option 'reconnect." .. k .. "' must be seconds >= 0", 2) end
  end
  if opts.max_queue ~= nil and not (opts.max_queue >= 0) then error("option 'max_queue' must be a number of bytes >= 0", 2) end
  local gen, id = core_call(core.broker_open, host, port, path, password, db, opts.prefix, timeout,
    rc.min, rc.max, opts.max_queue)
  if not gen then return nil, id end
  local deadline = core.now() + timeout + 1
  while true do
    local state, err = core.broker_info(gen)
    if state == "connected" then break end
    local left = deadline - core.now()
    if state ~= "connecting" or left <= 0 then
      core.broker_close(gen)
      return nil, err or "redis: connection timed out"
    end
    if scheduler.current() then wait(id, left) else scheduler.step(left) end
  end
  return setmetatable({ _gen = gen }, Broker)
end

-- Scheduling and embedding ---------------------------------------------------

function duplex.spawn(fn, ...)
  if type(fn) ~= "function" then error("bad argument #1 to 'spawn' (function expected)", 2) end
  return spawn(fn, nil, ...)
end

function duplex.sleep(seconds)
  if type(seconds) ~= "number" then error("bad argument #1 to 'sleep' (number expected)", 2) end
  scheduler.sleep(seconds)
end

-- Timers: each run of fn(timer) in a coroutine of its own; timer:stop().
function duplex.every(seconds, fn)
  if type(seconds) ~= "number" or not (seconds > 0) then
    error("bad argument #1 to 'every' (seconds expected, a number > 0)", 2)
  end
  if type(fn) ~= "function" then error("bad argument #2 to 'every' (function expected)", 2) end
  return scheduler.timer(seconds, fn, seconds)
end

function duplex.after(seconds, fn)
  if type(seconds) ~= "number" or not (seconds >= 0) then
    error("bad argument #1 to 'after' (seconds expected, a number >= 0)", 2)
  end
  if type(fn) ~= "function" then error("bad argument #2 to 'after' (function expected)", 2) end
  return scheduler.timer(seconds, fn)
end

-- While it runs, SIGINT and SIGTERM without a handler of the application's
-- stop it: it returns nil, "interrupted", the signal's name. Only then: a
-- host that embeds duplex (step/pollfd) keeps its own signal handling.
function duplex.run(fn, ...)
  local failure, interrupted
  if fn ~= nil then
    if type(fn) ~= "function" then error("bad argument #1 to 'run' (function expected)", 2) end
    spawn(fn, function(_, _, trace)
      failure = trace
      scheduler.stop()
    end, ...)
  end
  local function default(name)
    interrupted = interrupted or name
    scheduler.stop()
  end
  for _, name in ipairs({ "SIGINT", "SIGTERM" }) do
    signal_of(name).default = default
    signal_arm(name)
  end
  local ok, err = pcall(scheduler.run)
  for _, name in ipairs({ "SIGINT", "SIGTERM" }) do
    signals[name].default = nil
    signal_arm(name)
  end
  if not ok then error(err, 0) end
  if failure then error(failure, 0) end
  if interrupted then return nil, "interrupted", interrupted end
end

duplex.stop = scheduler.stop
duplex.now = core.now

function duplex.pollfd() return core.pollfd() end

function duplex.events() return "r" end

function duplex.timeout() return scheduler.timeout() end

function duplex.step(timeout) return scheduler.step(timeout or 0) end

return duplex
