#!/bin/bash
# Where the echo server's time goes, by function, with perf (Debian
# linux-perf): the server runs pinned to CPU 0, bench/loadgen drives it from
# CPU 1, and `perf record -g` samples the server (user and kernel) while the
# load runs. `perf report --no-children` then prints the functions with the
# most samples of their own. Unlike bench/cost.sh (callgrind, user space
# only) this includes the kernel's part (the system calls), and the figures
# move with the machine's noise.
#
#   bash bench/profile.sh                      # LuaJIT and Lua 5.4, 16-byte echo
#   LUAS=luajit SIZE=65536 CONNS=10 INFLIGHT=4 TOP=40 bash bench/profile.sh
#
# perf needs kernel.perf_event_paranoid <= 1 (or root) for kernel samples;
# with a higher setting it records user space only (and says so).
set -u
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
LUAS=${LUAS:-"luajit lua5.4"}
SIZE=${SIZE:-16}
CONNS=${CONNS:-100}
INFLIGHT=${INFLIGHT:-16}
SECONDS_ON=${SECONDS_ON:-4}
TOP=${TOP:-30}
FREQ=${FREQ:-2000}
PORT=${PORT:-19750}
command -v perf >/dev/null || { echo "profile.sh: needs perf (apt-get install linux-perf)"; exit 1; }
make -s -C bench loadgen || exit 1
set_pinning
work=$(mktemp -d)
spid=
cleanup() { stop_pid "$spid"; rm -rf "$work"; }
trap cleanup EXIT

events=cycles
[ "$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)" -le 1 ] || [ "$(id -u)" = 0 ] ||
  { events=cycles:u; say "profile.sh: perf_event_paranoid > 1: user space only"; }

run_one() { # LUA
  local lua=$1 port=$((PORT++)) data="$work/perf.$1.data"
  make -s LUA="$lua" "build/$lua/duplex/core.so" >/dev/null || return 1
  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/$lua/?.so;;" \
    $PIN_SERVER "$lua" bench/servers/duplex_echo.lua "$port" >"$work/server.log" 2>&1 &
  spid=$!
  wait_listening "$spid" "$port" || { say "profile.sh: $lua server did not start"; return 1; }
  # the warm-up lets LuaJIT compile its traces before sampling starts
  $PIN_CLIENT bench/loadgen "ws://127.0.0.1:$port/" --mode echo --size "$SIZE" --conns "$CONNS" \
    --inflight "$INFLIGHT" --duration $((SECONDS_ON + 2)) --warmup 1 --pid "$spid" \
    >"$work/load.out" 2>&1 &
  local lpid=$!
  sleep 1.5
  perf record -q -e "$events" -F "$FREQ" -g -p "$spid" -o "$data" -- sleep "$SECONDS_ON" \
    >/dev/null 2>"$work/perf.err" || { say "profile.sh: perf record failed: $(tail -1 "$work/perf.err")"; }
  wait "$lpid"
  stop_pid "$spid"
  spid=
  echo
  echo "$lua, $SIZE-byte echo ($CONNS connections x $INFLIGHT in flight): $(tail -1 "$work/load.out")"
  echo "the $TOP functions with the most samples of their own (perf report --no-children):"
  perf report -i "$data" --no-children --sort symbol,dso -g none --percent-limit 0.3 --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n "$TOP"
  echo "by object (the kernel, the Lua VM and its JIT code, core.so, libc, libuv):"
  perf report -i "$data" --no-children --sort dso -g none --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n 8
}

for lua in $LUAS; do run_one "$lua"; done
