/* loadgen: a single-threaded WebSocket (RFC 6455) load generator for the
 * duplex benchmarks. Plain epoll, no dependencies beyond libc.
 *
 *   loadgen ws://127.0.0.1:PORT/ [options]
 *
 *   --mode echo|idle   echo: every connection keeps K messages in flight
 *                      (send K, then one more per echo received); idle: open
 *                      the connections and hold them (server memory)
 *   --conns N          connections (default 100)
 *   --size S           payload bytes per message (default 16)
 *   --inflight K       messages in flight per connection (default 16)
 *   --duration D       measured seconds (echo; default 5) or hold time before
 *                      the memory reading (idle; default 1)
 *   --warmup W         seconds before the measurement starts (default 1)
 *   --text             send text messages (ASCII) instead of binary
 *   --pid PID          server process: report its CPU use over the window
 *                      (echo) and its VmRSS before/after (idle)
 *
 * It prints one line of key=value results on stdout. It only ever connects
 * to 127.0.0.1, stops itself after a bounded time (exit 3), and exits 2 on
 * any protocol error (bad handshake, bad frame, wrong or lost echo). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "wsclient.h"

const char wsc_prog[] = "loadgen";

enum { READ_SIZE = 256 * 1024, MAX_PENDING_HS = 128, TEMPLATES = 64 };
enum { CONNECT_LIMIT_S = 60, CLOSE_LIMIT_S = 3 };

static wsc_hist hist; /* latency of the counted echoes */

/* ---- configuration ------------------------------------------------------ */

static struct {
  int port;
  char path[256];
  int idle;
  int conns;
  size_t size;
  int inflight;
  double duration, warmup;
  int text;
  long pid;
} cfg = {0, "/", 0, 100, 16, 16, -1, 1, 0, 0};

/* ---- connections -------------------------------------------------------- */

typedef struct conn {
  wsc_conn w; /* first: epoll's data.ptr is both */
  /* frame parser */
  uint8_t hdr[14];
  int hdr_len;
  uint64_t remaining;
  int opcode, fin;
  uint64_t msg_len; /* bytes of the current message so far */
  int msg_opcode;
  uint8_t seq_got[8];
  uint8_t ctl[125];
  size_t ctl_len;
  /* echo */
  uint64_t tx_seq, rx_seq;
  uint64_t *ts; /* send times of the messages in flight, a ring of inflight */
} conn;

static conn *conns;
static wsc_client cl;
static uint64_t rx_msgs, rx_bytes; /* counted echoes */
static int measuring, sending = 1, closing;
static uint64_t now_cached; /* ns, refreshed per event batch */

/* Frame templates: header + masked payload, TEMPLATES of them with their own
 * random mask key; the 8-byte sequence number at the head of the payload is
 * masked in per send. */
static uint8_t *tmpl[TEMPLATES];
static size_t tmpl_len, tmpl_hdr;

static void seq_bytes(uint64_t seq, uint8_t out[8]) {
  if (cfg.text) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)hex[(seq >> (28 - 4 * i)) & 15];
  } else {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(seq >> (8 * i));
  }
}

static void build_templates(void) {
  uint8_t *payload = wsc_xmalloc(cfg.size);
  for (size_t i = 0; i < cfg.size; i++)
    payload[i] = (uint8_t)(cfg.text ? 'a' + i % 26 : i * 31 + 7);
  for (int t = 0; t < TEMPLATES; t++) {
    uint8_t mask[4], h[14];
    uint64_t r = wsc_rng();
    memcpy(mask, &r, 4);
    tmpl_hdr = wsc_encode_header(h, cfg.text ? 1 : 2, cfg.size, mask);
    tmpl_len = tmpl_hdr + cfg.size;
    tmpl[t] = wsc_xmalloc(tmpl_len);
    memcpy(tmpl[t], h, tmpl_hdr);
    for (size_t i = 0; i < cfg.size; i++) tmpl[t][tmpl_hdr + i] = payload[i] ^ mask[i & 3];
  }
  free(payload);
}

