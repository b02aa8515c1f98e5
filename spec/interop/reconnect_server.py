#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a server that a reconnecting
duplex client keeps losing (spec/reconnect_spec.lua).

    reconnect_server.py PORT MODE [ARGS...]

Listens on 127.0.0.1:PORT (0: a free port; the same port again after a
restart, SO_REUSEADDR as asyncio sets it) and prints `port=N` (flushed).
Every line it prints is `key=value`, flushed at once. Modes:

  echo                 echoes every message; prints `got=MSG` for each
  drop                 accepts, prints `open=T` (monotonic seconds), then
                       drops the TCP connection at once (no close frame)
  close CODE           accepts, prints `open=T`, closes with CODE "bye"
  status N [SECONDS]   refuses every upgrade with HTTP N (and Retry-After:
                       SECONDS when given); prints `request=T` for each
  cycle K UP DOWN      echoes (printing nothing per message); K times over: serves UP seconds, closes the
                       server and every connection (1001), and DOWN seconds
                       later serves again on the same port; prints
                       `cycle=I` after each restart and `done=K` at the end

Gives up after 60 seconds.
"""
import asyncio
import http
import sys
import time

import websockets

import bounded


def say(key, value):
    print(f"{key}={value}", flush=True)


async def echo(ws):
    try:
        async for msg in ws:
            if isinstance(msg, str):
                say("got", msg)
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def echo_quietly(ws):
    """Echoes without a line per message: the soak's client counts its
    own memory, which the lines read into it would swell."""
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def drop(ws):
    say("open", f"{time.monotonic():.4f}")
    ws.transport.abort()


def closer(code):
    async def handler(ws):
        say("open", f"{time.monotonic():.4f}")
        await ws.close(code, "bye")
    return handler


def refuser(status, retry_after):
    async def process_request(path, headers):
        say("request", f"{time.monotonic():.4f}")
        extra = [("Retry-After", retry_after)] if retry_after else []
        return http.HTTPStatus(status), extra, b"refused\n"
    return process_request


async def noop(ws):
    pass


async def serve_forever(port, handler, **kw):
    async with websockets.serve(handler, "127.0.0.1", port, **kw) as server:
        say("port", server.sockets[0].getsockname()[1])
        await asyncio.Future()


async def cycle(port, times, up, down):
    server = await websockets.serve(echo_quietly, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    say("port", port)
    for i in range(1, times + 1):
        await asyncio.sleep(up)
        server.close()
        await server.wait_closed()
        await asyncio.sleep(down)
        server = await websockets.serve(echo_quietly, "127.0.0.1", port)
        say("cycle", i)
    say("done", times)
    await asyncio.sleep(up)
    server.close()
    await server.wait_closed()


async def run():
    port, mode, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if mode == "echo":
        await serve_forever(port, echo)
    elif mode == "drop":
        await serve_forever(port, drop)
    elif mode == "close":
        await serve_forever(port, closer(int(args[0])))
    elif mode == "status":
        retry_after = args[1] if len(args) > 1 else None
        await serve_forever(port, noop, process_request=refuser(int(args[0]), retry_after))
    elif mode == "cycle":
        await cycle(port, int(args[0]), float(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    bounded.main(run, 60)
