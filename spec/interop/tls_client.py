#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a wss:// client of a duplex server.

    tls_client.py URL CAFILE CASE [CERT KEY]

Trusts only CAFILE, checks the host name, and presents CERT/KEY as a client
certificate when given. Runs one case, prints `key=value` lines and ends
with `OK`, or prints `FAIL: why` and exits 1. Cut off after 20 seconds.
Cases: text, binary, fragmented, big, client_close, server_close.
"""
import asyncio
import os
import ssl
import sys

import websockets

import bounded
from bounded import say

URL, CAFILE, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
CERT, KEY = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else (None, None)
STEP = 5


async def echo(ws, data):
    await ws.send(data)
    got = await asyncio.wait_for(ws.recv(), STEP)
    if got != data or type(got) is not type(data):
        raise AssertionError(f"echo mismatch: sent {type(data).__name__} of {len(data)}, "
                             f"got {type(got).__name__} of {len(got)}")


async def run():
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=CAFILE)
    ctx.set_alpn_protocols(["http/1.1"])  # websockets 10 offers none by itself
    if CERT:
        ctx.load_cert_chain(CERT, KEY)
    async with websockets.connect(URL, ssl=ctx, compression=None, max_size=None, open_timeout=STEP,
                                  close_timeout=STEP, ping_interval=None) as ws:
        sslobj = ws.transport.get_extra_info("ssl_object")
        say("tls_version", sslobj.version())
        say("alpn", sslobj.selected_alpn_protocol())
        subject = dict(x[0] for x in sslobj.getpeercert()["subject"])
        say("server_cn", subject.get("commonName"))
        if CASE == "text":
            await echo(ws, "hello over TLS")
            await echo(ws, "h\u00e9llo \u2713 \U0001F600")
            await echo(ws, "")
        elif CASE == "binary":
            await echo(ws, bytes(range(256)))
            await echo(ws, b"")
        elif CASE == "big":
            await echo(ws, os.urandom(4 << 20))
        elif CASE == "fragmented":
            await ws.send(["frag", "mented ", "\u2713"])
            got = await asyncio.wait_for(ws.recv(), STEP)
            if got != "fragmented \u2713":
                raise AssertionError(f"fragmented text came back as {got!r}")
            await ws.send([b"\x00\x01", b"", b"\x02" * 70000])
            got = await asyncio.wait_for(ws.recv(), STEP)
            if got != b"\x00\x01" + b"\x02" * 70000:
                raise AssertionError(f"fragmented binary came back with {len(got)} bytes")
            say("fragments", "ok")
        elif CASE == "client_close":
            await echo(ws, "bye soon")
            await asyncio.wait_for(ws.close(4001, "done"), STEP)
        elif CASE == "server_close":
            await ws.send("close-me")
            try:
                await asyncio.wait_for(ws.recv(), STEP)
                raise AssertionError("expected the server to close")
            except websockets.ConnectionClosed:
                pass
        else:
            raise AssertionError(f"unknown case {CASE}")
    await ws.wait_closed()
    say("close_code", ws.close_code)
    say("close_reason", ws.close_reason)


if __name__ == "__main__":
    bounded.main(run, 20)
