-- A live dashboard: open http://127.0.0.1:8080/ in a few browser tabs.
--   lua examples/dashboard.lua [port]      (default 8080, on 127.0.0.1)
--
-- Every second an interval timer publishes one JSON tick to the topic
-- "dashboard", which every connection subscribes to:
--   {"type":"tick","seq":12,"time":"12:00:01","viewers":3,"load":"0.15","rss_kib":5120}
-- The tick is framed once for all viewers and never waits for a slow one: a
-- viewer that falls 16 KiB behind (a stalled tab) misses ticks until it
-- catches up (max_backlog), and ws.dropped counts them.
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local TOPIC = "dashboard"

local function read_first_line(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  return line
end

local function rss_kib()
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 end
  local kib = f:read("*a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kib) or 0
end

local seq = 0
local function tick()
  seq = seq + 1
  local load = (read_first_line("/proc/loadavg") or "0"):match("^(%S+)")
  return ('{"type":"tick","seq":%d,"time":"%s","viewers":%d,"load":"%s","rss_kib":%d}'):format(
    seq, os.date("!%H:%M:%S"), duplex.subscribers(TOPIC), load, rss_kib())
end

local PAGE = [[<!doctype html>
<meta charset="utf-8"><title>duplex dashboard</title>
<style>body{font:16px system-ui,sans-serif;margin:2em}td{padding:.2em 1em}#state{color:#888}</style>
<h1>duplex dashboard <small id="state">connecting</small></h1>
<table><tr><td>time (UTC)</td><td id="time">-</td></tr>
<tr><td>viewers</td><td id="viewers">-</td></tr>
<tr><td>load</td><td id="load">-</td></tr>
<tr><td>server RSS</td><td id="rss">-</td></tr></table>
<canvas id="chart" width="480" height="80"></canvas>
<script>
const $ = (id) => document.getElementById(id), loads = [];
function draw() {
  const c = $("chart").getContext("2d"), max = Math.max(1, ...loads);
  c.clearRect(0, 0, 480, 80); c.beginPath();
  loads.forEach((v, i) => c.lineTo(i * 8, 80 - v / max * 75)); c.stroke();
}
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live");
  ws.onopen = () => { $("state").textContent = "live"; };
  ws.onmessage = (e) => {
    const t = JSON.parse(e.data);
    $("time").textContent = t.time; $("viewers").textContent = t.viewers;
    $("load").textContent = t.load; $("rss").textContent = t.rss_kib + " KiB";
    loads.push(parseFloat(t.load)); if (loads.length > 60) loads.shift(); draw();
  };
  ws.onclose = () => { $("state").textContent = "reconnecting"; setTimeout(connect, 1000); };
}
connect();
</script>
]]

local function http(req)
  if req.path == "/" then return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, PAGE end
  return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
end

local port = tonumber(arg and arg[1]) or 8080
local server = assert(duplex.serve({ host = "127.0.0.1", port = port, http = http, max_backlog = 16 * 1024 },
  function(ws)
    ws:subscribe(TOPIC)
    ws:send(tick()) -- the first figures at once, not in up to a second
    while ws:receive() do end -- viewers only listen; this waits for the close
  end))

duplex.every(1, function() duplex.publish(TOPIC, tick()) end)

print(("dashboard on http://127.0.0.1:%d/  (Ctrl-C to stop)"):format(server.port))
io.stdout:flush()
duplex.run()
