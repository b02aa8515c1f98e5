"""Python `websockets` echo server for the benchmarks (Debian python3-websockets).

    /usr/bin/python3 bench/servers/python_echo.py PORT
"""
import asyncio
import logging
import sys

import websockets


async def echo(ws, path=None):  # `path` is passed by websockets < 10.1 only
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, compression=None,
                                max_size=None, max_queue=None, ping_interval=None):
        await asyncio.Future()


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    if len(sys.argv) != 2:
        sys.exit("usage: python_echo.py PORT")
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
