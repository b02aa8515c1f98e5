-- The conformance cases, written once for both directions from the rules of
-- RFC 6455 and RFC 7692 (categories after the public Autobahn catalogue).
--
-- A case is a table:
--   cat, name   category and description
--   send(mk)    the bytes the raw peer sends: a string, or a list of strings
--               sent one after another with a short pause (each arrives in
--               its own read). mk(f) builds one frame (helpers.frame fields)
--               masked or not as the raw peer's role wants; f.wrong_mask
--               asks for the masking the other role uses.
--   want        the events the library must send, in order, before its
--               close frame: "text:DATA", "binary:DATA", "pong:DATA" (or a
--               function(mk) returning that list)
--   close       what ends the conversation:
--                 "echo": the raw peer then sends close 1000 itself; the
--                   library must answer close 1000 (a clean close);
--                 a number N: the library must send close N itself;
--                 "none": the library must echo an empty close frame;
--                 "dropped": the raw peer half-closes TCP after sending
--                   (no close frame); the library must send nothing more
--                   (1005/1006 never go on the wire), drop TCP and report
--                   1006;
--               after which the library's side drops TCP (the server
--               always; the client after a failure, and after a clean close
--               once the raw server has closed TCP).
--   answer      the raw peer started the close handshake (a number `close`
--               is the library's answer to it)
--   reported    the code the library reports to the application (default:
--               1000 for "echo", 1005 for "none", else close)
--   opts        duplex options for this case (max_message, ...)
--   compression true: negotiate permessage-deflate (offer: the request's
--               Sec-WebSocket-Extensions value; reply_compressed: the
--               library compresses its replies too, checked by inflating)
--   shutdown    half-close TCP (FIN) right after sending
--   timeout     seconds to wait for the whole conversation (default 3); a
--               small value makes a fail-fast check
--   only        "server" or "client": one direction only
--
-- Named without _spec so that busted does not run it.
local helpers = require "helpers"
local peer = require "conformance.peer"
local data = require "conformance.data"

local concat = table.concat

local cases = {}
local function add(c) cases[#cases + 1] = c end

local function T(s) return "text:" .. s end
local function B(s) return "binary:" .. s end
local function PONG(s) return "pong:" .. s end

local function msg(mk, op, payload, extra)
  local f = { opcode = op, payload = payload }
  for k, v in pairs(extra or {}) do f[k] = v end
  return mk(f)
end
local function text(mk, s) return msg(mk, 1, s) end
local function frag(mk, op, pieces, rsv1) return peer.fragments(mk, op, pieces, rsv1) end
local function close(mk, code, reason)
  return peer.close_frame(mk, code, reason)
end

-- Every split of frame bytes into two writes, one after the other: the list
-- that `send` returns.
local function every_split(bytes)
  local list = {}
  for k = 1, #bytes - 1 do
    list[#list + 1] = bytes:sub(1, k)
    list[#list + 1] = bytes:sub(k + 1)
  end
  return list
end

local function each_byte(bytes)
  local list = {}
  for i = 1, #bytes do list[i] = bytes:sub(i, i) end
  return list
end

-- 1. Framing ------------------------------------------------------------------

local MiB = 1024 * 1024
local big = data.text(MiB)

for _, n in ipairs(data.lengths) do
  local payload = data.text(n)
  local forms = n <= 125 and { "7", "16", "64" } or n <= 65535 and { "16", "64" } or { "64" }
  for _, form in ipairs(forms) do
    local minimal = (n <= 125 and form == "7") or (n > 125 and n <= 65535 and form == "16") or form == "64" and n > 65535
    add { cat = "framing", name = ("text of %d bytes, %s-bit length%s"):format(n, form, minimal and "" or " (non-minimal form, accepted)"),
      send = function(mk) return mk({ opcode = 1, payload = payload, len = form }) end,
      want = { T(payload) }, close = "echo" }
  end
  add { cat = "framing", name = ("binary of %d bytes"):format(n),
    send = function(mk) return mk({ opcode = 2, payload = data.bytes(n) }) end,
    want = { B(data.bytes(n)) }, close = "echo" }
end

add { cat = "framing", name = "text of 1 MiB, 64-bit length", timeout = 6,
  send = function(mk) return mk({ opcode = 1, payload = big }) end,
  want = { T(big) }, close = "echo" }
add { cat = "framing", name = "binary of 1 MiB + 1 byte, 64-bit length", timeout = 6,
  send = function(mk) return mk({ opcode = 2, payload = big .. "x" }) end,
  want = { B(big .. "x") }, close = "echo" }

for _, n in ipairs({ 0, 1, 125, 126 }) do
  local payload = data.text(n)
  add { cat = "framing", name = ("text of %d bytes split in two at every byte"):format(n),
    send = function(mk) return every_split(mk({ opcode = 1, payload = payload })) end,
    want = function(mk)
      local w = {}
      for i = 1, #mk({ opcode = 1, payload = payload }) - 1 do w[i] = T(payload) end
      return w
    end, close = "echo", timeout = 6 }
end

add { cat = "framing", name = "binary of 127 bytes (64-bit form) sent one byte per write",
  send = function(mk) return each_byte(mk({ opcode = 2, payload = data.bytes(127), len = "64" })) end,
  want = { B(data.bytes(127)) }, close = "echo" }

add { cat = "framing", name = "ten messages in one write, echoed in order",
  send = function(mk)
    local t = {}
    for i = 1, 10 do t[i] = text(mk, "message " .. i) end
    return concat(t)
  end,
  want = (function() local w = {} for i = 1, 10 do w[i] = T("message " .. i) end return w end)(),
  close = "echo" }

add { cat = "framing", name = "binary of all 256 byte values",
  send = function(mk)
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    return mk({ opcode = 2, payload = concat(t) })
  end,
  want = (function()
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    return { B(concat(t)) }
  end)(), close = "echo" }

add { cat = "framing", name = "64-bit length with the most significant bit set -> 1002",
  send = function(mk)
    local f = mk({ opcode = 2, payload = "x", len = "64" })
    -- byte 3 is the top byte of the 64-bit length
    return f:sub(1, 2) .. "\128" .. f:sub(4)
  end,
  want = {}, close = 1002, timeout = 2 }

add { cat = "framing", name = "unmasked client frame -> 1002", only = "server",
  send = function(mk) return text(mk, "ok") .. mk({ opcode = 1, payload = "hi", wrong_mask = true }) end,
  want = { T("ok") }, close = 1002 }

add { cat = "framing", name = "masked server frame -> 1002", only = "client",
  send = function(mk) return text(mk, "ok") .. mk({ opcode = 1, payload = "hi", wrong_mask = true }) end,
  want = { T("ok") }, close = 1002 }

-- 2. Ping / pong ----------------------------------------------------------------

for _, n in ipairs({ 0, 1, 10, 64, 124, 125 }) do
  local payload = data.bytes(n, n + 1)
  add { cat = "ping/pong", name = ("ping of %d bytes answered with the same payload"):format(n),
    send = function(mk) return mk({ opcode = 9, payload = payload }) end,
    want = { PONG(payload) }, close = "echo" }
end

add { cat = "ping/pong", name = "ping of 125 bytes sent one byte per write",
  send = function(mk) return each_byte(mk({ opcode = 9, payload = data.text(125) })) end,
  want = { PONG(data.text(125)) }, close = "echo" }

add { cat = "ping/pong", name = "ping of 126 bytes -> 1002",
  send = function(mk) return mk({ opcode = 9, payload = data.text(126) }) end,
  want = {}, close = 1002 }

add { cat = "ping/pong", name = "ping of 5 bytes in the 16-bit length form answered (non-minimal form, accepted)",
  send = function(mk) return mk({ opcode = 9, payload = "hello", len = "16" }) end,
  want = { PONG("hello") }, close = "echo" }

add { cat = "ping/pong", name = "pong of 126 bytes -> 1002",
  send = function(mk) return mk({ opcode = 10, payload = data.text(126) }) end,
  want = {}, close = 1002 }

for _, n in ipairs({ 0, 10, 125 }) do
  add { cat = "ping/pong", name = ("unsolicited pong of %d bytes ignored"):format(n),
    send = function(mk) return mk({ opcode = 10, payload = data.text(n) }) .. text(mk, "after pong") end,
    want = { T("after pong") }, close = "echo" }
end

add { cat = "ping/pong", name = "unsolicited pong then ping: only the ping is answered",
  send = function(mk) return mk({ opcode = 10, payload = "unasked" }) .. mk({ opcode = 9, payload = "asked" }) end,
  want = { PONG("asked") }, close = "echo" }

add { cat = "ping/pong", name = "10 pings in a burst answered in order",
  send = function(mk)
    local t = {}
    for i = 1, 10 do t[i] = mk({ opcode = 9, payload = "ping " .. i }) end
    return concat(t)
  end,
  want = (function() local w = {} for i = 1, 10 do w[i] = PONG("ping " .. i) end return w end)(),
  close = "echo" }

add { cat = "ping/pong", name = "10 pings of 125 bytes in separate writes answered in order",
  send = function(mk)
    local t = {}
    for i = 1, 10 do t[i] = mk({ opcode = 9, payload = (string.char(64 + i)):rep(125) }) end
    return t
  end,
  want = (function() local w = {} for i = 1, 10 do w[i] = PONG((string.char(64 + i)):rep(125)) end return w end)(),
  close = "echo" }

-- 3. Reserved bits and opcodes ------------------------------------------------------

local rsv_names = { [4] = "RSV1", [2] = "RSV2", [1] = "RSV3", [7] = "RSV1+2+3", [3] = "RSV2+3" }
for _, rsv in ipairs({ 4, 2, 1, 3, 7 }) do
  add { cat = "reserved bits/opcodes", name = rsv_names[rsv] .. " on a text frame (nothing negotiated) -> 1002",
    send = function(mk) return text(mk, "before") .. mk({ opcode = 1, rsv = rsv, payload = "x" }) .. mk({ opcode = 9 }) end,
    want = { T("before") }, close = 1002 }
end
for _, rsv in ipairs({ 4, 2, 1 }) do
  add { cat = "reserved bits/opcodes", name = rsv_names[rsv] .. " on a binary frame -> 1002",
    send = function(mk) return mk({ opcode = 2, rsv = rsv, payload = "\0\1\2" }) end,
    want = {}, close = 1002 }
  add { cat = "reserved bits/opcodes", name = rsv_names[rsv] .. " on a ping -> 1002",
    send = function(mk) return mk({ opcode = 9, rsv = rsv, payload = "p" }) end,
    want = {}, close = 1002 }
  add { cat = "reserved bits/opcodes", name = rsv_names[rsv] .. " on a close -> 1002",
    send = function(mk) return mk({ opcode = 8, rsv = rsv, payload = helpers.close_payload(1000) }) end,
    want = {}, close = 1002 }
end
add { cat = "reserved bits/opcodes", name = "RSV2 on a continuation -> 1002",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "ab" }) .. mk({ opcode = 0, rsv = 2, payload = "cd" }) end,
  want = {}, close = 1002 }

for _, op in ipairs({ 3, 4, 5, 6, 7 }) do
  add { cat = "reserved bits/opcodes", name = ("reserved data opcode %d -> 1002"):format(op),
    send = function(mk) return text(mk, "before") .. mk({ opcode = op, payload = "x" }) .. mk({ opcode = 9 }) end,
    want = { T("before") }, close = 1002 }
end
for _, op in ipairs({ 0xB, 0xC, 0xD, 0xE, 0xF }) do
  add { cat = "reserved bits/opcodes", name = ("reserved control opcode 0x%X -> 1002"):format(op),
    send = function(mk) return text(mk, "before") .. mk({ opcode = op, payload = "x" }) .. mk({ opcode = 9 }) end,
    want = { T("before") }, close = 1002 }
end
add { cat = "reserved bits/opcodes", name = "reserved opcode 5 inside a fragmented message -> 1002",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "ab" }) .. mk({ opcode = 5, payload = "x" }) end,
  want = {}, close = 1002 }
