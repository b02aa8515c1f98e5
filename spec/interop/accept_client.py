#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a client of a duplex server
with an accept hook.

    accept_client.py URL

Connects once. Accepted: prints `opened=1`, the first message as
`got=...` and closes. Refused: prints `status=N` and the refusal's
WWW-Authenticate and Retry-After headers. Then `OK`, or `FAIL: why` and
exit status 1. Every wait is bounded; the whole run is cut off after 20 s.
"""
import asyncio
import sys

import websockets

import bounded
from bounded import say

URL = sys.argv[1]
STEP = 5  # seconds for any single wait


async def run():
    try:
        ws = await websockets.connect(URL, compression=None, open_timeout=STEP, close_timeout=STEP,
                                      ping_interval=None)
    except websockets.exceptions.InvalidStatusCode as e:
        say("status", e.status_code)
        headers = getattr(e, "headers", None) or {}
        say("www_authenticate", headers.get("WWW-Authenticate"))
        say("retry_after", headers.get("Retry-After"))
        return
    say("opened", 1)
    say("got", await asyncio.wait_for(ws.recv(), STEP))
    await asyncio.wait_for(ws.close(1000, "done"), STEP)
    say("close_code", ws.close_code)


bounded.main(run, 20)
