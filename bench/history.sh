#!/usr/bin/env bash
# What history costs: publish with it off and on, and a replay of 10000
# messages to one client (bench/history.lua; its header lists the knobs).
#
#   bash bench/history.sh            LUA=luajit (default)
set -u
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
LUA=${LUA:-luajit}
cd "$ROOT" || exit 1
make --no-print-directory -s LUA="$LUA" "build/$LUA/duplex/core.so" || exit 1
LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/$LUA/?.so;;" timeout 300 "$LUA" bench/history.lua
