-- One topic served two ways: open http://127.0.0.1:8080/ for a WebSocket
-- page that reads and posts, and http://127.0.0.1:8080/watch for an
-- EventSource page that only reads.
--   lua examples/feed.lua [port]       (default 8080, on 127.0.0.1)
--
-- The topic "feed" keeps its last 200 messages (duplex.history). Whatever a
-- WebSocket client sends is published to it, and so is a server line every
-- 10 seconds. WebSocket clients subscribe at /live (replayed what the
-- history holds first); event streams at /events (serve's `sse` option),
-- where a browser that lost its connection comes back with Last-Event-ID
-- and is sent exactly what it missed. Try it: stop the network for a
-- while (or the server, for a tab left open), and watch the page catch up.
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local TOPIC, MAX_POST = "feed", 500

local STYLE = [[<style>body{font:16px system-ui,sans-serif;margin:2em;max-width:40em}
#log{white-space:pre-wrap;border:1px solid #ccc;padding:.5em;height:20em;overflow:auto}
small{color:#888}</style>]]

local POST_PAGE = [[<!doctype html>
<meta charset="utf-8"><title>duplex feed</title>]] .. STYLE .. [[
<h1>feed <small id="state">connecting</small></h1>
<p>A WebSocket: what you post goes to everyone, also to <a href="/watch">/watch</a>, which reads it as Server-Sent Events.</p>
<div id="log"></div>
<form id="f"><input id="text" size="50" maxlength="500" autofocus> <button>post</button></form>
<script>
const $ = (id) => document.getElementById(id);
let ws;
function connect() {
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live");
  ws.onopen = () => { $("state").textContent = "live"; $("log").textContent = ""; };
  ws.onmessage = (e) => { $("log").textContent += e.data + "\n"; $("log").scrollTop = 1e9; };
  ws.onclose = () => { $("state").textContent = "reconnecting"; setTimeout(connect, 1000); };
}
$("f").onsubmit = (e) => { e.preventDefault(); if ($("text").value) ws.send($("text").value); $("text").value = ""; };
connect();
</script>
]]

local WATCH_PAGE = [[<!doctype html>
<meta charset="utf-8"><title>duplex feed (EventSource)</title>]] .. STYLE .. [[
<h1>feed, read-only <small id="state">connecting</small></h1>
<p>An EventSource: it reconnects by itself and resumes after the last event it got.</p>
<div id="log"></div>
<script>
const $ = (id) => document.getElementById(id);
const es = new EventSource("/events");
es.onopen = () => { $("state").textContent = "live"; };
es.onerror = () => { $("state").textContent = "reconnecting"; };
es.addEventListener("feed", (e) => {
  $("log").textContent += e.data + "  (" + e.lastEventId + ")\n"; $("log").scrollTop = 1e9;
});
</script>
]]

local function http(req)
  local html = { ["Content-Type"] = "text/html; charset=utf-8" }
  if req.path == "/" then return 200, html, POST_PAGE end
  if req.path == "/watch" then return 200, html, WATCH_PAGE end
  return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
end

-- Event streams of the one topic, at /events only.
local function sse(req)
  if req.path == "/events" then return { TOPIC } end
  return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
end

local function handler(ws)
  if ws.request.path ~= "/live" then return ws:close(1008, "unknown path") end
  ws:subscribe(TOPIC, { since = "earliest" })
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    if kind == "text" and #msg <= MAX_POST then duplex.publish(TOPIC, msg) end
  end
end

duplex.history(TOPIC, { size = 200 })

local port = tonumber(arg and arg[1]) or 8080
local server = assert(duplex.serve({ host = "127.0.0.1", port = port, http = http, sse = sse,
  max_backlog = 256 * 1024 }, handler))
local clock = duplex.every(10, function() duplex.publish(TOPIC, "server time " .. os.date("!%H:%M:%S") .. " UTC") end)
-- SIGTERM: WebSockets get a close 1001 and event streams end (a browser's
-- EventSource comes back on its own, to this server or the next one)
duplex.on_signal("SIGTERM", function()
  clock:stop()
  local ok = duplex.shutdown({ timeout = 5 })
  duplex.stop()
  os.exit(ok and 0 or 1)
end)
print(("feed on http://127.0.0.1:%d/ (event stream at /events, its page at /watch)"):format(server.port))
io.stdout:flush()
local _, why, signal = duplex.run()
if why == "interrupted" then os.exit(signal == "SIGINT" and 130 or 143) end
