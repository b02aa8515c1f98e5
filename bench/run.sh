#!/usr/bin/env bash
# The duplex benchmark: the same C load generator against echo servers written
# with duplex (LuaJIT and Lua 5.4), Node `ws` and Python `websockets`.
# Server on CPU 0, load generator on CPU 1. See bench/README.md.
#
#   bash bench/run.sh                  # everything, about 4-5 minutes
#   SERVERS="duplex-luajit node-ws" DURATION=5 bash bench/run.sh
#
# Knobs (environment): SERVERS, DURATION (measured seconds per run, 3),
# WARMUP (1), REPEAT (3), IDLE_CONNS (10000), SMALL_CONNS (100),
# SMALL_INFLIGHT (16), BIG_CONNS (10), BIG_INFLIGHT (4), PORT (first port, 19100).
set -u

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"
SERVERS=${SERVERS:-"duplex-luajit duplex-lua5.4 node-ws python-websockets"}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
SMALL_CONNS=${SMALL_CONNS:-100}
SMALL_INFLIGHT=${SMALL_INFLIGHT:-16}
BIG_CONNS=${BIG_CONNS:-10}
BIG_INFLIGHT=${BIG_INFLIGHT:-4}
PORT=${PORT:-19100}

LOADGEN=$BENCH/loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/duplex-bench.XXXXXX")
SERVER_PID=
DEADLINE=$((SECONDS + 900)) # a hard bound on the whole run, whatever happens

cleanup() {
  stop_pid "$SERVER_PID"
  SERVER_PID=
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# ---- prerequisites ---------------------------------------------------------

# make knows what loadgen is built from (wsclient.c too)
make -s -C "$BENCH" loadgen >&2 || { say "cannot build bench/loadgen"; exit 1; }

set_pinning

want_fds=$((IDLE_CONNS + 256))
if ! raise_nofile "$want_fds"; then
  say "warning: ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)); idle test lowered"
  IDLE_CONNS=$(($(ulimit -n) - 256))
fi

# Other work on the machine skews everything: say so up front.
warn_if_busy

# ---- servers ---------------------------------------------------------------

# server_cmd NAME PORT: prints the command line, or fails when not available
server_available() {
  case $1 in
    duplex-luajit) command -v luajit >/dev/null && [ -f "$ROOT/build/luajit/duplex/core.so" ] ;;
    duplex-lua5.4) command -v lua5.4 >/dev/null && [ -f "$ROOT/build/lua5.4/duplex/core.so" ] ;;
    node-ws) command -v node >/dev/null && [ -d "$BENCH/node_modules/ws" ] ;;
    python-websockets) /usr/bin/python3 -c 'import websockets' 2>/dev/null ;;
    *) return 1 ;;
  esac
}

why_unavailable() {
  case $1 in
    duplex-luajit) echo "build it: make LUA=luajit build/luajit/duplex/core.so" ;;
    duplex-lua5.4) echo "build it: make LUA=lua5.4 build/lua5.4/duplex/core.so" ;;
    node-ws) echo "install it: (cd bench && npm install)" ;;
    python-websockets) echo "install it: apt-get install python3-websockets" ;;
    *) echo "unknown server" ;;
  esac
}

start_server() { # NAME PORT
  local name=$1 port=$2 log="$WORK/$1.log"
  case $name in
    duplex-luajit)
      LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/build/luajit/?.so;;" \
        $PIN_SERVER luajit "$BENCH/servers/duplex_echo.lua" "$port" >"$log" 2>&1 &
      ;;
    duplex-lua5.4)
      LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/build/lua5.4/?.so;;" \
        $PIN_SERVER lua5.4 "$BENCH/servers/duplex_echo.lua" "$port" >"$log" 2>&1 &
      ;;
    node-ws) $PIN_SERVER node "$BENCH/servers/node_ws_echo.js" "$port" >"$log" 2>&1 & ;;
    python-websockets)
      $PIN_SERVER /usr/bin/python3 "$BENCH/servers/python_echo.py" "$port" >"$log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_listening "$SERVER_PID" "$port" && return 0
  say "$name did not start listening on port $port:"
  tail -5 "$log" >&2
  stop_server
  return 1
}

