#!/usr/bin/python3
"""Python `websockets` (10.x) server with its default compression
(permessage-deflate) for a duplex client.

    pmd_server.py

Prints `port=N`; serves one connection, echoing every message; prints
`extensions=...` (what it negotiated), `request=...` (the client's offer),
the number of messages and `OK`, then exits. Gives up after 30 seconds.
"""
import asyncio

import websockets

import bounded

done = None


async def handler(ws):
    print("extensions=" + ";".join(e.name for e in ws.extensions), flush=True)
    print("params=" + repr(ws.extensions), flush=True)
    print("request=" + ws.request_headers.get("Sec-WebSocket-Extensions", ""), flush=True)
    print("response=" + ws.response_headers.get("Sec-WebSocket-Extensions", ""), flush=True)
    n = 0
    try:
        async for msg in ws:
            n += 1
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    print(f"messages={n}", flush=True)
    print(f"close_code={ws.close_code}", flush=True)
    done.set_result(True)


async def run():
    global done
    done = asyncio.get_running_loop().create_future()
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
                                close_timeout=5) as server:
        print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
        await done


bounded.main(run, 30)
