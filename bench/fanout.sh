#!/usr/bin/env bash
# The fan-out benchmark (issue 9): bench/fanout against fan-out servers
# written with duplex topics (LuaJIT, Lua 5.4), duplex with a hand-written
# fan-out loop, and Node `ws` with its documented broadcast loop. Server on
# CPU 0, generator on CPU 1; the servers take turns in every repeat. See
# bench/README.md, section "Fan-out". duplex-redis2 is two LuaJIT processes
# of the topics server on one port (reuseport), joined through a
# redis-server this script starts (on CPU 0 with them): the subscribers
# spread over both, and a publish reaches the other process through Redis.
# Its server CPU columns are the first process's alone.
#
#   bash bench/fanout.sh                 # everything, at most TIME_LIMIT s
#   SERVERS="duplex-manual node-ws" REPEAT=1 FANOUT_CONNS=1000 bash bench/fanout.sh
#
# Knobs (environment): SERVERS, REPEAT (3), DURATION (measured seconds, 3),
# WARMUP (1), FANOUT_CONNS ("1000 10000"), FANOUT_WINDOW (16), LATENCY_CONNS
# ("10000": fan-out with a window of 1, one publish at a time), CHAT_CONNS
# ("100 500"), CHAT_WINDOW (1), IDLE_CONNS (10000), IDLE_TOPICS (3), SIZE
# (100), PORT (first port, 19600), TIME_LIMIT (570 s: the whole run stays
# under it; what does not fit is skipped and said so). A list set to "" skips
# those runs.
set -u

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

SERVERS=${SERVERS:-"duplex-luajit duplex-lua5.4 duplex-manual duplex-redis2 node-ws"}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
FANOUT_CONNS=${FANOUT_CONNS-"1000 10000"}
FANOUT_WINDOW=${FANOUT_WINDOW:-16}
LATENCY_CONNS=${LATENCY_CONNS-10000}
CHAT_CONNS=${CHAT_CONNS-"100 500"}
CHAT_WINDOW=${CHAT_WINDOW:-1}
IDLE_CONNS=${IDLE_CONNS-10000}
IDLE_TOPICS=${IDLE_TOPICS:-3}
SIZE=${SIZE:-100}
PORT=${PORT:-19600}
TIME_LIMIT=${TIME_LIMIT:-570}

GEN=$BENCH/fanout
WORK=$(mktemp -d "${TMPDIR:-/tmp}/duplex-fanout.XXXXXX")
SERVER_PID=
GEN_PID=
EXTRA_PID=
REDIS_PID=
DEADLINE=$((SECONDS + TIME_LIMIT))

cleanup() {
  stop_pid "$GEN_PID"
  stop_pid "$SERVER_PID"
  stop_pid "$EXTRA_PID"
  stop_pid "$REDIS_PID"
  SERVER_PID=
  local p
  for p in $(jobs -p); do stop_pid "$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---- prerequisites ---------------------------------------------------------

# make knows what fanout is built from (wsclient.c too)
make -s -C "$BENCH" fanout >&2 || { say "cannot build bench/fanout"; exit 1; }
set_pinning

max_conns=0
for n in $FANOUT_CONNS $LATENCY_CONNS $CHAT_CONNS $IDLE_CONNS; do [ "$n" -gt "$max_conns" ] && max_conns=$n; done
want_fds=$((max_conns + 256))
if ! raise_nofile "$want_fds"; then
  say "warning: ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)): runs over $(($(ulimit -n) - 256)) connections will fail"
fi
warn_if_busy

# ---- servers ---------------------------------------------------------------

has_topics() { # LUA: this build of duplex has duplex.publish
  env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$ROOT/build/$1/?.so;;" "$1" -e 'local d = require "duplex"; os.exit(d.publish and 0 or 1)' 2>/dev/null
}

why_unavailable() { # NAME: prints why NAME cannot run, or nothing
  case $1 in
    duplex-luajit | duplex-lua5.4 | duplex-manual)
      local lua=luajit
      [ "$1" = duplex-lua5.4 ] && lua=lua5.4
      if ! command -v "$lua" >/dev/null || [ ! -f "$ROOT/build/$lua/duplex/core.so" ]; then
        echo "build it: make LUA=$lua build/$lua/duplex/core.so"
      elif [ "$1" != duplex-manual ] && ! has_topics "$lua"; then
        echo "this duplex has no topics yet (duplex.publish)"
      fi
      ;;
    duplex-redis2)
      if ! command -v redis-server >/dev/null; then
        echo "install it: apt-get install redis-server"
      elif [ ! -f "$ROOT/build/luajit/duplex/core.so" ]; then
        echo "build it: make LUA=luajit build/luajit/duplex/core.so"
      elif ! env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$ROOT/build/luajit/?.so;;" \
          luajit -e 'os.exit(require("duplex").broker and 0 or 1)' 2>/dev/null; then
        echo "this duplex has no broker yet (duplex.broker)"
      fi
      ;;
    node-ws)
      command -v node >/dev/null && [ -d "$BENCH/node_modules/ws" ] ||
        echo "install it: (cd bench && npm ci)"
      ;;
    *) echo "unknown server" ;;
  esac
}

