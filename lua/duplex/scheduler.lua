-- The coroutine scheduler. The C core never resumes Lua: core.step runs the
-- libuv loop once and reports the ids of objects that changed; we resume the
-- coroutines waiting on those ids, which retry their non-blocking C call.
local core = require "duplex.core"

local coroutine, debug, io, select, type, pairs, pcall, tostring, setmetatable =
  coroutine, debug, io, select, type, pairs, pcall, tostring, setmetatable
local floor = math.floor
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local M = {}

local waiting = {}  -- id -> the coroutine parked on it, or an array of them
local runq, runq_head, runq_tail = {}, 1, 0  -- coroutines to resume, FIFO
local args = {}  -- coroutine -> packed arguments for its first resume
local on_error = setmetatable({}, { __mode = "k" })  -- coroutine -> function(co, err)
local ids = {}  -- scratch table core.step fills
local stopping = false
local stepping = false -- inside M.step: a host adapter re-arms after it anyway
local on_work -- set by a host adapter: told of work added outside a step

local function enqueue(co)
  runq_tail = runq_tail + 1
  runq[runq_tail] = co
  if on_work and not stepping then on_work() end
end

-- A host adapter (duplex.cqueues) whose loop sleeps on a deadline it read
-- from timeout() is told when code of the host spawns a coroutine or starts
-- a timer, so that it reads timeout() again. fn(), or nil to stop.
function M.on_work(fn)
  on_work = fn
end

