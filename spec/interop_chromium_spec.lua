-- Interop with a real browser: headless Chromium against the chat example,
-- started by `make run` itself (two tabs driven over the DevTools protocol by
-- spec/interop/chat_tabs.py), and loaded as a module and served from this
-- process (with test pages of its own).
-- Chromium runs in the background with --dump-dom; the test pages in
-- spec/interop/ report their verdict both into the DOM (which the dump
-- shows) and to /report on our server. /hold answers only once the report
-- is in, so the page's load event, and with it the dump, waits for it.
local duplex = require "duplex"
local support = require "interop.support"

local CHROMIUM = support.CHROMIUM

local function slurp(path)
  return assert(support.read_file(path), "cannot read " .. path)
end

local url_decode = support.url_decode

describe("interop with headless Chromium", function()
  if not CHROMIUM then
    it("needs chromium (apt-get install chromium)", function() pending("chromium is not installed") end)
    return
  end

  local profile
  before_each(function() profile = support.new_profile() end)
  after_each(function()
    support.cleanup()
    support.remove_profile(profile)
  end)

  -- A server that is the chat example plus the test pages, an echo endpoint
  -- at /echo, /report and /hold. Returns the server and its record.
  local function start_server()
    local chat = assert(loadfile("examples/chat.lua"))({})
    local seen = { sockets = {}, echo_close = nil }
    local function http(req)
      if req.path == "/two-tabs" then
        return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, slurp("spec/interop/two_tabs.html")
      elseif req.path == "/chat-frame" then
        return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, slurp("spec/interop/chat_frame.html")
      elseif req.path == "/report" then
        seen.report = url_decode((req.query or ""):match("result=([^&]*)") or "")
        return 204, {}, ""
      elseif req.path == "/hold" then
        local deadline = duplex.now() + 15
        while not seen.report and duplex.now() < deadline do duplex.sleep(0.05) end
        return 404, { ["Content-Type"] = "text/plain" }, "released\n"
      elseif req.path == "/favicon.ico" then
        return 404, {}, ""
      end
      return chat.http(req)
    end
    local server = assert(support.serve({ port = 0, http = http, handshake_timeout = 30, max_message = 4 * 1024 * 1024 },
      function(ws)
        seen.sockets[#seen.sockets + 1] = {
          path = ws.request.path, query = ws.request.query,
          user_agent = ws.request.headers["user-agent"], origin = ws.request.headers["origin"],
        }
        if ws.request.path == "/echo" then
          while true do
            local msg, kind = ws:receive()
            if not msg then break end
            ws:send(msg, kind)
          end
          seen.echo_close = { ws.close_code, ws.close_reason, ws.close_clean }
        else
          chat.handler(ws)
        end
      end))
    return server, seen, chat
  end

  local function chromium(url)
    return support.start({ CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
      "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage", "--user-data-dir=" .. profile, "--dump-dom", url }, 40)
  end

  -- Waits for the page's report and chromium's exit; returns the report
  -- and the dumped DOM.
  local function finish(p, seen)
    local deadline = duplex.now() + 30
    while not seen.report and duplex.now() < deadline and not support.status(p) do duplex.sleep(0.05) end
    assert(seen.report, "no report from the page: " .. support.describe(p))
    local rc, dom = support.wait(p, 15)
    assert(rc == 0, "chromium did not finish cleanly: " .. support.describe(p))
    return seen.report, dom
  end

  -- The Lua under test, as `make run` names it.
  local LUA = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

  it("`make run` serves the chat page, and two tabs chat through it with a Lua client in the room", function()
    support.run(function()
      -- SANITIZE= : the plain build, as a user gets it (this Lua may be the
      -- sanitized one, whose preload Chromium and make must not inherit)
      local server = support.start({ "make", "--no-print-directory", "run", "SANITIZE=", "LUA=" .. LUA, "PORT=0" }, 90)
      local port = support.wait_for_output(server, "chat on http://127%.0%.0%.1:(%d+)/", 60)
      assert(port, "make run did not start the chat: " .. support.describe(server))
      local bot = assert(duplex.connect(("ws://127.0.0.1:%s/chat?nick=lua-bot"):format(port)))
      local tabs = support.start({ support.PYTHON, "spec/interop/chat_tabs.py", CHROMIUM,
        ("http://127.0.0.1:%s/"):format(port), profile }, 45)
      local rc, out = support.wait(tabs, 45)
      assert(rc == 0, "the tabs did not chat: " .. support.describe(tabs))
      local f = support.fields(out)
      assert.equal("2", f.online)
      assert.equal("hello from tab-a", f.b_got)
      assert.equal("and back from tab-b", f.a_got)
      -- the Lua client in the same room saw the browsers come and speak
      local seen = {}
      while not (seen.a and seen.b) do
        local msg = bot:receive()
        assert(msg, "the room closed before the bot heard both tabs")
        if msg:find('"nick":"tab-a","text":"hello from tab-a \226\156\147"', 1, true) then seen.a = true end
        if msg:find('"nick":"tab-b","text":"and back from tab-b"', 1, true) then seen.b = true end
      end
      assert.is_true(bot:close())
    end, 120)
  end)

  it("lets two WebSockets in one page chat, and echoes text, binary, empty and 1 MiB messages", function()
    support.run(function()
      local server, seen = start_server()
      local p = chromium(("http://127.0.0.1:%d/two-tabs"):format(server.port))
      local report, dom = finish(p, seen)
      assert.equal("PASS", report)
      assert.matches('<pre id="result">PASS</pre>', dom, 1, true)
      assert.matches("b got: hello from tab-a \226\156\147", dom, 1, true)
      assert.matches("a saw tab-b leave, count 1", dom, 1, true)
      assert.equal(3, #seen.sockets)
      for _, s in ipairs(seen.sockets) do
        assert.matches("Chrome/", s.user_agent, 1, true)
        assert.equal(("http://127.0.0.1:%d"):format(server.port), s.origin)
      end
      assert.same({ 4000, "browser-bye", true }, seen.echo_close)
    end, 60)
  end)

  it("reads Server-Sent Events with EventSource, and resumes after the server's restart with Last-Event-ID, no gap", function()
    support.run(function()
      duplex.history("feed", { size = 100 })
      local seen = { n = 0, last_ids = {} }
      local page = assert(support.serve({ port = 0, handshake_timeout = 30, http = function(req)
        if req.path == "/sse-page" then
          return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, slurp("spec/interop/sse_page.html")
        elseif req.path == "/progress" then
          seen.n = math.max(seen.n, tonumber(req.params.n) or 0)
          return 204, {}, ""
        elseif req.path == "/report" then
          seen.report = req.params.result
          return 204, {}, ""
        elseif req.path == "/hold" then
          local deadline = duplex.now() + 25
          while not seen.report and duplex.now() < deadline do duplex.sleep(0.05) end
          return 404, {}, ""
        end
        return 404, {}, ""
      end }, function() end))
      local function events_server(port)
        return assert(support.serve({ port = port, sse_retry = 0.2, sse = function(req)
          seen.last_ids[#seen.last_ids + 1] = req.headers["last-event-id"] or "-"
          return { "feed" }, { ["Access-Control-Allow-Origin"] = "*" }
        end }, function() end))
      end
      local function wait_for(what, pred)
        local deadline = duplex.now() + 20
        while not pred() and duplex.now() < deadline do duplex.sleep(0.02) end
        assert(pred(), what)
      end
      local events = events_server(0)
      local p = chromium(("http://127.0.0.1:%d/sse-page?port=%d"):format(page.port, events.port))
      wait_for("the page did not open its EventSource", function() return duplex.subscribers("feed") == 1 end)
      local ids = {}
      for i = 1, 3 do ids[i] = select(3, duplex.publish("feed", "f" .. i)) end
      wait_for("the page did not get the first events", function() return seen.n == 3 end)
      -- the server goes; what is published meanwhile waits in the history
      assert.is_true(events:shutdown({ timeout = 3 }))
      for i = 4, 5 do ids[i] = select(3, duplex.publish("feed", "f" .. i)) end
      events = events_server(events.port)
      wait_for("the browser did not come back", function() return duplex.subscribers("feed") == 1 end)
      ids[6] = select(3, duplex.publish("feed", "f6"))
      local report, dom = finish(p, seen)
      assert.equal("f1,f2,f3,f4,f5,f6 " .. table.concat(ids, ","), report)
      assert.matches("f1,f2,f3,f4,f5,f6", dom, 1, true)
      assert.same({ "-", ids[3] }, seen.last_ids)
      events:close()
      page:close()
      duplex.history("feed", false)
    end, 60)
  end)

  it("runs the real chat page: it connects, shows a message from Lua and sends one back", function()
    support.run(function()
      local server, seen, chat = start_server()
      local p = chromium(("http://127.0.0.1:%d/chat-frame"):format(server.port))
      -- wait for the browser to join the room
      local deadline = duplex.now() + 30
      local browser
      while not browser and duplex.now() < deadline and not support.status(p) do
        for ws, nick in pairs(chat.clients) do
          if nick == "chromium-tab" then browser = ws end
        end
        if not browser then duplex.sleep(0.05) end
      end
      assert(browser, "the chat page did not connect: " .. support.describe(p))
      assert.matches("Chrome/", browser.request.headers["user-agent"], 1, true)
      assert.equal("/chat", browser.request.path)

      -- join as a Lua client, say hello, and wait for the browser's answer
      local ws = assert(duplex.connect(("ws://127.0.0.1:%d/chat?nick=lua-bot"):format(server.port)))
      assert(ws:send("hello from lua"))
      local answer
      while not answer do
        local msg = ws:receive()
        assert(msg, "the chat closed before the browser answered")
        if msg:find('"nick":"chromium-tab","text":"hello from chromium"', 1, true) then answer = msg end
      end
      ws:close()

      local report, dom = finish(p, seen)
      assert.matches("^PASS", report)
      assert.matches("online", report, 1, true)
      assert.matches("lua-bothello from lua", report, 1, true)
      assert.matches('<pre id="result">PASS', dom, 1, true)
    end, 60)
  end)
end)
