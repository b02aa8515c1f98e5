-- duplex.stdio as a filter, for spec/cli_spec.lua: copies stdin to stdout
-- line by line as "<line>", then prints on stderr what stdin and stdout
-- were and how many lines went across (or the read error).
local duplex = require "duplex"
local stdio = require "duplex.stdio"

duplex.run(function()
  local kin, kout = stdio.kinds()
  local n, err = 0, nil
  while true do
    local line
    line, err = stdio.read_line()
    if not line then break end
    n = n + 1
    assert(stdio.write("<", line, ">\n"))
  end
  assert(stdio.flush())
  io.stderr:write("stdin=", kin, " stdout=", kout, " lines=", n, " error=", tostring(err), "\n")
end)
