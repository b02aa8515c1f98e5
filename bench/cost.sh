#!/bin/bash
# Instructions per echoed message, split by layer: the server runs under
# callgrind (instrumentation switched on after a warm-up, so start-up does
# not count), bench/loadgen drives it, and each function's own cost is
# charged to the layer its file belongs to. Instruction counts do not
# depend on the machine's noise (unlike wall-clock figures); the kernel's
# part (syscalls) is not in them.
#
#   bash bench/cost.sh                 # LuaJIT and Lua 5.4, 16-byte echo
#   LUAS=luajit SIZE=64 CONNS=50 INFLIGHT=8 SECONDS_ON=4 bash bench/cost.sh
#   TOP=25 bash bench/cost.sh          # and the 25 costliest functions (0: none)
set -u
cd "$(dirname "$0")/.." || exit 1
LUAS=${LUAS:-"luajit lua5.4"}
SIZE=${SIZE:-16}
CONNS=${CONNS:-50}
INFLIGHT=${INFLIGHT:-8}
SECONDS_ON=${SECONDS_ON:-4}
PORT=${PORT:-19700}
TOP=${TOP:-12}
command -v valgrind >/dev/null || { echo "cost.sh: needs valgrind (apt-get install valgrind)"; exit 1; }
make -s -C bench loadgen || exit 1
work=$(mktemp -d)
vpid=
cleanup() { [ -n "$vpid" ] && kill "$vpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

# layer LINE: which layer a callgrind "file:function [object]" belongs to
layer_of() {
  case "$1" in
    *csrc/protocol/*) echo protocol ;;
    *csrc/transport/*) echo transport ;;
    *csrc/binding/*) echo binding ;;
    *libuv*) echo libuv ;;
    *libc.so* | *libc-* | *string/* | *malloc/* | *libio/* | *sysdeps/*) echo libc ;;
    *) echo "lua+other" ;;
  esac
}

run_one() { # LUA
  local lua=$1 port=$((PORT++)) out="$work/cg.$1"
  make -s LUA="$lua" "build/$lua/duplex/core.so" >/dev/null || return 1
  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/$lua/?.so;;" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$lua" bench/servers/duplex_echo.lua "$port" >/dev/null 2>"$work/vg.err" &
  vpid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  bench/loadgen "ws://127.0.0.1:$port/" --mode echo --size "$SIZE" --conns "$CONNS" \
    --inflight "$INFLIGHT" --duration 1 --warmup 0.2 >/dev/null 2>&1 # warm-up (LuaJIT traces)
  callgrind_control -i on "$vpid" >/dev/null
  local line msgs
  line=$(bench/loadgen "ws://127.0.0.1:$port/" --mode echo --size "$SIZE" --conns "$CONNS" \
    --inflight "$INFLIGHT" --duration "$SECONDS_ON" --warmup 0 2>/dev/null | tail -1)
  callgrind_control -i off "$vpid" >/dev/null
  callgrind_control -d "$vpid" >/dev/null
  sleep 0.5
  kill "$vpid" 2>/dev/null
  wait "$vpid" 2>/dev/null
  vpid=
  msgs=$(echo "$line" | sed -n 's/.* msgs=\([0-9]*\).*/\1/p')
  [ -n "$msgs" ] && [ "$msgs" -gt 0 ] || { echo "cost.sh: no messages for $lua"; return 1; }
  callgrind_annotate --auto=no --threshold=100 "$out.1" 2>/dev/null |
    awk '/^ *[0-9,]+ +\([ 0-9.]+%\) +[^ ]/ && !/PROGRAM TOTALS/ {
      n = $1; gsub(",", "", n); sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, ""); print n, $0 }' >"$work/funcs"
  local total=0 n f l
  declare -A by=()
  while read -r n f; do # f: the rest of the line
    [[ "$n" =~ ^[0-9]+$ ]] || continue
    l=$(layer_of "$f")
    by[$l]=$(( ${by[$l]:-0} + n ))
    total=$((total + n))
  done <"$work/funcs"
  echo
  echo "$lua: $msgs messages of $SIZE bytes ($CONNS connections, $INFLIGHT in flight), user-space instructions"
  printf '| %-10s | %12s | %6s |\n' layer "Ir/message" share
  printf '| %-10s | %12s | %6s |\n' --- --- ---
  for l in protocol transport binding libuv libc lua+other; do
    printf '| %-10s | %12d | %5.1f%% |\n' "$l" $(( ${by[$l]:-0} / msgs )) \
      "$(awk -v a="${by[$l]:-0}" -v t="$total" 'BEGIN { print t ? 100 * a / t : 0 }')"
  done
  printf '| %-10s | %12d | %5.1f%% |\n' total $((total / msgs)) 100
  [ "$TOP" -gt 0 ] || return 0
  echo
  echo "$lua: the $TOP costliest functions (own instructions per message)"
  sort -rn "$work/funcs" | head -n "$TOP" | while read -r n f; do
    printf '  %7.1f  %-9s %s\n' "$(awk -v a="$n" -v m="$msgs" 'BEGIN { print a / m }')" \
      "$(layer_of "$f")" "$(echo "$f" | cut -c1-90)"
  done
}

for lua in $LUAS; do run_one "$lua"; done