add { cat = "reserved bits/opcodes", name = "reserved opcode 0xB with an empty payload in its own write -> 1002",
  send = function(mk) return { text(mk, "one"), mk({ opcode = 0xB }) } end,
  want = { T("one") }, close = 1002 }

-- 4. Fragmentation ----------------------------------------------------------------

add { cat = "fragmentation", name = "text in 2 fragments",
  send = function(mk) return frag(mk, 1, { "frag", "ment" }) end,
  want = { T("fragment") }, close = "echo" }
add { cat = "fragmentation", name = "binary in 3 fragments, separate writes",
  send = function(mk)
    local b = frag(mk, 2, { "\0\1", "\2\3", "\4" })
    return { b:sub(1, 8), b:sub(9, 16), b:sub(17) }
  end,
  want = { B("\0\1\2\3\4") }, close = "echo" }
add { cat = "fragmentation", name = "text of 64 bytes in 1-byte fragments",
  send = function(mk) return frag(mk, 1, peer.chunks(data.text(64), 1)) end,
  want = { T(data.text(64)) }, close = "echo" }
add { cat = "fragmentation", name = "text of 128 KiB in 8 KiB fragments",
  send = function(mk) return frag(mk, 1, peer.chunks(data.text(131072), 8192)) end,
  want = { T(data.text(131072)) }, close = "echo" }
