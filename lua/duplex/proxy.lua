-- Which HTTP proxy a dial goes through: the `proxy` option, else the
-- environment as curl reads it (ws_proxy / WS_PROXY / http_proxy for
-- ws://, wss_proxy / WSS_PROXY / https_proxy / HTTPS_PROXY for wss://; the
-- upper-case HTTP_PROXY is not read, as curl does not: a CGI program gets it
-- from a request's Proxy header), minus the hosts no_proxy / NO_PROXY
-- exempt. The tunnel itself (CONNECT) is csrc/transport/dial.c's.
local tonumber, char, floor, ipairs = tonumber, string.char, math.floor, ipairs

local M = {}

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- "http://[user:pass@]host[:port][/]" (the scheme may be left out, as curl
-- allows) as { host, port, auth = "user:pass" or nil }, or nil, err.
function M.parse(s)
  local bad = "invalid proxy URL: " .. s
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if scheme and scheme:lower() ~= "http" then
    return nil, "unsupported proxy scheme " .. scheme:lower() .. " (duplex speaks to http:// proxies only)"
  end
  rest = (rest or s):gsub("/$", "")
  local userinfo, hostport = rest:match("^(.*)@([^@]*)$")
  hostport = hostport or rest
  local host, after
  if hostport:sub(1, 1) == "[" then
    host, after = hostport:match("^%[([%x:.]+)%](.*)$")
  else
    host, after = hostport:match("^([^:/?#]+)(.*)$")
  end
  if not host then return nil, bad end
  local port = 1080 -- curl's default proxy port
  if after ~= "" then
    port = tonumber(after:match("^:(%d+)$"))
    if not port or port < 1 or port > 65535 then return nil, bad end
  end
  local auth
  if userinfo then
    local user, pass = userinfo:match("^([^:]*):?(.*)$")
    auth = percent_decode(user) .. ":" .. percent_decode(pass)
  end
  return { host = host, port = port, auth = auth }
end

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local bytes = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
  for _, v in ipairs(bytes) do if v > 255 then return nil end end
  return bytes
end

-- The 16 bytes of an IPv6 literal (with "::" and a dotted tail), or nil.
local function ipv6(s)
  if not s:find(":", 1, true) then return nil end
  local head, tail = s:match("^(.-)::(.*)$")
  local function groups(part, out)
    if part == "" then return out end
    for g in (part .. ":"):gmatch("([^:]*):") do
      local v4 = g:find(".", 1, true) and ipv4(g)
      if v4 then
        out[#out + 1] = v4[1] * 256 + v4[2]
        out[#out + 1] = v4[3] * 256 + v4[4]
      elseif g:match("^%x%x?%x?%x?$") then
        out[#out + 1] = tonumber(g, 16)
      else
        return nil
      end
    end
    return out
  end
  local words
  if head then
    local a, b = groups(head, {}), groups(tail, {})
    if not a or not b or #a + #b > 7 then return nil end
    words = a
    for _ = 1, 8 - #a - #b do words[#words + 1] = 0 end
    for _, w in ipairs(b) do words[#words + 1] = w end
  else
    words = groups(s, {})
    if not words or #words ~= 8 then return nil end
  end
  local bytes = {}
  for i, w in ipairs(words) do
    bytes[2 * i - 1], bytes[2 * i] = floor(w / 256), w % 256
  end
  return bytes
end

-- The first `bits` bits of two byte arrays agree (all of them when nil).
local function same_prefix(a, b, bits)
  bits = bits or #a * 8
  if bits > #a * 8 then return false end
  for i = 1, #a do
    local take = bits - (i - 1) * 8
    if take <= 0 then return true end
    if take >= 8 then
      if a[i] ~= b[i] then return false end
    else
      local unit = 2 ^ (8 - take)
      return floor(a[i] / unit) == floor(b[i] / unit)
    end
  end
  return true
end

-- An address against one no_proxy entry: the same address, or a CIDR
-- range that holds it.
local function address_match(addr, entry, parse)
  local net, bits = entry:match("^(.-)/(%d+)$")
  local check = parse(net or entry)
  if not check then return false end
  return same_prefix(addr, check, bits and tonumber(bits))
end

-- true when no_proxy exempts host, with curl's rules: "*" alone matches
-- every host; entries are separated by commas and blanks; a name matches
-- itself and its subdomains (a leading "." is dropped, "example.com" does
-- not match "notexample.com"), case-insensitively, trailing dots ignored;
-- IP addresses match exactly or by CIDR ("10.0.0.0/8", "fd00::/8"). Ports
-- play no part: the URL's is not looked at, and an entry with one matches
-- nothing, as in curl.
function M.exempt(host, no_proxy)
  if not no_proxy or no_proxy == "" then return false end
  if no_proxy == "*" then return true end
  local addr, parse = ipv4(host), ipv4
  if not addr then addr, parse = ipv6(host), ipv6 end
  local name = not addr and host:lower():gsub("%.$", "")
  for entry in no_proxy:gmatch("[^,%s]+") do
    if addr then
      if address_match(addr, entry, parse) then return true end
    else
      entry = entry:lower():gsub("%.$", ""):gsub("^%.", "")
      if entry ~= "" and (name == entry or name:sub(-#entry - 1) == "." .. entry) then return true end
    end
  end
  return false
end

local env_names = {
  [false] = { "ws_proxy", "WS_PROXY", "http_proxy" },
  [true] = { "wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY" },
}

local function first_env(getenv, names)
  for _, name in ipairs(names) do
    local v = getenv(name)
    if v and v ~= "" then return v, name end
  end
end

-- The proxy for the parsed URL u: nil for a direct dial, else { host, port,
-- auth }, or nil, err for a proxy URL that cannot be used. option is the
-- `proxy` option (a URL, false for never, nil for the environment); getenv
-- defaults to os.getenv.
function M.for_url(u, option, getenv)
  if option == false then return nil end
  getenv = getenv or os.getenv
  local value, from = option, "option 'proxy'"
  if value == nil then
    local name
    value, name = first_env(getenv, env_names[u.secure and true or false])
    if not value then return nil end
    from = name
  end
  if M.exempt(u.host, getenv("no_proxy") or getenv("NO_PROXY")) then return nil end
  local p, err = M.parse(value)
  if not p then return nil, err .. " (from " .. from .. ")" end
  return p
end

return M
