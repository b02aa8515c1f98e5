#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a server for a duplex client.

    ws_server.py

Listens on 127.0.0.1 on a free port and prints `port=N` (flushed). Serves
one connection, then prints what it saw as `key=value` lines (the client's
pings among them) and `OK` and exits; gives up after 20 seconds. The handler echoes every message, except:
  "frag"      -> replies with a text message sent as three fragments
  "close-me"  -> closes with 4003 "py-bye"
  "ping-me"   -> pings with payload b"py-ping", waits (5 s at most) for the
                 matching pong and replies "pong=ok"
"""
import asyncio

import websockets
import websockets.legacy.server

import bounded

done = None


class CountingProtocol(websockets.legacy.server.WebSocketServerProtocol):
    """Counts the client's pings (websockets answers each with pong())."""
    pings_received = 0

    async def pong(self, data=b""):
        CountingProtocol.pings_received += 1
        await super().pong(data)


async def handler(ws):
    print(f"path={ws.path}", flush=True)
    print(f"user_agent={ws.request_headers.get('User-Agent', '')}", flush=True)
    print(f"subprotocol={ws.subprotocol}", flush=True)
    try:
        async for msg in ws:
            if msg == "frag":
                await ws.send(["one ", "two ", "three"])
            elif msg == "ping-me":
                pong = await ws.ping(b"py-ping")
                await asyncio.wait_for(pong, 5)
                await ws.send("pong=ok")
            elif msg == "close-me":
                await ws.close(4003, "py-bye")
                break
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    print(f"pings_received={CountingProtocol.pings_received}", flush=True)
    print(f"close_code={ws.close_code}", flush=True)
    print(f"close_reason={ws.close_reason}", flush=True)
    done.set_result(True)


async def run():
    global done
    done = asyncio.get_running_loop().create_future()
    async with websockets.serve(handler, "127.0.0.1", 0, create_protocol=CountingProtocol,
                                compression=None, max_size=None,
                                ping_interval=None, close_timeout=5,
                                subprotocols=["chat"]) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port={port}", flush=True)
        await done


bounded.main(run, 20)
