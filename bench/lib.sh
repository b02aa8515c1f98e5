# Shared by the benchmark scripts (sourced, bash): pinning, busy check,
# waiting for a server to listen, stopping it, reading result lines.

say() { printf '%s\n' "$*" >&2; }

# PIN_SERVER / PIN_CLIENT: server on CPU 0, load generator on CPU 1
set_pinning() {
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER="taskset -c 0"
    PIN_CLIENT="taskset -c 1"
  else
    say "warning: no taskset or fewer than 2 CPUs: server and load generator are not pinned"
    PIN_SERVER=""
    PIN_CLIENT=""
  fi
}

# raise_nofile N: ulimit -n up to N (or the hard limit); fails when it stays below N
raise_nofile() {
  ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$1" ]
}

busy_fraction() { # share of all CPUs busy over 1 s, in percent
  local a b
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
  sleep 1
  read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
  a=$(( (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1) ))
  b=$(( a + (i2+w2) - (i1+w1) ))
  echo $(( b > 0 ? 100 * a / b : 0 ))
}

warn_if_busy() {
  local busy
  busy=$(busy_fraction)
  if [ "$busy" -gt 10 ]; then
    say "warning: the machine is ${busy}% busy before we start; the figures will be low and noisy"
  fi
}

# wait_listening PID PORT: until PID listens on 127.0.0.1:PORT (read from
# /proc, so no probe connection reaches the server); fails after 10 s or when
# PID exits
wait_listening() {
  local pid=$1 hex i
  hex=$(printf '0100007F:%04X' "$2")
  for i in $(seq 100); do
    if grep -q " $hex 00000000:0000 0A " /proc/net/tcp 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# stop_pid PID: TERM, up to 2 s, then KILL; reaps it
stop_pid() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null
  for _ in $(seq 20); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}

field() { # KEY LINE: the value of key=value in a result line
  local kv
  for kv in $2; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done
}

median() { # numbers on stdin (one a line), prints the median, or "-"
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}