add { cat = "fragmentation", name = "ping between fragments: pong first, then the message",
  send = function(mk)
    return mk({ opcode = 1, fin = false, payload = "frag" }) .. mk({ opcode = 9, payload = "in between" })
      .. mk({ opcode = 0, payload = "ment" })
  end,
  want = { PONG("in between"), T("fragment") }, close = "echo" }
add { cat = "fragmentation", name = "ping between fragments, each in its own write",
  send = function(mk)
    return { mk({ opcode = 1, fin = false, payload = "frag" }), mk({ opcode = 9, payload = "in between" }),
      mk({ opcode = 0, payload = "ment" }) }
  end,
  want = { PONG("in between"), T("fragment") }, close = "echo" }
add { cat = "fragmentation", name = "pong between fragments ignored",
  send = function(mk)
    return mk({ opcode = 2, fin = false, payload = "frag" }) .. mk({ opcode = 10, payload = "stray" })
      .. mk({ opcode = 0, payload = "ment" })
  end,
  want = { B("fragment") }, close = "echo" }
add { cat = "fragmentation", name = "a ping between each of 20 fragments",
  send = function(mk)
    local t = {}
    for i = 1, 20 do
      t[#t + 1] = mk({ opcode = i == 1 and 1 or 0, fin = i == 20, payload = tostring(i % 10) })
      if i < 20 then t[#t + 1] = mk({ opcode = 9, payload = "p" .. i }) end
    end
    return concat(t)
  end,
  want = (function()
    local w, s = {}, {}
    for i = 1, 19 do w[i] = PONG("p" .. i) end
    for i = 1, 20 do s[i] = tostring(i % 10) end
    w[20] = T(concat(s))
    return w
  end)(), close = "echo" }
add { cat = "fragmentation", name = "empty first fragment",
  send = function(mk) return frag(mk, 1, { "", "abc" }) end,
  want = { T("abc") }, close = "echo" }
add { cat = "fragmentation", name = "empty middle fragment",
  send = function(mk) return frag(mk, 1, { "ab", "", "c" }) end,
  want = { T("abc") }, close = "echo" }
add { cat = "fragmentation", name = "empty last fragment",
  send = function(mk) return frag(mk, 2, { "abc", "" }) end,
  want = { B("abc") }, close = "echo" }
add { cat = "fragmentation", name = "all fragments empty",
  send = function(mk) return frag(mk, 1, { "", "", "" }) end,
  want = { T("") }, close = "echo" }
add { cat = "fragmentation", name = "continuation without a start (FIN set) -> 1002",
  send = function(mk) return text(mk, "ok") .. mk({ opcode = 0, payload = "stray" }) end,
  want = { T("ok") }, close = 1002 }
add { cat = "fragmentation", name = "continuation without a start (FIN clear) -> 1002",
  send = function(mk) return mk({ opcode = 0, fin = false, payload = "stray" }) end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "continuation after a finished message -> 1002",
  send = function(mk) return frag(mk, 1, { "a", "b" }) .. mk({ opcode = 0, payload = "c" }) end,
  want = { T("ab") }, close = 1002 }
add { cat = "fragmentation", name = "text frame inside a fragmented text message -> 1002",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "a" }) .. mk({ opcode = 1, payload = "b" }) end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "binary frame inside a fragmented text message -> 1002",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "a" }) .. mk({ opcode = 2, fin = false, payload = "b" }) end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "fragmented ping (FIN clear) -> 1002",
  send = function(mk) return mk({ opcode = 9, fin = false, payload = "a" }) .. mk({ opcode = 0, payload = "b" }) end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "fragmented pong (FIN clear) -> 1002",
  send = function(mk) return mk({ opcode = 10, fin = false, payload = "a" }) .. mk({ opcode = 0, payload = "b" }) end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "fragmented close (FIN clear) -> 1002",
  send = function(mk) return mk({ opcode = 8, fin = false, payload = helpers.close_payload(1000) }) end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "fragmented ping inside a fragmented message -> 1002",
  send = function(mk)
    return mk({ opcode = 1, fin = false, payload = "a" }) .. mk({ opcode = 9, fin = false, payload = "p" })
      .. mk({ opcode = 0, payload = "b" })
  end,
  want = {}, close = 1002 }
