-- ws:// and wss:// URLs (RFC 6455 section 3), and query strings.
local M = {}

local char, tonumber = string.char, tonumber

local function hex_byte(h)
  return char(tonumber(h, 16))
end

-- Percent-decodes s, "+" as a space (form encoding, as in queries). A "%"
-- not followed by two hex digits stays as it is.
local function unescape(s)
  if s:find("+", 1, true) then s = s:gsub("+", " ") end
  if s:find("%", 1, true) then s = s:gsub("%%(%x%x)", hex_byte) end
  return s
end

-- The query string as a table: name -> the first value given for it ("" for
-- a name without "="), names and values percent-decoded.
function M.params(query)
  local t = {}
  if not query then return t end
  for pair in query:gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=?(.*)$")
    name = unescape(name)
    if name ~= "" and t[name] == nil then t[name] = unescape(value) end
  end
  return t
end

-- Returns a table { secure, host, port, target, host_header } or nil, err.
function M.parse(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "invalid URL: " .. url end
  scheme = scheme:lower()
  if scheme ~= "ws" and scheme ~= "wss" then return nil, "URL scheme must be ws or wss, not " .. scheme end
  if rest:find("#", 1, true) then return nil, "a WebSocket URL cannot have a fragment" end
  local authority, target = rest:match("^([^/?]*)(.*)$")
  if authority:find("@", 1, true) then return nil, "user information in a WebSocket URL is not supported" end
  local host, port
  -- the host first, then whatever follows its ":" must be a port
  local after
  if authority:sub(1, 1) == "[" then
    host, after = authority:match("^%[([%x:.]+)%](.*)$")
  else
    host, after = authority:match("^([^:]*)(.*)$")
  end
  if not host or host == "" then return nil, "invalid host in URL: " .. url end
  if after ~= "" then
    port = after:match("^:(%d*)$")
    if not port then return nil, "invalid port in URL: " .. url end
  end
  local secure = scheme == "wss"
  local default = secure and 443 or 80
  port = tonumber(port) or default
  if port < 1 or port > 65535 then return nil, "invalid port in URL: " .. url end
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  local hosthdr = host:find(":", 1, true) and "[" .. host .. "]" or host
  if port ~= default then hosthdr = hosthdr .. ":" .. port end
  return { secure = secure, host = host, port = port, target = target, host_header = hosthdr }
end

return M
