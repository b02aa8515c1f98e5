/* fanout: a WebSocket fan-out load generator for the duplex benchmarks (one
 * publisher to N subscribers, or a chat room of N). Plain epoll, libc only.
 *
 *   fanout ws://127.0.0.1:PORT/ [options]
 *
 *   --mode fanout|chat|idle
 *            fanout: N connections, all subscribed; the last one also
 *            publishes, and every publish must reach all N (itself included).
 *            chat: N connections, each publishes, each publish must reach the
 *            N - 1 others. idle: open N connections, wait until each is
 *            ready, hold them D seconds and read the server's VmRSS.
 *   --conns N       connections (default 1000)
 *   --size S        payload bytes per message, 20..125 (default 100)
 *   --window W      publishes per publisher not yet delivered to every
 *                   receiver (default 16 for fanout, 1 for chat)
 *   --rate R        fanout only: at most R publishes per second (default 0:
 *                   as fast as the window allows)
 *   --duration D    measured seconds (default 3; idle: hold time, 1)
 *   --warmup W      seconds of publishing before the measurement (default 1)
 *   --pid PID       the server process: its CPU time, write syscalls
 *                   (/proc/PID/io syscw) and, for idle, VmRSS
 *
 * The server answers each connection's upgrade with a text message "ready"
 * once it is subscribed; publishing starts when all N are ready. A message
 * is binary: sequence number (8 bytes, little-endian), CLOCK_MONOTONIC send
 * time in ns (8), sender index (4), filler. It prints one line of key=value
 * results on stdout; exit 2 on a protocol error, 3 on its own time limit,
 * 4 when messages were lost, duplicated or out of order (the line is still
 * printed). It only ever connects to 127.0.0.1. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "wsclient.h"

const char wsc_prog[] = "fanout";

enum { EXIT_LOST = 4 };
enum { READ_SIZE = 256 * 1024, MAX_PENDING_HS = 128, CARRY_MAX = 2 + 125, MAX_CHAT = 4096 };
enum { CONNECT_LIMIT_S = 90, CLOSE_LIMIT_S = 3, DRAIN_LIMIT_S = 15, STALL_S = 3 };

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static wsc_hist hist; /* latency of the deliveries measured */

/* ---- configuration ------------------------------------------------------ */

enum mode { M_FANOUT, M_CHAT, M_IDLE };

static struct {
  int port;
  char path[256];
  enum mode mode;
  int conns;
  size_t size;
  int window;
  double rate, duration, warmup;
  long pid;
} cfg = {0, "/", M_FANOUT, 1000, 100, 0, 0, -1, 1, 0};

/* ---- connections -------------------------------------------------------- */

typedef struct conn {
  wsc_conn w; /* first: epoll's data.ptr is both */
  int ready, dirty;
  uint8_t carry[CARRY_MAX]; /* the start of a frame that the last read cut */
  size_t carry_len;
  /* as a publisher: seqs [done, tx) are in flight, cnt[seq % window] counts
   * the receivers each has reached */
  uint64_t tx, done;
  uint32_t *cnt;
} conn;

static conn *conns;
static conn **dirty; /* conns with bytes queued since the last flush */
static int n_dirty;
static wsc_client cl;
static int n_ready, connect_upto;
static int receivers;    /* deliveries a publish must make */
static uint32_t *expect; /* next seq each receiver expects from each sender */
static int sending, measuring;
static uint64_t t_publish0; /* ns, when publishing started (for --rate) */
static uint64_t in_flight, publishes, last_progress;
static uint64_t deliveries_all, deliveries; /* all; within the measurement */
static uint64_t lost, out_of_order;

static void mark_dirty(conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  dirty[n_dirty++] = c;
}

/* Queues a masked frame (opcode, payload) on c. */
static void queue_frame(conn *c, int opcode, const uint8_t *data, size_t n) {
  uint8_t mask[4];
  uint64_t r = wsc_rng();
  memcpy(mask, &r, 4);
  wsc_buf_reserve(&c->w.out, n + 8);
  uint8_t *dst = c->w.out.p + c->w.out.len;
  size_t hl = wsc_encode_header(dst, opcode, n, mask);
  for (size_t i = 0; i < n; i++) dst[hl + i] = data[i] ^ mask[i & 3];
  c->w.out.len += hl + n;
  mark_dirty(c);
}

