-- A WebSocket connection as seen by Lua code. Every method that waits tries
-- the C call first and parks the coroutine only when that call would block.
local scheduler = require "duplex.scheduler"
local url = require "duplex.url"
local options = require "duplex.options"

local wait, now_ms = scheduler.wait, scheduler.now_ms
local type, error, select, setmetatable, rawget, rawset, tostring =
  type, error, select, setmetatable, rawget, rawset, tostring

local WS = {}
local methods = {}

-- Fields read from the C side on demand: they change as the connection closes.
local live = {
  compression = function(c) return c:compressed() end,
  close_code = function(c) return (c:close_info()) end,
  close_reason = function(c) return select(2, c:close_info()) end,
  close_clean = function(c) return select(3, c:close_info()) end,
  state = function(c) return select(2, c:info()) end,
  buffered = function(c) return c:buffered() end,
  dropped = function(c) return c:dropped() end,
}

function WS.split_target(target)
  local path, query = target:match("^([^?]*)%??(.*)$")
  return path, query ~= "" and query or nil
end

-- The request head as a table: the C side keeps the raw head until then,
-- which costs an idle connection less than the tables.
function WS.request_of(c)
  local method, target, headers = c:head()
  local path, query = WS.split_target(target or "/")
  return { method = method, target = target, path = path, query = query, params = url.params(query),
    headers = headers }
end

function WS.__index(self, key)
  local m = methods[key]
  if m then return m end
  local f = live[key]
  if f then return f(rawget(self, "_c")) end
  if key == "request" then
    local request = WS.request_of(rawget(self, "_c"))
    rawset(self, "request", request)
    return request
  end
  return nil
end

function WS.__tostring(self)
  return "duplex.ws(" .. tostring(rawget(self, "remote")) .. ")"
end

-- fields: what the caller knows (request, url); the rest is read from c.
-- receive and send, called for every message, are fields of the object
-- itself: found without a call to __index (on PUC Lua that call was about a
-- tenth of an echoed message's cost). With `compression` read on demand and
-- the id coming back from the C calls that would block, the object still
-- holds four entries, as many as before.
function WS.wrap(c, fields)
  local self = fields or {}
  self._c = c
  self.protocol = c:protocol()
  self.remote = c:remote()
  self.peer_cert = c:peer_cert()
  self.receive, self.send = methods.receive, methods.send
  return setmetatable(self, WS)
end

local kinds = { text = true, binary = true }

-- Raises at the user's line (send's caller).
local function bad_send(data, kind)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 3) end
  if kind ~= nil and not kinds[kind] then error("bad argument #2 to 'send' (\"text\" or \"binary\" expected)", 3) end
end

-- c:send checks the arguments as bad_send does (a string; nil, "text" or
-- "binary"), so that a message costs no type() call (on PUC Lua 5.4 that
-- hashes the type's name again) and only bad ones come back here.
function methods:send(data, kind)
  local c = self._c
  while true do
    local ok, err = c:send(data, kind) -- false, id: wait for id; nothing: bad arguments
    if ok then return true end
    if ok == nil then
      if err == nil then bad_send(data, kind) end
      return nil, err
    end
    wait(err)
  end
end

function methods:receive(timeout)
  local c = self._c
  local deadline
  if timeout ~= nil then
    if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
      error("bad argument #1 to 'receive' (seconds expected, a number >= 0)", 2)
    end
    deadline = now_ms() + timeout * 1000
  end
  local expired = false
  while true do
    local msg, kind, code, reason = c:recv() -- false, id: wait for id
    if msg then return msg, kind end
    if msg == nil then return nil, kind, code, reason end
    if expired then return nil, "timeout" end
    if not deadline then
      wait(kind)
    else -- a message that came with the timeout is still taken (above)
      local left = deadline - now_ms()
      expired = left <= 0 or not wait(kind, left / 1000)
    end
  end
end

function methods:messages()
  return function()
    local msg, kind = self:receive()
    if msg then return msg, kind end
    return nil
  end
end
WS.messages = methods.messages -- the reconnecting ws's too: it needs only self:receive

function methods:ping(data)
  if data ~= nil and type(data) ~= "string" then error("bad argument #1 to 'ping' (string expected)", 2) end
  return self._c:ping(data)
end

-- Waits until the connection has finished closing.
function methods:wait_closed()
  local c = self._c
  while true do
    local id, state = c:info()
    if state == "closed" then return end
    wait(id)
  end
end

-- Starts the close handshake and waits for it to finish (at most
-- close_timeout). true when both close frames went across.
function methods:close(code, reason)
  local c = self._c
  if code ~= nil and type(code) ~= "number" then error("bad argument #1 to 'close' (number expected)", 2) end
  if reason ~= nil and type(reason) ~= "string" then error("bad argument #2 to 'close' (string expected)", 2) end
  c:close(code, reason)
  self:wait_closed()
  local _, _, clean, err = c:close_info()
  if clean then return true end
  return nil, err or "closed"
end

-- Topics ---------------------------------------------------------------------

local MAX_TOPIC = 1024

-- Raises at the caller's caller (the user's line) for a bad topic.
function WS.check_topic(topic, fname)
  if type(topic) ~= "string" then
    error("bad argument #1 to '" .. fname .. "' (topic string expected, got " .. type(topic) .. ")", 3)
  end
  if topic == "" or #topic > MAX_TOPIC then
    error("bad argument #1 to '" .. fname .. "' (a topic is a non-empty string of at most "
      .. MAX_TOPIC .. " bytes)", 3)
  end
end

function WS.check_message(data, kind, fname)
  if type(data) ~= "string" then
    error("bad argument #2 to '" .. fname .. "' (string expected, got " .. type(data) .. ")", 3)
  end
  if kind ~= nil and not kinds[kind] then
    error("bad argument #3 to '" .. fname .. "' (\"text\" or \"binary\" expected)", 3)
  end
end

local check_topic, check_message = WS.check_topic, WS.check_message

-- true (also when subscribed already), or nil, "closed". With opts.since
-- (an id from publish, or "earliest"), first replays what the topic's
-- history holds after it, then goes live: true, recovered (false when
-- nothing could be replayed: messages after since are gone, since is not
-- one of this process's ids, the topic keeps no history, or this
-- connection was subscribed already).
function methods:subscribe(topic, opts)
  check_topic(topic, "subscribe")
  if opts == nil then return self._c:subscribe(topic) end
  if type(opts) ~= "table" then error("bad argument #2 to 'subscribe' (options table expected)", 2) end
  local err = options.check(opts, options.subscribe)
  if err then error(err, 2) end
  if opts.since == nil then return self._c:subscribe(topic) end
  return self._c:subscribe(topic, opts.since)
end

-- true when it was subscribed. What was published before it stays queued.
function methods:unsubscribe(topic)
  check_topic(topic, "unsubscribe")
  return self._c:unsubscribe(topic)
end

function methods:subscribed(topic)
  check_topic(topic, "subscribed")
  return self._c:subscribed(topic)
end

-- A fresh array of this connection's topics.
function methods:topics()
  return self._c:topics()
end

-- To every subscriber of topic but this connection: queued, dropped, and
-- the message's id when the topic keeps history.
function methods:publish(topic, data, kind)
  check_topic(topic, "publish")
  check_message(data, kind, "publish")
  return self._c:publish(topic, data, kind)
end

-- Drops the TCP connection at once, without a close frame.
function methods:abort()
  self._c:abort("aborted by the application")
end

return WS
