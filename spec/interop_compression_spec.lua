-- permessage-deflate against peers nobody here wrote: Python `websockets`
-- (compression on by default) as a client of our server and as a server for
-- our client, and headless Chromium (which offers permessage-deflate) as a
-- client of our server. Every case checks that the extension was really
-- negotiated, on both sides.
local duplex = require "duplex"
local support = require "interop.support"

local PY = support.PYTHON
local CLIENT_PY = "spec/interop/pmd_client.py"
local SERVER_PY = "spec/interop/pmd_server.py"



local version = support.websockets_version()

describe("permessage-deflate interop with Python websockets " .. tostring(version), function()
  if not version then
    it("needs /usr/bin/python3 with the websockets module", function() pending("python3-websockets is not installed") end)
    return
  end

  after_each(support.cleanup)

  describe("as a client of our server (compression = true)", function()
    local seen

    local function python_client(case, server_opts)
      local fields
      support.run(function()
        seen = { messages = 0 }
        local opts = server_opts or { compression = true }
        opts.port = 0
        local server = assert(support.serve(opts, function(ws)
          seen.offer = ws.request.headers["sec-websocket-extensions"]
          seen.compression = ws.compression
          while true do
            local msg, kind = ws:receive()
            if not msg then break end
            seen.messages = seen.messages + 1
            assert(ws:send(msg, kind))
          end
          seen.close_code = ws.close_code
          seen.done = true
        end))
        local p = support.start({ PY, CLIENT_PY, ("ws://127.0.0.1:%d/pmd"):format(server.port), case }, 40)
        local rc, out = support.wait(p, 40)
        assert(rc, "python client did not finish: " .. support.describe(p))
        assert(rc == 0 and out:match("OK\n$"), "python client failed: " .. support.describe(p))
        local deadline = duplex.now() + 5
        while not seen.done and duplex.now() < deadline do duplex.sleep(0.02) end
        fields = support.fields(out)
      end, 45)
      return fields
    end

    local function negotiated(f)
      assert.equal("permessage-deflate", f.extensions)
      assert.matches("^permessage%-deflate", f.response)
      assert.matches("^permessage%-deflate", seen.offer)
      assert.is_true(seen.compression)
      assert.equal(1000, seen.close_code)
    end

    it("echoes text", function()
      local f = python_client("text")
      negotiated(f)
      assert.equal(2, seen.messages)
    end)

    it("echoes binary and empty messages", function()
      local f = python_client("binary")
      negotiated(f)
      assert.equal(2, seen.messages)
    end)

    it("echoes 1 MiB compressible and incompressible messages", function()
      local f = python_client("big")
      negotiated(f)
      assert.equal(2, seen.messages)
    end)

    it("echoes many messages with context takeover, and without", function()
      local f = python_client("several")
      negotiated(f)
      assert.equal(200, seen.messages)
      f = python_client("several", { compression = { context_takeover = false, window_bits = 9 } })
      negotiated(f)
      assert.matches("server_no_context_takeover", f.response, 1, true)
      assert.matches("client_no_context_takeover", f.response, 1, true)
      assert.equal(200, seen.messages)
    end)
  end)

  describe("as a server for our client (compression on by default)", function()
    local function our_client(opts, sends)
      local fields
      support.run(function()
        local p = support.start({ PY, SERVER_PY }, 40)
        local port = support.wait_for_output(p, "port=(%d+)", 10)
        assert(port, "python server did not start: " .. support.describe(p))
        local ws = assert(duplex.connect(("ws://127.0.0.1:%s/"):format(port), opts))
        assert.is_true(ws.compression)
        for i, m in ipairs(sends) do
          assert(ws:send(m[1], m[2]))
          local got, kind = ws:receive()
          assert(got == m[1], ("message %d of %d bytes came back as %s"):format(i, #m[1], got and #got .. " bytes" or tostring(kind)))
          assert.equal(m[2], kind)
        end
        assert(ws:close(1000, "done"))
        local rc, out = support.wait(p, 15)
        assert(rc == 0 and out:match("OK\n$"), "python server failed: " .. support.describe(p))
        fields = support.fields(out)
      end, 45)
      return fields
    end

    local function negotiated(f, n)
      assert.equal("permessage-deflate", f.extensions)
      assert.matches("^permessage%-deflate", f.request)
      assert.matches("^permessage%-deflate", f.response)
      assert.equal(tostring(n), f.messages)
      assert.equal("1000", f.close_code)
    end

    it("echoes text and binary", function()
      local f = our_client(nil, { { "hello", "text" }, { ("h\195\169llo "):rep(20), "text" },
        { ("\0\1\2\3"):rep(64), "binary" }, { "", "binary" } })
      negotiated(f, 4)
    end)

    it("echoes 1 MiB compressible and incompressible messages", function()
      local t = {}
      for i = 1, 30000 do t[i] = ('{"n":%d,"text":"hello"}'):format(i) end
      local json = table.concat(t, ","):sub(1, 1048576)
      local f = io.open("/dev/urandom", "rb")
      local noise = f:read(1048576)
      f:close()
      negotiated(our_client({ max_message = 4 * 1048576 }, { { json, "text" }, { noise, "binary" } }), 2)
    end)

    it("echoes many messages, with and without context takeover, with a narrow window", function()
      local list = {}
      for i = 1, 200 do list[i] = { ('{"type":"message","nick":"alice","text":"message %d"}'):format(i), "text" } end
      negotiated(our_client(nil, list), 200)
      local f = our_client({ compression = { context_takeover = false, window_bits = 10 } }, list)
      negotiated(f, 200)
      assert.matches("client_max_window_bits=10", f.request, 1, true)
      assert.matches("server_no_context_takeover", f.response, 1, true)
    end)
  end)
end)

local CHROMIUM = support.CHROMIUM

local PAGE = [[<!doctype html>
<meta charset="utf-8"><title>pmd</title>
<pre id="result">running</pre>
<!-- the /hold image (at the end) keeps the load event, and so the DOM dump,
     waiting until the page has reported to /report -->
<script>
const out = document.getElementById("result");
function report(r) {
  out.textContent = r;
  fetch("/report?result=" + encodeURIComponent(r));
}
const ws = new WebSocket("ws://" + location.host + "/echo");
ws.binaryType = "arraybuffer";
const big = JSON.stringify(Array.from({length: 20000}, (_, i) => ({n: i, nick: "alice", text: "hello \u2713"})));
const bin = new Uint8Array(100000); for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919) % 251;
const sends = ["hello", big, "", bin];
let step = 0;
ws.onopen = () => { for (const s of sends) ws.send(s); };
ws.onmessage = (e) => {
  const want = sends[step++];
  let ok;
  if (want instanceof Uint8Array) {
    const got = new Uint8Array(e.data);
    ok = got.length === want.length && got.every((v, i) => v === want[i]);
  } else {
    ok = e.data === want;
  }
  if (!ok) { report("FAIL: echo " + step + " differs"); ws.close(); return; }
  if (step === sends.length) { ws.close(1000, "done"); }
};
ws.onclose = (e) => {
  if (step === sends.length && e.code === 1000) report("PASS ext=" + ws.extensions);
  else if (!out.textContent.startsWith("FAIL")) report("FAIL: closed " + e.code + " after " + step);
};
ws.onerror = () => report("FAIL: error");
</script>
<img src="/hold" alt="">
]]

describe("permessage-deflate interop with headless Chromium", function()
  if not CHROMIUM then
    it("needs chromium", function() pending("chromium is not installed") end)
    return
  end

  local profile
  before_each(function() profile = support.new_profile() end)
  after_each(function()
    support.cleanup()
    support.remove_profile(profile)
  end)

  local url_decode = support.url_decode

  it("negotiates permessage-deflate with our server and echoes text, 1 MiB-ish JSON, empty and binary", function()
    support.run(function()
      local seen = {}
      local function http(req)
        if req.path == "/page" then
          return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, PAGE
        elseif req.path == "/report" then
          seen.report = url_decode((req.query or ""):match("result=([^&]*)") or "")
          return 204, {}, ""
        elseif req.path == "/hold" then
          local deadline = duplex.now() + 15
          while not seen.report and duplex.now() < deadline do duplex.sleep(0.05) end
          return 404, { ["Content-Type"] = "text/plain" }, "released\n"
        end
        return 404, {}, ""
      end
      local server = assert(support.serve({ port = 0, http = http, compression = true, handshake_timeout = 30 }, function(ws)
        seen.offer = ws.request.headers["sec-websocket-extensions"]
        seen.compression = ws.compression
        seen.user_agent = ws.request.headers["user-agent"]
        seen.messages = 0
        while true do
          local msg, kind = ws:receive()
          if not msg then break end
          seen.messages = seen.messages + 1
          ws:send(msg, kind)
        end
        seen.close = { ws.close_code, ws.close_clean }
      end))
      local p = support.start({ CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--user-data-dir=" .. profile, "--dump-dom",
        ("http://127.0.0.1:%d/page"):format(server.port) }, 40)
      local deadline = duplex.now() + 30
      while not seen.report and duplex.now() < deadline and not support.status(p) do duplex.sleep(0.05) end
      assert(seen.report, "no report from the page: " .. support.describe(p))
      local rc = support.wait(p, 15)
      assert(rc == 0, "chromium did not finish cleanly: " .. support.describe(p))
      assert.matches("^PASS", seen.report)
      assert.matches("ext=permessage%-deflate", seen.report)
      assert.matches("Chrome/", seen.user_agent, 1, true)
      assert.matches("^permessage%-deflate", seen.offer)
      assert.is_true(seen.compression)
      assert.equal(4, seen.messages)
      assert.same({ 1000, true }, seen.close)
    end, 60)
  end)
end)