add { cat = "fragmentation", name = "close between fragments ends the connection; the message is dropped",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "a" }) .. close(mk, 1000) .. mk({ opcode = 0, payload = "b" }) end,
  want = {}, close = 1000, answer = true }
add { cat = "fragmentation", name = "a message in fragments, then a whole message, then fragments again",
  send = function(mk) return frag(mk, 1, { "a", "b" }) .. text(mk, "c") .. frag(mk, 2, { "d", "e", "f" }) end,
  want = { T("ab"), T("c"), B("def") }, close = "echo" }

-- 5. UTF-8 ----------------------------------------------------------------------------

for _, v in ipairs(data.utf8_valid) do
  local name, s = v[1], v[2]
  add { cat = "utf-8", name = "valid " .. name .. " in one frame",
    send = function(mk) return text(mk, s) end, want = { T(s) }, close = "echo" }
  add { cat = "utf-8", name = "valid " .. name .. " split across 2 fragments at every position",
    send = function(mk)
      local t = {}
      for k = 0, #s do t[#t + 1] = frag(mk, 1, { s:sub(1, k), s:sub(k + 1) }) end
      return concat(t)
    end,
    want = (function() local w = {} for k = 0, #s do w[#w + 1] = T(s) end return w end)(), close = "echo" }
  add { cat = "utf-8", name = "valid " .. name .. " in 1-byte fragments",
    send = function(mk) return frag(mk, 1, peer.chunks(s, 1)) end, want = { T(s) }, close = "echo" }
end

for _, v in ipairs(data.utf8_invalid) do
  local name, s = v[1], v[2]
  add { cat = "utf-8", name = "invalid " .. name .. " in one frame -> 1007",
    send = function(mk) return text(mk, s) end, want = {}, close = 1007 }
  for k = 0, #s do
    add { cat = "utf-8", name = ("invalid %s split across 2 fragments after byte %d -> 1007"):format(name, k),
      send = function(mk) return frag(mk, 1, { s:sub(1, k), s:sub(k + 1) }) end, want = {}, close = 1007 }
  end
  add { cat = "utf-8", name = "invalid " .. name .. " in binary is echoed (binary is not checked)",
    send = function(mk) return mk({ opcode = 2, payload = s }) end, want = { B(s) }, close = "echo" }
end

add { cat = "utf-8", name = "fail fast: invalid first fragment gets 1007 before the rest is sent",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "ok so far \237\160\128 then more" }) end,
  want = {}, close = 1007, timeout = 1 }