static void queue_publish(conn *c) {
  uint8_t p[125];
  memset(p, 'x', cfg.size);
  put64(p, c->tx);
  put64(p + 8, wsc_now_ns());
  put64(p + 16, (uint64_t)c->w.idx); /* 4 bytes of it fit before the filler */
  queue_frame(c, 2, p, cfg.size);
  c->tx++;
  in_flight++;
  publishes++;
}

/* Publishes what the window (and --rate) allows. */
static void try_publish(conn *c) {
  while (sending && c->tx < c->done + (uint64_t)cfg.window) {
    if (cfg.rate > 0) {
      double due = (double)(wsc_now_ns() - t_publish0) * 1e-9 * cfg.rate + 1;
      if ((double)c->tx >= due) break;
    }
    queue_publish(c);
  }
}

static void flush(conn *c) { wsc_conn_flush(&cl, &c->w); }

static void flush_dirty(void) {
  for (int i = 0; i < n_dirty; i++) {
    dirty[i]->dirty = 0;
    if (dirty[i]->w.state != WSC_DONE) flush(dirty[i]);
  }
  n_dirty = 0;
}

/* ---- what arrives ----------------------------------------------------------- */

static void advance(conn *s) {
  while (s->done < s->tx && s->cnt[s->done % (uint64_t)cfg.window] == (uint32_t)receivers) {
    s->cnt[s->done % (uint64_t)cfg.window] = 0;
    s->done++;
    in_flight--;
  }
  try_publish(s);
}

static void on_delivery(conn *r, const uint8_t *p, size_t len, uint64_t now) {
  if (len != cfg.size)
    wsc_die(EXIT_PROTO, "conn %d: a message of %zu bytes, expected %zu", r->w.idx, len, cfg.size);
  uint64_t seq = get64(p), sent = get64(p + 8), sender = get64(p + 16) & 0xFFFFFFFFu;
  if (sender >= (uint64_t)cfg.conns || (cfg.mode == M_FANOUT && sender != (uint64_t)cfg.conns - 1))
    wsc_die(EXIT_PROTO, "conn %d: a message from no publisher (%llu)", r->w.idx,
            (unsigned long long)sender);
  if (cfg.mode == M_CHAT && sender == (uint64_t)r->w.idx)
    wsc_die(EXIT_PROTO, "conn %d: its own message came back (the room must skip the sender)",
            r->w.idx);
  conn *s = &conns[sender];
  if (seq >= s->tx) wsc_die(EXIT_PROTO, "conn %d: a message that was never sent", r->w.idx);
  uint32_t *e = &expect[(size_t)r->w.idx * (cfg.mode == M_CHAT ? (size_t)cfg.conns : 1) +
                        (cfg.mode == M_CHAT ? sender : 0)];
  if (seq < *e) { /* a duplicate or one overtaken by a later one */
    out_of_order++;
    return;
  }
  lost += seq - *e; /* a gap: those never come */
  *e = (uint32_t)seq + 1;
  if (seq >= s->done && ++s->cnt[seq % (uint64_t)cfg.window] == (uint32_t)receivers) advance(s);
  deliveries_all++;
  last_progress = now;
  if (measuring) {
    deliveries++;
    wsc_hist_add(&hist, now > sent ? (now - sent) / 1000 : 0);
  }
}

