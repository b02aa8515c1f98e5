-- The duplex command (bin/duplex) against Python's websockets, both ways,
-- through pipes and a pseudo-terminal. Every program runs in the background
-- under `timeout` (spec/interop/support.lua), and every wait is bounded.
local duplex = require "duplex"
local support = require "interop.support"
local pki = require "helpers.pki"

local PY = support.PYTHON
local DRIVE = "spec/interop/cli_drive.py"
local SERVER_PY = "spec/interop/cli_server.py"

local function cli(...)
  return support.lua_argv("bin/duplex", ...)
end

-- argv for cli_drive.py: drive options, then the duplex command's words.
local function drive(opts, ...)
  local argv = { PY, DRIVE }
  for _, o in ipairs(opts) do argv[#argv + 1] = o end
  argv[#argv + 1] = "--"
  for _, w in ipairs(cli(...)) do argv[#argv + 1] = w end
  return argv
end

-- Runs cli_drive.py to its end: the command's output lines and status.
local function run_drive(opts, ...)
  local p = support.start(drive(opts, ...), 25)
  local rc, out = support.wait(p, 25)
  assert(rc == 0 and out:match("OK\n$"), "the driver failed: " .. support.describe(p))
  local lines = {}
  for line in out:gmatch("line=([^\n]*)\n") do lines[#lines + 1] = line end
  return lines, out:match("rc=(%w+)"), support.errors(p), p
end

local function start_py_server(mode)
  local p = support.start({ PY, SERVER_PY, mode }, 25)
  local port = support.wait_for_output(p, "port=(%d+)\n", 15)
  assert(port, "the Python server did not start: " .. support.describe(p))
  return p, port
end

-- Waits for a started `duplex serve` to print its URL on stderr.
local function serve_port(p)
  local deadline = duplex.now() + 10
  while duplex.now() < deadline do
    local port = support.errors(p):match("listening on wss?://[^\n]*:(%d+)/\n")
    if port then return port end
    if support.status(p) then break end
    duplex.sleep(0.05)
  end
  error("duplex serve did not start: " .. support.describe(p))
end

local function py_fields(p)
  local rc, out = support.wait(p, 15)
  assert(rc == 0, "the Python server failed: " .. support.describe(p))
  local got = {}
  for g in out:gmatch("got=([^\n]*)\n") do got[#got + 1] = g end
  local f = support.fields(out)
  f.got = got
  return f
end

-- An HTTP GET of path (sent as is) from Python: status and body.
local function http_get(port, path)
  local code = ([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", %s, timeout=5)
c.request("GET", sys.argv[1])
r = c.getresponse()
body = r.read()
print("status=%%d" %% r.status)
print("type=%%s" %% r.getheader("Content-Type"))
print("body=%%s" %% body.decode("utf-8", "replace").replace("\n", "|"))
]]):format(port)
  local p = support.start({ PY, "-c", code, path }, 15)
  local rc, out = support.wait(p, 15)
  assert(rc == 0, "the HTTP client failed: " .. support.describe(p))
  return support.fields(out)
end

local version = support.websockets_version()

describe("the duplex command", function()
  after_each(support.cleanup)

  it("prints its help and version, and says what is wrong with its arguments", function()
    support.run(function()
      local p = support.start(cli("--help"), 10)
      local rc, out = support.wait(p, 10)
      assert.equal(0, rc)
      assert.matches("duplex connect URL", out, 1, true)
      assert.matches("Exit status:", out, 1, true)
      p = support.start(cli("--version"), 10)
      rc, out = support.wait(p, 10)
      assert.equal(0, rc)
      assert.matches("^duplex ", out)
      p = support.start(cli("connect", "--frobnicate", "ws://127.0.0.1:1/"), 10)
      assert.equal(2, (support.wait(p, 10)))
      assert.matches("unknown option --frobnicate", support.errors(p), 1, true)
      p = support.start(cli("serve", "--echo", "--broadcast"), 10)
      assert.equal(2, (support.wait(p, 10)))
      assert.matches("exclude each other", support.errors(p), 1, true)
      p = support.start(cli("bogus"), 10)
      assert.equal(2, (support.wait(p, 10)))
      p = support.start(cli("serve", "--static", "/nonexistent/dir"), 10)
      assert.equal(2, (support.wait(p, 10)))
      assert.matches("--static /nonexistent/dir: no such file or directory", support.errors(p), 1, true)
    end, 30)
  end)

  it("exits with 5 when it cannot listen", function()
    support.run(function()
      local s = assert(duplex.serve({ port = 0 }, function() end))
      local p = support.start(cli("serve", "--port", tostring(s.port)), 10)
      assert.equal(5, (support.wait(p, 10)))
      assert.matches("cannot listen on 127.0.0.1:" .. s.port, support.errors(p), 1, true)
      s:close()
    end, 20)
  end)

  it("exits with 3 when it cannot connect", function()
    support.run(function()
      -- a port nobody listens on: bind one, close it, then connect
      local s = assert(duplex.serve({ port = 0 }, function() end))
      local port = s.port
      s:close()
      local p = support.start(cli("connect", "ws://127.0.0.1:" .. port .. "/"), 10)
      assert.equal(3, (support.wait(p, 10)))
      assert.matches("cannot connect to ws://127.0.0.1:" .. port .. "/: connection refused", support.errors(p), 1, true)
    end, 20)
  end)

  describe("duplex.stdio", function()
    local function cat_cmd()
      local words = {}
      for i, w in ipairs(support.lua_argv("spec/interop/stdio_cat.lua")) do words[i] = support.quote(w) end
      return table.concat(words, " ")
    end

    local function cat(stdin, out)
      local cmd = cat_cmd() .. " <" .. stdin .. " 2>" .. out .. ".err" .. " | wc -l >" .. out
      assert(os.execute("timeout 20 sh -c " .. support.quote(cmd)))
      local count = tonumber(support.read_file(out):match("%d+"))
      local report = support.read_file(out .. ".err")
      os.remove(out)
      os.remove(out .. ".err")
      return count, report
    end

    it("reads a regular file and a pipe to the end, last line without newline included", function()
      local input, out = os.tmpname(), os.tmpname()
      assert(os.execute("seq 1 100000 >" .. input .. " && printf tail >>" .. input))
      local n, report = cat(input, out)
      assert.equal(100001, n)
      assert.matches("stdin=file stdout=pipe lines=100001 error=nil", report, 1, true)
      n, report = cat("/dev/null", out)
      assert.equal(0, n)
      assert.matches("lines=0 error=nil", report, 1, true)
      local p = io.popen("timeout 20 sh -c " .. support.quote("seq 1 50000 | " .. cat_cmd() .. " 2>&1 >/dev/null"))
      local piped = p:read("*a")
      p:close()
      assert.matches("stdin=pipe stdout=file lines=50000 error=nil", piped, 1, true)
      os.remove(input)
    end)

    it("refuses a line longer than 1 MiB", function()
      local input, out = os.tmpname(), os.tmpname()
      assert(os.execute("printf 'short\\n' >" .. input .. " && head -c 1100000 /dev/zero | tr '\\0' x >>" .. input))
      local n, report = cat(input, out)
      assert.equal(1, n)
      assert.matches("lines=1 error=stdin: a line is longer than 1048576 bytes", report, 1, true)
      os.remove(input)
    end)
  end)

  if not version then
    it("needs /usr/bin/python3 with the websockets module (apt-get install python3-websockets)", function()
      pending("python3-websockets is not installed")
    end)
    return
  end

  describe("connect, against Python websockets", function()
    it("sends stdin lines with the headers asked for, prints what comes back, exits 0 on a clean close", function()
      support.run(function()
        local py, port = start_py_server()
        local lines, rc = run_drive({ "--send", "hello", "--send", "h\195\169llo \226\156\147", "--send", "bye", "--expect", "2" },
          "connect", "--header", "X-Test: yes", "--origin", "http://o.example", "--protocol", "chat",
          "ws://127.0.0.1:" .. port .. "/")
        assert.same({ "hello", "h\195\169llo \226\156\147" }, lines)
        assert.equal("0", rc)
        local f = py_fields(py)
        assert.same({ "text:hello", "text:h\195\169llo \226\156\147", "text:bye" }, f.got)
        assert.equal("http://o.example", f.origin)
        assert.equal("yes", f.x_test)
        assert.equal("chat", f.subprotocol)
        assert.matches("permessage%-deflate", f.extensions)
        assert.equal("1000", f.close_code)
      end, 40)
    end)

    it("sends binary with --binary, and the end of stdin closes with 1000", function()
      support.run(function()
        local py, port = start_py_server()
        local lines, rc = run_drive({ "--send", "ab", "--expect", "1", "--eof" },
          "connect", "--binary", "--no-compression", "ws://127.0.0.1:" .. port .. "/")
        assert.same({ "ab" }, lines)
        assert.equal("0", rc)
        local f = py_fields(py)
        assert.same({ "binary:6162" }, f.got)
        assert.equal("", f.extensions)
        assert.equal("1000", f.close_code)
      end, 40)
    end)

    it("skips a line that is not UTF-8 in text mode, saying why", function()
      support.run(function()
        local py, port = start_py_server()
        local lines, rc, err = run_drive({ "--send", "\255\254", "--send", "fine", "--send", "bye", "--expect", "1" },
          "connect", "ws://127.0.0.1:" .. port .. "/")
        assert.same({ "fine" }, lines)
        assert.equal("0", rc)
        assert.matches("text message is not valid UTF-8 (line skipped", err, 1, true)
        assert.same({ "text:fine", "text:bye" }, py_fields(py).got)
      end, 40)
    end)

    it("leaves its stdin and stdout pipes blocking again when it exits", function()
      support.run(function()
        local s = support.start(cli("serve", "--port", "0", "--echo"), 30)
        local port = serve_port(s)
        local argv = { PY, "spec/interop/cli_flags.py" }
        for _, w in ipairs(cli("connect", "ws://127.0.0.1:" .. port .. "/")) do argv[#argv + 1] = w end
        local p = support.start(argv, 20)
        local rc, out = support.wait(p, 20)
        assert(rc == 0, support.describe(p))
        local f = support.fields(out)
        assert.equal("0", f.rc)
        assert.equal("False", f.stdin_nonblock)
        assert.equal("False", f.stdout_nonblock)
      end, 40)
    end)

    it("exits with 1 when the server closes with an error code", function()
      support.run(function()
        local py, port = start_py_server()
        local _, rc, err = run_drive({ "--send", "fail" }, "connect", "ws://127.0.0.1:" .. port .. "/")
        assert.equal("1", rc)
        assert.matches("connection closed: 4000 nope", err, 1, true)
        py_fields(py)
      end, 40)
    end)

    it("exits with 4 and prints the status when the upgrade is refused", function()
      support.run(function()
        local _, port = start_py_server("refuse")
        local p = support.start(cli("connect", "ws://127.0.0.1:" .. port .. "/"), 15)
        assert.equal(4, (support.wait(p, 15)))
        assert.matches("server refused the upgrade: HTTP 403 Forbidden", support.errors(p), 1, true)
      end, 30)
    end)

    it("reads a terminal: stdin a pseudo-terminal, stdout a pipe, ^D ends it", function()
      support.run(function()
        local py, port = start_py_server()
        local lines, rc = run_drive({ "--pty", "in", "--send", "typed", "--expect", "1", "--eof" },
          "connect", "ws://127.0.0.1:" .. port .. "/")
        assert.same({ "typed" }, lines)
        assert.equal("0", rc)
        assert.same({ "text:typed" }, py_fields(py).got)
      end, 40)
    end)

    it("reads and writes a terminal: stdin and stdout a pseudo-terminal", function()
      support.run(function()
        local py, port = start_py_server()
        local lines, rc = run_drive({ "--pty", "both", "--send", "one", "--send", "two", "--expect", "2", "--eof" },
          "connect", "ws://127.0.0.1:" .. port .. "/")
        assert.same({ "one", "two" }, lines)
        assert.equal("0", rc)
        assert.same({ "text:one", "text:two" }, py_fields(py).got)
      end, 40)
    end)

    it("trusts a CA with --ca for wss://, and fails verification (3) without it", function()
      local P = pki.get()
      support.run(function()
        local py = support.start({ PY, "spec/interop/tls_server.py", P.server_cert, P.server_key }, 25)
        local port = support.wait_for_output(py, "port=(%d+)\n", 15)
        assert(port, support.describe(py))
        local lines, rc = run_drive({ "--send", "secret", "--expect", "1", "--eof" },
          "connect", "--ca", P.ca, "wss://localhost:" .. port .. "/")
        assert.same({ "secret" }, lines)
        assert.equal("0", rc)
        assert.equal(0, (support.wait(py, 15)))
        py = support.start({ PY, "spec/interop/tls_server.py", P.server_cert, P.server_key }, 25)
        port = support.wait_for_output(py, "port=(%d+)\n", 15)
        local p = support.start(cli("connect", "wss://localhost:" .. port .. "/"), 15)
        assert.equal(3, (support.wait(p, 15)))
        assert.matches("certificate verify failed", support.errors(p), 1, true)
      end, 60)
    end)
  end)

  describe("serve", function()
    it("--echo echoes Python's text, binary and 1 MiB messages", function()
      support.run(function()
        local p = support.start(cli("serve", "--port", "0", "--echo"), 60)
        local port = serve_port(p)
        for _, case in ipairs({ "text", "binary", "empty", "big" }) do
          local c = support.start({ PY, "spec/interop/ws_client.py", "ws://127.0.0.1:" .. port .. "/", case }, 25)
          local rc, out = support.wait(c, 25)
          assert(rc == 0 and out:match("OK\n$"), case .. ": " .. support.describe(c))
        end
      end, 90)
    end)

    it("--cert/--key serve wss:// to duplex connect --ca", function()
      local P = pki.get()
      support.run(function()
        local s = support.start(cli("serve", "--port", "0", "--echo", "--cert", P.server_cert, "--key", P.server_key), 60)
        local port = serve_port(s)
        assert.matches("listening on wss://127.0.0.1:", support.errors(s), 1, true)
        local lines, rc = run_drive({ "--send", "over tls", "--expect", "1", "--eof" },
          "connect", "--ca", P.ca, "wss://127.0.0.1:" .. port .. "/")
        assert.same({ "over tls" }, lines)
        assert.equal("0", rc)
        -- without the CA the certificate fails, unless checks are off
        local p = support.start(cli("connect", "wss://127.0.0.1:" .. port .. "/"), 15)
        assert.equal(3, (support.wait(p, 15)))
        lines, rc = run_drive({ "--send", "unchecked", "--expect", "1", "--eof" },
          "connect", "--insecure", "wss://127.0.0.1:" .. port .. "/")
        assert.same({ "unchecked" }, lines)
        assert.equal("0", rc)
      end, 40)
    end)

    it("without --echo prints what clients send and sends them its stdin lines", function()
      local fifo = os.tmpname()
      os.remove(fifo)
      assert(os.execute("mkfifo " .. support.quote(fifo)))
      local ok, err = pcall(support.run, function()
        local s = support.start(cli("serve", "--port", "0"), 30, fifo)
        local input = assert(io.open(fifo, "w")) -- returns once the shell opened it
        local port = serve_port(s)
        local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/"))
        duplex.sleep(0.2) -- its handler has subscribed
        input:write("to-clients\n")
        input:flush()
        assert.same({ "to-clients", "text" }, { ws:receive(5) })
        assert(ws:send("from-client"))
        local deadline = duplex.now() + 10
        while not support.output(s):find("from-client\n", 1, true) and duplex.now() < deadline do
          duplex.sleep(0.05)
        end
        assert.equal("from-client\n", support.output(s))
        ws:close()
        input:close()
      end, 40)
      os.remove(fifo)
      assert(ok, err)
    end)

    it("--broadcast sends each message to every other client", function()
      support.run(function()
        local s = support.start(cli("serve", "--port", "0", "--broadcast"), 30)
        local port = serve_port(s)
        local url = "ws://127.0.0.1:" .. port .. "/"
        local a, b = assert(duplex.connect(url)), assert(duplex.connect(url))
        duplex.sleep(0.2) -- both subscribed
        assert(a:send("to all"))
        assert.equal("to all", (b:receive(5)))
        assert.same({ nil, "timeout" }, { a:receive(0.3) })
        a:close()
        b:close()
      end, 30)
    end)

    it("--static serves files, 404s and no way out of the folder", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir .. "/site/sub && echo '<h1>hi</h1>' > " .. dir .. "/site/index.html"
        .. " && echo 'body{}' > " .. dir .. "/site/sub/a.css && echo secret > " .. dir .. "/secret.txt"
        .. " && ln -s ../secret.txt " .. dir .. "/site/link.txt"))
      local ok, err = pcall(support.run, function()
        local s = support.start(cli("serve", "--port", "0", "--echo", "--static", dir .. "/site"), 60)
        local port = serve_port(s)
        local f = http_get(port, "/")
        assert.equal("200", f.status)
        assert.equal("text/html; charset=utf-8", f.type)
        assert.equal("<h1>hi</h1>|", f.body)
        f = http_get(port, "/sub/a.css")
        assert.equal("200", f.status)
        assert.equal("text/css; charset=utf-8", f.type)
        assert.equal("404", http_get(port, "/missing.html").status)
        assert.equal("404", http_get(port, "/sub").status) -- a folder without an index
        assert(os.execute("cp " .. dir .. "/site/index.html " .. dir .. "/site/sub/"))
        assert.equal("301", http_get(port, "/sub").status)
        assert.equal("200", http_get(port, "/sub/").status)
        for _, path in ipairs({ "/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/link.txt" }) do
          f = http_get(port, path)
          assert(f.status == "403" or f.status == "404", path .. " gave " .. tostring(f.status))
          assert.is_nil(f.body:find("secret", 1, true))
        end
        -- WebSocket upgrades still reach the echo
        local ws = assert(duplex.connect("ws://127.0.0.1:" .. port .. "/"))
        support.echo(ws, "still a websocket")
        ws:close()
      end, 60)
      os.execute("rm -rf " .. support.quote(dir))
      assert(ok, err)
    end)
  end)
end)
