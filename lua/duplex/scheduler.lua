-- The coroutine scheduler. The C core never resumes Lua: core.step runs the
-- libuv loop once and reports the ids of objects that changed; we resume the
-- coroutines waiting on those ids, which retry their non-blocking C call.
local core = require "duplex.core"

local coroutine, debug, io, select, type, pairs, pcall, tostring, setmetatable =
  coroutine, debug, io, select, type, pairs, pcall, tostring, setmetatable
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local M = {}

local waiting = {}  -- id -> the coroutine parked on it, or an array of them
local runq, runq_head, runq_tail = {}, 1, 0  -- coroutines to resume, FIFO
local args = {}  -- coroutine -> packed arguments for its first resume
local on_error = setmetatable({}, { __mode = "k" })  -- coroutine -> function(co, err)
local ids = {}  -- scratch table core.step fills
local stopping = false

local function enqueue(co)
  runq_tail = runq_tail + 1
  runq[runq_tail] = co
end

local function report(co, err)
  local handler = on_error[co]
  local trace = debug.traceback(co, tostring(err))
  if handler then
    local ok, herr = pcall(handler, co, err, trace)
    if ok then return end
    trace = trace .. "\n(and the error handler failed: " .. tostring(herr) .. ")"
  end
  io.stderr:write("duplex: error in coroutine: ", trace, "\n")
end

local function resume(co)
  local a = args[co]
  local ok, err
  if a then
    args[co] = nil
    ok, err = coroutine.resume(co, unpack(a, 1, a.n))
  else
    ok, err = coroutine.resume(co)
  end
  if not ok then report(co, err) end
end

-- Runs fn(...) in a new coroutine at the next step. handler(co, err,
-- traceback), if given, is told about an error instead of stderr.
function M.spawn(fn, handler, ...)
  local co = coroutine.create(fn)
  if select("#", ...) > 0 then args[co] = { n = select("#", ...), ... } end
  if handler then on_error[co] = handler end
  enqueue(co)
  return co
end

function M.current()
  local co, main = coroutine.running()
  if co and not main then return co end
  return nil
end

-- Parks the running coroutine until id is woken.
function M.wait(id)
  local co = M.current()
  if not co then
    error("duplex: this call waits, so it must run inside a coroutine (use duplex.run or duplex.spawn)", 3)
  end
  -- one waiter is the common case: no table for it
  local w = waiting[id]
  if w == nil then
    waiting[id] = co
  elseif type(w) == "thread" then
    waiting[id] = { w, co }
  else
    w[#w + 1] = co
  end
  coroutine.yield()
end

function M.sleep(seconds)
  local id = core.new_id()
  core.sleep(id, seconds)
  M.wait(id)
end

local function wake(id)
  local w = waiting[id]
  if w then
    waiting[id] = nil
    if type(w) == "thread" then
      enqueue(w)
    else
      for i = 1, #w do enqueue(w[i]) end
    end
  end
end

local function run_queue()
  while runq_head <= runq_tail do
    local co = runq[runq_head]
    runq[runq_head] = nil
    runq_head = runq_head + 1
    resume(co)
  end
  runq_head, runq_tail = 1, 0
end

-- One step: run libuv once (waiting at most timeout seconds; nil waits for
-- the next event), then resume every coroutine that became ready.
function M.step(timeout)
  run_queue()
  if runq_tail > 0 then timeout = 0 end
  local n, all = core.step(timeout or -1, ids)
  if all then
    local every = {}
    for id in pairs(waiting) do every[#every + 1] = id end
    for i = 1, #every do wake(every[i]) end
  end
  for i = 1, n do
    local id = ids[i]
    ids[i] = nil
    wake(id)
  end
  run_queue()
  return true
end

function M.timeout()
  if runq_tail >= runq_head then return 0 end
  return core.timeout()
end

function M.run()
  stopping = false
  while not stopping do
    run_queue()
    if stopping or not core.alive() then break end
    M.step(nil)
  end
  stopping = false
end

function M.stop()
  stopping = true
end

return M