static void on_frame(conn *c, int op, const uint8_t *p, size_t len, uint64_t now) {
  if (op == 2 && c->ready) {
    if (c->w.state == WSC_OPEN) on_delivery(c, p, len, now);
  } else if (op == 1 && !c->ready && len == 5 && !memcmp(p, "ready", 5)) {
    c->ready = 1;
    n_ready++;
    cl.n_pending_hs--;
  } else if (op == 9) {
    if (c->w.state == WSC_OPEN) queue_frame(c, 10, p, len);
  } else if (op == 8) {
    if (c->w.state != WSC_CLOSING) {
      unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
      wsc_die(EXIT_PROTO, "conn %d: the server closed the connection (code %u: %.*s)", c->w.idx,
              code, len > 2 ? (int)len - 2 : 0, (const char *)p + 2);
    }
    wsc_conn_finish(&cl, &c->w); /* our close went first; this is the answer */
  } else if (op != 10) {
    wsc_die(EXIT_PROTO, "conn %d: unexpected frame (opcode %d, %zu bytes%s)", c->w.idx, op, len,
            c->ready ? "" : ", before \"ready\"");
  }
}

/* Handles the whole frames in d[0..n); returns how many bytes they took. */
static size_t parse_frames(conn *c, const uint8_t *d, size_t n, uint64_t now) {
  size_t i = 0;
  while (n - i >= 2 && c->w.state != WSC_DONE) {
    uint8_t b0 = d[i], b1 = d[i + 1];
    if (b0 & 0x70) wsc_die(EXIT_PROTO, "conn %d: reserved bits set", c->w.idx);
    if (b1 & 0x80) wsc_die(EXIT_PROTO, "conn %d: masked frame from the server", c->w.idx);
    if (!(b0 & 0x80) || (b0 & 15) == 0)
      wsc_die(EXIT_PROTO, "conn %d: a fragmented message (this bench expects whole frames)",
              c->w.idx);
    size_t len = b1 & 0x7F;
    if (len > 125) wsc_die(EXIT_PROTO, "conn %d: a frame longer than 125 bytes", c->w.idx);
    if (n - i < 2 + len) break;
    on_frame(c, b0 & 15, d + i + 2, len, now);
    i += 2 + len;
  }
  return i;
}

static uint8_t readbuf[CARRY_MAX + READ_SIZE];

/* The n new bytes are at readbuf + CARRY_MAX; what the last read left of a
 * frame goes just before them. */
static void on_data(conn *c, size_t n, uint64_t now) {
  uint8_t *start = readbuf + CARRY_MAX - c->carry_len;
  memcpy(start, c->carry, c->carry_len);
  size_t total = c->carry_len + n, used = parse_frames(c, start, total, now);
  if (c->w.state == WSC_DONE) return;
  c->carry_len = total - used; /* part of one frame: < CARRY_MAX */
  memcpy(c->carry, start + used, c->carry_len);
}

static void on_open(conn *c, const uint8_t *rest, size_t n) {
  c->w.state = WSC_OPEN;
  cl.n_open++;
  memmove(readbuf + CARRY_MAX, rest, n);
  on_data(c, n, wsc_now_ns());
}

static void on_head(conn *c, const uint8_t *d, size_t n) {
  size_t at, rest;
  char *head = wsc_conn_head(&c->w, d, n, &at, &rest);
  if (!head) return;
  on_open(c, (const uint8_t *)head + at, rest);
  free(head);
}

static void on_event(conn *c, uint32_t ev) {
  if (wsc_conn_connecting(&cl, &c->w, ev)) return;
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
    size_t n = wsc_conn_recv(&cl, &c->w, readbuf + CARRY_MAX, READ_SIZE);
    if (n && c->w.state == WSC_HANDSHAKE)
      on_head(c, readbuf + CARRY_MAX, n);
    else if (n)
      on_data(c, n, wsc_now_ns());
  }
  if (c->w.state != WSC_DONE && (ev & EPOLLOUT)) flush(c);
}

/* ---- process readings (the server, via --pid) --------------------------- */

typedef struct reading {
  double user_s, sys_s;   /* /proc/PID/stat utime, stime (all threads) */
  long long syscw, syscr; /* /proc/PID/io: write and read syscalls */
  double self_s;          /* this process's CPU time */
  uint64_t t_ns;
} reading;