add { cat = "utf-8", name = "fail fast: 64 KiB first fragment ending in a bad byte",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = data.text(65535) .. "\255" }) end,
  want = {}, close = 1007, timeout = 1 }
add { cat = "utf-8", name = "fail fast: valid first fragment, invalid second, no third",
  send = function(mk)
    return { mk({ opcode = 1, fin = false, payload = "valid " }), mk({ opcode = 0, fin = false, payload = "\192\128" }) }
  end,
  want = {}, close = 1007, timeout = 1 }
add { cat = "utf-8", name = "fail fast: overlong in the header-declared 1 MiB frame, only its start sent",
  send = function(mk)
    local f = mk({ opcode = 1, payload = "abc\224\128\128" .. data.text(MiB - 6) })
    return f:sub(1, 200)
  end,
  want = {}, close = 1007, timeout = 1 }
add { cat = "utf-8", name = "sequence cut at a fragment end is not an error",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "\240\144" }) .. mk({ opcode = 0, payload = "\128\128" }) end,
  want = { T("\240\144\128\128") }, close = "echo" }
add { cat = "utf-8", name = "valid message, then invalid: the echo goes out before 1007",
  send = function(mk) return text(mk, "\206\186\225\189\185\207\131\206\188\206\181") .. text(mk, "\237\160\128") end,
  want = { T("\206\186\225\189\185\207\131\206\188\206\181") }, close = 1007 }

-- 6. Close ---------------------------------------------------------------------------------

for _, code in ipairs(data.close_valid) do
  add { cat = "close", name = ("close %d echoed"):format(code),
    send = function(mk) return close(mk, code) end, want = {}, close = code, answer = true }
