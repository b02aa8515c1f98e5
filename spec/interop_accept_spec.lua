-- The accept hook seen by other clients: Python's websockets, Node's ws and
-- headless Chromium are let in, refused (with the status and headers the
-- hook gave) and kept waiting by the same server. Driven as in the other
-- interop specs (spec/interop/support.lua).
local duplex = require "duplex"
local support = require "interop.support"

local PY = support.PYTHON
local NODE = support.find_program("node", "nodejs")
local NODE_DIR = "spec/interop/node/"
local CHROMIUM = support.CHROMIUM

-- The server under test: ?token=good is let in as "alice", ?token=slow
-- after 0.3 s as "slow", ?token=bad refused with 401 and a challenge,
-- ?token=busy with 429; the handler greets the user and waits for the
-- close. `seen` counts the verdicts and the greetings.
local function gated_server(extra_http)
  local seen = { refused = 0, greeted = 0 }
  local server = assert(support.serve({
    port = 0, handshake_timeout = 30, http = extra_http,
    accept = function(req)
      local token = req.params.token
      if token == "slow" then duplex.sleep(0.3) end
      if token == "good" then
        req.user = "alice"
      elseif token == "slow" then
        req.user = "slow"
      elseif token == "busy" then
        seen.refused = seen.refused + 1
        return 429, { ["Retry-After"] = "7" }, "busy\n"
      else
        seen.refused = seen.refused + 1
        return 401, { ["WWW-Authenticate"] = 'Bearer realm="duplex"' }, "token required\n"
      end
    end,
  }, function(ws)
    seen.greeted = seen.greeted + 1
    ws:send("welcome " .. ws.request.user)
    while ws:receive() do end
  end))
  return server, seen
end

-- Runs argv (a client that ends with "OK") to completion: its fields.
local function run_client(argv)
  local p = support.start(argv, 25)
  local rc, out = support.wait(p, 25)
  assert(rc, "the client did not finish: " .. support.describe(p))
  assert(rc == 0 and out:match("OK\n$"), "the client failed: " .. support.describe(p))
  return support.fields(out)
end

local clients = {}
if support.websockets_version() then
  clients[#clients + 1] = { "Python websockets", function(url) return { PY, "spec/interop/accept_client.py", url } end }
end
if NODE and support.read_file(NODE_DIR .. "node_modules/ws/package.json") then
  clients[#clients + 1] = { "Node ws", function(url) return { NODE, NODE_DIR .. "accept_client.js", url } end }
end

describe("the accept hook, seen by other clients", function()
  after_each(support.cleanup)

  if #clients < 2 then
    it("needs python3-websockets and Node ws (spec/interop/node: npm ci)", function()
      pending("a client library is missing")
    end)
  end

  for _, client in ipairs(clients) do
    local name, argv = client[1], client[2]
    describe(name, function()
      it("is refused with the hook's status and headers, let in, and let in after a wait", function()
        support.run(function()
          local server, seen = gated_server()
          local base = ("ws://127.0.0.1:%d/gated?token="):format(server.port)
          local f = run_client(argv(base .. "bad"))
          assert.equal("401", f.status)
          assert.equal('Bearer realm="duplex"', f.www_authenticate)
          assert.is_nil(f.opened)
          if f.body then assert.equal('"token required\\n"', f.body) end
          f = run_client(argv(base .. "busy"))
          assert.equal("429", f.status)
          if f.retry_after then assert.equal("7", f.retry_after) end
          f = run_client(argv(base .. "good"))
          assert.equal("1", f.opened)
          assert.equal("welcome alice", f.got)
          assert.equal("1000", f.close_code)
          local t0 = duplex.now()
          f = run_client(argv(base .. "slow"))
          assert.equal("welcome slow", f.got)
          assert.is_true(duplex.now() - t0 >= 0.3)
          assert.equal(2, seen.refused)
          assert.equal(2, seen.greeted)
        end, 60)
      end)
    end)
  end

  describe("headless Chromium", function()
    if not CHROMIUM then
      it("needs chromium (apt-get install chromium)", function() pending("chromium is not installed") end)
      return
    end
    local profile
    before_each(function() profile = support.new_profile() end)
    after_each(function() support.remove_profile(profile) end)

    it("gets error and close 1006 for a refusal, open for the others", function()
      support.run(function()
        local report
        local page = assert(support.read_file("spec/interop/accept.html"))
        local server, seen = gated_server(function(req)
          if req.path == "/accept" then
            return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, page
          elseif req.path == "/report" then
            report = support.url_decode((req.query or ""):match("result=([^&]*)") or "")
            return 204, {}, ""
          elseif req.path == "/hold" then -- the page's load (and the DOM dump) waits for the report
            local deadline = duplex.now() + 15
            while not report and duplex.now() < deadline do duplex.sleep(0.05) end
            return 404, {}, ""
          end
          return 404, {}, ""
        end)
        local p = support.start({ CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
          "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--user-data-dir=" .. profile, "--dump-dom",
          ("http://127.0.0.1:%d/accept"):format(server.port) }, 40)
        local deadline = duplex.now() + 30
        while not report and duplex.now() < deadline and not support.status(p) do duplex.sleep(0.05) end
        assert(report, "no report from the page: " .. support.describe(p))
        local rc, dom = support.wait(p, 15)
        assert(rc == 0, "chromium did not finish cleanly: " .. support.describe(p))
        assert.equal("PASS", report)
        assert.matches('<pre id="result">PASS</pre>', dom, 1, true)
        assert.equal(1, seen.refused)
        assert.equal(2, seen.greeted)
      end, 60)
    end)
  end)
end)
