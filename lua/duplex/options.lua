-- Checks option tables before they reach the C core: every name must be
-- known (a misspelt one would otherwise be ignored without a word), and
-- the options whose type the C side cannot name well are type checked.
-- Ranges and the rest stay with the C side (csrc/binding/opts.c). Each
-- check returns an error message, or nil; the public function raises it at
-- its caller's line.
local type, pairs, ipairs, tostring, sort, min = type, pairs, ipairs, tostring, table.sort, math.min

local M = {}

-- Kinds: a Lua type checked here, or "any" (the C side checks it), or a
-- table of the names of a sub-table.
local compression = {
  level = "number", window_bits = "number", mem_level = "number", threshold = "number",
  context_takeover = "any",
}
local client_tls = { cert = "string", key = "string", ca = "string", verify = "any" }
local sni_host = client_tls
local server_tls = { cert = "string", key = "string", ca = "string", verify = "any", sni = "sni" }

local function conn_options(t)
  t.max_message, t.max_head, t.high_water = "number", "number", "number"
  t.close_timeout, t.ping_interval, t.ping_timeout = "number", "number", "number"
  t.compression = compression
  return t
end

M.serve = conn_options({
  host = "string", port = "number", backlog = "number", reuseport = "boolean", protocols = "any", origins = "any",
  http = "function", accept = "function", on_error = "function", handshake_timeout = "number",
  sse = "function", sse_heartbeat = "number", sse_retry = "number",
  tls = server_tls,
  -- slow subscribers of topics
  max_backlog = "number", on_backlog = "on_backlog",
})

-- reconnect = true, or a table of these
local reconnect = {
  min = "number", max = "number", factor = "number", jitter = "boolean", attempts = "number",
  min_uptime = "number",
}

M.connect = conn_options({
  protocols = "any", headers = "any", origin = "string", timeout = "number", tls = client_tls,
  proxy = "proxy",
  -- the reconnecting client (lua/duplex/reconnect.lua)
  reconnect = reconnect, on_open = "function", on_close = "function", queue = "number",
  should_retry = "function",
})

M.broker = {
  prefix = "string", timeout = "number", reconnect = { min = "number", max = "number" }, max_queue = "number",
}
-- duplex.history(topic, opts) and ws:subscribe(topic, opts)
M.history = { size = "number", ttl = "number", bytes = "number" }
M.subscribe = { since = "string" }
M.shutdown = { code = "number", reason = "string", timeout = "number" }

M.server_tls = server_tls

-- Levenshtein distance, given up past 2.
local function distance(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  if la - lb > 2 or lb - la > 2 then return 3 end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur, best = { [0] = i }, i
    local ca = a:byte(i)
    for j = 1, lb do
      local cost = ca == b:byte(j) and 0 or 1
      local v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      cur[j] = v
      if v < best then best = v end
    end
    if best > 2 then return 3 end
    prev = cur
  end
  return prev[lb]
end

-- The known name closest to name: within 2 edits, or one a prefix or a
-- suffix of the other ("protocol", "handshake_timeout" for a client).
local function suggest(name, schema)
  local names = {}
  for known in pairs(schema) do names[#names + 1] = known end
  sort(names)
  local best, best_d
  for _, known in ipairs(names) do
    local d = distance(name, known)
    if d > 2 and #name >= 3 and #known >= 3 then
      local short, long = name, known
      if #short > #long then short, long = long, short end
      if long:sub(1, #short) == short or long:sub(-#short) == short then d = 2.5 end
    end
    if d <= 2.5 and (not best_d or d < best_d) then best, best_d = known, d end
  end
  return best
end

local check_table

local function check_value(kind, v, full)
  if kind == "any" or v == nil then return nil end
  if type(kind) == "table" then
    if type(v) == "table" then return check_table(v, kind, full .. ".") end
    return nil -- the C side names what it must be
  end
  if kind == "sni" then
    if type(v) ~= "table" then return nil end
    for host, entry in pairs(v) do
      if type(host) == "string" and type(entry) == "table" then
        local err = check_table(entry, sni_host, full .. "." .. host .. ".")
        if err then return err end
      end
    end
    return nil
  end
  if kind == "proxy" then
    if v == false or type(v) == "string" then return nil end
    return "option '" .. full .. "' must be a proxy URL string or false"
  end
  if kind == "on_backlog" then
    if v == "drop" or v == "close" then return nil end
    return "option '" .. full .. "' must be \"drop\" or \"close\""
  end
  if type(v) ~= kind then
    return "option '" .. full .. "' must be a " .. kind .. " (got " .. type(v) .. ")"
  end
  return nil
end

-- The first problem with table t under schema, or nil. prefix names the
-- sub-table ("tls.").
function check_table(t, schema, prefix)
  prefix = prefix or ""
  for name, v in pairs(t) do
    local kind = type(name) == "string" and schema[name]
    if not kind then
      local msg = "unknown option '" .. prefix .. tostring(name) .. "'"
      local near = type(name) == "string" and suggest(name, schema)
      if near then msg = msg .. " (did you mean '" .. prefix .. near .. "'?)" end
      return msg
    end
    local err = check_value(kind, v, prefix .. name)
    if err then return err end
  end
  return nil
end

M.check = check_table

return M
