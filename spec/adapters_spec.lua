-- The host adapters (lua/duplex/luv.lua, nvim.lua, love.lua, cqueues.lua),
-- each on its real host: echo both ways, a timer of the host firing while
-- duplex is attached, and IDLE seconds of an idle attached duplex (a server
-- and an open connection) under 1% CPU. luv and cqueues run in this
-- process; Neovim and LÖVE (LuaJIT hosts that load build/luajit) run as
-- subprocesses, in the luajit run only. Every dependency is installed on CI
-- (.ci/deps), where a missing one fails rather than skips.
local helpers = require "helpers"
local duplex = helpers.duplex
local socket = helpers.socket

local IDLE = 5
local JIT = rawget(_G, "jit") ~= nil
local ON_CI = os.getenv("CI") == "true"

local function need(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  if ON_CI then error(name .. " is not installed for " .. _VERSION .. " (.ci/deps installs it)") end
  pending(name .. " is not installed for " .. _VERSION)
end

local function check_results(r, host)
  assert.is_nil(r.err, host .. ": " .. tostring(r.err))
  assert.are.equal("hello from the server", r.greeting) -- server to client
  assert.are.equal("ping from the client", r.server_got) -- client to server
  assert.are.equal("ping from the client", r.echo)
  assert.are.equal(true, r.closed == true or r.closed == "true", host .. ": close: " .. tostring(r.closed) .. " " .. tostring(r.close_err))
  local ticks = tonumber(r.ticks_attached)
  assert.is_true(ticks >= 3, host .. ": the host's 10 ms timer fired " .. ticks .. " times in 0.1 s and more")
  local cpu, wall = tonumber(r.cpu1) - tonumber(r.cpu0), tonumber(r.wall1) - tonumber(r.wall0)
  assert.is_true(wall >= IDLE - 0.1, host .. ": the idle window lasted " .. wall .. " s")
  return cpu / wall
end

local function report(host, share, extra)
  io.stderr:write(("\n[adapters] %s on %s: idle CPU %.3f%% over %d s%s\n"):format(host, JIT and rawget(_G, "jit").version or _VERSION, share * 100,
    IDLE, extra or ""))
end

describe("duplex.timeout()", function()
  after_each(function() assert.is_true(helpers.drain(3)) end)

  it("is nil with nothing scheduled, 0 with work pending, the delay of a timer, nil again after", function()
    assert.is_nil(duplex.timeout(), "fresh")
    local server = assert(duplex.serve({ host = "127.0.0.1", port = 0 }, function() end))
    duplex.step(0)
    assert.is_nil(duplex.timeout(), "a listening server waits for its socket, no deadline")
    duplex.spawn(function() end)
    assert.are.equal(0, duplex.timeout())
    duplex.step(0)
    local t = duplex.after(0.5, function() end)
    local left = duplex.timeout()
    assert.is_true(left > 0.4 and left <= 0.5, tostring(left))
    t:stop()
    assert.is_nil(duplex.timeout(), "a stopped timer keeps nothing due")
    server:close()
    local deadline = socket.gettime() + 2
    while duplex.timeout() and socket.gettime() < deadline do duplex.step(0.01) end
    assert.is_nil(duplex.timeout(), "after the last server closed")
  end)
end)

describe("duplex.luv", function()
  after_each(function() assert.is_true(helpers.drain(3)) end)

  it("echoes both ways, lets the host's timers fire, and idles under 1% CPU", function()
    local uv = need "luv"
    if not uv then return end
    -- luv's clock is cached since its last run (another spec's, maybe)
    uv.update_time()
    local handle = assert(require("duplex.luv").attach({ uv = uv }))
    local r
    local watchdog = uv.new_timer()
    watchdog:start((IDLE + 10) * 1000, 0, function()
      r = r or { err = "watchdog: the scenario did not finish" }
      watchdog:close()
      handle:stop()
    end)
    require "adapters.scenario" (duplex, {
      every = function(s, fn)
        local t = uv.new_timer()
        t:start(s * 1000, s * 1000, fn)
        return function() if not t:is_closing() then t:close() end end
      end,
      after = function(s, fn)
        local t = uv.new_timer()
        t:start(s * 1000, 0, function() t:close(); fn() end)
      end,
      cpu = os.clock,
      now = function() return uv.hrtime() / 1e9 end,
      done = function(res)
        r = r or res
        if not watchdog:is_closing() then watchdog:close() end
        handle:stop()
      end,
    }, IDLE)
    uv.run("default") -- returns once every handle is closed
    local share = check_results(r, "luv")
    report("luv", share)
    assert.is_true(share < 0.01, ("idle CPU %.2f%%"):format(share * 100))
  end)
end)

