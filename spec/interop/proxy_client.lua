-- A duplex client in a process of its own, for the proxy environment
-- variables (spec/proxy_spec.lua sets them for this process only):
--   proxy_client.lua URL [CA_FILE]
-- Connects with no proxy option, sends "hi", prints `echo=REPLY` or
-- `error=ERR`, then `OK`.
local duplex = require "duplex"

local url, ca = arg[1], arg[2]
duplex.run(function()
  local ws, err = duplex.connect(url, ca and ca ~= "" and { tls = { ca = ca } } or nil)
  if not ws then
    print("error=" .. tostring(err))
  else
    ws:send("hi")
    print("echo=" .. tostring((ws:receive(5))))
    ws:close()
  end
  print("OK")
end)