static void read_stat(long pid, reading *r) {
  unsigned long long ut, st;
  if (wsc_read_ticks(pid, &ut, &st))
    wsc_die(EXIT_PROTO, "cannot read or parse /proc/%ld/stat: %s", pid, strerror(errno));
  double tick = (double)sysconf(_SC_CLK_TCK);
  r->user_s = (double)ut / tick;
  r->sys_s = (double)st / tick;
}

static void take_reading(reading *r) {
  r->self_s = wsc_self_cpu_s();
  r->t_ns = wsc_now_ns();
  r->user_s = r->sys_s = -1;
  r->syscw = r->syscr = -1;
  if (cfg.pid) {
    read_stat(cfg.pid, r);
    wsc_read_io(cfg.pid, &r->syscr, &r->syscw);
  }
}

/* ---- the run -------------------------------------------------------------- */

static int stalled;

/* Runs the event loop until deadline (seconds, monotonic), until done() says
 * so, or until deliveries stop for STALL_S with publishes in flight. */
static void run_until(double deadline, int (*done)(void)) {
  static struct epoll_event evs[1024];
  conn *pub = cfg.mode == M_FANOUT ? &conns[cfg.conns - 1] : NULL;
  for (;;) {
    if (done && done()) return;
    double now = wsc_now_s();
    if (now >= deadline) return;
    if (in_flight && (double)last_progress * 1e-9 + STALL_S < now) {
      stalled = 1;
      return;
    }
    int ms = cfg.rate > 0 && sending ? 1 : 50;
    if (deadline - now < ms * 1e-3) ms = (int)((deadline - now) * 1000) + 1;
    int n = epoll_wait(cl.epfd, evs, 1024, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      wsc_die(EXIT_PROTO, "epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    if (pub && pub->ready && cfg.rate > 0) try_publish(pub);
    flush_dirty();
    /* open more connections as earlier ones become ready */
    while (cl.n_started < connect_upto && cl.n_pending_hs < MAX_PENDING_HS)
      wsc_conn_start(&cl, &conns[cl.n_started].w);
  }
}

static int all_ready(void) { return n_ready == connect_upto; }
static int all_done(void) { return cl.n_done == cfg.conns; }
static int drained(void) { return in_flight == 0; }

static void close_all(void) {
  static const uint8_t bye[2] = {1000 >> 8, 1000 & 255};
  sending = 0;
  in_flight = 0; /* what is still due is counted already; no stall watch now */
  for (int i = 0; i < cfg.conns; i++) {
    conn *c = &conns[i];
    if (c->w.state != WSC_OPEN) continue;
    queue_frame(c, 8, bye, 2);
    c->w.state = WSC_CLOSING;
  }
  flush_dirty();
  run_until(wsc_now_s() + CLOSE_LIMIT_S, all_done);
}

/* Opens the connections (in fanout mode the publisher last, once every
 * subscriber is ready, so that it comes last in a server's list). */
static double open_all(void) {
  double t0 = wsc_now_s();
  connect_upto = cfg.mode == M_FANOUT ? cfg.conns - 1 : cfg.conns;
  for (int round = 0; round < 2; round++) {
    while (cl.n_started < connect_upto && cl.n_pending_hs < MAX_PENDING_HS)
      wsc_conn_start(&cl, &conns[cl.n_started].w);
    run_until(t0 + CONNECT_LIMIT_S, all_ready);
    if (!all_ready())
      wsc_die(EXIT_PROTO, "only %d of %d connections were ready within %d s (%d open)", n_ready,
              connect_upto, CONNECT_LIMIT_S, cl.n_open);
    connect_upto = cfg.conns;
  }
  return wsc_now_s() - t0;
}

static void usage(void) {
  fputs("usage: fanout ws://127.0.0.1:PORT/ [--mode fanout|chat|idle] [--conns N] [--size S]\n"
        "              [--window W] [--rate R] [--duration D] [--warmup W] [--pid PID]\n",
        stderr);
  exit(EXIT_USAGE);
}

static void parse_args(int argc, char **argv) {
  const char *url = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      if (url) usage();
      url = a;
      continue;
    }
    if (!v) usage();
    i++;
    if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "fanout"))
        cfg.mode = M_FANOUT;
      else if (!strcmp(v, "chat"))
        cfg.mode = M_CHAT;
      else if (!strcmp(v, "idle"))
        cfg.mode = M_IDLE;
      else
        wsc_die(EXIT_USAGE, "mode must be fanout, chat or idle");
    } else if (!strcmp(a, "--conns"))
      cfg.conns = (int)wsc_num_arg(v, 2, 60000, "--conns");
    else if (!strcmp(a, "--size"))
      cfg.size = (size_t)wsc_num_arg(v, 20, 125, "--size");
    else if (!strcmp(a, "--window"))
      cfg.window = (int)wsc_num_arg(v, 1, 100000, "--window");
    else if (!strcmp(a, "--rate"))
      cfg.rate = wsc_num_arg(v, 0, 1e9, "--rate");
    else if (!wsc_run_opt(a, v, &cfg.duration, &cfg.warmup, &cfg.pid))
      usage();
  }
  if (!url) usage();
  wsc_parse_url(url, &cfg.port, cfg.path, sizeof cfg.path);
  if (cfg.duration < 0) cfg.duration = cfg.mode == M_IDLE ? 1 : 3;
  if (!cfg.window) cfg.window = cfg.mode == M_CHAT ? 1 : 16;
  if (cfg.mode == M_CHAT && cfg.conns > MAX_CHAT)
    wsc_die(EXIT_USAGE, "chat mode tracks N x N sequence numbers: at most %d connections",
            MAX_CHAT);
  if (cfg.rate > 0 && cfg.mode != M_FANOUT) wsc_die(EXIT_USAGE, "--rate is for fanout mode");
}