describe("duplex.luv errors", function()
  after_each(function() assert.is_true(helpers.drain(3)) end)

  it("reports a failing step to on_error and goes on stepping", function()
    local uv = need "luv"
    if not uv then return end
    uv.update_time()
    local errors, real_step, failed_once = {}, duplex.step, false
    duplex.step = function(t)
      if not failed_once then
        failed_once = true
        error("step blew up")
      end
      return real_step(t)
    end
    local handle = assert(require("duplex.luv").attach({ uv = uv, on_error = function(e) errors[#errors + 1] = e end }))
    local ran = 0
    local timer = duplex.every(0.02, function() ran = ran + 1 end)
    local guard, check = uv.new_timer(), uv.new_timer()
    guard:start(3000, 0, function() -- bounds the run whatever happens
      guard:close()
      if not check:is_closing() then check:close() end
      timer:stop()
      handle:stop()
    end)
    check:start(10, 10, function()
      if ran >= 2 then
        timer:stop()
        check:close()
        if not guard:is_closing() then guard:close() end
        handle:stop()
      end
    end)
    uv.run("default")
    duplex.step = real_step
    assert.is_true(failed_once)
    assert.are.equal(1, #errors)
    assert.matches("step blew up", errors[1])
    assert.is_true(ran >= 2, "duplex stopped stepping after the failure")
  end)
end)

describe("duplex.cqueues", function()
  after_each(function() assert.is_true(helpers.drain(3)) end)

  it("echoes both ways, lets the host's coroutines run, and idles under 1% CPU", function()
    local cqueues = need "cqueues"
    if not cqueues then return end
    local cq = cqueues.new()
    local handle = require("duplex.cqueues").attach(cq)
    local r
    local start = cqueues.monotime()
    require "adapters.scenario" (duplex, {
      every = function(s, fn)
        local on = true
        cq:wrap(function()
          while on do
            cqueues.sleep(s)
            if on then fn() end
          end
        end)
        return function() on = false end
      end,
      after = function(s, fn)
        cq:wrap(function()
          cqueues.sleep(s)
          fn()
        end)
      end,
      cpu = os.clock,
      now = cqueues.monotime,
      done = function(res) r = r or res end,
    }, IDLE)
    while not r and cqueues.monotime() - start < IDLE + 10 do
      local ok, err = cq:step(1)
      assert(ok, err)
    end
    handle:stop()
    assert(r, "the scenario did not finish in time")
    local share = check_results(r, "cqueues")
    report("cqueues", share)
    assert.is_true(share < 0.01, ("idle CPU %.2f%%"):format(share * 100))
  end)

  it("wakes up for a coroutine a cqueues coroutine spawns after duplex went idle", function()
    local cqueues = need "cqueues"
    if not cqueues then return end
    local cq = cqueues.new()
    local handle = require("duplex.cqueues").attach(cq)
    local slept = false
    cq:wrap(function()
      cqueues.sleep(0.05) -- meanwhile the stepping coroutine ended: duplex held nothing
      duplex.spawn(function()
        duplex.sleep(0.05)
        slept = true
      end)
    end)
    local t0 = cqueues.monotime()
    assert(cq:loop(3))
    handle:stop()
    assert.is_true(slept)
    assert.is_true(cqueues.monotime() - t0 < 2)
  end)

  it("is a cqueues pollable: pollfd, events, timeout", function()
    local cqueues = need "cqueues"
    if not cqueues then return end
    local p = require("duplex.cqueues").pollable
    assert.are.equal(duplex.pollfd(), p:pollfd())
    assert.are.equal("r", p:events())
    assert.is_nil(p:timeout())
    local t = duplex.after(0.05, function() end)
    assert.is_number(p:timeout())
    -- cqueues.poll returns once duplex's deadline is due
    local cq = cqueues.new()
    local woke
    cq:wrap(function() woke = cqueues.poll(p, 1) end)
    local t0 = cqueues.monotime()
    assert(cq:loop(2))
    assert.are.equal(p, woke)
    assert.is_true(cqueues.monotime() - t0 < 1)
    t:stop()
  end)
end)

describe("duplex.love.attach", function()
  after_each(function() assert.is_true(helpers.drain(3)) end)

  it("steps once per love.update, keeps a love.update defined later, and stop() puts it back", function()
    local love = {}
    local handle = assert(require("duplex.love").attach({ love = love }))
    local calls, ran = {}, false
    function love.update(dt) calls[#calls + 1] = dt end -- the game's, after attach
    duplex.spawn(function() ran = true end)
    love.update(0.016)
    assert.is_true(ran, "the frame did not step duplex")
    assert.are.same({ 0.016 }, calls)
    assert.is_true(handle:stop())
    assert.is_nil(getmetatable(love))
    love.update(0.02)
    assert.are.same({ 0.016, 0.02 }, calls)
    assert.is_false(handle:stop())
  end)

  it("says so outside LÖVE", function()
    local h, err = require("duplex.love").attach()
    assert.is_nil(h)
    assert.matches("not running inside L", err)
  end)
end)

-- Runs a host as a subprocess; its "key=value" lines as a table.
local function run_host(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD -u ASAN_OPTIONS DUPLEX_IDLE=" .. IDLE ..
    " XDG_RUNTIME_DIR=" .. os.tmpname():match("^(.*)/") .. " timeout " .. (IDLE + 30) .. " " .. cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  local r = {}
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do r[k] = v end
  return r, out
end

local function have(cmd)
  local ok = os.execute("command -v " .. cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

if JIT then
  describe("duplex.nvim", function()
    it("runs a server and a client in headless Neovim, its timers fire, idle under 1% CPU", function()
      if not have "nvim" then
        if ON_CI then error("nvim is not installed (.ci/deps installs neovim)") end
        pending("nvim is not installed")
        return
      end
      local r, out = run_host("nvim --headless -u NONE -c 'luafile spec/adapters/nvim_host.lua'")
      assert.is_not_nil(r.greeting, "nvim printed:\n" .. out)
      assert.are.equal("true", r.buffer_ok, "a vim.schedule callback could not touch the editor")
      assert.are.equal("true", r.notified, "a wrapped function's error did not reach vim.notify")
      local share = check_results(r, "nvim")
      report("nvim", share)
      assert.is_true(share < 0.01, ("idle CPU %.2f%%"):format(share * 100))
    end)
  end)

  describe("duplex.love", function()
    it("runs a server and a client in headless LÖVE, its timers fire, idle adds under 1% CPU", function()
      if not have "love" then
        if ON_CI then error("love is not installed (.ci/deps installs love)") end
        pending("love is not installed")
        return
      end
      local r, out = run_host("love spec/adapters/love")
      if not r.greeting and have "xvfb-run" then
        -- this LÖVE wants a display even without a window
        r, out = run_host("xvfb-run -a love spec/adapters/love")
      end
      assert.is_not_nil(r.greeting, "love printed:\n" .. out)
      local share = check_results(r, "love")
      -- LÖVE's own loop spins even with no window: what duplex adds is
      -- the attached idle window less the same loop without duplex
      local base = (tonumber(r.base1) - tonumber(r.base0)) / (tonumber(r.basewall1) - tonumber(r.basewall0))
      report("love", share, (" (LÖVE alone %.3f%%, duplex's part %.3f%%, %s frames)"):format(base * 100,
        (share - base) * 100, r.frames))
      assert.is_true(share - base < 0.01, ("duplex adds %.2f%% CPU"):format((share - base) * 100))
    end)
  end)
end
