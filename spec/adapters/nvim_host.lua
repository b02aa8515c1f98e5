-- nvim --headless -u NONE -c 'luafile spec/adapters/nvim_host.lua' IDLE
-- Runs spec/adapters/scenario.lua through duplex.nvim; prints the results
-- as "key=value" lines and quits.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/luajit/?.so;" .. package.cpath
local idle = tonumber(os.getenv("DUPLEX_IDLE")) or 5
local duplex = require "duplex"
local dnvim = require "duplex.nvim"
local uv = vim.uv or vim.loop
local handle = dnvim.attach()
-- errors of wrapped functions reach vim.notify
local notes = {}
vim.notify = function(msg) notes[#notes + 1] = msg end
dnvim.wrap(function() error("wrapped boom") end)()
local watchdog = uv.new_timer()
local quitting = false
local function quit(r)
  if quitting then return end
  quitting = true
  handle:stop()
  if not watchdog:is_closing() then watchdog:close() end
  -- through dnvim.wrap: on the main loop, where the editor may be touched
  dnvim.wrap(function()
    vim.api.nvim_buf_set_lines(0, 0, -1, false, { r.echo or "" })
    r.notified = table.concat(notes, " | "):find("wrapped boom", 1, true) ~= nil
    r.buffer_ok = vim.api.nvim_buf_get_lines(0, 0, 1, false)[1] == r.echo
    for k, v in pairs(r) do io.stdout:write(k, "=", tostring(v), "\n") end
    io.stdout:flush()
    vim.cmd("qall!")
  end)()
end
watchdog:start((idle + 15) * 1000, 0, function() quit({ err = "watchdog: the scenario did not finish" }) end)
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
  done = quit,
}, idle)
