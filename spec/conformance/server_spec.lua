-- Conformance of our server: a raw client (spec/conformance/peer.lua) sends
-- what spec/conformance/cases.lua says to an echo server (duplex.serve with
-- a handler that echoes every message) and checks the whole answer exactly:
-- the echoes and pongs in order, the close frame's code, that TCP is then
-- dropped, and the close code the handler saw. Prints a per-category table
-- at the end.
local peer = require "conformance.peer"
local cases = require "conformance.cases"

local ZOPTS = { threshold = 1e9 } -- the server replies uncompressed, so echoes compare as plain bytes

local function opts_for(c)
  local o = {}
  for k, v in pairs(c.opts or {}) do o[k] = v end
  if c.compression then o.compression = c.reply_compressed and (type(c.reply_compressed) == "table" and c.reply_compressed or true) or ZOPTS end
  return o
end

local MK = peer.cframe

local function run_case(c)
  local s = peer.server_session(opts_for(c),
    c.compression and { extra = { "Sec-WebSocket-Extensions: " .. (c.offer or "permessage-deflate") } } or nil)
  if c.compression then
    local ext = s.head.headers["sec-websocket-extensions"] or ""
    assert(ext:match("^permessage%-deflate"), "permessage-deflate was not negotiated: " .. ext)
  end
  local bytes = c.send(peer.cframe)
  peer.send(s, bytes)
  if c.shutdown or c.close == "dropped" then s.raw.sock:shutdown("send") end
  local want, reported = peer.expectation(c, MK, function(frame) peer.send(s, frame) end)
  peer.expect(s, want, reported, { timeout = c.timeout,
    rsv1_ok = c.reply_compressed, inflate = c.reply_compressed and peer.inflate })
end

describe("conformance: raw client against our server", function()
  teardown(function() peer.report("raw client -> duplex server") end)
  peer.add_cases(it, cases, "client", run_case)
end)
