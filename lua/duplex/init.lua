-- duplex: WebSockets (RFC 6455) for Lua on a C core. See README.md.
local core = require "duplex.core"
local scheduler = require "duplex.scheduler"
local WS = require "duplex.ws"
local url = require "duplex.url"

local type, error, tostring, select, setmetatable, pairs, rawget =
  type, error, tostring, select, setmetatable, pairs, rawget
local io = io

local duplex = { _VERSION = "duplex scm" }

local wait, spawn = scheduler.wait, scheduler.spawn

local function check_opts(opts, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("bad argument to '" .. fname .. "' (options table expected)", 3) end
  return opts
end

local function stderr_handler(_, _, trace)
  io.stderr:write("duplex: error in handler: ", trace, "\n")
end

local split_target, request_of = WS.split_target, WS.request_of

-- Server ------------------------------------------------------------------

local Server = {}
Server.__index = Server

function Server:close()
  self._s:close()
end

-- Swaps the certificate (and the rest of opts.tls) for new connections.
function Server:reload_tls(tls)
  if type(tls) ~= "table" then error("bad argument #1 to 'reload_tls' (table expected)", 2) end
  return self._s:reload_tls(tls)
end

-- Shared by every connection, so that an idle one costs no closures: the
-- handler and ws are the coroutine's arguments, and a failed coroutine
-- finds its ws here.
local ws_of = setmetatable({}, { __mode = "k" })

local function run_handler(handler, ws)
  handler(ws)
  if ws.state ~= "closed" then ws:close() end
end

local function handler_failed(co, err, trace)
  local ws = ws_of[co]
  -- an internal error: tell the peer (1011) and let the close finish on its
  -- own (the waiting coroutine keeps ws alive until then)
  rawget(ws, "_c"):close(1011, "internal error")
  spawn(ws.wait_closed, nil, ws)
  ;(rawget(ws, "_on_error") or stderr_handler)(ws, err, trace)
end

local function serve_websocket(c, opts, handler)
  local ws = WS.wrap(c) -- ws.request is built when first read
  ws._on_error = opts.on_error
  ws_of[spawn(run_handler, handler_failed, handler, ws)] = ws
end

local function serve_http(c, opts)
  local req = request_of(c)
  req.remote = c:remote()
  spawn(function()
    local status, headers, body = opts.http(req)
    if type(status) ~= "number" then error("http handler must return a status number", 0) end
    c:respond(status, headers, body or "")
  end, function(_, err, trace)
    c:respond(500, { ["Content-Type"] = "text/plain" }, "internal server error\n")
    ;(opts.on_error or stderr_handler)(req, err, trace)
  end)
end

function duplex.serve(opts, handler)
  opts = check_opts(opts, "serve")
  if type(handler) ~= "function" then error("bad argument #2 to 'serve' (handler function expected)", 2) end
  if opts.http ~= nil and type(opts.http) ~= "function" then error("option 'http' must be a function", 2) end
  local s, err = core.listen(opts)
  if not s then return nil, err end
  local id, port = s:info()
  local server = setmetatable({ _s = s, port = port }, Server)
  spawn(function()
    while true do
      local c, is_http = s:accept()
      if c then
        if is_http then serve_http(c, opts) else serve_websocket(c, opts, handler) end
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

function duplex.connect(target, opts)
  if type(target) ~= "string" then error("bad argument #1 to 'connect' (URL string expected, got " .. type(target) .. ")", 2) end
  opts = check_opts(opts, "connect")
  local u, err = url.parse(target)
  if not u then return nil, err end
  local c, derr = core.dial(u.host, tostring(u.port), u.target, u.host_header, opts, u.secure)
  if not c then return nil, derr end
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
      return nil, why
    end
    wait(id)
  end
  local path, query = split_target(u.target)
  local sent = {}
  for name, value in pairs(opts.headers or {}) do sent[name:lower()] = value end
  if opts.origin then sent.origin = opts.origin end
  local status, reason, headers = c:head() -- the 101 answer; frees its buffer
  return WS.wrap(c, {
    url = target,
    request = { method = "GET", target = u.target, path = path, query = query, headers = sent },
    response = { status = status, reason = reason, headers = headers or {} },
  })
end

-- Topics ----------------------------------------------------------------------

-- To every subscriber of topic in this process: queued, dropped. Never waits.
function duplex.publish(topic, data, kind)
  WS.check_topic(topic, "publish")
  WS.check_message(data, kind, "publish")
  return core.publish(topic, data, kind)
end

function duplex.subscribers(topic)
  WS.check_topic(topic, "subscribers")
  return core.subscribers(topic)
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

function duplex.run(fn, ...)
  local failure
  if fn ~= nil then
    if type(fn) ~= "function" then error("bad argument #1 to 'run' (function expected)", 2) end
    spawn(fn, function(_, _, trace)
      failure = trace
      scheduler.stop()
    end, ...)
  end
  scheduler.run()
  if failure then error(failure, 0) end
end

duplex.stop = scheduler.stop
duplex.now = core.now

function duplex.pollfd() return core.pollfd() end

function duplex.events() return "r" end

function duplex.timeout() return scheduler.timeout() end

function duplex.step(timeout) return scheduler.step(timeout or 0) end

return duplex