static void raise_nofile(void) {
  struct rlimit rl;
  rlim_t want = (rlim_t)cfg.conns + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  if (rl.rlim_cur >= want) return;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want)
    wsc_die(EXIT_USAGE, "%d connections need %lu file descriptors; the hard limit is %lu",
            cfg.conns, (unsigned long)want, (unsigned long)rl.rlim_max);
}

static void setup(void) {
  wsc_rng_seed();
  cl.epfd = epoll_create1(EPOLL_CLOEXEC);
  cl.port = cfg.port;
  cl.path = cfg.path;
  if (cl.epfd < 0) wsc_die(EXIT_PROTO, "epoll_create1: %s", strerror(errno));
  conns = wsc_xcalloc((size_t)cfg.conns, sizeof *conns);
  dirty = wsc_xcalloc((size_t)cfg.conns, sizeof *dirty);
  for (int i = 0; i < cfg.conns; i++) conns[i].w.idx = i, conns[i].w.fd = -1;
  if (cfg.mode == M_IDLE) return;
  receivers = cfg.mode == M_CHAT ? cfg.conns - 1 : cfg.conns;
  size_t cols = cfg.mode == M_CHAT ? (size_t)cfg.conns : 1;
  expect = wsc_xcalloc((size_t)cfg.conns * cols, sizeof *expect);
  for (int i = 0; i < cfg.conns; i++)
    if (cfg.mode == M_CHAT || i == cfg.conns - 1)
      conns[i].cnt = wsc_xcalloc((size_t)cfg.window, sizeof *conns[i].cnt);
}

static int idle_run(double connect_s, long rss0) {
  run_until(wsc_now_s() + cfg.duration, NULL);
  if (cl.n_open != cfg.conns) wsc_die(EXIT_PROTO, "connections were lost while idle");
  long rss1 = cfg.pid ? wsc_read_rss_kb(cfg.pid) : -1;
  close_all();
  printf("mode=idle conns=%d connect_s=%.2f rss_before_kb=%ld rss_idle_kb=%ld bytes_per_conn=%.0f "
         "unclean_closes=%d\n",
         cfg.conns, connect_s, rss0, rss1,
         rss0 > 0 && rss1 > 0 ? (double)(rss1 - rss0) * 1024.0 / cfg.conns : -1.0,
         cfg.conns - cl.n_done);
  return 0;
}

