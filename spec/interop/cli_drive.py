#!/usr/bin/python3
"""Drives the duplex command through its stdin and stdout.

    cli_drive.py [--pty in|both] [--send LINE]... [--expect N] [--eof]
                 [--limit S] -- COMMAND...

Starts COMMAND with stdin a pipe (or, with --pty, a pseudo-terminal's
slave side: `in` for stdin only, `both` for stdin and stdout), writes each
LINE and a newline, waits for N lines on stdout, then with --eof ends its
input (closes the pipe, or types ^D on the terminal) and waits for it to
exit. Prints `line=...` for each output line, `rc=N`, and `OK`; every wait
is bounded (--limit seconds in all, default 15), and a command that
overstays is killed (then `rc=killed`).
"""
import argparse
import os
import pty
import select
import subprocess
import sys
import termios
import time

ap = argparse.ArgumentParser()
ap.add_argument("--pty", choices=["in", "both"])
ap.add_argument("--send", action="append", default=[])
ap.add_argument("--expect", type=int, default=0)
ap.add_argument("--eof", action="store_true")
ap.add_argument("--limit", type=float, default=15)
ap.add_argument("cmd", nargs="+")
args = ap.parse_args()
deadline = time.monotonic() + args.limit


def left():
    return max(0.0, deadline - time.monotonic())


if args.pty:
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # what we type is not output of the command
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    out_is_tty = args.pty == "both"
    proc = subprocess.Popen(args.cmd, stdin=slave, stdout=slave if out_is_tty else subprocess.PIPE,
                            start_new_session=True)
    os.close(slave)
    write_fd = master
    read_fd = master if out_is_tty else proc.stdout.fileno()
else:
    proc = subprocess.Popen(args.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    write_fd = proc.stdin.fileno()
    read_fd = proc.stdout.fileno()

for line in args.send:
    os.write(write_fd, os.fsencode(line) + b"\n")

buf = b""
lines = []
eof_out = False


def read_some(timeout):
    global buf, eof_out
    r, _, _ = select.select([read_fd], [], [], timeout)
    if not r:
        return
    try:
        chunk = os.read(read_fd, 65536)
    except OSError:  # a pty's master reads EIO once the slave side is gone
        chunk = b""
    if not chunk:
        eof_out = True
        return
    buf += chunk.replace(b"\r\n", b"\n") if args.pty == "both" else chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        lines.append(line)


while len(lines) < args.expect and not eof_out and left() > 0:
    read_some(left())

if args.eof:
    if args.pty:
        os.write(master, b"\x04")
    else:
        proc.stdin.close()

rc = None
while rc is None and left() > 0:
    if not eof_out:
        read_some(min(0.05, left()))
    rc = proc.poll()
    if eof_out and rc is None:
        time.sleep(0.02)
if rc is None:
    proc.kill()
    proc.wait()
    rc = "killed"
while not eof_out and read_fd != (master if args.pty else -1):
    read_some(0.2)  # what was written before the exit
    if not select.select([read_fd], [], [], 0)[0]:
        break

for line in lines:
    print("line=" + line.decode("utf-8", "replace"))
if buf:
    print("partial=" + buf.decode("utf-8", "replace"))
print(f"rc={rc}")
print("OK")
sys.stdout.flush()
