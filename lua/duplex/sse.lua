-- Server-Sent Events on the server's topics (serve{ sse = fn }): which
-- requests ask for a stream, what the application's answer means, and the
-- stream's head. The events themselves are framed by the C core, once per
-- publish for every stream (csrc/transport/conn.c, sse_event).
local type, error, ipairs, pairs, tostring, floor = type, error, ipairs, pairs, tostring, math.floor

local M = {}

M.HEARTBEAT, M.RETRY = 15, 3 -- seconds: sse_heartbeat and sse_retry by default

-- A GET whose Accept names text/event-stream (EventSource sends exactly that).
function M.wants(req)
  local accept = req.headers and req.headers.accept
  return req.method == "GET" and type(accept) == "string" and accept:lower():find("text/event-stream", 1, true) ~= nil
end

-- Where a client resumes: the Last-Event-ID header, else the last_event_id
-- query parameter (a browser cannot set the header on its first request).
function M.last_event_id(req)
  local id = req.headers and req.headers["last-event-id"] or req.params and req.params.last_event_id
  if type(id) == "string" and id ~= "" then return id end
  return nil
end

-- The topics sse(req) returned: a list of strings, or one string. Raises
-- (in the application's coroutine, so on_error reports it) otherwise.
function M.topics(ret)
  if type(ret) == "string" then return { ret } end
  if type(ret) ~= "table" or #ret == 0 then
    error("sse must return a list of topics, an HTTP status to refuse, or nothing to pass the request on, not " ..
      tostring(ret), 0)
  end
  for i, t in ipairs(ret) do
    if type(t) ~= "string" or t == "" then error("sse: topic #" .. i .. " is not a non-empty string", 0) end
    -- each event names its topic on an "event:" line
    if t:find("[\r\n]") then error("sse: topic #" .. i .. " holds CR or LF, which an event stream cannot name", 0) end
  end
  return ret
end

local defaults = {
  ["content-type"] = { "Content-Type", "text/event-stream" },
  ["cache-control"] = { "Cache-Control", "no-cache, no-transform" },
  ["x-accel-buffering"] = { "X-Accel-Buffering", "no" },
}

-- The stream's headers: the application's, then each default it did not set.
function M.headers(extra)
  local out, seen = {}, {}
  if type(extra) == "table" then
    for name, value in pairs(extra) do
      out[name] = value
      if type(name) == "string" then seen[name:lower()] = true end
    end
  end
  for lname, d in pairs(defaults) do
    if not seen[lname] then out[d[1]] = d[2] end
  end
  return out
end

-- Seconds (an option, default d) to the whole milliseconds the core takes;
-- nil, message when out of range.
function M.ms(seconds, d, name)
  if seconds == nil then seconds = d end
  if not (seconds >= 0 and seconds <= 86400) then
    return nil, "option '" .. name .. "' must be seconds from 0 to 86400"
  end
  return floor(seconds * 1000 + 0.5)
end

return M
