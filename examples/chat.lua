-- A chat room: open http://127.0.0.1:8080/ in a few browser tabs.
--   lua examples/chat.lua [port]        (default 8080, on 127.0.0.1)
--
-- The page (examples/chat.html, next to this script) is served at "/" through
-- the `http` option; browsers then open a WebSocket to /chat?nick=NAME, or
-- /chat?nick=NAME&room=ROOM for a room other than the lobby. Each room is a
-- topic: every text message a browser sends is published to everyone in its
-- room as a small JSON object: {"type":"message","nick":"ann","text":"hi"};
-- joins and leaves are {"type":"join"|"leave","nick":"ann","count":3}. A
-- newcomer first gets {"type":"welcome","nick":"ann","count":3} with the
-- name the room gave it. A client that falls 256 KiB behind misses messages
-- (max_backlog) until it catches up; nobody else waits for it.
--
-- The file can also be loaded as a module by passing it a table, which is
-- how the specs reuse it:  local chat = loadfile("examples/chat.lua")({})
-- returns { handler = fn(ws), http = fn(req), start = fn(opts), clients = set }.
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local as_module = type((...)) == "table"

-- Where this script lives, to find chat.html next to it.
local script = (arg and arg[0]) or "examples/chat.lua"
if as_module then script = (...).script or "examples/chat.lua" end
local dir = script:match("^(.*)[/\\]") or "."
local page_path = dir .. "/chat.html"

local MAX_NICK, MAX_ROOM = 24, 64
local SLOW_CLIENT = 256 * 1024  -- bytes waiting to go out before we skip a client

-- JSON text for a flat table of strings and numbers.
local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(ch)
    return escapes[ch] or ("\\u%04x"):format(ch:byte())
  end) .. '"'
end

local function json(t, order)
  local parts = {}
  for i = 1, #order do
    local k, v = order[i], t[order[i]]
    if v ~= nil then
      parts[#parts + 1] = json_string(k) .. ":" ..
        (type(v) == "number" and ("%d"):format(v) or json_string(tostring(v)))
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local FIELDS = { "type", "nick", "text", "count" }

-- The room -----------------------------------------------------------------

local clients = {}  -- ws -> nickname (every room)
local guests = 0

-- Whether s is well-formed UTF-8 (a nickname comes from the URL, as bytes).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or c >= 0xC2 and c <= 0xDF and 2 or c >= 0xE0 and c <= 0xEF and 3
      or c >= 0xF0 and c <= 0xF4 and 4 or nil
    if not len or i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

-- Printable, valid UTF-8, at most max bytes (cut at a character boundary).
local function clean_name(name, max)
  name = (name or ""):gsub("%c", ""):gsub("^%s+", ""):gsub("%s+$", "")
  if not valid_utf8(name) then name = "" end
  if #name > max then
    local cut = {}
    local len = 0
    for ch in name:gmatch("[\1-\127\194-\244][\128-\191]*") do
      if len + #ch > max then break end
      cut[#cut + 1], len = ch, len + #ch
    end
    name = table.concat(cut)
  end
  return name
end

local function clean_nick(nick)
  nick = clean_name(nick, MAX_NICK)
  if nick == "" then
    guests = guests + 1
    nick = "guest" .. guests
  end
  return nick
end

local function handler(ws)
  local params = ws.request.params -- the query string, decoded
  local nick = clean_nick(params.nick)
  local room = "room:" .. (clean_name(params.room, MAX_ROOM):match("^.+$") or "lobby")
  ws:subscribe(room)
  clients[ws] = nick
  local count = duplex.subscribers(room)
  ws:send(json({ type = "welcome", nick = nick, count = count }, FIELDS))
  duplex.publish(room, json({ type = "join", nick = nick, count = count }, FIELDS))
  -- A while loop rather than `for msg in ws:messages()`: PUC Lua 5.1 cannot
  -- yield inside a for iterator.
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    if kind == "text" then
      duplex.publish(room, json({ type = "message", nick = nick, text = msg }, FIELDS))
    end
  end
  ws:unsubscribe(room) -- a closed connection has left already; this one may not be closed yet
  clients[ws] = nil
  duplex.publish(room, json({ type = "leave", nick = nick, count = duplex.subscribers(room) }, FIELDS))
end

local function http(req)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return 405, { ["Content-Type"] = "text/plain", ["Allow"] = "GET, HEAD" }, "method not allowed\n"
  end
  if req.path == "/" or req.path == "/index.html" or req.path == "/chat.html" then
    -- Read on every request, so that edits to the page show up on reload.
    local f, err = io.open(page_path, "rb")
    if not f then
      return 500, { ["Content-Type"] = "text/plain" }, "cannot read the page: " .. err .. "\n"
    end
    local body = f:read("*a")
    f:close()
    return 200, { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-cache" }, body
  end
  return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
end

local function start(opts)
  opts = opts or {}
  return duplex.serve({
    host = opts.host or "127.0.0.1",
    port = opts.port or 8080,
    http = opts.http or http,
    max_message = 64 * 1024,
    max_backlog = SLOW_CLIENT,
    on_error = opts.on_error,
    reuseport = opts.reuseport, -- examples/cluster.lua runs several on one port
  }, handler)
end

if as_module then
  return { handler = handler, http = http, start = start, clients = clients }
end

local port = tonumber(arg and arg[1]) or 8080
local server, err = start({ port = port })
if not server then
  io.stderr:write(err, "\n")
  os.exit(1)
end
-- SIGTERM (a deploy, systemd, docker stop): every client gets a close 1001
-- and its handler finishes (at most 5 s), then the process exits with 0.
-- Ctrl-C (SIGINT, no handler installed) stops duplex.run at once: 130.
duplex.on_signal("SIGTERM", function()
  local ok = duplex.shutdown({ code = 1001, reason = "server shutting down", timeout = 5 })
  duplex.stop()
  os.exit(ok and 0 or 1)
end)
print(("chat on http://127.0.0.1:%d/  (Ctrl-C to stop)"):format(server.port))
io.stdout:flush()
local _, why, signal = duplex.run()
if why == "interrupted" then os.exit(signal == "SIGINT" and 130 or 143) end
