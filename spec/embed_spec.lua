-- Driving duplex from a host's own loop: duplex.step, pollfd, timeout.
local helpers = require "helpers"
local duplex = helpers.duplex
local socket = helpers.socket

-- A server and a client coroutine that does one echo round trip and closes;
-- returns the state table the coroutine fills in.
local function start_echo_round_trip()
  local st = { done = false }
  local server = helpers.echo_server()
  st.server = server
  duplex.spawn(function()
    local ws, err = helpers.connect(helpers.url(server.port))
    if not ws then
      st.err = err
      st.done = true
      return
    end
    ws:send("embedded")
    st.msg, st.kind = ws:receive()
    st.closed = ws:close()
    server:close()
    st.done = true
  end)
  return st
end

describe("embedding", function()
  after_each(function()
    -- whatever happened, leave nothing running for the next spec
    assert.is_true(helpers.drain(3))
  end)

  it("reports its polling protocol", function()
    assert.are.equal("r", duplex.events())
    local fd = duplex.pollfd()
    assert.is_number(fd)
    assert.is_true(fd >= 0)
    -- nothing pending, nothing due: no timeout
    local t = duplex.timeout()
    assert.truthy(t == nil or t >= 0)
  end)

  it("says timeout() == 0 while coroutines are ready", function()
    local ran = false
    duplex.spawn(function() ran = true end)
    assert.are.equal(0, duplex.timeout())
    duplex.step(0)
    assert.is_true(ran)
  end)

  it("says timeout() is about the next sleeper's deadline", function()
    local woke = false
    duplex.spawn(function()
      duplex.sleep(0.2)
      woke = true
    end)
    duplex.step(0)
    local t = duplex.timeout()
    assert.is_number(t)
    assert.is_true(t > 0.1 and t <= 0.2, "timeout " .. tostring(t))
    local deadline = socket.gettime() + 2
    while not woke and socket.gettime() < deadline do duplex.step(duplex.timeout()) end
    assert.is_true(woke)
  end)

  -- DESIGN.md: timeout() is "seconds until the next step is due ... update
  -- the loop time first". csrc/transport/loop.c loop_timeout() calls
  -- uv_backend_timeout() on libuv's cached time, so after the host spent
  -- time elsewhere it still reports the full delay.
  it("timeout() counts the time the host spent since the last step", function()
    local woke = false
    duplex.spawn(function()
      duplex.sleep(0.2)
      woke = true
    end)
    duplex.step(0)
    socket.sleep(0.15) -- the host is busy elsewhere
    local t = duplex.timeout()
    local ok = t ~= nil and t <= 0.08
    local deadline = socket.gettime() + 2
    while not woke and socket.gettime() < deadline do duplex.step(0.01) end
    assert.is_true(woke)
    assert.is_true(ok, "timeout() said " .. tostring(t) .. " s with 0.05 s left")
  end)

  it("runs a round trip with duplex.step(0) in a plain loop", function()
    local st = start_echo_round_trip()
    local deadline = socket.gettime() + 5
    local steps = 0
    while not st.done and socket.gettime() < deadline do
      assert.is_true(duplex.step(0))
      steps = steps + 1
      socket.sleep(0.001)
    end
    assert.is_true(st.done, "the round trip did not finish in 5 s")
    assert.is_nil(st.err)
    assert.are.equal("embedded", st.msg)
    assert.are.equal("text", st.kind)
    assert.is_true(st.closed)
    assert.is_true(steps > 1)
  end)

  it("runs a round trip from a luv loop polling pollfd() with a timer from timeout()", function()
    local ok, uv = pcall(require, "luv")
    if not ok then
      pending("luv is not installed for " .. _VERSION)
      return
    end
    local fd = assert(duplex.pollfd())
    local st = start_echo_round_trip()
    local poll = uv.new_poll(fd)
    local timer = uv.new_timer()
    local guard = uv.new_timer()
    local steps = { poll = 0, timer = 0 }
    local timed_out = false

    local function finish()
      if not poll:is_closing() then
        poll:stop()
        poll:close()
      end
      if not timer:is_closing() then
        timer:stop()
        timer:close()
      end
      if not guard:is_closing() then
        guard:stop()
        guard:close()
      end
    end

    local on_timer
    local function rearm()
      if st.done then
        finish()
        return
      end
      local t = duplex.timeout()
      timer:stop()
      if t then timer:start(math.max(0, math.floor(t * 1000 + 0.5)), 0, on_timer) end
    end
    on_timer = function()
      steps.timer = steps.timer + 1
      duplex.step(0)
      rearm()
    end
    poll:start("r", function(err)
      assert(not err, err)
      steps.poll = steps.poll + 1
      duplex.step(0)
      rearm()
    end)
    -- luv's clock is cached: another spec's uv.run may have ended long ago
    uv.update_time()
    guard:start(5000, 0, function()
      timed_out = true
      finish()
    end)
    rearm()
    uv.run("default")
    assert.is_false(timed_out, "the luv loop ran 5 s without finishing the round trip")
    assert.is_true(st.done)
    assert.is_nil(st.err)
    assert.are.equal("embedded", st.msg)
    assert.is_true(st.closed)
    assert.is_true(steps.poll > 0, "the poll handle never fired")
  end)

  it("step never raises, even when a coroutine fails", function()
    local old = io.stderr
    local reported
    duplex.spawn(function() error("embedded failure") end)
    -- the default report goes to stderr; keep the spec output clean
    io.stderr = { write = function(_, ...) reported = table.concat({ ... }) end }
    local ok, err = pcall(duplex.step, 0)
    io.stderr = old
    assert.is_true(ok, tostring(err))
    assert.matches("embedded failure", reported)
  end)
end)

describe("a process started with stdin closed", function()
  -- libuv would take descriptor 0 for itself and abort when closing it
  it("runs and exits cleanly", function()
    local lua = arg and arg[-1] or "lua5.4"
    local cmd = ("%s -e 'local d = require \"duplex\"; d.run(function() d.sleep(0.01) end); os.exit(7)' <&-"):format(lua)
    local ok, how, code = os.execute("timeout 10 sh -c " .. ("%q"):format(cmd))
    if type(ok) == "number" then code = ok / 256 end -- Lua 5.1: the raw status
    assert.equal(7, code)
  end)
end)
