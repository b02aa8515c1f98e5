#!/usr/bin/python3
"""Python `websockets` clients (asyncio API, 10.x) of a server that is shut
down (spec/lifecycle_spec.lua).

    lifecycle_clients.py URL N
        N clients connect to URL, print `connected=N` once all are open, then
        wait (reading) for the server to close. Each prints
        `close<i>=CODE REASON` and `clean<i>=1` when both close frames went
        across (its close_rcvd and close_sent), else `clean<i>=0`.

Ends with `OK`, or prints `FAIL: why` and exits 1; cut off after 12 s.
"""
import asyncio
import sys

import websockets

import bounded
from bounded import say


async def one(url, i, ready):
    async with websockets.connect(url, open_timeout=5, close_timeout=5, ping_interval=None) as ws:
        ready.append(i)
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        say(f"close{i}", f"{ws.close_code} {ws.close_reason}")
        clean = ws.close_rcvd is not None and ws.close_sent is not None
        say(f"clean{i}", 1 if clean else 0)


async def run():
    url, n = sys.argv[1], int(sys.argv[2])
    ready = []
    tasks = [asyncio.create_task(one(url, i, ready)) for i in range(1, n + 1)]
    while len(ready) < n:
        done = [t for t in tasks if t.done()]
        for t in done:
            t.result()  # raises a failed connect
        await asyncio.sleep(0.02)
    say("connected", n)
    await asyncio.gather(*tasks)


bounded.main(run, 12)
