-- Shared code for the interop specs: run a duplex loop with a time bound,
-- and run external programs in the background while the loop keeps serving.
--
-- External programs are started by a shell in the background with their
-- output in temp files; we poll for their exit with duplex.sleep, so the
-- in-process server keeps running. Every program is wrapped in `timeout`
-- and is killed by pid in cleanup(), which the specs call from after_each,
-- so nothing survives a failed case.
local duplex = require "duplex"

local M = {}

M.PYTHON = "/usr/bin/python3"  -- Debian's python3-websockets is only seen by this one

local procs = {}    -- every started process not yet cleaned up
local servers = {}  -- every server started through M.serve

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

-- The first of these programs on PATH, or nil.
function M.find_program(...)
  for i = 1, select("#", ...) do
    local f = io.popen("command -v " .. (select(i, ...)) .. " 2>/dev/null")
    local path = f:read("*l")
    f:close()
    if path and path ~= "" then return path end
  end
end

-- The version of Debian's python3-websockets, or nil when it is missing.
function M.websockets_version()
  local f = io.popen(M.PYTHON .. " -c 'import websockets; print(websockets.__version__)' 2>/dev/null")
  local v = f and f:read("*l")
  if f then f:close() end
  return v
end

M.CHROMIUM = M.find_program("chromium", "chromium-browser", "google-chrome")

function M.url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- A fresh browser profile directory, and its removal.
function M.new_profile()
  local f = io.popen("mktemp -d")
  local dir = f:read("*l")
  f:close()
  return dir
end

function M.remove_profile(dir)
  if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. shell_quote(dir)) end
end

-- A handler that echoes every message, records what it saw in `seen`
-- (messages, close code, reason and cleanliness, done) and answers the
-- message "close-me" with a close 4002 "bye".
function M.recording_echo(seen, before)
  return function(ws)
    if before then before(ws) end
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      seen.messages = seen.messages + 1
      if msg == "close-me" then
        seen.closed_ok = ws:close(4002, "bye")
        break
      end
      assert(ws:send(msg, kind))
    end
    seen.close_code, seen.close_reason, seen.close_clean = ws.close_code, ws.close_reason, ws.close_clean
    seen.done = true
  end
end