end
for _, code in ipairs(data.close_invalid) do
  add { cat = "close", name = ("invalid close code %d -> 1002"):format(code),
    send = function(mk) return close(mk, code) end, want = {}, close = 1002 }
end
add { cat = "close", name = "close with no payload: empty close echoed, 1005 reported",
  send = function(mk) return close(mk) end, want = {}, close = "none" }
add { cat = "close", name = "close with a 1-byte payload -> 1002",
  send = function(mk) return mk({ opcode = 8, payload = "\3" }) end, want = {}, close = 1002 }
add { cat = "close", name = "close 1000 with a 123-byte reason",
  send = function(mk) return close(mk, 1000, data.text(123)) end, want = {}, close = 1000, answer = true }
add { cat = "close", name = "close 1000 with a 124-byte reason (payload 126) -> 1002",
  send = function(mk) return close(mk, 1000, data.text(124)) end, want = {}, close = 1002 }
add { cat = "close", name = "close 1000 with a UTF-8 reason",
  send = function(mk) return close(mk, 1000, "\206\186\225\189\185\207\131\206\188\206\181") end, want = {}, close = 1000, answer = true }
add { cat = "close", name = "close with an invalid UTF-8 reason -> 1002",
  send = function(mk) return close(mk, 1000, "bye \237\160\128") end, want = {}, close = 1002 }
add { cat = "close", name = "close with a truncated UTF-8 reason -> 1002",
  send = function(mk) return close(mk, 1000, "bye \206") end, want = {}, close = 1002 }
add { cat = "close", name = "message then close in one write: echo before the close",
  send = function(mk) return text(mk, "last words") .. close(mk, 1000) end, want = { T("last words") }, close = 1000, answer = true }
add { cat = "close", name = "data after close ignored",
  send = function(mk) return close(mk, 1000) .. text(mk, "too late") .. mk({ opcode = 9, payload = "late ping" }) end,
  want = {}, close = 1000, answer = true }
add { cat = "close", name = "data after close in a later write ignored",
  send = function(mk) return { close(mk, 1000), text(mk, "too late") } end,
  want = {}, close = 1000, answer = true }
add { cat = "close", name = "invalid frame after close ignored",
  send = function(mk) return close(mk, 1000) .. mk({ opcode = 3, payload = "junk" }) end,
  want = {}, close = 1000, answer = true }
add { cat = "close", name = "close split one byte per write",
  send = function(mk) return each_byte(close(mk, 3000, "bye")) end, want = {}, close = 3000, answer = true }

add { cat = "close", name = "close then TCP FIN at once: the close is still answered",
  send = function(mk) return close(mk, 1000, "bye") end, shutdown = true, want = {}, close = 1000, answer = true }
add { cat = "close", name = "TCP FIN in the middle of a frame header: dropped, 1006",
  send = function(mk) return text(mk, "whole") .. mk({ opcode = 1, payload = data.text(300) }):sub(1, 3) end,
  want = { T("whole") }, close = "dropped" }
add { cat = "close", name = "TCP FIN in the middle of a payload: dropped, 1006",
  send = function(mk) return mk({ opcode = 2, payload = data.bytes(1000) }):sub(1, 500) end,
  want = {}, close = "dropped" }
add { cat = "close", name = "TCP FIN between fragments: dropped, 1006",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "half a " }) end,
  want = {}, close = "dropped" }
add { cat = "close", name = "TCP FIN on an idle connection: dropped, 1006",
  send = function() return "" end, want = {}, close = "dropped" }

-- 7. Limits ----------------------------------------------------------------------------------

for _, lim in ipairs({ 65536, MiB }) do
  local label = lim == MiB and "1 MiB" or "64 KiB"
  add { cat = "limits", name = ("text of max_message (%s) accepted"):format(label), opts = { max_message = lim }, timeout = 6,
    send = function(mk) return mk({ opcode = 1, payload = big:sub(1, lim) }) end,
    want = { T(big:sub(1, lim)) }, close = "echo" }
  add { cat = "limits", name = ("text of max_message + 1 (%s) -> 1009"):format(label), opts = { max_message = lim },
    send = function(mk) return mk({ opcode = 1, payload = (big .. "x"):sub(1, lim + 1) }) end,
    want = {}, close = 1009 }
  add { cat = "limits", name = ("max_message (%s) in 4 fragments accepted"):format(label), opts = { max_message = lim }, timeout = 6,
    send = function(mk) return frag(mk, 2, peer.chunks(big:sub(1, lim), lim / 4)) end,
    want = { B(big:sub(1, lim)) }, close = "echo" }
  add { cat = "limits", name = ("max_message + 1 (%s) in fragments, the last byte alone -> 1009"):format(label),
    opts = { max_message = lim },
    send = function(mk) return frag(mk, 2, { big:sub(1, lim / 2), big:sub(lim / 2 + 1, lim), "x" }) end,
    want = {}, close = 1009 }
