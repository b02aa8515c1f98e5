-- Drives duplex from Neovim's own loop (0.7+, LuaJIT):
--   local dnvim = require "duplex.nvim"
--   local handle = dnvim.attach()        -- handle:stop() to detach
-- It is duplex.luv over `vim.uv or vim.loop`. Everything duplex runs
-- (handlers, coroutines, duplex.every) runs inside a libuv callback, a
-- "fast" context where most of vim.api is off limits: a handler that
-- touches the editor does it through vim.schedule(function() ... end).
-- dnvim.wrap(fn) does that for you and reports fn's errors with
-- vim.notify; dnvim.on_error is an on_error for duplex.serve that does the
-- same for a failing handler.
local luv_adapter = require "duplex.luv"

local tostring, xpcall, traceback = tostring, xpcall, debug.traceback

local M = {}

local function notify(msg)
  local vim = rawget(_G, "vim")
  if vim and vim.notify then
    vim.schedule(function() vim.notify(msg, vim.log.levels.ERROR) end)
  else
    io.stderr:write(msg, "\n")
  end
end
M.notify = notify

-- For duplex.serve's opts.on_error: a failing handler's trace to vim.notify.
function M.on_error(_, _, trace)
  notify("duplex: error in handler: " .. tostring(trace))
end

-- fn(...) later on the editor's main loop (vim.api allowed), its errors
-- reported through vim.notify.
function M.wrap(fn)
  return function(...)
    local n, args = select("#", ...), { ... }
    vim.schedule(function()
      local ok, err = xpcall(function() return fn(unpack(args, 1, n)) end, traceback)
      if not ok then notify("duplex: " .. tostring(err)) end
    end)
  end
end

function M.attach(opts)
  opts = opts or {}
  return luv_adapter.attach({
    uv = opts.uv or vim.uv or vim.loop,
    on_error = opts.on_error or function(err) notify("duplex: step failed: " .. tostring(err)) end,
  })
end

return M
