-- Drives duplex from LÖVE (11.x): one duplex.step(0) per frame.
--   local handle = require("duplex.love").attach()   -- in main.lua
--   handle:stop()   -- puts love.update back as it was
-- The step runs before the game's own love.update (defined before or after
-- attach: the love table gets a metatable that keeps both), so a message received this frame is there for the update. A
-- failing step is reported (opts.on_error(err), default stderr) and the
-- game goes on. A step waits for nothing: at 60 frames a second a message
-- waits at most a frame.
local duplex = require "duplex"

local tostring, xpcall, pcall, traceback, rawget, rawset, getmetatable, setmetatable, type =
  tostring, xpcall, pcall, debug.traceback, rawget, rawset, getmetatable, setmetatable, type

local M = {}

local Handle = {}
Handle.__index = Handle

local function step0() return duplex.step(0) end

function Handle:stop()
  if self.stopped then return false end
  self.stopped = true
  local love = self.love
  if self.mt then
    if getmetatable(love) == self.mt then setmetatable(love, nil) end
    if rawget(love, "update") == nil then love.update = self.user end
  elseif rawget(love, "update") == self.update then
    -- put back the game's update, unless someone replaced ours meanwhile
    love.update = self.user
  end
  return true
end

function M.attach(opts)
  opts = opts or {}
  local love = opts.love or rawget(_G, "love")
  if type(love) ~= "table" then return nil, "duplex.love: not running inside LÖVE (no global love)" end
  local on_error = opts.on_error or function(err) io.stderr:write("duplex.love: ", tostring(err), "\n") end
  local self = setmetatable({ love = love, user = rawget(love, "update") }, Handle)
  self.update = function(dt)
    local ok, err = xpcall(step0, traceback)
    if not ok then pcall(on_error, err) end
    if self.user then return self.user(dt) end
  end
  if getmetatable(love) == nil then
    -- love.update stays unset in the table itself, so that a
    -- `function love.update(dt)` written after attach() lands in self.user
    -- rather than replacing the step
    love.update = nil
    self.mt = {
      __index = function(_, k) if k == "update" and not self.stopped then return self.update end end,
      __newindex = function(t, k, v)
        if k == "update" and not self.stopped then self.user = v else rawset(t, k, v) end
      end,
    }
    setmetatable(love, self.mt)
  else
    love.update = self.update
  end
  return self
end

return M
