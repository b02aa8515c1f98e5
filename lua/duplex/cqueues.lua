-- Drives duplex from a cqueues controller:
--   local cqueues = require "cqueues"
--   local cq = cqueues.new()
--   local handle = require("duplex.cqueues").attach(cq)  -- handle:stop()
--   assert(cq:loop())
-- duplex itself follows cqueues' polling protocol: require("duplex.cqueues")
-- .pollable is an object with :pollfd(), :events() and :timeout(), so that
-- cqueues.poll(pollable) returns when duplex has work. attach runs, in a
-- coroutine of cq, a loop that does exactly that and then duplex.step(0).
-- It ends (and cq:loop() can return) once duplex holds nothing; a
-- coroutine spawned or a timer started from a cqueues coroutine later wakes
-- it again.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local duplex = require "duplex"
local core = require "duplex.core"
local scheduler = require "duplex.scheduler"

local tostring, pcall, xpcall, traceback, setmetatable = tostring, pcall, xpcall, debug.traceback, setmetatable

local M = {}

M.pollable = {
  pollfd = function() return duplex.pollfd() end,
  events = function() return duplex.events() end,
  timeout = function() return duplex.timeout() end,
}

local Handle = {}
Handle.__index = Handle

function Handle:stop()
  if self.stopped then return false end
  self.stopped = true
  scheduler.on_work(nil)
  self.cond:signal()
  return true
end

local function step0() return duplex.step(0) end

-- The stepping coroutine: sleeps in cqueues.poll while duplex has
-- something, on the condition alone while it has nothing.
local function run(self)
  while not self.stopped do
    if core.alive() or duplex.timeout() then
      cqueues.poll(M.pollable, self.cond)
      local ok, err = xpcall(step0, traceback)
      if not ok then pcall(self.on_error, err) end
    else
      self.running = false
      return
    end
  end
  self.running = false
end

function M.attach(cq, opts)
  opts = opts or {}
  local self = setmetatable({ cq = cq, cond = condition.new(), running = false }, Handle)
  self.on_error = opts.on_error or function(err) io.stderr:write("duplex.cqueues: ", tostring(err), "\n") end
  local function start()
    if self.stopped then return end
    if self.running then
      self.cond:signal() -- read timeout() again
    else
      self.running = true
      cq:wrap(run, self)
    end
  end
  scheduler.on_work(start)
  start()
  return self
end

return M