static void queue_message(conn *c) {
  wsc_buf_reserve(&c->w.out, tmpl_len);
  uint64_t seq = c->tx_seq++;
  const uint8_t *t = tmpl[seq % TEMPLATES];
  uint8_t *dst = c->w.out.p + c->w.out.len;
  memcpy(dst, t, tmpl_len);
  if (cfg.size >= 8) {
    uint8_t s[8];
    const uint8_t *mask = t + tmpl_hdr - 4;
    seq_bytes(seq, s);
    for (int i = 0; i < 8; i++) dst[tmpl_hdr + i] = s[i] ^ mask[i & 3];
  }
  c->w.out.len += tmpl_len;
  c->ts[seq % (uint64_t)cfg.inflight] = now_cached;
}

static void queue_control(conn *c, int opcode, const uint8_t *data, size_t n) {
  uint8_t h[14], mask[4], body[125];
  uint64_t r = wsc_rng();
  memcpy(mask, &r, 4);
  size_t hl = wsc_encode_header(h, opcode, n, mask);
  for (size_t i = 0; i < n; i++) body[i] = data[i] ^ mask[i & 3];
  wsc_buf_append(&c->w.out, h, hl);
  wsc_buf_append(&c->w.out, body, n);
}

static int flush(conn *c) { return wsc_conn_flush(&cl, &c->w); }

static void on_open(conn *c) {
  c->w.state = WSC_OPEN;
  cl.n_open++;
  cl.n_pending_hs--;
  c->ts = wsc_xmalloc(sizeof *c->ts * (size_t)cfg.inflight);
  if (!cfg.idle && sending)
    for (int i = 0; i < cfg.inflight; i++) queue_message(c);
}

/* A whole message arrived (the echo of tx number rx_seq). */
static void on_message(conn *c) {
  if (c->w.state == WSC_CLOSING) return; /* late echoes during the close */
  if (c->msg_len != cfg.size)
    wsc_die(EXIT_PROTO, "conn %d: echo of %llu bytes, expected %zu", c->w.idx,
            (unsigned long long)c->msg_len, cfg.size);
  if (c->msg_opcode != (cfg.text ? 1 : 2))
    wsc_die(EXIT_PROTO, "conn %d: echo with opcode %d", c->w.idx, c->msg_opcode);
  if (c->rx_seq >= c->tx_seq) wsc_die(EXIT_PROTO, "conn %d: an echo of nothing we sent", c->w.idx);
  if (cfg.size >= 8) {
    uint8_t want[8];
    seq_bytes(c->rx_seq, want);
    if (memcmp(want, c->seq_got, 8))
      wsc_die(EXIT_PROTO, "conn %d: echo %llu out of order or corrupt", c->w.idx,
              (unsigned long long)c->rx_seq);
  }
  uint64_t sent = c->ts[c->rx_seq % (uint64_t)cfg.inflight];
  c->rx_seq++;
  if (measuring) {
    rx_msgs++;
    rx_bytes += cfg.size;
    wsc_hist_add(&hist, (now_cached - sent) / 1000);
  }
  if (!cfg.idle && sending) queue_message(c);
}

static void on_control(conn *c) {
  if (c->opcode == 9) { /* ping: answer */
    if (c->w.state == WSC_OPEN) queue_control(c, 10, c->ctl, c->ctl_len);
  } else if (c->opcode == 8) {
    if (c->w.state != WSC_CLOSING) {
      unsigned code = c->ctl_len >= 2 ? (unsigned)c->ctl[0] << 8 | c->ctl[1] : 1005;
      wsc_die(EXIT_PROTO, "conn %d: the server closed the connection (code %u: %.*s)", c->w.idx,
              code, c->ctl_len > 2 ? (int)c->ctl_len - 2 : 0, (const char *)c->ctl + 2);
    }
    wsc_conn_finish(&cl, &c->w); /* our close went first; this is the answer */
  }
}

static size_t header_size(uint8_t b1) {
  size_t n = 2 + ((b1 & 0x80) ? 4 : 0);
  if ((b1 & 0x7F) == 126) return n + 2;
  if ((b1 & 0x7F) == 127) return n + 8;
  return n;
}