end
add { cat = "limits", name = "frame header declaring 1 GiB -> 1009 before any payload", opts = { max_message = 65536 },
  send = function(mk) return mk({ opcode = 2, payload = "", len = "64" }):sub(1, 2) .. "\0\0\0\0\64\0\0\0" .. "\0\0\0\0" end,
  want = {}, close = 1009, timeout = 1 }
add { cat = "limits", name = "4 MiB message in 64-byte fragments accepted", timeout = 15, slow = true,
  send = function(mk)
    local piece = data.text(64)
    local t = {}
    local first = mk({ opcode = 1, fin = false, payload = piece, zero_key = true })
    local middle = mk({ opcode = 0, fin = false, payload = piece, zero_key = true })
    local last = mk({ opcode = 0, fin = true, payload = piece, zero_key = true })
    t[1] = first
    for i = 2, 65535 do t[i] = middle end
    t[65536] = last
    return concat(t)
  end,
  want = { T(data.text(64):rep(65536)) }, close = "echo" }

-- 8. Compression (permessage-deflate) ---------------------------------------------------------

local long_text = data.text(10000)
local json = ('{"id":1,"name":"duplex","tags":["a","b","c"],"ok":true}'):rep(200)
local bin64k = data.bytes(65536, 7)
local Z = peer.python({
  { "short", "msg", "Hello, compressed world" },
  { "long", "msg", long_text },
  { "json", "msg", json },
  { "bin", "msg", bin64k },
  { "empty", "msg", "" },
  { "ctx", "ctx", json, json, "Hello, compressed world" },
  { "badutf8", "msg", "valid start \237\160\128 then a surrogate" },
  { "bomb", "zeros", "8388608" },
  { "limit", "zeros", "65536" },
  { "limit1", "zeros", "65537" },
})

local function zmsg(mk, op, payload) return mk({ opcode = op, rsv = 4, payload = payload }) end

local function ccase(c)
  c.cat = "compression"
  c.compression = true
  add(c)
end

ccase { name = "negotiated; short compressed text",
  send = function(mk) return zmsg(mk, 1, Z.short[1]) end, want = { T("Hello, compressed world") }, close = "echo" }
ccase { name = "compressed text of 10000 bytes",
  send = function(mk) return zmsg(mk, 1, Z.long[1]) end, want = { T(long_text) }, close = "echo" }
ccase { name = "compressed binary of 64 KiB",
  send = function(mk) return zmsg(mk, 2, Z.bin[1]) end, want = { B(bin64k) }, close = "echo" }
ccase { name = "compressed empty message (one 00 byte)",
  send = function(mk) return zmsg(mk, 1, Z.empty[1]) end, want = { T("") }, close = "echo" }
ccase { name = "compressed frame with no payload at all",
  send = function(mk) return zmsg(mk, 2, "") end, want = { B("") }, close = "echo" }
ccase { name = "three messages sharing the LZ77 window (context takeover)",
  send = function(mk) return zmsg(mk, 1, Z.ctx[1]) .. zmsg(mk, 1, Z.ctx[2]) .. zmsg(mk, 1, Z.ctx[3]) end,
  want = { T(json), T(json), T("Hello, compressed world") }, close = "echo" }
ccase { name = "uncompressed message on a compressed connection",
  send = function(mk) return text(mk, "plain") .. zmsg(mk, 1, Z.short[1]) end,
  want = { T("plain"), T("Hello, compressed world") }, close = "echo" }
ccase { name = "compressed text in 2 fragments",
  send = function(mk) local z = Z.json[1] return frag(mk, 1, { z:sub(1, 10), z:sub(11) }, true) end,
  want = { T(json) }, close = "echo" }
ccase { name = "compressed text in 1-byte fragments",
  send = function(mk) return frag(mk, 1, peer.chunks(Z.short[1], 1), true) end,
  want = { T("Hello, compressed world") }, close = "echo" }