# The Redis for duplex-redis2, started once, on the port before PORT.
start_redis() {
  [ -n "$REDIS_PID" ] && return 0
  $PIN_SERVER redis-server --port $((PORT - 1)) --bind 127.0.0.1 --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  wait_listening "$REDIS_PID" $((PORT - 1))
}

listeners() { # PORT: how many sockets listen on 127.0.0.1:PORT
  grep -c " $(printf '0100007F:%04X' "$1") 00000000:0000 0A " /proc/net/tcp
}

# duplex-redis2: the second process, once the first listens
start_second() { # PORT MODE TOPICS
  local port=$1 i
  shift
  env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$ROOT/build/luajit/?.so;;" \
    "FANOUT_BROKER=redis://127.0.0.1:$((PORT - 1))" \
    $PIN_SERVER luajit "$BENCH/servers/duplex_fanout.lua" "$port" "$@" >"$WORK/second.log" 2>&1 &
  EXTRA_PID=$!
  for i in $(seq 100); do
    [ "$(listeners "$port")" -ge 2 ] && return 0
    kill -0 "$EXTRA_PID" 2>/dev/null || break
    sleep 0.1
  done
  say "  the second duplex-redis2 process did not listen: $(tail -3 "$WORK/second.log")"
  return 1
}

# Each server is started as one simple command (env and taskset exec it), so
# that $! is the server's own pid, the one whose /proc entries we read.
start_server() { # NAME PORT MODE TOPICS
  local name=$1 port=$2 log="$WORK/$1.log" lua=luajit script=duplex_fanout.lua
  shift 2
  case $name in
    duplex-lua5.4) lua=lua5.4 ;;
    duplex-manual) script=duplex_fanout_manual.lua ;;
  esac
  if [ "$name" = node-ws ]; then
    $PIN_SERVER node "$BENCH/servers/node_ws_fanout.js" "$port" "$@" >"$log" 2>&1 &
  elif [ "$name" = duplex-redis2 ]; then
    start_redis || { say "  redis-server did not start: $(tail -3 "$WORK/redis.log")"; return 1; }
    env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$ROOT/build/luajit/?.so;;" \
      "FANOUT_BROKER=redis://127.0.0.1:$((PORT - 1))" \
      $PIN_SERVER luajit "$BENCH/servers/$script" "$port" "$@" >"$log" 2>&1 &
  else
    env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$ROOT/build/$lua/?.so;;" \
      $PIN_SERVER $lua "$BENCH/servers/$script" "$port" "$@" >"$log" 2>&1 &
  fi
  SERVER_PID=$!
  if wait_listening "$SERVER_PID" "$port"; then
    [ "$name" != duplex-redis2 ] && return 0
    start_second "$port" "$@" && return 0
    stop_pid "$EXTRA_PID"
    EXTRA_PID=
  fi
  say "  $name did not start listening on port $port: $(tail -3 "$log")"
  stop_pid "$SERVER_PID"
  SERVER_PID=
  return 1
}

# ---- runs ------------------------------------------------------------------

port=$PORT

# run NAME LABEL SERVER_MODE TOPICS GENERATOR_ARGS...: one run against a fresh
# server; appends the result line to $WORK/NAME.LABEL
run() {
  local name=$1 label=$2 smode=$3 topics=$4 left out rc
  shift 4
  left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 15 ]; then
    say "  time is up (TIME_LIMIT=$TIME_LIMIT): skipping $name $label"
    return 1
  fi
  [ "$left" -gt 150 ] && left=150
  port=$((port + 1))
  start_server "$name" "$port" "$smode" "$topics" || return 1
  # in the background, so that the traps can stop it (timeout passes a TERM on)
  timeout "$left" $PIN_CLIENT "$GEN" "ws://127.0.0.1:$port/" --pid "$SERVER_PID" "$@" \
    >"$WORK/gen.out" 2>"$WORK/gen.err" &
  GEN_PID=$!
  wait "$GEN_PID"
  rc=$?
  GEN_PID=
  out=$(cat "$WORK/gen.out")
  stop_pid "$SERVER_PID"
  stop_pid "$EXTRA_PID"
  SERVER_PID= EXTRA_PID=
  if [ -z "$out" ]; then
    say "  $name $label: generator failed (exit $rc): $(tail -1 "$WORK/gen.err")"
    return 1
  fi
  [ $rc -eq 4 ] && say "  $name $label: MESSAGES LOST, DUPLICATED OR OUT OF ORDER (see the line below)"
  say "  $name $label: $out"
  echo "$out" >>"$WORK/$name.$label"
}

ran=""
for name in $SERVERS; do
  why=$(why_unavailable "$name")
  if [ -n "$why" ]; then say "skipping $name: $why"; else ran="$ran $name"; fi
done
[ -n "$ran" ] || { say "no server to run"; exit 1; }

