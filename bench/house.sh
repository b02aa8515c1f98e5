#!/usr/bin/env bash
# Two duplex trees side by side in one run: allocations per received message,
# server CPU per slow (byte-at-a-time) upgrade head, bytes per idle connection
# (ws:// and wss://) and echo throughput (16 B and 64 KiB), on Lua 5.4 and
# LuaJIT. The harness (servers, clients, counters) is this bench/ directory
# for both trees; only duplex itself (lua/ and build/<lua>/duplex/core.so)
# comes from each tree. See bench/README.md ("Before and after").
#
#   bash bench/house.sh BEFORE_TREE AFTER_TREE
#   REPEAT=1 DURATION=1 WARMUP=0.5 IDLE_CONNS=1000 TLS_CONNS=200 bash bench/house.sh A B
#
# Knobs (environment): REPEAT (3), LUAS ("lua5.4 luajit"), TIME_LIMIT (720 s,
# the hard bound on the whole run), DURATION (3) and WARMUP (1) per echo run,
# SMALL_CONNS/SMALL_INFLIGHT (100/16), BIG_CONNS/BIG_INFLIGHT (10/4),
# ALLOC_COUNT (16000 round trips) after ALLOC_WARMUP (2000), HEAD_CONNS (20),
# HEAD_BYTES (8000), HEAD_GAP_US (200), IDLE_CONNS (5000, never-used ws://),
# TLS_CONNS (2000, ws:// and wss:// after one echo each), PORT (19400).
# Table on stdout; progress and every raw result on stderr.
set -u

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH/lib.sh"
if [ $# -ne 2 ]; then
  echo "usage: bash bench/house.sh BEFORE_TREE AFTER_TREE" >&2
  exit 1
fi
TREES=()
for t in "$1" "$2"; do
  [ -d "$t/lua/duplex" ] || { echo "not a duplex tree: $t" >&2; exit 1; }
  TREES+=("$(cd "$t" && pwd)")
done
NAMES=(before after)

REPEAT=${REPEAT:-3}
LUAS=${LUAS:-"lua5.4 luajit"}
TIME_LIMIT=${TIME_LIMIT:-720}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
SMALL_CONNS=${SMALL_CONNS:-100}
SMALL_INFLIGHT=${SMALL_INFLIGHT:-16}
BIG_CONNS=${BIG_CONNS:-10}
BIG_INFLIGHT=${BIG_INFLIGHT:-4}
ALLOC_COUNT=${ALLOC_COUNT:-16000}
ALLOC_WARMUP=${ALLOC_WARMUP:-2000}
HEAD_CONNS=${HEAD_CONNS:-20}
HEAD_BYTES=${HEAD_BYTES:-8000}
HEAD_GAP_US=${HEAD_GAP_US:-200}
IDLE_CONNS=${IDLE_CONNS:-5000}
TLS_CONNS=${TLS_CONNS:-2000}
PORT=${PORT:-19400}

START=$SECONDS
DEADLINE=$((SECONDS + TIME_LIMIT))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/duplex-house.XXXXXX")
GROUPS_FILE=$WORK/groups # process groups we started and that may still run, one leader pid a line
: > "$GROUPS_FILE"
WATCHDOG=

kill_group() { # PID: TERM, then KILL, the process group PID leads, if alive
  kill -0 -- "-$1" 2>/dev/null || return 0
  kill -TERM -- "-$1" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$1" 2>/dev/null
}

# started/finished PID: kept in a file, because command substitutions run
# in subshells whose variables the cleanup would not see
started() { echo "$1" >> "$GROUPS_FILE"; }
finished() { kill_group "$1"; sed -i "/^$1\$/d" "$GROUPS_FILE" 2>/dev/null; }

cleanup() {
  local p
  if [ -f "$GROUPS_FILE" ]; then
    while read -r p; do kill_group "$p"; done < "$GROUPS_FILE"
  fi
  if [ -n "$WATCHDOG" ]; then kill_group "$WATCHDOG"; wait "$WATCHDOG" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
stopped() { # the time limit or a signal: end what runs, print what was measured
  local p
  say "stopped (signal or time limit): the table holds what was measured so far"
  while read -r p; do kill_group "$p"; done < "$GROUPS_FILE"
  if declare -F print_table >/dev/null; then print_table; fi
  exit 130
}
trap stopped INT TERM

# The whole run stops at TIME_LIMIT, whatever is running then
# (its own process group, so that the cleanup ends its sleep too; the trap
# reaps the sleep, which would otherwise be left a zombie under init)
setsid bash -c 'trap "kill \$s 2>/dev/null; wait; exit 0" TERM
  sleep "$1" & s=$!; wait $s && kill -TERM "$2" 2>/dev/null' watchdog "$TIME_LIMIT" $$ &
WATCHDOG=$!

left() { echo $((DEADLINE - SECONDS)); }

# bounded SECS CMD...: runs CMD in its own process group, killed (all of it)
# after SECS or at the deadline, whichever comes first. Returns CMD's status.
bounded() {
  local secs=$1 l
  shift
  l=$(left)
  [ "$l" -lt "$secs" ] && secs=$l
  [ "$secs" -gt 0 ] || return 124
  setsid timeout -k 2 "$secs" "$@" &
  local p=$!
  started "$p"
  wait "$p"
  local rc=$?
  finished "$p"
  return $rc
}

# ---- prerequisites ---------------------------------------------------------

make -s -C "$BENCH" loadgen probe alloc_count.so >&2 || { say "cannot build the bench tools"; exit 1; }

for tree in "${TREES[@]}"; do
  for lua in $LUAS; do
    command -v "$lua" >/dev/null || { say "no $lua on PATH"; exit 1; }
    if [ ! -f "$tree/build/$lua/duplex/core.so" ]; then
      say "building $tree/build/$lua/duplex/core.so"
      bounded 600 make -s -C "$tree" LUA="$lua" "build/$lua/duplex/core.so" >&2 ||
        { say "build failed in $tree for $lua"; exit 1; }
    fi
  done
done

# as arrays: unpinned, they must expand to no word at all before setsid
set_pinning
read -ra PIN_SERVER <<< "$PIN_SERVER"
read -ra PIN_CLIENT <<< "$PIN_CLIENT"

want_fds=$((IDLE_CONNS > TLS_CONNS ? IDLE_CONNS + 256 : TLS_CONNS * 2 + 256))
if ! raise_nofile "$want_fds"; then
  say "warning: ulimit -n is $(ulimit -n); idle tests lowered"
  IDLE_CONNS=$(($(ulimit -n) - 256))
  TLS_CONNS=$((($(ulimit -n) - 256) / 2))
fi

warn_if_busy

# ---- servers -----------------------------------------------------------------

SERVER_PID=
port=$PORT

# start_server TREE LUA [ENV=VALUE...]: a fresh echo server on the next port,
# pinned to CPU 0; sets SERVER_PID and port
start_server() {
  local tree=$1 lua=$2
  shift 2
  port=$((port + 1))
  setsid "${PIN_SERVER[@]}" env "$@" LUA_PATH="$tree/lua/?.lua;$tree/lua/?/init.lua;;" \
    LUA_CPATH="$tree/build/$lua/?.so;;" "$lua" "$BENCH/servers/duplex_echo.lua" "$port" \
    >"$WORK/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  started "$SERVER_PID"
  wait_listening "$SERVER_PID" "$port" && return 0
  say "server ($lua, $tree) did not listen on port $port:"
  tail -5 "$WORK/server.log" >&2
  stop_server
  return 1
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  finished "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}

# ---- results -------------------------------------------------------------------

record() { # NAME LUA KEY VALUE
  [ -n "$4" ] && echo "$4" >> "$WORK/$1.$2.$3"
}

client() { # LABEL CMD...: runs a bounded client on CPU 1, prints its stdout line
  local label=$1 out rc
  shift
  out=$(bounded 180 "${PIN_CLIENT[@]}" "$@" 2>"$WORK/client.err")
  rc=$?
  if [ $rc -ne 0 ] || [ -z "$out" ]; then
    say "    $label: failed (exit $rc): $(tail -2 "$WORK/client.err" | tr '\n' ' ')"
    return 1
  fi
  say "    $label: $out"
  echo "$out"
}

# ---- the four measurements (one tree, one Lua, one run each) -----------------

measure_echo() { # NAME TREE LUA
  local out m c
  start_server "$2" "$3" || return 1
  if out=$(client "echo 16 B" "$BENCH/loadgen" "ws://127.0.0.1:$port/" --pid "$SERVER_PID" --mode echo \
    --conns "$SMALL_CONNS" --size 16 --inflight "$SMALL_INFLIGHT" --warmup "$WARMUP" --duration "$DURATION"); then
    m=$(field msgs_per_s "$out") c=$(field server_cpu "$out")
    record "$1" "$3" small "$m"
    record "$1" "$3" small_cpu "$(awk -v m="$m" -v c="$c" 'BEGIN { if (c > 0) printf "%.0f", m / c }')"
  fi
  if out=$(client "echo 64 KiB" "$BENCH/loadgen" "ws://127.0.0.1:$port/" --pid "$SERVER_PID" --mode echo \
    --conns "$BIG_CONNS" --size 65536 --inflight "$BIG_INFLIGHT" --warmup "$WARMUP" --duration "$DURATION"); then
    record "$1" "$3" big "$(field mb_per_s "$out")"
  fi
  stop_server
}

# count_of FILE KINDS PATTERN: the named counters summed over the objects
# whose path matches PATTERN, per round trip
count_of() {
  awk -v kinds="$2" -v pat="$3" -v n="$ALLOC_COUNT" '
    $1 !~ pat { next }
    {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); if (index(" " kinds " ", " " kv[1] " ")) s += kv[2] } }
    END { printf "%.3f", s / n }' "$1"
}

per_conn() { # LINE KEY DIVISOR FORMAT: KEY / DIVISOR / (heads or frames) in LINE
  local n
  n=$(field heads "$1")
  [ -n "$n" ] || n=$(field frames "$1")
  awk -v v="$(field "$2" "$1")" -v d="$3" -v n="$n" -v f="$4" 'BEGIN { if (v != "" && n > 0) printf f, v / d / n }'
}

LUA_OBJ='(^|/)(lua[0-9.]*|luajit[-0-9.]*|liblua[^/]*|libluajit[^/]*)$'
CORE_OBJ='/duplex/core[.]so$'

measure_probes() { # NAME TREE LUA: allocations per round trip, then CPU per slow head
  local out counts="$WORK/counts" i
  rm -f "$counts"
  start_server "$2" "$3" LD_PRELOAD="$BENCH/alloc_count.so" ALLOC_COUNT_OUT="$counts" || return 1
  if client "allocations" "$BENCH/probe" rtt "$port" --pid "$SERVER_PID" \
    --warmup "$ALLOC_WARMUP" --count "$ALLOC_COUNT" --size 16 >/dev/null; then
    for i in $(seq 50); do [ -f "$counts" ] && break; sleep 0.05; done
    if [ -f "$counts" ]; then
      sed 's/^/      /' "$counts" >&2
      record "$1" "$3" core_allocs "$(count_of "$counts" "malloc calloc realloc" "$CORE_OBJ")"
      record "$1" "$3" core_frees "$(count_of "$counts" "free" "$CORE_OBJ")"
      record "$1" "$3" lua_allocs "$(count_of "$counts" "malloc calloc realloc" "$LUA_OBJ")"
      record "$1" "$3" lua_frees "$(count_of "$counts" "free" "$LUA_OBJ")"
      awk -v a="$CORE_OBJ" -v b="$LUA_OBJ" '$1 !~ a && $1 !~ b' "$counts" > "$counts.other"
      record "$1" "$3" other_allocs "$(count_of "$counts.other" "malloc calloc realloc" "." )"
      record "$1" "$3" other_frees "$(count_of "$counts.other" "free" ".")"
    else
      say "    allocations: the server wrote no counts"
    fi
  fi
  local head_ns="" frame_ns=""
  if out=$(client "slow heads" "$BENCH/probe" slowhead "$port" --pid "$SERVER_PID" \
    --conns "$HEAD_CONNS" --bytes "$HEAD_BYTES" --gap-us "$HEAD_GAP_US"); then
    head_ns=$(per_conn "$out" server_ns 1e6 %.3f)
    record "$1" "$3" head_ms "$head_ns"
    record "$1" "$3" head_user_ms "$(per_conn "$out" server_utime_ticks "$(getconf CLK_TCK)e-3" %.2f)"
    record "$1" "$3" head_reads "$(per_conn "$out" server_reads 1 %.0f)"
  fi
  if out=$(client "slow frames" "$BENCH/probe" slowframe "$port" --pid "$SERVER_PID" \
    --conns "$HEAD_CONNS" --bytes "$HEAD_BYTES" --gap-us "$HEAD_GAP_US"); then
    frame_ns=$(per_conn "$out" server_ns 1e6 %.3f)
    record "$1" "$3" frame_ms "$frame_ns"
    record "$1" "$3" frame_user_ms "$(per_conn "$out" server_utime_ticks "$(getconf CLK_TCK)e-3" %.2f)"
  fi
  if [ -n "$head_ns" ] && [ -n "$frame_ns" ]; then
    record "$1" "$3" head_extra_ms "$(awk -v h="$head_ns" -v f="$frame_ns" 'BEGIN { printf "%.3f", h - f }')"
  fi
  stop_server
}

measure_idle() { # NAME TREE LUA: never-used ws:// connections, fresh server
  local out
  start_server "$2" "$3" || return 1
  if out=$(client "idle ws" "$BENCH/loadgen" "ws://127.0.0.1:$port/" --pid "$SERVER_PID" --mode idle \
    --conns "$IDLE_CONNS" --duration 1); then
    record "$1" "$3" idle "$(field bytes_per_conn "$out")"
  fi
  stop_server
}

measure_tls() { # NAME TREE LUA: bench/idle_tls.lua, ws:// and wss:// after one echo each
  local tree=$2 lua=$3 out
  out=$(cd "$tree" && bounded 240 env LUA_PATH="$tree/lua/?.lua;$tree/lua/?/init.lua;;" \
    LUA_CPATH="$tree/build/$lua/?.so;;" "$lua" "$BENCH/idle_tls.lua" "$TLS_CONNS" 2>"$WORK/tls.err")
  local rc=$?
  if [ $rc -ne 0 ]; then
    say "    idle_tls: failed (exit $rc): $(tail -2 "$WORK/tls.err" | tr '\n' ' ')"
    return 1
  fi
  say "$(echo "$out" | sed 's/^/    /')"
  # lines: "  ws    2000 open (0 failed)  RSS a -> b KiB    N bytes per idle connection ..."
  local scheme per open
  while read -r scheme open per; do
    if [ "$open" != "$TLS_CONNS" ]; then say "    idle_tls $scheme: only $open of $TLS_CONNS open"; fi
    record "$1" "$lua" "tls_$scheme" "$per"
  done < <(echo "$out" | awk '$1 == "ws" || $1 == "wss" { for (i = 3; i <= NF; i++) if ($i == "bytes") print $1, $2, $(i - 1) }')
}

# ---- the table -------------------------------------------------------------------

med() { # NAME LUA KEY
  local f="$WORK/$1.$2.$3"
  [ -f "$f" ] || { echo "-"; return; }
  sort -g "$f" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio() { # AFTER BEFORE
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "-" || b == "-") print "-"
    else if (b + 0 == 0) print (a + 0 == 0 ? "=" : "-")
    else printf "%.2fx", a / b }'
}

