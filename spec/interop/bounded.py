"""What the interop scripts here share: their key=value output and their
ending. Python puts a script's own folder on sys.path, so `import bounded`
finds this file."""
import asyncio
import sys


def say(key, value):
    print(f"{key}={value}", flush=True)


def main(run, seconds):
    """Runs the coroutine function run, cut off after seconds; prints `OK`,
    or `FAIL: why` (timeouts included) and exits with status 1."""
    try:
        asyncio.run(asyncio.wait_for(run(), seconds))
    except BaseException as e:  # report everything, timeouts included
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print("OK", flush=True)
