-- Memory per idle connection, ws:// next to wss://, on a duplex server run
-- as a separate process (so the clients' memory does not count).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
--     lua5.4 bench/idle_tls.lua [connections]        (default 2000)
--
-- For each of ws and wss: starts `this-lua bench/idle_tls.lua server ...`,
-- reads its VmRSS from /proc/PID/status, opens the connections with our
-- client (each sends one message and waits for its echo, so every TLS
-- handshake is over and every buffer had a use), waits a moment, reads
-- VmRSS again, and prints (after - before) / connections. The server's
-- handler is the usual echo loop, so each connection also holds its
-- coroutine. Needs `ulimit -n` above the connection count and the openssl
-- command (a self-signed EC P-256 certificate is made in a temp dir).
local duplex = require "duplex"

local args = arg or {}
-- the server child runs this same file, wherever it is called from
local self_path = args[0] or "bench/idle_tls.lua"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Server mode -----------------------------------------------------------------
if args[1] == "server" then
  local opts = { host = "127.0.0.1", port = 0 }
  if args[2] == "wss" then opts.tls = { cert = args[3], key = args[4] } end
  local server = assert(duplex.serve(opts, function(ws)
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      ws:send(msg, kind)
    end
  end))
  io.stdout:write("port=", server.port, "\n")
  io.stdout:flush()
  duplex.run()
  return
end

-- Bench mode ------------------------------------------------------------------
local N = tonumber(args[1]) or 2000

local function sh_read(cmd)
  local f = assert(io.popen(cmd))
  local s = f:read("*a")
  f:close()
  return s
end

local function rss_kib(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function lua_cmd()
  local lua = args[-1] or (rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+")))
  return ("%s -e %s"):format(quote(lua), quote(("package.path=%q package.cpath=%q"):format(package.path, package.cpath)))
end

local dir = sh_read("mktemp -d"):match("%S+")
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
assert(os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost"
  .. " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1"):format(quote(key), quote(cert))))

local function start_server(scheme)
  local out = dir .. "/" .. scheme .. ".out"
  local pid = sh_read(("%s %s server %s %s %s >%s 2>&1 </dev/null & echo $!")
    :format(lua_cmd(), quote(self_path), scheme, quote(cert), quote(key), quote(out))):match("%d+")
  for _ = 1, 100 do
    local f = io.open(out)
    local s = f and f:read("*a")
    if f then f:close() end
    local port = s and s:match("port=(%d+)")
    if port then return pid, tonumber(port) end
    os.execute("sleep 0.05")
  end
  error("the " .. scheme .. " server did not start: " .. tostring(sh_read("cat " .. quote(out))))
end

local function measure(scheme)
  local pid, port = start_server(scheme)
  local result
  duplex.run(function()
    duplex.sleep(0.3)
    local before = rss_kib(pid)
    local conns, failed, pending = {}, 0, 0
    local url = ("%s://127.0.0.1:%d/"):format(scheme, port)
    local opts = scheme == "wss" and { tls = { ca = cert } } or {}
    local t0 = duplex.now()
    local i = 0
    while i < N do
      -- at most 100 handshakes at a time
      while pending >= 100 and duplex.now() < t0 + 120 do duplex.sleep(0.005) end
      i = i + 1
      pending = pending + 1
      duplex.spawn(function()
        local ws, err = duplex.connect(url, opts)
        if ws and ws:send("x") and ws:receive() == "x" then
          conns[#conns + 1] = ws
        else
          failed = failed + 1
          if failed == 1 then io.stderr:write(scheme, ": ", tostring(err), "\n") end
        end
        pending = pending - 1
      end)
    end
    while pending > 0 and duplex.now() < t0 + 120 do duplex.sleep(0.01) end
    local took = duplex.now() - t0
    duplex.sleep(1) -- let the server settle
    local after = rss_kib(pid)
    result = { scheme = scheme, n = #conns, failed = failed, before = before, after = after,
      per = (after - before) * 1024 / math.max(1, #conns), took = took }
    for _, ws in ipairs(conns) do ws:abort() end
    duplex.sleep(0.2)
  end)
  os.execute("kill " .. pid .. " 2>/dev/null")
  return result
end

local results = { measure("ws"), measure("wss") }
os.execute("rm -rf " .. quote(dir))
print(("%s, %d idle connections, server VmRSS growth / connections:"):format(_VERSION .. (rawget(_G, "jit") and " (LuaJIT)" or ""), N))
for _, r in ipairs(results) do
  print(("  %-4s %5d open (%d failed)  RSS %d -> %d KiB  %7.0f bytes per idle connection  (opened in %.2f s)")
    :format(r.scheme, r.n, r.failed, r.before, r.after, r.per, r.took))
end