stop_server() {
  stop_pid "$SERVER_PID"
  SERVER_PID=
}

# ---- measurements ------------------------------------------------------------

# run_loadgen NAME LABEL ARGS...: one run against the running server; appends
# the result line to $WORK/NAME.LABEL
run_loadgen() {
  local name=$1 label=$2 out
  shift 2
  if [ "$SECONDS" -gt "$DEADLINE" ]; then say "time is up: skipping $name $label"; return 1; fi
  out=$(timeout 180 $PIN_CLIENT "$LOADGEN" "ws://127.0.0.1:$port/" --pid "$SERVER_PID" "$@" 2>"$WORK/loadgen.err")
  local rc=$?
  if [ $rc -ne 0 ] || [ -z "$out" ]; then
    say "  $name $label: load generator failed (exit $rc): $(tail -1 "$WORK/loadgen.err")"
    return 1
  fi
  say "  $name $label: $out"
  # throughput per second of server CPU: steadier than the raw rate when other
  # work shares CPU 0 (then server_cpu stays well under 1.00)
  local m c
  m=$(field msgs_per_s "$out") c=$(field server_cpu "$out")
  [ -n "$m" ] && out="$out msgs_per_cpu_s=$(awk -v m="$m" -v c="$c" 'BEGIN { printf "%.0f", (c > 0 ? m / c : 0) }')"
  # server CPU (user + system) per echoed message, in microseconds
  [ -n "$m" ] && out="$out cpu_us_per_msg=$(awk -v m="$m" -v c="$c" 'BEGIN { printf "%.3f", (m > 0 ? 1e6 * c / m : 0) }')"
  echo "$out" >> "$WORK/$name.$label"
}

port=$PORT
ran=""
for name in $SERVERS; do
  if ! server_available "$name"; then
    say "skipping $name: $(why_unavailable "$name")"
    continue
  fi
  ran="$ran $name"
  say "== $name"

  port=$((port + 1))
  if start_server "$name" "$port"; then
    for _ in $(seq "$REPEAT"); do
      run_loadgen "$name" small --mode echo --conns "$SMALL_CONNS" --size 16 \
        --inflight "$SMALL_INFLIGHT" --warmup "$WARMUP" --duration "$DURATION"
    done
    for _ in $(seq "$REPEAT"); do
      run_loadgen "$name" big --mode echo --conns "$BIG_CONNS" --size 65536 \
        --inflight "$BIG_INFLIGHT" --warmup "$WARMUP" --duration "$DURATION"
    done
    # one message in flight per connection (every write carries one
    # message), then a single connection's round trip
    for _ in $(seq "$REPEAT"); do
      run_loadgen "$name" depth1 --mode echo --conns "$SMALL_CONNS" --size 16 \
        --inflight 1 --warmup "$WARMUP" --duration "$DURATION"
    done
    for _ in $(seq "$REPEAT"); do
      run_loadgen "$name" rtt --mode echo --conns 1 --size 16 \
        --inflight 1 --warmup "$WARMUP" --duration "$DURATION"
    done
    stop_server
  fi

  # memory: a fresh server for every run, so that "before" is its baseline
  for _ in $(seq "$REPEAT"); do
    port=$((port + 1))
    start_server "$name" "$port" || break
    run_loadgen "$name" idle --mode idle --conns "$IDLE_CONNS" --duration 1
    stop_server
  done
done

# ---- the table ---------------------------------------------------------------

med() { # NAME LABEL KEY: median of KEY over the runs
  local f="$WORK/$1.$2"
  [ -f "$f" ] || { echo "-"; return; }
  while read -r line; do field "$3" "$line"; done < "$f" | median
}

ratio() { # VALUE REF
  awk -v v="$1" -v r="$2" 'BEGIN { if (v == "-" || r == "-" || r + 0 == 0) print "-"; else printf "%.2fx", v / r }'
}

ref=""
for name in $ran; do ref=$name; break; done
for name in $ran; do [ "$name" = duplex-luajit ] && ref=$name; done

