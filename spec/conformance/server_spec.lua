-- Conformance of our server: a raw client (spec/conformance/peer.lua) sends
-- what spec/conformance/cases.lua says to an echo server (duplex.serve with
-- a handler that echoes every message) and checks the whole answer exactly:
-- the echoes and pongs in order, the close frame's code, that TCP is then
-- dropped, and the close code the handler saw. Prints a per-category table
-- at the end.
local peer = require "conformance.peer"
local cases = require "conformance.cases"
local duplex = peer.helpers.duplex

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
  local want = {}
  local cw = type(c.want) == "function" and c.want(MK) or c.want
  for i = 1, #cw do want[i] = cw[i] end
  local reported
  if c.close == "echo" then
    peer.send(s, peer.close_frame(peer.cframe, 1000))
    want[#want + 1] = "close:1000"
    reported = 1000
  elseif c.close == "dropped" then
    reported = 1006
  elseif c.close == "none" then
    want[#want + 1] = "close:none"
    reported = 1005
  else
    want[#want + 1] = "close:" .. c.close
    reported = c.close
  end
  want[#want + 1] = "eof"
  peer.expect(s, want, c.reported or reported, { timeout = c.timeout,
    rsv1_ok = c.reply_compressed, inflate = c.reply_compressed and peer.inflate })
end

describe("conformance: raw client against our server", function()
  teardown(function() peer.report("raw client -> duplex server") end)
  local i = 1
  while cases[i] do
    local c = cases[i]
    if c.only ~= "client" then
      it(c.cat .. ": " .. c.name, peer.case(c.cat, c.name, function() run_case(c) end, (c.timeout or 3) + 5))
    end
    i = i + 1
  end
end)