-- Starts argv (a list of words) in the background, cut off after `limit`
-- seconds, with stdin from the file `stdin` (default /dev/null). Returns a
-- process object: p.out / p.err are file names.
function M.start(argv, limit, stdin)
  local words = {}
  for i = 1, #argv do words[i] = shell_quote(argv[i]) end
  -- os.tmpname creates each file; rc and pidfile must not exist until written
  local p = { out = os.tmpname(), err = os.tmpname(), rc = os.tmpname(), pidfile = os.tmpname(), argv = argv }
  os.remove(p.rc)
  os.remove(p.pidfile)
  -- The subshell records the program's pid (timeout's, which passes signals
  -- on) and, once it exits, its status. Nothing here waits in the foreground.
  -- Under `make test SANITIZE=1` the sanitizer runtime is preloaded for our
  -- Lua; other programs (Chromium above all) must not get it.
  local env = argv[1]:match("lua") and "" or "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "
  local cmd = ("( %stimeout -k 2 %d %s <%s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s.tmp; mv %s.tmp %s ) >/dev/null 2>&1 </dev/null &")
    :format(env, limit or 30, table.concat(words, " "), shell_quote(stdin or "/dev/null"), shell_quote(p.out), shell_quote(p.err),
      shell_quote(p.pidfile), shell_quote(p.rc), shell_quote(p.rc), shell_quote(p.rc))
  os.execute(cmd)
  procs[#procs + 1] = p
  return p
end

-- The command that runs this Lua (lua5.1, lua5.4, luajit...) with this
-- process's module paths, as the start of an argv list.
function M.lua_argv(script, ...)
  local lua = arg and arg[-1]
  if not lua then
    lua = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
  end
  local argv = { lua, "-e", ("package.path = %q; package.cpath = %q"):format(package.path, package.cpath), script }
  for i = 1, select("#", ...) do argv[#argv + 1] = tostring((select(i, ...))) end
  return argv
end

function M.pid(p)
  if not p.pid then
    local s = read_file(p.pidfile)
    p.pid = s and tonumber(s:match("%d+"))
  end
  return p.pid
end

-- Exit status, or nil while the program runs.
function M.status(p)
  local s = read_file(p.rc)
  return s and tonumber(s:match("%d+"))
end

function M.output(p) return read_file(p.out) or "" end
function M.errors(p) return read_file(p.err) or "" end

-- Waits (inside a coroutine) until p exits; returns its status and output,
-- or nil, "timeout" after `limit` seconds.
function M.wait(p, limit)
  local deadline = duplex.now() + (limit or 30)
  while duplex.now() < deadline do
    local rc = M.status(p)
    if rc then return rc, M.output(p) end
    duplex.sleep(0.05)
  end
  return nil, "timeout"
end

-- Waits until the program's stdout has a line matching pattern; returns the
-- captures, or nil if it exits or the time runs out first.
function M.wait_for_output(p, pattern, limit)
  local deadline = duplex.now() + (limit or 10)
  while duplex.now() < deadline do
    local out = M.output(p)
    local found = { out:match(pattern) }
    if found[1] then return (table.unpack or unpack)(found) end
    if M.status(p) then return nil end
    duplex.sleep(0.05)
  end
  return nil
end

-- key=value lines of a program's output as a table.
function M.fields(out)
  local t = {}
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do t[k] = v end
  return t
end

-- The last `n` lines of s, leaving out Chromium's harmless D-Bus complaints.
local function tail(s, n)
  local lines = {}
  for line in s:gmatch("[^\n]+") do
    if not line:find("dbus", 1, true) then lines[#lines + 1] = line end
  end
  local first = math.max(1, #lines - n + 1)
  return (first > 1 and "...\n" or "") .. table.concat(lines, "\n", first)
end

function M.describe(p)
  return ("%s\n-- status %s\n-- stdout:\n%s\n-- stderr:\n%s"):format(table.concat(p.argv, " "),
    tostring(M.status(p)), tail(M.output(p), 40), tail(M.errors(p), 20))
end

function M.kill(p)
  local pid = M.pid(p)
  if pid and not M.status(p) then
    os.execute("kill " .. pid .. " >/dev/null 2>&1")
    -- `timeout -k 2` sends KILL if TERM was not enough
  end
end

-- Runs argv, a WebSocket client of another library against our server,
-- which must end by printing "OK"; then waits (5 s at most) for our handler
-- to finish too (seen.done, as recording_echo sets it). Returns the client's
-- key=value fields. Call from a coroutine.
function M.with_peer_client(argv, seen)
  local p = M.start(argv, 25)
  local rc, out = M.wait(p, 25)
  assert(rc, "the client did not finish: " .. M.describe(p))
  assert(rc == 0 and out:match("OK\n$"), "the client failed: " .. M.describe(p))
  local deadline = duplex.now() + 5
  while not seen.done and duplex.now() < deadline do duplex.sleep(0.02) end
  return M.fields(out)
end

-- Starts argv, a WebSocket server of another library that prints
-- "port=N" and exits after one connection; connects our client to
-- ws://127.0.0.1:N + path with opts and runs fn(ws). Returns the server's
-- key=value fields once it has exited. Call from a coroutine.
function M.with_peer_server(argv, path, opts, fn)
  local p = M.start(argv, 25)
  local port = M.wait_for_output(p, "port=(%d+)\n", 15)
  assert(port, "the server did not start: " .. M.describe(p))
  local ws, err = duplex.connect(("ws://127.0.0.1:%s%s"):format(port, path), opts)
  assert(ws, err)
  fn(ws)
  local rc, out = M.wait(p, 15)
  assert(rc == 0, "the server failed: " .. M.describe(p))
  return M.fields(out)
end

-- Sends data (kind: "text" by default) and checks that the same comes back.
function M.echo(ws, data, kind)
  assert(ws:send(data, kind))
  local got, got_kind = ws:receive()
  assert(got, got_kind)
  assert(#data == #got, ("echo of %d bytes came back with %d"):format(#data, #got))
  assert(data == got, "echo differs")
  assert(got_kind == (kind or "text"), "echo came back as " .. tostring(got_kind))
end

function M.serve(opts, handler)
  local server, err = duplex.serve(opts, handler)
  if server then servers[#servers + 1] = server end
  return server, err
end

-- Kills every program started and closes every server; for after_each.
-- Runs outside the loop, so it may block for a moment.
function M.cleanup()
  for i = #procs, 1, -1 do
    local p = procs[i]
    M.kill(p)
    -- the pid file may not be written yet if the shell was slow: try again
    if not p.pid then
      os.execute("sleep 0.2")
      M.kill(p)
    end
    -- The shell writes the exit status once the program is gone; wait for
    -- it (timeout -k sends KILL after 2 s), so no file appears after we
    -- removed them all.
    for _ = 1, 40 do
      if M.status(p) then break end
      os.execute("sleep 0.1")
    end
    for _, f in ipairs({ p.out, p.err, p.rc, p.pidfile, p.rc .. ".tmp" }) do os.remove(f) end
    procs[i] = nil
  end
  for i = #servers, 1, -1 do
    servers[i]:close()
    servers[i] = nil
  end
end

-- Runs fn in a coroutine on the duplex loop and returns when it finishes.
-- Raises fn's error, or a timeout error after `limit` seconds.
local generation = 0
function M.run(fn, limit)
  generation = generation + 1
  local mine = generation
  local timed_out = false
  -- the watchdog naps briefly, so that it ends soon after its run does and
  -- leaves no sleeper behind to keep the next test's loop busy
  duplex.spawn(function()
    local deadline = duplex.now() + (limit or 20)
    while generation == mine and duplex.now() < deadline do duplex.sleep(0.05) end
    if generation == mine then
      timed_out = true
      duplex.stop()
    end
  end)
  local ok, err = pcall(duplex.run, function()
    fn()
    if generation == mine then duplex.stop() end
  end)
  generation = generation + 1  -- this run's watchdog must not stop a later one
  if not ok then error(err, 0) end
  if timed_out then error(("timed out after %s seconds"):format(limit or 20), 0) end
end

return M