echo
echo "echo 16 B: $SMALL_CONNS conns x $SMALL_INFLIGHT in flight; echo 64 KiB: $BIG_CONNS conns x $BIG_INFLIGHT in flight;"
echo "idle: $IDLE_CONNS conns; median of $REPEAT runs of ${DURATION}s (after ${WARMUP}s warm-up); ratios are to $ref"
echo
printf '| %-17s | %-17s | %-19s | %-9s | %-9s | %-14s | %-9s | %-17s | %-17s |\n' \
  server "16 B msgs/s" "16 B msgs/cpu-s" "p50 us" "p99 us" "64 KiB MB/s" "p99 us" "B/idle conn" "B/conn after 1 msg"
printf '| %-17s | %-17s | %-19s | %-9s | %-9s | %-14s | %-9s | %-17s | %-17s |\n' \
  --- --- --- --- --- --- --- --- ---
r_small=$(med "$ref" small msgs_per_s)
r_cpu=$(med "$ref" small msgs_per_cpu_s)
r_big=$(med "$ref" big mb_per_s)
r_idle=$(med "$ref" idle bytes_per_conn)
r_used=$(med "$ref" idle bytes_per_conn_used)
for name in $ran; do
  small=$(med "$name" small msgs_per_s)
  big=$(med "$name" big mb_per_s)
  idle=$(med "$name" idle bytes_per_conn)
  used=$(med "$name" idle bytes_per_conn_used)
  cpu=$(med "$name" small msgs_per_cpu_s)
  printf '| %-17s | %-17s | %-19s | %-9s | %-9s | %-14s | %-9s | %-17s | %-17s |\n' "$name" \
    "$small ($(ratio "$small" "$r_small"))" "$cpu ($(ratio "$cpu" "$r_cpu"))" "$(med "$name" small p50_us)" "$(med "$name" small p99_us)" \
    "$big ($(ratio "$big" "$r_big"))" "$(med "$name" big p99_us)" \
    "$idle ($(ratio "$idle" "$r_idle"))" "$used ($(ratio "$used" "$r_used"))"
done
echo
echo "server CPU per message (user + system, us; lower is better; ratio to $ref), and the round trip:"
echo
printf '| %-17s | %-17s | %-17s | %-17s | %-13s | %-17s |\n' \
  server "16 B x$SMALL_INFLIGHT x $SMALL_CONNS" "16 B x1 x $SMALL_CONNS" "16 B, 1 conn" "1 conn p50 us" "64 KiB, us/msg"
printf '| %-17s | %-17s | %-17s | %-17s | %-13s | %-17s |\n' --- --- --- --- --- ---
r_s=$(med "$ref" small cpu_us_per_msg) r_d=$(med "$ref" depth1 cpu_us_per_msg)
r_r=$(med "$ref" rtt cpu_us_per_msg) r_b=$(med "$ref" big cpu_us_per_msg)
for name in $ran; do
  s=$(med "$name" small cpu_us_per_msg) d=$(med "$name" depth1 cpu_us_per_msg)
  r=$(med "$name" rtt cpu_us_per_msg) b=$(med "$name" big cpu_us_per_msg)
  printf '| %-17s | %-17s | %-17s | %-17s | %-13s | %-17s |\n' "$name" \
    "$s ($(ratio "$s" "$r_s"))" "$d ($(ratio "$d" "$r_d"))" "$r ($(ratio "$r" "$r_r"))" \
    "$(med "$name" rtt p50_us)" "$b ($(ratio "$b" "$r_b"))"
done
echo
echo "server CPU use during the echo runs (1.00 = all of CPU 0; well below 1.00 means the server"
echo "waited or other work shared the CPU), and echoes per second of server CPU:"
for name in $ran; do
  echo "  $name: 16 B $(med "$name" small server_cpu) cpu, $(med "$name" small msgs_per_cpu_s) msgs/cpu-s;" \
    "64 KiB $(med "$name" big server_cpu) cpu, $(med "$name" big msgs_per_cpu_s) msgs/cpu-s;" \
    "load generator $(med "$name" small client_cpu) / $(med "$name" big client_cpu)"
done