/* Receivers' tails: what each still expected when publishing stopped. */
static uint64_t missing_tail(void) {
  uint64_t n = 0;
  for (int r = 0; r < cfg.conns; r++) {
    if (cfg.mode == M_FANOUT) {
      n += conns[cfg.conns - 1].tx - expect[r];
      continue;
    }
    for (int s = 0; s < cfg.conns; s++)
      if (s != r) n += conns[s].tx - expect[(size_t)r * (size_t)cfg.conns + (size_t)s];
  }
  return n;
}

static void report(const reading *a, const reading *b, double connect_s, uint64_t tail) {
  double secs = (double)(b->t_ns - a->t_ns) * 1e-9, d = (double)(deliveries ? deliveries : 1);
  double user = b->user_s - a->user_s, sys = b->sys_s - a->sys_s;
  long long w = b->syscw - a->syscw, rd = b->syscr - a->syscr;
  int have_cpu = cfg.pid && a->user_s >= 0, have_io = cfg.pid && a->syscw >= 0;
  printf("mode=%s conns=%d size=%zu window=%d rate=%.0f seconds=%.2f connect_s=%.2f "
         "publishes=%llu deliveries=%llu deliveries_per_s=%.0f p50_us=%llu p99_us=%llu "
         "max_us=%llu lost=%llu out_of_order=%llu stalled=%d client_cpu=%.2f",
         cfg.mode == M_CHAT ? "chat" : "fanout", cfg.conns, cfg.size, cfg.window, cfg.rate, secs,
         connect_s, (unsigned long long)publishes, (unsigned long long)deliveries,
         (double)deliveries / secs, (unsigned long long)wsc_hist_pct(&hist, 0.50),
         (unsigned long long)wsc_hist_pct(&hist, 0.99), (unsigned long long)hist.max,
         (unsigned long long)(lost + tail), (unsigned long long)out_of_order, stalled,
         (b->self_s - a->self_s) / secs);
  if (have_cpu)
    printf(" server_cpu=%.2f server_ns_per_delivery=%.1f server_user_ns=%.1f server_sys_ns=%.1f",
           (user + sys) / secs, (user + sys) * 1e9 / d, user * 1e9 / d, sys * 1e9 / d);
  if (have_io)
    printf(" server_writes=%lld deliveries_per_write=%.1f server_reads=%lld", w,
           w > 0 ? (double)deliveries / (double)w : 0.0, rd);
  printf(" unclean_closes=%d\n", cfg.conns - cl.n_done);
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  raise_nofile();
  /* a hard bound on the whole run, whatever happens */
  wsc_time_limit((unsigned)(CONNECT_LIMIT_S + cfg.warmup + cfg.duration + DRAIN_LIMIT_S +
                            2 * CLOSE_LIMIT_S + 15));
  setup();

  long rss0 = cfg.mode == M_IDLE && cfg.pid ? wsc_read_rss_kb(cfg.pid) : -1;
  double connect_s = open_all();
  if (cfg.mode == M_IDLE) return idle_run(connect_s, rss0);

  sending = 1;
  t_publish0 = last_progress = wsc_now_ns();
  for (int i = 0; i < cfg.conns; i++)
    if (conns[i].cnt) try_publish(&conns[i]);
  flush_dirty();
  run_until(wsc_now_s() + cfg.warmup, NULL);
  reading a, b;
  take_reading(&a);
  measuring = 1;
  run_until(wsc_now_s() + cfg.duration, NULL);
  measuring = 0;
  take_reading(&b);
  sending = 0;
  if (!stalled) run_until(wsc_now_s() + DRAIN_LIMIT_S, drained);
  if (cl.n_open != cfg.conns) wsc_die(EXIT_PROTO, "connections were lost during the run");
  uint64_t tail = missing_tail();
  if (deliveries == 0 && !stalled && !(lost + tail + out_of_order))
    wsc_die(EXIT_PROTO, "no delivery at all during the measurement");
  close_all();
  report(&a, &b, connect_s, tail);
  return lost + tail + out_of_order || stalled ? EXIT_LOST : 0;
}
