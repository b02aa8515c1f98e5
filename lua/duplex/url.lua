-- ws:// and wss:// URLs (RFC 6455 section 3).
local M = {}

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
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "invalid host in URL: " .. url end
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
