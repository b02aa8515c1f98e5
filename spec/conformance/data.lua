-- Shared data for the conformance cases: payloads, UTF-8 samples, close
-- codes. Named without _spec so that busted does not run it.
local char, concat, floor = string.char, table.concat, math.floor
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local data = {}

-- n deterministic pseudo-random bytes (a small LCG), the same on every Lua.
function data.bytes(n, seed)
  local x = seed or 12345
  local out, buf = {}, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    buf[#buf + 1] = floor(x / 65536) % 256
    if #buf == 4096 or i == n then
      out[#out + 1] = char(unpack(buf))
      buf = {}
    end
  end
  return concat(out)
end

-- n bytes of printable ASCII text.
function data.text(n)
  local base = "The quick brown fox jumps over the lazy dog. 0123456789 "
  return base:rep(floor(n / #base) + 1):sub(1, n)
end

-- Well-formed UTF-8 (RFC 3629), including every boundary.
data.utf8_valid = {
  { "ascii", "Hello, world" },
  { "latin", "Hello-\194\181@\195\159\195\182\195\164\195\188\195\160\195\161-UTF-8!!" },
  { "greek kosme", "\206\186\225\189\185\207\131\206\188\206\181" },
  { "U+0000", "\0" },
  { "U+007F", "\127" },
  { "U+0080", "\194\128" },
  { "U+07FF", "\223\191" },
  { "U+0800", "\224\160\128" },
  { "U+D7FF", "\237\159\191" },
  { "U+E000", "\238\128\128" },
  { "U+FFFD", "\239\191\189" },
  { "U+FFFE noncharacter", "\239\191\190" },
  { "U+FFFF", "\239\191\191" },
  { "U+10000", "\240\144\128\128" },
  { "U+1D11E clef", "\240\157\132\158" },
  { "U+10FFFF", "\244\143\191\191" },
}

-- Ill-formed UTF-8: each must close with 1007.
data.utf8_invalid = {
  { "surrogate U+D800 (ED A0 80)", "\237\160\128" },
  { "surrogate U+DFFF (ED BF BF)", "\237\191\191" },
  { "surrogate pair (ED A0 80 ED B0 80)", "\237\160\128\237\176\128" },
  { "overlong NUL (C0 80)", "\192\128" },
  { "overlong C1 BF", "\193\191" },
  { "overlong 3-byte (E0 80 80)", "\224\128\128" },
  { "overlong 3-byte (E0 9F BF)", "\224\159\191" },
  { "overlong 4-byte (F0 80 80 80)", "\240\128\128\128" },
  { "overlong 4-byte (F0 8F BF BF)", "\240\143\191\191" },
  { "above U+10FFFF (F4 90 80 80)", "\244\144\128\128" },
  { "F5 lead byte", "\245\128\128\128" },
  { "FE byte", "\254" },
  { "FF byte", "\255" },
  { "lone continuation 80", "\128" },
  { "lone continuation BF", "\191" },
  { "truncated 2-byte (C2)", "\194" },
  { "truncated 3-byte (E0 A0)", "\224\160" },
  { "truncated 4-byte (F0 90 80)", "\240\144\128" },
  { "bad continuation (C2 41)", "\194A" },
  { "kosme then surrogate", "\206\186\225\189\185\207\131\206\188\206\181\237\160\128edited" },
  { "valid then FF", "Hello\255world" },
}

data.close_valid = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 }
data.close_invalid = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 }

-- Payload lengths at the 7/16/64-bit boundaries.
data.lengths = { 0, 1, 125, 126, 127, 65535, 65536 }

return data
