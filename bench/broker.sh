#!/usr/bin/env bash
# The broker's cost: local publish with and without a broker, and delivery
# to a subscriber in this process vs one in another process through a
# local redis-server (started here on a free port, without persistence).
#
#   bash bench/broker.sh            LUA=luajit (default), N=100000, SUBS=10
set -u
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
LUA=${LUA:-luajit}
cd "$ROOT" || exit 1
make --no-print-directory -s LUA="$LUA" "build/$LUA/duplex/core.so" || exit 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/$LUA/?.so;;" timeout 120 "$LUA" bench/broker.lua "$PORT"
