-- love spec/adapters/love   (from the checkout; DUPLEX_IDLE seconds idle)
-- Runs spec/adapters/scenario.lua through duplex.love; prints "key=value"
-- lines and quits. Frames are paced to 60 a second as a vsynced window
-- would (headless LÖVE has no vsync and spins at ~1000 frames a second).
local root = love.filesystem.getSource() .. "/../../../"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. root .. "spec/?.lua;" .. package.path
package.cpath = root .. "build/luajit/?.so;" .. package.cpath
local idle = tonumber(os.getenv("DUPLEX_IDLE")) or 5
local duplex = require "duplex"
local handle = assert(require("duplex.love").attach())

local timers = {} -- the host's timers, run from love.update
local frames, finished, started = 0, nil, love.timer.getTime()

function love.load()
  require "adapters.scenario" (duplex, {
    every = function(s, fn)
      local t = { due = love.timer.getTime() + s, period = s, fn = fn }
      timers[t] = true
      return function() timers[t] = nil end
    end,
    after = function(s, fn)
      timers[{ due = love.timer.getTime() + s, fn = fn }] = true
    end,
    cpu = os.clock,
    now = love.timer.getTime,
    done = function(r) finished = r end,
  }, idle)
end

-- the game's update, defined after attach(): duplex steps before it
function love.update()
  frames = frames + 1
  local now = love.timer.getTime()
  for t in pairs(timers) do
    if now >= t.due then
      if t.period then t.due = t.due + t.period else timers[t] = nil end
      t.fn()
    end
  end
  if not finished and now - started > idle + 15 then finished = { err = "watchdog: the scenario did not finish" } end
  if finished and not finished.base0 and not finished.err then
    -- the same loop without duplex for a while: LÖVE's own cost
    handle:stop()
    finished.base0, finished.basewall0 = os.clock(), now
  end
  if finished and finished.base0 and now - finished.basewall0 >= 2 then
    finished.base1, finished.basewall1 = os.clock(), now
  end
  if finished and (finished.base1 or finished.err) then
    finished.frames = frames
    handle:stop()
    for k, v in pairs(finished) do io.stdout:write(k, "=", tostring(v), "\n") end
    io.stdout:flush()
    love.event.quit(0)
    finished = nil
    return
  end
  -- pace frames to 60 Hz as vsync would
  local spare = 1 / 60 - (love.timer.getTime() - now)
  if spare > 0 then love.timer.sleep(spare) end
end