common="--size $SIZE --warmup $WARMUP --duration $DURATION"
for rep in $(seq "$REPEAT"); do
  say "== repeat $rep of $REPEAT"
  for name in $ran; do
    for n in $FANOUT_CONNS; do
      run "$name" "fanout$n" fanout 1 --mode fanout --conns "$n" --window "$FANOUT_WINDOW" $common
    done
    for n in $LATENCY_CONNS; do
      run "$name" "latency$n" fanout 1 --mode fanout --conns "$n" --window 1 $common
    done
    for n in $CHAT_CONNS; do
      run "$name" "chat$n" chat 1 --mode chat --conns "$n" --window "$CHAT_WINDOW" $common
    done
    for n in $IDLE_CONNS; do # a fresh server each: its RSS before is the baseline
      run "$name" idle0 fanout 0 --mode idle --conns "$n" --duration 1
      run "$name" idle$IDLE_TOPICS fanout "$IDLE_TOPICS" --mode idle --conns "$n" --duration 1
    done
  done
done

# ---- the tables ------------------------------------------------------------

med() { # NAME LABEL KEY: median of KEY over the runs
  local f="$WORK/$1.$2"
  [ -f "$f" ] || { echo "-"; return; }
  while read -r line; do field "$3" "$line"; done <"$f" | median
}

sum() { # NAME LABEL KEY: sum of KEY over the runs
  local f="$WORK/$1.$2"
  [ -f "$f" ] || { echo "-"; return; }
  while read -r line; do field "$3" "$line"; done <"$f" | awk '{ s += $1 } END { print s + 0 }'
}

ratio() { # VALUE REF: VALUE / REF
  awk -v v="$1" -v r="$2" 'BEGIN { if (v == "-" || r == "-" || r + 0 == 0 || v + 0 == 0) print "-"; else printf "%.1fx", v / r }'
}

ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1000 }'; }

table() { # LABEL TITLE
  local label=$1 name d ns rd rn
  echo
  echo "$2"
  printf '| %-13s | %-12s | %-6s | %-7s | %-7s | %-11s | %-6s | %-13s | %-7s | %-5s | %-5s | %-11s |\n' \
    server deliveries/s "x node" "p50 ms" "p99 ms" "server ns/d" "node/x" "user/sys ns" "d/write" "s cpu" "g cpu" "lost/ooo/st"
  printf '| %-13s | %-12s | %-6s | %-7s | %-7s | %-11s | %-6s | %-13s | %-7s | %-5s | %-5s | %-11s |\n' \
    --- --- --- --- --- --- --- --- --- --- --- ---
  rd=$(med node-ws "$label" deliveries_per_s)
  rn=$(med node-ws "$label" server_ns_per_delivery)
  for name in $ran; do
    [ -f "$WORK/$name.$label" ] || continue
    d=$(med "$name" "$label" deliveries_per_s)
    ns=$(med "$name" "$label" server_ns_per_delivery)
    printf '| %-13s | %-12s | %-6s | %-7s | %-7s | %-11s | %-6s | %-13s | %-7s | %-5s | %-5s | %-11s |\n' \
      "$name" "$d" "$(ratio "$d" "$rd")" "$(ms "$(med "$name" "$label" p50_us)")" \
      "$(ms "$(med "$name" "$label" p99_us)")" "$ns" "$(ratio "$rn" "$ns")" \
      "$(med "$name" "$label" server_user_ns)/$(med "$name" "$label" server_sys_ns)" \
      "$(med "$name" "$label" deliveries_per_write)" "$(med "$name" "$label" server_cpu)" \
      "$(med "$name" "$label" client_cpu)" \
      "$(sum "$name" "$label" lost)/$(sum "$name" "$label" out_of_order)/$(sum "$name" "$label" stalled)"
  done
}

echo
echo "median of $REPEAT runs of ${DURATION}s (after ${WARMUP}s); $SIZE-byte messages; x node = this / node-ws,"
echo "node/x = node-ws's server CPU per delivery / this one's (both: higher is better)"
for n in $FANOUT_CONNS; do
  table "fanout$n" "fan-out: $n subscribers, one of them publishing, window $FANOUT_WINDOW publishes"
done
for n in $LATENCY_CONNS; do
  table "latency$n" "fan-out latency: $n subscribers, one publish at a time (window 1)"
done
for n in $CHAT_CONNS; do
  table "chat$n" "chat room: $n clients each publishing to the $((n - 1)) others, window $CHAT_WINDOW per client"
done
if [ -n "$IDLE_CONNS" ]; then
  echo
  echo "idle: $IDLE_CONNS connections, server RSS per connection with 0 and $IDLE_TOPICS topics each"
  printf '| %-13s | %-10s | %-10s | %-18s |\n' server "0 topics" "$IDLE_TOPICS topics" "B per membership"
  printf '| %-13s | %-10s | %-10s | %-18s |\n' --- --- --- ---
  for name in $ran; do
    b0=$(med "$name" idle0 bytes_per_conn)
    b3=$(med "$name" "idle$IDLE_TOPICS" bytes_per_conn)
    per=$(awk -v a="$b0" -v b="$b3" -v k="$IDLE_TOPICS" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.0f", (b - a) / k }')
    printf '| %-13s | %-10s | %-10s | %-18s |\n' "$name" "$b0" "$b3" "$per"
  done
fi
echo
echo "took ${SECONDS}s"
