-- The process's stdin and stdout through the loop (a terminal, a pipe or a
-- file alike), for the duplex command and anyone else who wants them: a
-- coroutine that reads a line or writes waits on the loop, never blocks it.
-- As in ws.lua, each function tries the C call first and waits on the
-- object's id only when that call would block.
local core = require "duplex.core"
local scheduler = require "duplex.scheduler"

local wait = scheduler.wait
local type, error, select = type, error, select

local M = {}

local input, output

local function stdin()
  if not input then input = core.stdin_open() end
  return input
end

local function stdout()
  if not output then output = core.stdout_open() end
  return output
end

-- The next line of stdin without its "\n"; nil at the end of input; nil,
-- err when reading failed (or a line is longer than 1 MiB).
function M.read_line()
  local s = stdin()
  local id = s:info()
  while true do
    local line, err = s:read_line()
    if line then return line end
    if line == nil then return nil, err end
    wait(id)
  end
end

-- Writes the strings (at most 16) as one piece; waits while more than
-- 1 MiB is queued for stdout. true, or nil, err.
function M.write(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) ~= "string" then
      error("bad argument #" .. i .. " to 'write' (string expected, got " .. type(v) .. ")", 2)
    end
  end
  local s = stdout()
  local id = s:info()
  while true do
    local ok, err = s:write(...)
    if ok then return true end
    if ok == nil then return nil, err end
    wait(id)
  end
end

-- Waits until everything written has been taken by stdout. true, or nil,
-- err when a write failed.
function M.flush()
  if not output then return true end
  local id = output:info()
  while true do
    local pending, err = output:pending()
    if err then return nil, err end
    if pending == 0 then return true end
    wait(id)
  end
end

-- What stdin and stdout are: "tty", "pipe", "file" or "closed".
function M.kinds()
  return select(2, stdin():info()), select(2, stdout():info())
end

-- Stops reading stdin (the loop no longer waits for it).
function M.close_input()
  if input then input:close() end
  input = nil
end

-- Closes both (what is still queued for stdout is dropped: flush first)
-- and lets the loop finish closing them, which gives the descriptors back
-- in blocking mode, as whoever shares them after us expects.
function M.close()
  M.close_input()
  if output then output:close() end
  output = nil
  core.step(0, {})
end

return M
