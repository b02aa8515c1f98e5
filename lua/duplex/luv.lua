-- Drives duplex from a luv (libuv) loop:
--   local handle = require("duplex.luv").attach([opts])
--   ... uv.run() ...
--   handle:stop()
-- opts.uv: the luv module (default require "luv"; duplex.nvim passes vim.uv);
-- opts.on_error(err): told when a step fails (default: stderr), the loop
-- goes on.
--
-- A poll handle on duplex.pollfd() steps duplex when its sockets are ready;
-- a timer steps it when duplex.timeout() says a deadline is due. A prepare
-- handle, run by libuv each time before it sleeps, re-arms that timer from
-- duplex.timeout(): whatever the host's own callbacks did to duplex in this
-- iteration (spawned a coroutine, sent a message) is accounted for before
-- the loop sleeps. With nothing in duplex the timer is stopped and the poll
-- handle does not keep the loop alive, so uv.run() returns once the host
-- has nothing left either; idle, duplex costs no CPU.
local duplex = require "duplex"
local core = require "duplex.core"

local ceil, tostring, pcall, xpcall, traceback = math.ceil, tostring, pcall, xpcall, debug.traceback
local io = io

local M = {}

-- xpcall passes no arguments on PUC Lua 5.1
local function step0() return duplex.step(0) end

local Handle = {}
Handle.__index = Handle

local function close(h)
  if not h:is_closing() then h:close() end
end

function Handle:stop()
  if self.stopped then return false end
  self.stopped = true
  self.poll:stop()
  self.timer:stop()
  self.prepare:stop()
  close(self.poll)
  close(self.timer)
  close(self.prepare)
  return true
end

local function stderr(err)
  io.stderr:write("duplex.luv: ", tostring(err), "\n")
end

function M.attach(opts)
  opts = opts or {}
  local uv = opts.uv or require "luv"
  local on_error = opts.on_error or stderr
  local fd = duplex.pollfd()
  if not fd then return nil, "duplex has no pollable descriptor on this platform" end
  local self = setmetatable({ uv = uv }, Handle)
  self.poll = uv.new_poll(fd)
  self.timer = uv.new_timer()
  self.prepare = uv.new_prepare()
  uv.unref(self.prepare)

  local armed -- the ms the timer was started for, or nil
  local step
  local function rearm()
    if self.stopped then return end
    local t = duplex.timeout()
    local ms = t and ceil(t * 1000) or nil
    if ms ~= armed or ms == 0 then
      self.timer:stop()
      if ms then self.timer:start(ms, 0, step) end
      armed = ms
    end
    -- the poll handle keeps the loop running exactly while duplex has
    -- something (a server, a connection, a timer)
    if core.alive() then uv.ref(self.poll) else uv.unref(self.poll) end
  end
  step = function()
    armed = nil
    local ok, err = xpcall(step0, traceback)
    if not ok then pcall(on_error, err) end
    rearm()
  end
  self.poll:start("r", function(err)
    if err then pcall(on_error, "poll: " .. tostring(err)) end
    step()
  end)
  self.prepare:start(rearm)
  uv.update_time() -- attach runs outside uv.run: luv's clock may be stale
  rearm()
  return self
end

return M