/* Checks a whole header in h and sets up the frame. */
static void parse_header(conn *c, const uint8_t *h) {
  int op = h[0] & 15;
  if (h[0] & 0x70) wsc_die(EXIT_PROTO, "conn %d: reserved bits set", c->w.idx);
  if (h[1] & 0x80) wsc_die(EXIT_PROTO, "conn %d: masked frame from the server", c->w.idx);
  uint64_t len = h[1] & 0x7F;
  if (len == 126)
    len = (uint64_t)h[2] << 8 | h[3];
  else if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; i++) len = len << 8 | h[i];
  }
  c->fin = h[0] >> 7;
  c->opcode = op;
  c->remaining = len;
  if (op >= 8) {
    if (op > 10 || !c->fin || len > 125)
      wsc_die(EXIT_PROTO, "conn %d: bad control frame", c->w.idx);
    c->ctl_len = 0;
  } else if (op == 0) {
    if (!c->msg_opcode) wsc_die(EXIT_PROTO, "conn %d: continuation without a message", c->w.idx);
  } else if (op == 1 || op == 2) {
    if (c->msg_opcode) wsc_die(EXIT_PROTO, "conn %d: new message inside a message", c->w.idx);
    c->msg_opcode = op;
    c->msg_len = 0;
  } else {
    wsc_die(EXIT_PROTO, "conn %d: reserved opcode %d", c->w.idx, op);
  }
}

static void frame_done(conn *c) {
  if (c->opcode >= 8) {
    on_control(c);
  } else if (c->fin) {
    on_message(c);
    c->msg_opcode = 0;
  }
}

/* Streams frames from d[0..n): nothing is buffered but control payloads. */
static void feed(conn *c, const uint8_t *d, size_t n) {
  size_t i = 0;
  while (i < n && c->w.state != WSC_DONE) {
    if (c->remaining == 0) { /* gather a header */
      if (c->hdr_len == 0 && n - i >= 2 && n - i >= header_size(d[i + 1])) {
        size_t hs = header_size(d[i + 1]);
        parse_header(c, d + i);
        i += hs;
      } else {
        c->hdr[c->hdr_len++] = d[i++];
        if (c->hdr_len < 2 || (size_t)c->hdr_len < header_size(c->hdr[1])) continue;
        c->hdr_len = 0;
        parse_header(c, c->hdr);
      }
      if (c->remaining == 0) frame_done(c);
      continue;
    }
    size_t k = n - i < c->remaining ? n - i : (size_t)c->remaining;
    if (c->opcode >= 8) {
      memcpy(c->ctl + c->ctl_len, d + i, k);
      c->ctl_len += k;
    } else {
      if (c->msg_len < 8) { /* the sequence number at the head of the payload */
        size_t take = 8 - c->msg_len < k ? 8 - c->msg_len : k;
        memcpy(c->seq_got + c->msg_len, d + i, take);
      }
      c->msg_len += k;
      if (c->msg_len > cfg.size) wsc_die(EXIT_PROTO, "conn %d: echo longer than sent", c->w.idx);
    }
    i += k;
    c->remaining -= k;
    if (c->remaining == 0) frame_done(c);
  }
}

static void on_head(conn *c, const uint8_t *d, size_t n) {
  size_t at, rest;
  char *head = wsc_conn_head(&c->w, d, n, &at, &rest);
  if (!head) return;
  on_open(c);
  if (rest) feed(c, (const uint8_t *)head + at, rest);
  free(head);
}

static uint8_t readbuf[READ_SIZE];

static void on_event(conn *c, uint32_t ev) {
  if (wsc_conn_connecting(&cl, &c->w, ev)) return;
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
    size_t n = wsc_conn_recv(&cl, &c->w, readbuf, sizeof readbuf);
    if (n && c->w.state == WSC_HANDSHAKE)
      on_head(c, readbuf, n);
    else if (n)
      feed(c, readbuf, n);
  }
  if (c->w.state != WSC_DONE) flush(c);
}

/* ---- process readings (the server, via --pid) --------------------------- */