-- PUC Lua 5.1 cannot yield inside a for iterator (ws:messages()) or a
-- pcall, and no Lua can yield inside a C function (table.sort's comparator):
-- the bare message does not say what to write instead.
local YIELD_HINT = " (a coroutine cannot wait from inside a C function: on PUC Lua 5.1 that includes a" ..
  " `for ... in ws:messages()` loop and pcall; write `while true do local msg, kind = ws:receive()" ..
  " if not msg then break end ... end` instead)"

local function report(co, err)
  if type(err) == "string" and err:find("attempt to yield across", 1, true) then err = err .. YIELD_HINT end
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

-- Timers that may be called off (a wait with a timeout, duplex.every and
-- duplex.after) live in a min-heap on (due, seq), in milliseconds of the
-- loop's clock, under the loop's one alarm (core.alarm), which is armed
-- exactly while a live entry exists: a stopped timer keeps nothing alive.
-- A called-off entry is only marked dead and dropped when it reaches the
-- top (or when dead ones outnumber the live ones: the heap is rebuilt).
-- An entry: { due, seq, fire = function(entry, now), dead }.
local heap, nheap, live, seq = {}, 0, 0, 0
local alarm_id = core.new_id()
local armed -- the due time the alarm is armed for, or nil

local function now_ms()
  return floor(core.now() * 1000 + 0.5)
end
M.now_ms = now_ms

local function before(a, b)
  return a.due < b.due or (a.due == b.due and a.seq < b.seq)
end

local function sift_up(i)
  local e = heap[i]
  while i > 1 do
    local p = floor(i / 2)
    if not before(e, heap[p]) then break end
    heap[i] = heap[p]
    i = p
  end
  heap[i] = e
end

local function sift_down(i)
  local e = heap[i]
  while true do
    local c = 2 * i
    if c > nheap then break end
    if c < nheap and before(heap[c + 1], heap[c]) then c = c + 1 end
    if not before(heap[c], e) then break end
    heap[i] = heap[c]
    i = c
  end
  heap[i] = e
end

local function pop()
  local top = heap[1]
  heap[1] = heap[nheap]
  heap[nheap] = nil
  nheap = nheap - 1
  if nheap > 0 then sift_down(1) end
  return top
end

-- Drops dead entries off the top and arms the alarm for the first live one.
local function rearm()
  while nheap > 0 and heap[1].dead do pop() end
  if nheap == 0 then
    if armed then core.alarm() end
    armed = nil
  elseif heap[1].due ~= armed then
    armed = heap[1].due
    core.alarm(alarm_id, (armed - now_ms()) / 1000)
  end
end

local function schedule(e)
  seq = seq + 1
  e.seq, e.dead = seq, false
  live = live + 1
  nheap = nheap + 1
  heap[nheap] = e
  sift_up(nheap)
  if heap[1] == e then
    rearm()
    if on_work and not stepping then on_work() end
  end
end

-- Calls e off; true when it was pending.
local function cancel(e)
  if e.dead ~= false then return false end
  e.dead = true
  live = live - 1
  if nheap > 64 and nheap > 4 * live then
    local keep, n = {}, 0
    for i = 1, nheap do
      if not heap[i].dead then
        n = n + 1
        keep[n] = heap[i]
      end
    end
    heap, nheap = keep, n
    for i = floor(n / 2), 1, -1 do sift_down(i) end
    armed = armed and -1 -- the top may have changed
  end
  rearm()
  return true
end

local function fire_timers()
  armed = nil -- it went off
  local now = now_ms()
  while nheap > 0 and heap[1].due <= now do
    local e = pop()
    if not e.dead then
      e.dead = true
      live = live - 1
      e:fire(now)
    end
  end
  rearm()
end

-- Takes co off id's waiters: true when it was there (not woken yet).
local function unpark(id, co)
  local w = waiting[id]
  if w == co then
    waiting[id] = nil
    return true
  end
  if type(w) ~= "table" then return false end
  for i = 1, #w do
    if w[i] == co then
      table.remove(w, i)
      if #w == 0 then waiting[id] = nil end
      return true
    end
  end
  return false
end

local function wait_expired(e)
  if unpark(e.id, e.co) then
    e.expired = true
    enqueue(e.co)
  end
end

-- Parks the running coroutine until id is woken: true. With a timeout (in
-- seconds), false once that passed without a wake-up. A wait without one
-- costs what it did before timeouts existed: no table, no timer.
function M.wait(id, timeout)
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
  if timeout == nil then
    coroutine.yield()
    return true
  end
  local e = { due = now_ms() + floor(timeout * 1000 + 0.5), id = id, co = co, fire = wait_expired }
  schedule(e)
  coroutine.yield()
  if e.expired then return false end
  cancel(e)
  return true
end

-- duplex.every and duplex.after: each run of fn(timer) in a coroutine of
-- its own; `every` keeps to its planned times (a late run does not shift
-- the next ones, and runs missed while the loop was busy are skipped).
local Timer = {}
Timer.__index = Timer

function Timer:stop()
  return cancel(self)
end

local function timer_fire(t, now)
  M.spawn(t.fn, nil, t)
  local period = t.period
  if period then
    t.due = t.due + (floor((now - t.due) / period) + 1) * period
    schedule(t)
  end
end

-- fn runs after `first` seconds, then every `period` seconds if given.
function M.timer(first, fn, period)
  local t = setmetatable({ fn = fn, fire = timer_fire }, Timer)
  t.due = now_ms() + floor(first * 1000 + 0.5)
  if period then t.period = math.max(1, floor(period * 1000 + 0.5)) end
  schedule(t)
  return t
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

M.wake = wake

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
  stepping = true
  -- an embedding host may have slept on its own for a while: the loop's
  -- cached clock is refreshed before coroutines start timers on it (a
  -- close_timeout started on a stale clock expired at once)
  now_ms()
  run_queue()
  if runq_tail > 0 then timeout = 0 end
  local n, all = core.step(timeout or -1, ids)
  if all then
    local every = {}
    for id in pairs(waiting) do every[#every + 1] = id end
    for i = 1, #every do wake(every[i]) end
    fire_timers()
  end
  for i = 1, n do
    local id = ids[i]
    ids[i] = nil
    if id == alarm_id then fire_timers() else wake(id) end
  end
  run_queue()
  stepping = false
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
