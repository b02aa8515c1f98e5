#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a server for `duplex connect`.

    cli_server.py [refuse]

Listens on 127.0.0.1 on a free port and prints `port=N`. Serves one
connection: prints the request's origin, x-test header and subprotocol,
then for each message `got=text:...` or `got=binary:...` (hex) and echoes
it; "bye" is answered with a close 1000 "done", "fail" with 4000 "nope".
Then prints `close_code=...` and `OK`. With `refuse` every upgrade gets
403 Forbidden and the server exits after the first. Gives up after 20 s.
"""
import asyncio
import http
import sys

import websockets

import bounded
from bounded import say

REFUSE = len(sys.argv) > 1 and sys.argv[1] == "refuse"
done = None


async def refuse(path, headers):
    if REFUSE:
        done.set_result(True)
        return http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"go away\n"
    return None


async def handler(ws):
    say("origin", ws.request_headers.get("Origin", ""))
    say("x_test", ws.request_headers.get("X-Test", ""))
    say("subprotocol", ws.subprotocol)
    say("extensions", ws.request_headers.get("Sec-WebSocket-Extensions", ""))
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                say("got", "binary:" + msg.hex())
            else:
                say("got", "text:" + msg)
            if msg == "bye":
                await ws.close(1000, "done")
                break
            if msg == "fail":
                await ws.close(4000, "nope")
                break
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    say("close_code", ws.close_code)
    done.set_result(True)


async def run():
    global done
    done = asyncio.get_running_loop().create_future()
    async with websockets.serve(handler, "127.0.0.1", 0, process_request=refuse, max_size=None,
                                ping_interval=None, close_timeout=5, subprotocols=["chat"]) as server:
        say("port", server.sockets[0].getsockname()[1])
        await done
        await asyncio.sleep(0.2)  # let the refusal go out


bounded.main(run, 20)
