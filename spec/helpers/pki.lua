-- Test certificates, made once per run with the `openssl` command in a
-- temp dir (removed when this process ends).
--
--   local pki = require "spec.helpers.pki"   -- or require "helpers.pki"
--   local p = pki.get()
--   p.ca                       CA certificate (PEM)
--   p.server_cert, p.server_key    CN=localhost, DNS:localhost, IP:127.0.0.1
--   p.reload_cert, p.reload_key    CN=reloaded, same names (for reload_tls)
--   p.client_cert, p.client_key    CN=test client (clientAuth)
--   p.expired_cert, p.expired_key  CN=expired, localhost, valid in Jan 2020 only
--   p.other_cert, p.other_key      CN=other.example, DNS:other.example only
--   p.self_cert, p.self_key        self-signed CN=localhost (untrusted)
--
-- Every key is EC P-256 (quick to make); the CA signs with SHA-256.
local pki = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function check(cond, what, dir)
  if not cond then error("pki: " .. what .. " failed (openssl in " .. dir .. ")", 0) end
end

local cached

local EXT = [[
[ ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid

[ other ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example
authorityKeyIdentifier = keyid

[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
]]

-- `openssl ca` is the one tool in OpenSSL 3.0 that sets arbitrary dates
-- (x509 -req has no -not_before/-not_after before 3.4).
local CA_CONF = [[
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = %s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = server

[ anything ]
commonName = supplied

[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
]]

local function newkey(dir, name, subj)
  local key, csr = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".csr"
  check(sh(("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s -subj %s")
    :format(quote(key), quote(csr), quote(subj))), "key " .. name, dir)
  return key, csr
end

local function sign(dir, name, csr, section, serial)
  local cert = dir .. "/" .. name .. ".pem"
  check(sh(("openssl x509 -req -in %s -CA %s -CAkey %s -set_serial %d -days 30 -sha256 -extfile %s -extensions %s -out %s")
    :format(quote(csr), quote(dir .. "/ca.pem"), quote(dir .. "/ca.key"), serial, quote(dir .. "/ext.cnf"), section,
      quote(cert))), "signing " .. name, dir)
  return cert
end

local function make()
  local f = assert(io.popen("mktemp -d /tmp/duplex-pki.XXXXXX"))
  local dir = f:read("*l")
  f:close()
  assert(dir and dir:match("^/tmp/duplex%-pki%."), "mktemp failed")
  write(dir .. "/ext.cnf", EXT)
  local p = { dir = dir, ca = dir .. "/ca.pem", ca_key = dir .. "/ca.key" }

  check(sh(("openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s -days 30 -sha256 -subj %s -config %s -extensions ca")
    :format(quote(p.ca_key), quote(p.ca), quote("/CN=duplex test CA"), quote(dir .. "/ext.cnf"))), "CA", dir)

  local key, csr = newkey(dir, "server", "/CN=localhost/O=duplex tests")
  p.server_key, p.server_cert = key, sign(dir, "server", csr, "server", 1001)
  key, csr = newkey(dir, "reload", "/CN=reloaded/O=duplex tests")
  p.reload_key, p.reload_cert = key, sign(dir, "reload", csr, "server", 1002)
  key, csr = newkey(dir, "client", "/CN=test client/O=duplex tests")
  p.client_key, p.client_cert = key, sign(dir, "client", csr, "client", 1003)
  key, csr = newkey(dir, "other", "/CN=other.example")
  p.other_key, p.other_cert = key, sign(dir, "other", csr, "other", 1004)

  -- expired: valid for one day in January 2020
  key, csr = newkey(dir, "expired", "/CN=expired")
  os.execute("mkdir -p " .. quote(dir .. "/newcerts"))
  write(dir .. "/index.txt", "")
  write(dir .. "/serial", "1005\n")
  write(dir .. "/ca.cnf", CA_CONF:format(dir))
  p.expired_key, p.expired_cert = key, dir .. "/expired.pem"
  check(sh(("openssl ca -batch -config %s -in %s -out %s -startdate 20200101000000Z -enddate 20200102000000Z -notext")
    :format(quote(dir .. "/ca.cnf"), quote(csr), quote(p.expired_cert))), "expired cert", dir)

  -- self-signed, not trusted by anyone
  p.self_key, p.self_cert = dir .. "/self.key", dir .. "/self.pem"
  check(sh(("openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s -days 30 -subj %s -addext %s")
    :format(quote(p.self_key), quote(p.self_cert), quote("/CN=localhost/O=self-signed"),
      quote("subjectAltName=DNS:localhost,IP:127.0.0.1"))), "self-signed cert", dir)
  return p
end

local function remove_on_close(dir)
  local function rm() os.execute("rm -rf " .. quote(dir)) end
  -- busted may end with os.exit, which skips __gc on Lua 5.1: a watcher
  -- (the shell's parent is this Lua) removes the dir once this process ends
  os.execute(("p=$PPID; (while kill -0 $p 2>/dev/null; do sleep 1; done; rm -rf %s) >/dev/null 2>&1 </dev/null &")
    :format(quote(dir)))
  if rawget(_G, "newproxy") then -- Lua 5.1, LuaJIT
    local proxy = newproxy(true)
    getmetatable(proxy).__gc = rm
    return proxy
  end
  return setmetatable({}, { __gc = rm })
end

function pki.get()
  if not cached then
    cached = make()
    pki._sentinel = remove_on_close(cached.dir)
  end
  return cached
end

-- The text of a PEM file.
function pki.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

return pki
