-- Conformance of our client: a raw server (spec/conformance/peer.lua)
-- accepts duplex.connect, sends what spec/conformance/cases.lua says to a
-- client that echoes every message, and checks the whole answer exactly:
-- the echoes and pongs in order (every frame masked), the close frame's
-- code, who drops TCP, and the close code the client reported. Prints a
-- per-category table at the end.
local peer = require "conformance.peer"
local cases = require "conformance.cases"

local ZOPTS = { window_bits = 15, threshold = 1e9 } -- replies go out uncompressed: echoes compare as plain bytes

local function copts_for(c)
  local o = {}
  for k, v in pairs(c.opts or {}) do o[k] = v end
  o.compression = c.compression and (c.reply_compressed and (type(c.reply_compressed) == "table" and c.reply_compressed or { window_bits = 15 }) or ZOPTS) or false
  return o
end

local MK = peer.sframe

local function run_case(c)
  local s = peer.client_session(copts_for(c),
    c.compression and { headers = { "Sec-WebSocket-Extensions: " .. (c.offer or "permessage-deflate") } } or nil)
  local offer = s.req.headers["sec-websocket-extensions"]
  if c.compression then
    assert(offer and offer:match("^permessage%-deflate"), "our client did not offer permessage-deflate")
  else
    assert(offer == nil, "our client offered an extension with compression = false: " .. tostring(offer))
  end
  peer.send(s, c.send(peer.sframe))
  if c.shutdown or c.close == "dropped" then s.raw.sock:shutdown("send") end
  -- when we (the server) started the close handshake, we drop TCP after the
  -- client's answer, as RFC 6455 7.1.1 has servers do; when the client
  -- fails the connection, it drops TCP itself.
  local answered = c.answer or c.close == "echo" or c.close == "none"
  local want, reported = peer.expectation(c, MK, function(frame) peer.send(s, frame) end)
  peer.expect_client(s, want, reported, { timeout = c.timeout, then_close = answered,
    rsv1_ok = c.reply_compressed, inflate = c.reply_compressed and peer.inflate })
  if answered then
    assert(s.log.clean == true, "our client did not report a clean close")
  end
  if c.compression then
    assert(s.log.ws and s.log.ws.compression == true, "our client did not report ws.compression")
  end
end

describe("conformance: raw server against our client", function()
  teardown(function() peer.report("raw server -> duplex client") end)
  peer.add_cases(it, cases, "server", run_case)
end)
