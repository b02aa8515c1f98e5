#!/usr/bin/python3
"""Many Python `websockets` clients (asyncio API, 10.x) in one process as
subscribers of a duplex server's topics.

    topic_clients.py fanout BASE N K
        N subscribers connect to BASE/py<i> (odd i without compression, even i
        with permessage-deflate), then a publisher connects to BASE/pypub and
        sends "go". Subscriber i must see exactly "p 1" .. "p K" in order,
        each followed (for odd i) by "own <i> <r>", and then a close 1000.
        The publisher must see only "published <n>" (none of its publishes).

    topic_clients.py churn BASE N
        N subscribers connect to BASE/churn<i>. Each, in the middle of a live
        stream of "m <r>", sends "unsub", waits for "unsubscribed" and a
        moment, sends "sub" and waits for "subscribed". It must see m 1 .. m a
        without a gap, "unsubscribed", nothing, "subscribed", then m b .. m z
        without a gap (b > a, at least one), then "end".

Prints key=value lines and ends with `OK`, or prints `FAIL: why` and exits 1.
Every wait is bounded; the whole run is cut off after 25 seconds.
"""
import asyncio
import random
import sys

import websockets

import bounded
from bounded import say

STEP = 10  # seconds for any single wait


def connect(url, compressed):
    return websockets.connect(url, compression="deflate" if compressed else None,
                              open_timeout=STEP, close_timeout=STEP, ping_interval=None,
                              max_queue=None)


async def fanout_subscriber(base, i, k, compressed):
    ws = await connect(f"{base}/py{i}", compressed)  # stays open: fanout_read ends it
    ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
    if compressed != ("permessage-deflate" in ext):
        raise AssertionError(f"subscriber {i}: compression {compressed} but extensions {ext!r}")
    want = []
    for r in range(1, k + 1):
        want.append(f"p {r} " + "." * 100)
        if i % 2 == 1:
            want.append(f"own {i} {r}")
    return ws, want


async def fanout_read(ws, i, want):
    for n, w in enumerate(want):
        got = await asyncio.wait_for(ws.recv(), STEP)
        if got != w:
            raise AssertionError(f"subscriber {i}: message {n + 1} is {got[:40]!r}, expected {w[:40]!r}")
    try:
        extra = await asyncio.wait_for(ws.recv(), STEP)
        raise AssertionError(f"subscriber {i}: an extra message {extra[:40]!r}")
    except websockets.ConnectionClosedOK as e:
        if e.rcvd is None or e.rcvd.code != 1000:
            raise AssertionError(f"subscriber {i}: closed with {e.rcvd}")
    return True


async def fanout(base, n, k):
    # connect in batches so that the listen queue never overflows
    subs = []
    for start in range(1, n + 1, 50):
        subs += await asyncio.gather(*(fanout_subscriber(base, i, k, i % 2 == 0)
                                       for i in range(start, min(start + 50, n + 1))))
    say("subscribers", len(subs))
    readers = [asyncio.ensure_future(fanout_read(ws, i + 1, want)) for i, (ws, want) in enumerate(subs)]
    async with connect(f"{base}/pypub", False) as pub:
        await pub.send("go")
        got = await asyncio.wait_for(pub.recv(), STEP)
        if got != f"published {n * k}":
            raise AssertionError(f"publisher: got {got[:40]!r}, expected 'published {n * k}'")
        say("published", got.split()[1])
        ok = await asyncio.gather(*readers)
        say("ok", sum(ok))
        await pub.send("bye")
        try:
            extra = await asyncio.wait_for(pub.recv(), STEP)
            raise AssertionError(f"publisher: an extra message {extra[:40]!r}")
        except websockets.ConnectionClosedOK:
            pass
    for ws, _ in subs:
        await ws.wait_closed()


def number(msg):
    return int(msg.split()[1])


async def churn_one(base, i):
    async with connect(f"{base}/churn{i}", i % 2 == 0) as ws:
        seen = []
        leave_at = random.randint(20, 120)

        async def recv():
            m = await asyncio.wait_for(ws.recv(), STEP)
            seen.append(m)
            return m

        last = 0
        while True:  # the stream up to the unsubscribe
            m = await recv()
            if m == "unsubscribed":
                break
            r = number(m)
            if r != last + 1:
                raise AssertionError(f"client {i}: m {r} after m {last}")
            last = r
            if r == leave_at:
                await ws.send("unsub")
        before = last
        await asyncio.sleep(random.uniform(0.005, 0.05))
        await ws.send("sub")
        m = await recv()
        if m != "subscribed":
            raise AssertionError(f"client {i}: {m!r} while unsubscribed")
        first = None
        while True:
            m = await recv()
            if m == "end":
                break
            r = number(m)
            if first is None:
                first = r
                if r <= before:
                    raise AssertionError(f"client {i}: m {r} again after the re-subscribe (had up to {before})")
            elif r != last + 1:
                raise AssertionError(f"client {i}: m {r} after m {last}")
            last = r
        if first is None:
            raise AssertionError(f"client {i}: nothing after the re-subscribe")
        return first - before - 1  # what it missed while away


async def churn(base, n):
    missed = await asyncio.gather(*(churn_one(base, i) for i in range(1, n + 1)))
    say("clients", len(missed))
    say("missed", sum(missed))


def main():
    mode, base = sys.argv[1], sys.argv[2]
    if mode == "fanout":
        bounded.main(lambda: fanout(base, int(sys.argv[3]), int(sys.argv[4])), 25)
    elif mode == "churn":
        bounded.main(lambda: churn(base, int(sys.argv[3])), 25)
    else:
        print(f"FAIL: unknown mode {mode}")
        sys.exit(1)


main()
