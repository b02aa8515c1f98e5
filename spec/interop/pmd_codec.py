#!/usr/bin/python3
"""Raw-deflate codec for the compression specs (a raw LuaSocket peer has no
zlib of its own).

    pmd_codec.py deflate|inflate TAKEOVER WBITS IN OUT

IN and OUT hold records "<length>\\n<bytes>". deflate: each record is one
message, compressed per RFC 7692 (raw deflate, sync flush, the 00 00 ff ff
tail removed); inflate: the reverse (tail restored). TAKEOVER 1 keeps one
zlib stream across the messages, 0 starts each afresh. An inflate error
writes the record "ERR".
"""
import sys
import zlib

mode, takeover, wbits, src, dst = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4], sys.argv[5]
TAIL = b"\x00\x00\xff\xff"


def records(data):
    i, out = 0, []
    while i < len(data):
        j = data.index(b"\n", i)
        n = int(data[i:j])
        out.append(data[j + 1:j + 1 + n])
        i = j + 1 + n
    return out


with open(src, "rb") as f:
    msgs = records(f.read())

out = []
stream = None
for m in msgs:
    if mode == "deflate":
        if stream is None or not takeover:
            stream = zlib.compressobj(9, zlib.DEFLATED, -wbits)
        d = stream.compress(m) + stream.flush(zlib.Z_SYNC_FLUSH)
        assert d.endswith(TAIL), d.hex()
        out.append(d[:-4])
    else:
        if stream is None or not takeover:
            stream = zlib.decompressobj(-wbits)
        try:
            out.append(stream.decompress(m + TAIL))
        except zlib.error:
            out.append(b"ERR")
            stream = None

with open(dst, "wb") as f:
    for d in out:
        f.write(b"%d\n" % len(d))
        f.write(d)
