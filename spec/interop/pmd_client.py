#!/usr/bin/python3
"""Python `websockets` (10.x) client with its default compression
(permessage-deflate) against a duplex server.

    pmd_client.py URL CASE

Prints `extensions=...` (what the Python side negotiated), then `OK`, or
`FAIL: why` and exits 1. Cases: text, binary, big, several.
"""
import asyncio
import json
import os
import sys

import websockets

import bounded

URL, CASE = sys.argv[1], sys.argv[2]
STEP = 10


async def echo(ws, data):
    await ws.send(data)
    got = await asyncio.wait_for(ws.recv(), STEP)
    if got != data or type(got) is not type(data):
        raise AssertionError(f"echo mismatch: sent {type(data).__name__} of {len(data)}, "
                             f"got {type(got).__name__} of {len(got)}")


async def run():
    async with websockets.connect(URL, max_size=None, open_timeout=STEP, close_timeout=STEP,
                                  ping_interval=None) as ws:
        print("extensions=" + ";".join(e.name for e in ws.extensions), flush=True)
        print("params=" + repr(ws.extensions), flush=True)
        print("response=" + ws.response_headers.get("Sec-WebSocket-Extensions", ""), flush=True)
        if CASE == "text":
            await echo(ws, "hello")
            await echo(ws, "h\u00e9llo \u2713 \U0001F600" * 10)
        elif CASE == "binary":
            await echo(ws, bytes(range(256)) * 4)
            await echo(ws, b"")
        elif CASE == "big":
            await echo(ws, json.dumps([{"n": i, "text": "hello"} for i in range(40000)])[: 1 << 20])
            await echo(ws, os.urandom(1 << 20))
        elif CASE == "several":
            for i in range(200):
                await echo(ws, json.dumps({"type": "message", "nick": "alice", "text": f"message {i}"}))
        else:
            raise AssertionError(f"unknown case {CASE}")
        await asyncio.wait_for(ws.close(1000, "done"), STEP)


bounded.main(run, 30)