ccase { name = "compressed text with empty first and last fragments",
  send = function(mk) return frag(mk, 1, { "", Z.long[1], "" }, true) end,
  want = { T(long_text) }, close = "echo" }
ccase { name = "compressed fragments with a ping between them",
  send = function(mk)
    local z = Z.long[1]
    return mk({ opcode = 1, rsv = 4, fin = false, payload = z:sub(1, 20) }) .. mk({ opcode = 9, payload = "zping" })
      .. mk({ opcode = 0, payload = z:sub(21) })
  end,
  want = { PONG("zping"), T(long_text) }, close = "echo" }
ccase { name = "RSV1 on a continuation -> 1002",
  send = function(mk)
    local z = Z.long[1]
    return mk({ opcode = 1, rsv = 4, fin = false, payload = z:sub(1, 20) }) .. mk({ opcode = 0, rsv = 4, payload = z:sub(21) })
  end,
  want = {}, close = 1002 }
ccase { name = "RSV1 only on the continuation of an uncompressed message -> 1002",
  send = function(mk) return mk({ opcode = 1, fin = false, payload = "plain " }) .. mk({ opcode = 0, rsv = 4, payload = Z.short[1] }) end,
  want = {}, close = 1002 }
ccase { name = "RSV1 on a ping -> 1002",
  send = function(mk) return mk({ opcode = 9, rsv = 4, payload = Z.short[1] }) end, want = {}, close = 1002 }
ccase { name = "RSV1 on a close -> 1002",
  send = function(mk) return mk({ opcode = 8, rsv = 4, payload = helpers.close_payload(1000) }) end, want = {}, close = 1002 }
ccase { name = "RSV2 on a compressed frame -> 1002",
  send = function(mk) return mk({ opcode = 1, rsv = 6, payload = Z.short[1] }) end, want = {}, close = 1002 }
ccase { name = "corrupt deflate data (invalid block type) -> 1007",
  send = function(mk) return text(mk, "before") .. zmsg(mk, 1, "\255\255\255\255") end, want = { T("before") }, close = 1007 }
ccase { name = "corrupt deflate data in the second fragment -> 1007",
  send = function(mk)
    -- the first fragment ends where a stored block's LEN/NLEN must follow
    -- (RFC 7692 7.2.1 strips the 00 00 FF FF): FF FF FF FF fails their check
    return mk({ opcode = 2, rsv = 4, fin = false, payload = Z.short[1] })
      .. mk({ opcode = 0, payload = "\255\255\255\255\255\255\255\255" })
  end,
  want = {}, close = 1007 }
ccase { name = "compressed text that inflates to invalid UTF-8 -> 1007",
  send = function(mk) return zmsg(mk, 1, Z.badutf8[1]) end, want = {}, close = 1007 }
ccase { name = "inflates to exactly max_message (64 KiB) accepted", opts = { max_message = 65536 },
  send = function(mk) return zmsg(mk, 2, Z.limit[1]) end, want = { B(("\0"):rep(65536)) }, close = "echo" }
ccase { name = "inflates to max_message + 1 -> 1009", opts = { max_message = 65536 },
  send = function(mk) return zmsg(mk, 2, Z.limit1[1]) end, want = {}, close = 1009 }
ccase { name = "bomb: 8 KiB that inflates to 8 MiB, max_message 1 MiB -> 1009", opts = { max_message = MiB },
  send = function(mk) return zmsg(mk, 2, Z.bomb[1]) end, want = {}, close = 1009 }

ccase { name = "no context takeover offered by the client: messages compressed apart",
  offer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
  send = function(mk) return zmsg(mk, 1, Z.json[1]) .. zmsg(mk, 1, Z.json[1]) end,
  want = { T(json), T(json) }, close = "echo" }
ccase { name = "the reply is compressed too (RSV1 on its first frame) and inflates to the message",
  reply_compressed = true,
  send = function(mk) return zmsg(mk, 1, Z.long[1]) end, want = { "text(deflated):" .. long_text }, close = "echo" }
ccase { name = "with threshold 0 even an empty reply is compressed, and inflates to nothing",
  reply_compressed = { threshold = 0, window_bits = 15 },
  send = function(mk) return zmsg(mk, 1, Z.empty[1]) .. zmsg(mk, 1, Z.short[1]) end,
  want = { "text(deflated):", "text(deflated):Hello, compressed world" }, close = "echo" }

return cases