ROWS=(
  "small|echo 16 B, msgs/s"
  "small_cpu|echo 16 B, msgs per server CPU-s"
  "big|echo 64 KiB, MB/s"
  "core_allocs|allocs/msg, core.so (malloc+calloc+realloc)"
  "core_frees|frees/msg, core.so"
  "lua_allocs|allocs/msg, Lua allocator (PUC only)"
  "lua_frees|frees/msg, Lua allocator (PUC only)"
  "other_allocs|allocs/msg, other (libuv, libc, OpenSSL)"
  "other_frees|frees/msg, other"
  "head_ms|slow head, server CPU ms/head"
  "head_user_ms|slow head, of which user ms/head"
  "head_reads|slow head, server reads/head"
  "frame_ms|slow frame (baseline), server CPU ms/frame"
  "frame_user_ms|slow frame, of which user ms/frame"
  "head_extra_ms|slow head minus slow frame, ms/head"
  "idle|B/idle ws:// conn, never used"
  "tls_ws|B/idle ws:// conn, after 1 echo"
  "tls_wss|B/idle wss:// conn, after 1 echo"
)

print_table() {
  echo
  echo "duplex before/after, median of $REPEAT run(s) each, alternating; $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - START)) s"
  echo "before: ${TREES[0]} ($(git -C "${TREES[0]}" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "after:  ${TREES[1]} ($(git -C "${TREES[1]}" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "echo: ${DURATION}s after ${WARMUP}s, $SMALL_CONNS x $SMALL_INFLIGHT (16 B), $BIG_CONNS x $BIG_INFLIGHT (64 KiB);" \
    "allocs: $ALLOC_COUNT round trips of 16 B on 1 conn after $ALLOC_WARMUP;"
  echo "heads: $HEAD_CONNS x $HEAD_BYTES B, 1 byte/write, ${HEAD_GAP_US} us gap; idle: $IDLE_CONNS conns; idle_tls: $TLS_CONNS conns"
  echo
  printf '| %-44s | %-6s | %12s | %12s | %12s |\n' measurement lua before after after/before
  printf '| %-44s | %-6s | %12s | %12s | %12s |\n' --- --- --- --- ---
  for row in "${ROWS[@]}"; do
    key=${row%%|*} label=${row#*|}
    for lua in $LUAS; do
      b=$(med before "$lua" "$key") a=$(med after "$lua" "$key")
      [ "$b" = - ] && [ "$a" = - ] && continue
      printf '| %-44s | %-6s | %12s | %12s | %12s |\n' "$label" "$lua" "$b" "$a" "$(ratio "$a" "$b")"
    done
  done
  echo
  echo "allocs/msg: calls per round trip (one 16-byte message received and echoed), counted by"
  echo "bench/alloc_count.so and charged to the caller's object; PUC Lua's expected floor is about 1"
  echo "realloc (the message's string) and 1 free (its collection) per message; LuaJIT's allocator"
  echo "does not use malloc, so its rows read 0. '=' in after/before: both are 0."
  echo "slow head: a $HEAD_BYTES-byte upgrade head, slow frame: one $HEAD_BYTES-byte frame after the upgrade, each"
  echo "fed a byte per write to $HEAD_CONNS connections at once; server CPU from /proc/PID/task/*/schedstat"
  echo "(ns), user part from /proc/PID/stat (ticks). Each byte is its own read and wake-up, so both carry"
  echo "the same kernel and event-loop cost; head minus frame is what parsing the head adds."
}

# ---- the run: every measurement alternates before/after, the order flips each repeat

say "before: ${TREES[0]}"
say "after:  ${TREES[1]}"
for rep in $(seq "$REPEAT"); do
  if [ $((rep % 2)) -eq 1 ]; then order="0 1"; else order="1 0"; fi
  for lua in $LUAS; do
    for m in echo probes idle tls; do
      for i in $order; do
        if [ "$(left)" -lt 15 ]; then say "time is up: skipping $m"; continue; fi
        say "== run $rep/$REPEAT, $lua, $m, ${NAMES[$i]} ($((SECONDS - START)) s)"
        "measure_$m" "${NAMES[$i]}" "${TREES[$i]}" "$lua"
      done
    done
  done
done

print_table
