#!/usr/bin/python3
"""Python `websockets` (asyncio API, 10.x) as a wss:// server for a duplex client.

    tls_server.py CERT KEY [CAFILE]

Listens on 127.0.0.1 on a free port with TLS (CERT/KEY; with CAFILE it
requires a client certificate from that CA) and prints `port=N`. Serves one
connection, prints what it saw as `key=value` lines and `OK`, and exits;
gives up after 20 seconds. Echoes every message, except:
  "frag"      -> replies with a text message sent as three fragments
  "close-me"  -> closes with 4003 "py-bye"
"""
import asyncio
import ssl
import sys

import websockets

import bounded

CERT, KEY = sys.argv[1], sys.argv[2]
CAFILE = sys.argv[3] if len(sys.argv) > 3 else None
done = None


async def handler(ws):
    sslobj = ws.transport.get_extra_info("ssl_object")
    print(f"path={ws.path}", flush=True)
    print(f"tls_version={sslobj.version()}", flush=True)
    print(f"sni={sslobj.server_hostname if hasattr(sslobj, 'server_hostname') else ''}", flush=True)
    peer = sslobj.getpeercert()
    if peer:
        subject = dict(x[0] for x in peer["subject"])
        print(f"client_cn={subject.get('commonName')}", flush=True)
    try:
        async for msg in ws:
            if msg == "frag":
                await ws.send(["one ", "two ", "three"])
            elif msg == "close-me":
                await ws.close(4003, "py-bye")
                break
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    print(f"close_code={ws.close_code}", flush=True)
    print(f"close_reason={ws.close_reason}", flush=True)
    done.set_result(True)


async def run():
    global done
    done = asyncio.get_running_loop().create_future()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(CERT, KEY)
    if CAFILE:
        ctx.load_verify_locations(CAFILE)
        ctx.verify_mode = ssl.CERT_REQUIRED
    async with websockets.serve(handler, "127.0.0.1", 0, ssl=ctx, compression=None, max_size=None,
                                ping_interval=None, close_timeout=5) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port={port}", flush=True)
        await done


if __name__ == "__main__":
    bounded.main(run, 20)
