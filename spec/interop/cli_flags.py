#!/usr/bin/python3
"""Runs COMMAND with stdin and stdout pipes whose other copies we keep, feeds
it one line, and once it has exited prints whether it left those shared
descriptions non-blocking (libuv sets O_NONBLOCK; whoever reads the pipe
after us would get EAGAIN).

    cli_flags.py COMMAND...      prints rc=N stdin_nonblock=... stdout_nonblock=... OK
"""
import fcntl
import os
import subprocess
import sys

r, w = os.pipe()
r2, w2 = os.pipe()
p = subprocess.Popen(sys.argv[1:], stdin=r, stdout=w2)
os.write(w, b"x\n")
os.close(w)
try:
    rc = p.wait(15)
except subprocess.TimeoutExpired:
    p.kill()
    rc = "killed"


def nonblocking(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


print(f"rc={rc}")
print(f"stdin_nonblock={nonblocking(r)}")
print(f"stdout_nonblock={nonblocking(w2)}")
print("OK")
