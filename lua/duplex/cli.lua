-- The duplex command (bin/duplex): a WebSocket client and server on the
-- terminal, like websocat and wscat. main(args) returns the exit status.
local duplex = require "duplex"
local stdio = require "duplex.stdio"
local core = require "duplex.core"

local io, type, tonumber, tostring, pcall, ipairs = io, type, tonumber, tostring, pcall, ipairs

local M = {}

local run_connect, run_serve -- defined below their parsers

-- Exit statuses (also in --help and the README).
M.OK, M.FAILED, M.USAGE, M.CANNOT_CONNECT, M.REFUSED, M.CANNOT_LISTEN = 0, 1, 2, 3, 4, 5

local HELP = [[
Usage: duplex connect URL [options]
       duplex serve [options]
       duplex --help | --version

connect: each line of stdin becomes a message; each message received is
written to stdout followed by a newline. The end of stdin closes the
connection (1000) once what was sent has gone; the server closing ends the
command.
  --header 'Name: value'   extra request header (repeatable)
  --protocol P             subprotocol to offer (repeatable)
  --origin O               Origin header
  --ca FILE                trust the CAs in this PEM file (wss://)
  --insecure               do not verify the server's certificate (tests only)
  --binary                 send lines as binary messages
  --no-compression         do not offer permessage-deflate

serve: prints the listening URL on stderr.
  --host H                 address to listen on (default 127.0.0.1)
  --port N                 port (default 8080; 0 picks a free one)
  --echo                   send every message back to its sender
  --broadcast              send every message to every other client
                           (neither: messages are written to stdout, and
                           each line of stdin goes to every client)
  --cert FILE --key FILE   serve wss:// with this certificate and key
  --static DIR             answer plain HTTP GET requests with files of DIR
  --binary                 send stdin lines as binary messages

Exit status: 0 closed cleanly; 1 the connection failed or was closed
abnormally (a close code other than 1000 or 1001); 2 usage error;
3 cannot connect (name, refused, TLS, timeout); 4 the server refused the
upgrade (its HTTP status is printed); 5 cannot listen.
]]

local function say(...)
  io.stderr:write("duplex: ", ...)
  io.stderr:write("\n")
end

local UsageError = {}

local function usage(msg)
  error({ [UsageError] = msg }, 0)
end

-- Options: name -> "flag" | "value" | "list". Accepts --name value and
-- --name=value.
local function parse(args, first, spec)
  local opts, rest = {}, {}
  local i = first
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^%-%-([%w%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w%-]+)$")
    if name then
      local kind = spec[name]
      if not kind then usage("unknown option --" .. name) end
      if kind == "flag" then
        if inline then usage("--" .. name .. " takes no value") end
        opts[name] = true
      else
        local v = inline
        if not v then
          i = i + 1
          v = args[i]
          if v == nil then usage("--" .. name .. " needs a value") end
        end
        if kind == "list" then
          opts[name] = opts[name] or {}
          opts[name][#opts[name] + 1] = v
        else
          opts[name] = v
        end
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      usage("unknown option " .. a)
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return opts, rest
end

-- connect -----------------------------------------------------------------

local connect_spec = {
  header = "list", protocol = "list", origin = "value", ca = "value", insecure = "flag",
  binary = "flag", ["no-compression"] = "flag",
}

local function connect_options(o)
  local opts = { compression = not o["no-compression"] }
  if o.header then
    opts.headers = {}
    for _, h in ipairs(o.header) do
      local name, value = h:match("^%s*([^:%s]+)%s*:%s*(.-)%s*$")
      if not name then usage("--header wants 'Name: value', not '" .. h .. "'") end
      opts.headers[name] = value
    end
  end
  opts.protocols = o.protocol
  opts.origin = o.origin
  if o.ca or o.insecure then
    opts.tls = { ca = o.ca }
    if o.insecure then opts.tls.verify = false end
  end
  return opts
end

-- Sends each line of stdin; at its end, closes (the close frame follows
-- what was queued before it).
local function pump_stdin(ws, kind)
  while true do
    local line, err = stdio.read_line()
    if not line then
      if err then say(err) end
      break
    end
    local ok, err = ws:send(line, kind)
    if not ok then
      if ws.state ~= "open" then return end
      say(err, " (line skipped; --binary sends bytes as they are)")
    end
  end
  if ws.state == "open" then ws:close(1000) end
end

local function closed_status(ws)
  ws:wait_closed()
  local code, reason, clean = ws.close_code, ws.close_reason, ws.close_clean
  if clean and (code == 1000 or code == 1001 or code == 1005 or code == nil) then return M.OK end
  local what = clean and "connection closed" or "connection failed"
  say(what, ": ", tostring(code or 1006), reason and reason ~= "" and " " .. reason or "")
  return M.FAILED
end

local function connect(args)
  local o, rest = parse(args, 2, connect_spec)
  if #rest ~= 1 then usage("connect wants one URL") end
  local url = rest[1]
  local opts = connect_options(o)
  local kind = o.binary and "binary" or "text"
  return function() return run_connect(url, opts, kind) end
end

run_connect = function(url, opts, kind)
  local ws, err, response = duplex.connect(url, opts)
  if not ws then
    if response then
      say(err)
      return M.REFUSED
    end
    say("cannot connect to ", url, ": ", tostring(err))
    return M.CANNOT_CONNECT
  end
  duplex.spawn(pump_stdin, ws, kind)
  while true do
    local msg = ws:receive()
    if not msg then break end
    local ok, werr = stdio.write(msg, "\n")
    if not ok then
      say(werr)
      ws:close(1001)
      break
    end
  end
  return closed_status(ws)
end

-- serve -------------------------------------------------------------------

local serve_spec = {
  host = "value", port = "value", echo = "flag", broadcast = "flag", cert = "value", key = "value",
  static = "value", binary = "flag",
}

local types = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8", css = "text/css; charset=utf-8",
  js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  json = "application/json", txt = "text/plain; charset=utf-8", md = "text/plain; charset=utf-8",
  svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  ico = "image/x-icon", webp = "image/webp", wasm = "application/wasm", pdf = "application/pdf",
  xml = "application/xml", map = "application/json",
}

local function content_type(path)
  local ext = path:match("%.([%w]+)$")
  return types[ext and ext:lower()] or "application/octet-stream"
end

local function text(status, body)
  return status, { ["Content-Type"] = "text/plain; charset=utf-8" }, body .. "\n"
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The http option for --static: GET and HEAD of files inside root (its
-- canonical path). No segment may be "..", and the file's own canonical
-- path must lie inside root, so neither a crafted path nor a symbolic link
-- leads out of it.
local function static_files(root)
  return function(req)
    if req.method ~= "GET" and req.method ~= "HEAD" then
      local s, h, b = text(405, "method not allowed")
      h.Allow = "GET, HEAD"
      return s, h, b
    end
    local path = unescape(req.path or "/")
    if path:find("%z") or path:find("\\", 1, true) then return text(400, "bad path") end
    for segment in path:gmatch("[^/]+") do
      if segment == ".." then return text(403, "forbidden") end
    end
    if path:sub(-1) == "/" then path = path .. "index.html" end
    local real = core.realpath(root .. path)
    if not real or real:sub(1, #root + 1) ~= root .. "/" then return text(404, "not found") end
    local f = io.open(real, "rb")
    local body = f and f:read("*a")
    if f then f:close() end
    if not body then
      -- a folder named without its slash: where its index is
      local index = io.open(real .. "/index.html", "rb")
      if index then
        index:close()
        return 301, { Location = req.path .. "/" }, ""
      end
      return text(404, "not found")
    end
    local headers = { ["Content-Type"] = content_type(real) }
    if req.method == "HEAD" then
      headers["Content-Length"] = tostring(#body)
      body = ""
    end
    return 200, headers, body
  end
end

-- (while loops, not `for ... in ws:messages()`: PUC Lua 5.1 cannot yield
-- from a for iterator)
local function echo_handler(ws)
  while true do
    local msg, kind = ws:receive()
    if not msg or not ws:send(msg, kind) then break end
  end
end

local function broadcast_handler(ws)
  ws:subscribe("broadcast")
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    ws:publish("broadcast", msg, kind)
  end
end

-- Neither --echo nor --broadcast: messages to stdout, stdin to everyone.
local function print_handler(ws)
  ws:subscribe("stdin")
  while true do
    local msg = ws:receive()
    if not msg then break end
    local ok, err = stdio.write(msg, "\n")
    if not ok then
      say(err)
      break
    end
  end
end

local function publish_stdin(kind)
  while true do
    local line, err = stdio.read_line()
    if not line then
      if err then say(err) end
      return
    end
    duplex.publish("stdin", line, kind)
  end
end

local function serve_options(o)
  if o.echo and o.broadcast then usage("--echo and --broadcast exclude each other") end
  local port = tonumber(o.port or "8080")
  if not port or port % 1 ~= 0 or port < 0 or port > 65535 then usage("--port wants a number from 0 to 65535") end
  local opts = { host = o.host or "127.0.0.1", port = port }
  if (o.cert == nil) ~= (o.key == nil) then usage("--cert and --key go together") end
  if o.cert then opts.tls = { cert = o.cert, key = o.key } end
  if o.static then
    local root, err = core.realpath(o.static)
    if not root then usage("--static " .. o.static .. ": " .. err) end
    opts.http = static_files(root)
  end
  return opts
end

local function serve(args)
  local o, rest = parse(args, 2, serve_spec)
  if #rest > 0 then usage("serve takes no argument '" .. rest[1] .. "'") end
  local opts = serve_options(o)
  return function() return run_serve(o, opts) end
end

run_serve = function(o, opts)
  local handler = o.echo and echo_handler or o.broadcast and broadcast_handler or print_handler
  opts.on_error = function(_, err) say("handler error: ", tostring(err)) end
  local server, err = duplex.serve(opts, handler)
  if not server then
    say(err)
    return M.CANNOT_LISTEN
  end
  local host = opts.host:find(":", 1, true) and "[" .. opts.host .. "]" or opts.host
  say("listening on ", opts.tls and "wss" or "ws", "://", host, ":", server.port, "/")
  if not (o.echo or o.broadcast) then publish_stdin(o.binary and "binary" or "text") end
  -- serves until killed
  while true do duplex.sleep(3600) end
end

-- main --------------------------------------------------------------------

-- What to run (parsing raises usage errors before anything waits).
local function dispatch(args)
  local cmd = args[1]
  if cmd == "--help" or cmd == "-h" or cmd == "help" then
    return function()
      io.stdout:write(HELP)
      return M.OK
    end
  elseif cmd == "--version" then
    return function()
      io.stdout:write(duplex._VERSION, "\n")
      return M.OK
    end
  elseif cmd == "connect" then
    return connect(args)
  elseif cmd == "serve" then
    return serve(args)
  elseif cmd == nil then
    usage("a command is needed: connect or serve")
  end
  usage("unknown command '" .. tostring(cmd) .. "'")
end

function M.main(args)
  local ok, run = pcall(dispatch, args)
  if not ok then
    if type(run) == "table" and run[UsageError] then
      say(run[UsageError])
      io.stderr:write("Try 'duplex --help'.\n")
      return M.USAGE
    end
    say(tostring(run))
    return M.FAILED
  end
  local status
  -- no pcall inside the coroutine: PUC Lua 5.1 cannot yield across one
  local rok, err, why, signal = pcall(duplex.run, function()
    status = run()
    local fok, ferr = stdio.flush()
    if not fok then say(ferr) end
    duplex.stop()
  end)
  stdio.close()
  if not rok then
    say(tostring(err))
    return M.FAILED
  end
  -- Ctrl-C or a SIGTERM with no handler: the shell's convention, 128 + signal
  if why == "interrupted" then return signal == "SIGINT" and 130 or 143 end
  return status or M.FAILED
end

return M