static double read_cpu_s(long pid) { /* utime + stime of pid */
  unsigned long long ut, st;
  if (wsc_read_ticks(pid, &ut, &st)) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the run -------------------------------------------------------------- */

/* Runs the event loop until deadline (seconds, monotonic) or until done()
 * says so. */
static void run_until(double deadline, int (*done)(void)) {
  struct epoll_event evs[256];
  for (;;) {
    if (done && done()) return;
    double left = deadline - wsc_now_s();
    if (left <= 0) return;
    int ms = left > 0.05 ? 50 : (int)(left * 1000) + 1;
    int n = epoll_wait(cl.epfd, evs, 256, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      wsc_die(EXIT_PROTO, "epoll_wait: %s", strerror(errno));
    }
    now_cached = wsc_now_ns();
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    /* open more connections as handshakes finish */
    while (cl.n_started < cfg.conns && cl.n_pending_hs < MAX_PENDING_HS)
      wsc_conn_start(&cl, &conns[cl.n_started].w);
  }
}

static int all_open(void) { return cl.n_open == cfg.conns; }
static int all_done(void) { return cl.n_done == cfg.conns; }
static uint64_t echo_target;
static int all_echoed(void) {
  uint64_t got = 0;
  for (int i = 0; i < cfg.conns; i++) got += conns[i].rx_seq;
  return got >= echo_target;
}

static void close_all(void) {
  closing = 1;
  sending = 0;
  for (int i = 0; i < cfg.conns; i++) {
    conn *c = &conns[i];
    if (c->w.state != WSC_OPEN) continue;
    static const uint8_t bye[2] = {1000 >> 8, 1000 & 255};
    queue_control(c, 8, bye, 2);
    c->w.state = WSC_CLOSING;
    flush(c);
  }
  run_until(wsc_now_s() + CLOSE_LIMIT_S, all_done);
}

static void usage(void) {
  fputs("usage: loadgen ws://127.0.0.1:PORT/ [--mode echo|idle] [--conns N] [--size S]\n"
        "               [--inflight K] [--duration D] [--warmup W] [--text] [--pid PID]\n",
        stderr);
  exit(EXIT_USAGE);
}

int main(int argc, char **argv) {
  const char *url = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--text")) {
      cfg.text = 1;
      continue;
    }
    if (a[0] != '-') {
      if (url) usage();
      url = a;
      continue;
    }
    if (!v) usage();
    i++;
    if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "idle"))
        cfg.idle = 1;
      else if (strcmp(v, "echo"))
        wsc_die(EXIT_USAGE, "mode must be echo or idle");
    } else if (!strcmp(a, "--conns"))
      cfg.conns = (int)wsc_num_arg(v, 1, 60000, "--conns");
    else if (!strcmp(a, "--size"))
      cfg.size = (size_t)wsc_num_arg(v, 0, 16 << 20, "--size");
    else if (!strcmp(a, "--inflight"))
      cfg.inflight = (int)wsc_num_arg(v, 1, 4096, "--inflight");
    else if (!wsc_run_opt(a, v, &cfg.duration, &cfg.warmup, &cfg.pid))
      usage();
  }
  if (!url) usage();
  wsc_parse_url(url, &cfg.port, cfg.path, sizeof cfg.path);
  if (cfg.duration < 0) cfg.duration = cfg.idle ? 1 : 5;

  /* a hard bound on the whole run, whatever happens */
  wsc_time_limit((unsigned)(CONNECT_LIMIT_S + cfg.warmup + cfg.duration + 2 * CLOSE_LIMIT_S + 15));
  wsc_rng_seed();
  build_templates();
  cl.epfd = epoll_create1(EPOLL_CLOEXEC);
  cl.port = cfg.port;
  cl.path = cfg.path;
  conns = wsc_xcalloc((size_t)cfg.conns, sizeof *conns);
  for (int i = 0; i < cfg.conns; i++) conns[i].w.idx = i, conns[i].w.fd = -1;

  long rss0 = cfg.pid ? wsc_read_rss_kb(cfg.pid) : -1;
  double t0 = wsc_now_s();
  now_cached = wsc_now_ns();
  while (cl.n_started < cfg.conns && cl.n_pending_hs < MAX_PENDING_HS)
    wsc_conn_start(&cl, &conns[cl.n_started].w);
  run_until(t0 + CONNECT_LIMIT_S, all_open);
  if (!all_open())
    wsc_die(EXIT_PROTO, "only %d of %d connections opened within %d s", cl.n_open, cfg.conns,
            CONNECT_LIMIT_S);
  double connect_s = wsc_now_s() - t0;

  if (cfg.idle) {
    run_until(wsc_now_s() + cfg.duration, NULL);
    if (cl.n_open != cfg.conns) wsc_die(EXIT_PROTO, "connections were lost while idle");
    long rss1 = cfg.pid ? wsc_read_rss_kb(cfg.pid) : -1;
    /* now one message on each connection, to see that all are alive and
     * what an idle connection costs after it has been used once */
    now_cached = wsc_now_ns();
    for (int i = 0; i < cfg.conns; i++) {
      queue_message(&conns[i]);
      flush(&conns[i]);
    }
    echo_target = (uint64_t)cfg.conns;
    run_until(wsc_now_s() + 20, all_echoed);
    if (!all_echoed()) {
      uint64_t got = 0;
      for (int i = 0; i < cfg.conns; i++) got += conns[i].rx_seq;
      wsc_die(EXIT_PROTO, "only %llu of %d idle connections echoed their message within 20 s",
              (unsigned long long)got, cfg.conns);
    }
    run_until(wsc_now_s() + 0.5, NULL);
    long rss2 = cfg.pid ? wsc_read_rss_kb(cfg.pid) : -1;
    close_all();
    printf("mode=idle conns=%d connect_s=%.2f rss_before_kb=%ld rss_idle_kb=%ld rss_used_kb=%ld "
           "bytes_per_conn=%.0f bytes_per_conn_used=%.0f unclean_closes=%d\n",
           cfg.conns, connect_s, rss0, rss1, rss2,
           rss0 > 0 ? (double)(rss1 - rss0) * 1024.0 / cfg.conns : -1.0,
           rss0 > 0 ? (double)(rss2 - rss0) * 1024.0 / cfg.conns : -1.0, cfg.conns - cl.n_done);
    return 0;
  }

  if (cfg.size < 8 && cfg.inflight > 1)
    fputs("loadgen: note: messages under 8 bytes carry no sequence number; order is not checked\n",
          stderr);
  run_until(wsc_now_s() + cfg.warmup, NULL);
  measuring = 1;
  double w0 = wsc_now_s(), c0 = wsc_self_cpu_s(), s0 = cfg.pid ? read_cpu_s(cfg.pid) : -1;
  run_until(w0 + cfg.duration, NULL);
  measuring = 0;
  double w1 = wsc_now_s(), c1 = wsc_self_cpu_s(), s1 = cfg.pid ? read_cpu_s(cfg.pid) : -1;
  if (cl.n_open != cfg.conns) wsc_die(EXIT_PROTO, "connections were lost during the run");
  double secs = w1 - w0;
  if (rx_msgs == 0) wsc_die(EXIT_PROTO, "no echo at all during the measurement");
  close_all();
  printf("mode=echo conns=%d size=%zu inflight=%d seconds=%.2f msgs=%llu msgs_per_s=%.0f "
         "mb_per_s=%.1f p50_us=%llu p99_us=%llu max_us=%llu client_cpu=%.2f server_cpu=%.2f "
         "unclean_closes=%d\n",
         cfg.conns, cfg.size, cfg.inflight, secs, (unsigned long long)rx_msgs,
         (double)rx_msgs / secs, (double)rx_bytes / secs / 1e6,
         (unsigned long long)wsc_hist_pct(&hist, 0.50),
         (unsigned long long)wsc_hist_pct(&hist, 0.99), (unsigned long long)hist.max,
         (c1 - c0) / secs, s0 >= 0 ? (s1 - s0) / secs : -1.0, cfg.conns - cl.n_done);
  return 0;
}
