-- A TLS (wss://) echo server: every message comes back to its sender.
--   lua examples/tls_echo.lua [cert.pem key.pem] [port]     (default 8443)
-- Without a certificate it makes a self-signed one for localhost and
-- 127.0.0.1 in a temp dir with the `openssl` command, and prints its path:
-- a client trusts it with { tls = { ca = "that/cert.pem" } } (or, for a
-- quick try only, skips verification with { tls = { verify = false } }).
-- From a checkout after `make`: without an installed duplex, find lua/ and
-- the built core (build/<lua>/, then duplex/core.so) next to examples/.
if not pcall(require, "duplex") then
  local root = ((arg and arg[0] or ""):match("^(.*[/\\])") or "./") .. "../"
  local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
  package.cpath = root .. "build/" .. lua .. "/?.so;" .. root .. "?.so;" .. package.cpath
end
local duplex = require "duplex"

local args = arg or {}
local cert, key, port
if args[2] and not tonumber(args[1]) then
  cert, key, port = args[1], args[2], tonumber(args[3])
else
  port = tonumber(args[1])
end
port = port or 8443

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function self_signed()
  local f = assert(io.popen("mktemp -d 2>/dev/null"))
  local dir = f:read("*l")
  f:close()
  assert(dir and dir ~= "", "cannot make a temp dir")
  local c, k = dir .. "/cert.pem", dir .. "/key.pem"
  local cmd = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30"
    .. " -subj /CN=localhost -addext %s -keyout %s -out %s >/dev/null 2>&1")
    :format(quote("subjectAltName=DNS:localhost,IP:127.0.0.1"), quote(k), quote(c))
  local ok = os.execute(cmd)
  assert(ok == true or ok == 0, "openssl could not make a certificate (is the openssl command installed?)")
  return c, k
end

if not cert then
  cert, key = self_signed()
  print("self-signed certificate: " .. cert)
end

local server = assert(duplex.serve({ host = "127.0.0.1", port = port, tls = { cert = cert, key = key } }, function(ws)
  -- A while loop over receive() rather than `for msg, kind in ws:messages()`,
  -- so that this also runs on PUC Lua 5.1 (which cannot yield in a for iterator).
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    ws:send(msg, kind)
  end
end))

print(("TLS echo server on wss://localhost:%d/"):format(server.port))
io.stdout:flush()
duplex.run()
