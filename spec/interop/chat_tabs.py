#!/usr/bin/python3
"""Two tabs of headless Chromium chat through the chat page of `make run`.

    chat_tabs.py CHROMIUM PAGE_URL PROFILE_DIR

Starts Chromium with a DevTools port and drives it over the DevTools
protocol (Python `websockets` as the client): opens PAGE_URL?nick=tab-a and
PAGE_URL?nick=tab-b in two tabs, waits for both to be online, has each tab
type a line into the page's form and send it, and waits for each line to
show in the other tab. Prints key=value lines as it goes, then `OK`; on
failure `FAIL: ...` and exit status 1. Gives up after 40 seconds.
"""
import asyncio
import itertools
import json
import os
import subprocess
import sys

import websockets

import bounded

chromium, page, profile = sys.argv[1], sys.argv[2], sys.argv[3]
ids = itertools.count(1)


class Browser:
    def __init__(self, ws):
        self.ws = ws
        self.waiting = {}
        self.reader = asyncio.ensure_future(self.read())

    async def read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            fut = self.waiting.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)

    async def call(self, method, session=None, **params):
        n = next(ids)
        req = {"id": n, "method": method, "params": params}
        if session:
            req["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.waiting[n] = fut
        await self.ws.send(json.dumps(req))
        msg = await asyncio.wait_for(fut, 10)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]

    async def open_tab(self, url):
        target = await self.call("Target.createTarget", url=url)
        attached = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        return attached["sessionId"]

    async def eval(self, session, expr):
        r = await self.call("Runtime.evaluate", session, expression=expr, returnByValue=True)
        return r["result"].get("value")

    async def until(self, session, expr, what, limit=10):
        for _ in range(int(limit / 0.05)):
            if await self.eval(session, expr):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")


def say(text):
    t = json.dumps(text)
    return f'document.getElementById("text").value = {t}; document.getElementById("say").requestSubmit(); true'


def shows(text):
    return f'document.getElementById("log").textContent.includes({json.dumps(text)})'


async def devtools_url(proc):
    port_file = os.path.join(profile, "DevToolsActivePort")
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {proc.returncode}")
        try:
            with open(port_file) as f:
                port, path = f.read().split()[:2]
                return f"ws://127.0.0.1:{port}{path}"
        except (OSError, ValueError):
            await asyncio.sleep(0.05)
    raise RuntimeError("chromium wrote no DevToolsActivePort")


async def run():
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                             "--user-data-dir=" + profile, "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with websockets.connect(await devtools_url(proc), max_size=None) as ws:
            b = Browser(ws)
            online = 'document.getElementById("status").className === "online"'
            # one after the other, so that tab-a is in the room to see tab-b come
            a_tab = await b.open_tab(page + "?nick=tab-a")
            await b.until(a_tab, online, "tab-a to be online")
            b_tab = await b.open_tab(page + "?nick=tab-b")
            await b.until(b_tab, online, "tab-b to be online")
            await b.until(a_tab, shows("tab-b joined"), "tab-a to see tab-b join")
            print("online=2", flush=True)
            await b.eval(a_tab, say("hello from tab-a \u2713"))
            await b.until(b_tab, shows("hello from tab-a \u2713"), "tab-b to get tab-a's line")
            print("b_got=hello from tab-a", flush=True)
            await b.eval(b_tab, say("and back from tab-b"))
            await b.until(a_tab, shows("and back from tab-b"), "tab-a to get tab-b's line")
            print("a_got=and back from tab-b", flush=True)
            b.reader.cancel()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


bounded.main(run, 40)
