-- One scenario for every host adapter (spec/adapters_spec.lua): echo both
-- ways through the adapter while a timer of the host fires, then IDLE
-- seconds with a server and an open connection and nothing happening
-- (the host's timers stopped), measuring the process's CPU time; then the
-- host closes everything from one of its own callbacks. host gives
-- every(s, fn) -> stop function, after(s, fn), cpu() (process CPU
-- seconds), now() (wall seconds) and done(results).
return function(duplex, host, idle)
  local r = { ticks = 0 }
  local stop_ticker = host.every(0.01, function() r.ticks = r.ticks + 1 end)
  local function finish(err)
    r.err = r.err or err
    stop_ticker()
    host.done(r)
  end
  local server, serr = duplex.serve({ host = "127.0.0.1", port = 0 }, function(ws)
    ws:send("hello from the server")
    while true do
      local msg, kind = ws:receive()
      if not msg then break end
      r.server_got = msg
      ws:send(msg, kind)
    end
  end)
  if not server then return finish(serr) end
  duplex.spawn(function()
    local ws, err = duplex.connect("ws://127.0.0.1:" .. server.port .. "/")
    if not ws then return finish(err) end
    r.greeting = ws:receive()
    ws:send("ping from the client")
    r.echo = ws:receive()
    -- let the host's timer run while duplex is attached and busy with nothing
    duplex.sleep(0.1)
    r.ticks_attached = r.ticks
    stop_ticker()
    r.cpu0, r.wall0 = host.cpu(), host.now()
    host.after(idle, function()
      r.cpu1, r.wall1 = host.cpu(), host.now()
      -- called from the host: the adapter must notice the new coroutine
      duplex.spawn(function()
        r.closed, r.close_err = ws:close()
        server:close()
        finish()
      end)
    end)
  end)
end
