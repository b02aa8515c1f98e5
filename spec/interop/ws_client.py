#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a client against a duplex server.

    ws_client.py URL CASE

Runs one case, prints `key=value` lines describing what it saw and ends with
`OK`, or prints `FAIL: why` and exits 1. Every wait is bounded, and the whole
run is cut off after 20 seconds.
"""
import asyncio
import os
import sys

import websockets

import bounded
from bounded import say

URL, CASE = sys.argv[1], sys.argv[2]
STEP = 5  # seconds for any single wait


async def echo(ws, data):
    await ws.send(data)
    got = await asyncio.wait_for(ws.recv(), STEP)
    if got != data or type(got) is not type(data):
        raise AssertionError(f"echo mismatch: sent {type(data).__name__} of {len(data)}, "
                             f"got {type(got).__name__} of {len(got)}")


async def run():
    async with websockets.connect(URL, compression=None, max_size=None, open_timeout=STEP,
                                  close_timeout=STEP, ping_interval=None,
                                  subprotocols=["chat", "other"]) as ws:
        say("subprotocol", ws.subprotocol)
        if CASE == "text":
            await echo(ws, "hello")
            await echo(ws, "h\u00e9llo \u2713 \U0001F600")
        elif CASE == "binary":
            await echo(ws, bytes(range(256)))
        elif CASE == "empty":
            await echo(ws, "")
            await echo(ws, b"")
        elif CASE == "big":
            await echo(ws, os.urandom(1 << 20))
            await echo(ws, "x" * (1 << 20))
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
        elif CASE == "ping":
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, STEP)
            say("pong", "ok")
            await echo(ws, "after ping")  # the connection still works
        elif CASE == "client_close":
            await echo(ws, "bye soon")
            await asyncio.wait_for(ws.close(4001, "done"), STEP)
            say("close_code", ws.close_code)
            say("close_reason", ws.close_reason)
        elif CASE == "server_close":
            await ws.send("close-me")
            try:
                got = await asyncio.wait_for(ws.recv(), STEP)
                raise AssertionError(f"expected a close, got a message {got!r}")
            except websockets.ConnectionClosed as e:
                say("close_code", e.rcvd.code if e.rcvd else None)
                say("close_reason", e.rcvd.reason if e.rcvd else None)
            await asyncio.wait_for(ws.wait_closed(), STEP)
        elif CASE == "headers":
            await echo(ws, "ok")
        else:
            raise AssertionError(f"unknown case {CASE}")


bounded.main(run, 20)
