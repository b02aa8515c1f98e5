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
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 1, EXIT_PROTO = 2, EXIT_TIMEOUT = 3 };
enum { READ_SIZE = 256 * 1024, MAX_PENDING_HS = 128, TEMPLATES = 64 };
enum { CONNECT_LIMIT_S = 60, CLOSE_LIMIT_S = 3 };

/* ---- small helpers ------------------------------------------------------ */

static void die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(code);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "loadgen: time limit reached, giving up\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(EXIT_TIMEOUT);
}

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64*: mask keys need not be crypto here */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die(EXIT_PROTO, "out of memory");
  return p;
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ------------------------ */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t total = ((len + 8) / 64 + 1) * 64;
  uint8_t *m = xmalloc(total);
  memcpy(m, msg, len);
  memset(m + len, 0, total - len);
  m[len] = 0x80;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) m[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t off = 0; off < total; off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
             (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20)
        f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40)
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60)
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else
        f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  free(m);
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t n, char *out) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                 (i + 2 < n ? in[i + 2] : 0);
    out[o++] = tab[v >> 18 & 63];
    out[o++] = tab[v >> 12 & 63];
    out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? tab[v & 63] : '=';
  }
  out[o] = 0;
}

/* ---- latency histogram (microseconds, ~0.1% resolution) ---------------- */

enum { HIST_LIN = 2048, HIST_SUB = 1024, HIST_EXP = 30 };
static uint64_t hist[HIST_LIN + HIST_EXP * HIST_SUB];
static uint64_t hist_n, hist_max;

static void hist_add(uint64_t us) {
  size_t i;
  if (us < HIST_LIN) {
    i = (size_t)us;
  } else {
    int e = 63 - __builtin_clzll(us); /* >= 11 */
    if (e - 11 >= HIST_EXP) e = 11 + HIST_EXP - 1, us = ((uint64_t)2 << e) - 1;
    i = HIST_LIN + (size_t)(e - 11) * HIST_SUB + (size_t)((us >> (e - 10)) & (HIST_SUB - 1));
  }
  hist[i]++;
  hist_n++;
  if (us > hist_max) hist_max = us;
}

static uint64_t hist_value(size_t i) {
  if (i < HIST_LIN) return i;
  size_t e = (i - HIST_LIN) / HIST_SUB + 11, sub = (i - HIST_LIN) % HIST_SUB;
  return ((uint64_t)1 << e) + ((uint64_t)sub << (e - 10));
}

static uint64_t hist_pct(double p) {
  if (!hist_n) return 0;
  uint64_t want = (uint64_t)(p * (double)hist_n + 0.5), seen = 0;
  if (want < 1) want = 1;
  for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) {
    seen += hist[i];
    if (seen >= want) return hist_value(i);
  }
  return hist_max;
}

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

enum cstate { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING, C_DONE };

typedef struct conn {
  int fd, idx;
  enum cstate state;
  char accept[32];
  char *head;
  size_t head_len;
  uint8_t *out; /* pending bytes out[out_off..out_len) */
  size_t out_off, out_len, out_cap;
  int want_out;
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
static int epfd;
static int n_open, n_pending_hs, n_started, n_done;
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

static size_t encode_header(uint8_t *h, int opcode, uint64_t len, const uint8_t mask[4]) {
  size_t n = 2;
  h[0] = (uint8_t)(0x80 | opcode);
  if (len <= 125) {
    h[1] = (uint8_t)len;
  } else if (len <= 0xFFFF) {
    h[1] = 126, h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len, n = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  h[1] |= 0x80;
  memcpy(h + n, mask, 4);
  return n + 4;
}

static void build_templates(void) {
  uint8_t *payload = xmalloc(cfg.size);
  for (size_t i = 0; i < cfg.size; i++)
    payload[i] = (uint8_t)(cfg.text ? 'a' + i % 26 : i * 31 + 7);
  for (int t = 0; t < TEMPLATES; t++) {
    uint8_t mask[4], h[14];
    uint64_t r = rng();
    memcpy(mask, &r, 4);
    tmpl_hdr = encode_header(h, cfg.text ? 1 : 2, cfg.size, mask);
    tmpl_len = tmpl_hdr + cfg.size;
    tmpl[t] = xmalloc(tmpl_len);
    memcpy(tmpl[t], h, tmpl_hdr);
    for (size_t i = 0; i < cfg.size; i++) tmpl[t][tmpl_hdr + i] = payload[i] ^ mask[i & 3];
  }
  free(payload);
}

static void out_reserve(conn *c, size_t n) {
  if (c->out_off && c->out_off == c->out_len) c->out_off = c->out_len = 0;
  if (c->out_cap - c->out_len >= n) return;
  if (c->out_off) { /* slide the pending bytes down first */
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
    if (c->out_cap - c->out_len >= n) return;
  }
  size_t cap = c->out_cap ? c->out_cap : 4096;
  while (cap - c->out_len < n) cap *= 2;
  c->out = realloc(c->out, cap);
  if (!c->out) die(EXIT_PROTO, "out of memory");
  c->out_cap = cap;
}

static void out_append(conn *c, const void *p, size_t n) {
  out_reserve(c, n);
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
}

static void queue_message(conn *c) {
  out_reserve(c, tmpl_len);
  uint64_t seq = c->tx_seq++;
  const uint8_t *t = tmpl[seq % TEMPLATES];
  uint8_t *dst = c->out + c->out_len;
  memcpy(dst, t, tmpl_len);
  if (cfg.size >= 8) {
    uint8_t s[8];
    const uint8_t *mask = t + tmpl_hdr - 4;
    seq_bytes(seq, s);
    for (int i = 0; i < 8; i++) dst[tmpl_hdr + i] = s[i] ^ mask[i & 3];
  }
  c->out_len += tmpl_len;
  c->ts[seq % (uint64_t)cfg.inflight] = now_cached;
}

static void queue_control(conn *c, int opcode, const uint8_t *data, size_t n) {
  uint8_t h[14], mask[4], body[125];
  uint64_t r = rng();
  memcpy(mask, &r, 4);
  size_t hl = encode_header(h, opcode, n, mask);
  for (size_t i = 0; i < n; i++) body[i] = data[i] ^ mask[i & 3];
  out_append(c, h, hl);
  out_append(c, body, n);
}

static void set_events(conn *c, int want_out) {
  if (c->want_out == want_out) return;
  struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev)) die(EXIT_PROTO, "epoll_ctl: %s", strerror(errno));
  c->want_out = want_out;
}

static void finish(conn *c) {
  if (c->state == C_DONE) return;
  if (c->state == C_OPEN || c->state == C_CLOSING) n_open--;
  c->state = C_DONE;
  close(c->fd);
  c->fd = -1;
  n_done++;
  free(c->out);
  c->out = NULL;
  c->out_cap = c->out_len = c->out_off = 0;
}

/* Writes what is pending; returns -1 when the connection is gone. */
static int flush(conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      if (c->state == C_CLOSING) {
        finish(c);
        return -1;
      }
      die(EXIT_PROTO, "conn %d: send: %s", c->idx, strerror(errno));
    }
    c->out_off += (size_t)n;
  }
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
  set_events(c, c->out_len > 0);
  return 0;
}

static void start_connect(conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die(EXIT_PROTO, "socket: %s (raise ulimit -n?)", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1, never anything else */
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
    die(EXIT_PROTO, "conn %d: connect: %s", c->idx, strerror(errno));
  c->state = C_CONNECTING;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev)) die(EXIT_PROTO, "epoll_ctl: %s", strerror(errno));
  c->want_out = 1;
  n_pending_hs++;
  n_started++;
}

static void send_request(conn *c) {
  uint8_t raw[16], digest[20];
  char key[32], cat[80], req[512];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) die(EXIT_PROTO, "getrandom failed");
  base64(raw, sizeof raw, key);
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  sha1((const uint8_t *)cat, strlen(cat), digest);
  base64(digest, sizeof digest, c->accept);
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   cfg.path, cfg.port, key);
  out_append(c, req, (size_t)n);
  c->state = C_HANDSHAKE;
  flush(c);
}

static void on_open(conn *c) {
  c->state = C_OPEN;
  n_open++;
  n_pending_hs--;
  c->ts = xmalloc(sizeof *c->ts * (size_t)cfg.inflight);
  if (!cfg.idle && sending)
    for (int i = 0; i < cfg.inflight; i++) queue_message(c);
}

/* A whole message arrived (the echo of tx number rx_seq). */
static void on_message(conn *c) {
  if (c->state == C_CLOSING) return; /* late echoes during the close */
  if (c->msg_len != cfg.size)
    die(EXIT_PROTO, "conn %d: echo of %llu bytes, expected %zu", c->idx,
        (unsigned long long)c->msg_len, cfg.size);
  if (c->msg_opcode != (cfg.text ? 1 : 2))
    die(EXIT_PROTO, "conn %d: echo with opcode %d", c->idx, c->msg_opcode);
  if (c->rx_seq >= c->tx_seq) die(EXIT_PROTO, "conn %d: an echo of nothing we sent", c->idx);
  if (cfg.size >= 8) {
    uint8_t want[8];
    seq_bytes(c->rx_seq, want);
    if (memcmp(want, c->seq_got, 8))
      die(EXIT_PROTO, "conn %d: echo %llu out of order or corrupt", c->idx,
          (unsigned long long)c->rx_seq);
  }
  uint64_t sent = c->ts[c->rx_seq % (uint64_t)cfg.inflight];
  c->rx_seq++;
  if (measuring) {
    rx_msgs++;
    rx_bytes += cfg.size;
    hist_add((now_cached - sent) / 1000);
  }
  if (!cfg.idle && sending) queue_message(c);
}

static void on_control(conn *c) {
  if (c->opcode == 9) { /* ping: answer */
    if (c->state == C_OPEN) queue_control(c, 10, c->ctl, c->ctl_len);
  } else if (c->opcode == 8) {
    if (c->state != C_CLOSING) {
      unsigned code = c->ctl_len >= 2 ? (unsigned)c->ctl[0] << 8 | c->ctl[1] : 1005;
      die(EXIT_PROTO, "conn %d: the server closed the connection (code %u: %.*s)", c->idx, code,
          c->ctl_len > 2 ? (int)c->ctl_len - 2 : 0, (const char *)c->ctl + 2);
    }
    finish(c); /* our close went first; this is the answer */
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
  if (h[0] & 0x70) die(EXIT_PROTO, "conn %d: reserved bits set", c->idx);
  if (h[1] & 0x80) die(EXIT_PROTO, "conn %d: masked frame from the server", c->idx);
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
    if (op > 10 || !c->fin || len > 125) die(EXIT_PROTO, "conn %d: bad control frame", c->idx);
    c->ctl_len = 0;
  } else if (op == 0) {
    if (!c->msg_opcode) die(EXIT_PROTO, "conn %d: continuation without a message", c->idx);
  } else if (op == 1 || op == 2) {
    if (c->msg_opcode) die(EXIT_PROTO, "conn %d: new message inside a message", c->idx);
    c->msg_opcode = op;
    c->msg_len = 0;
  } else {
    die(EXIT_PROTO, "conn %d: reserved opcode %d", c->idx, op);
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
  while (i < n && c->state != C_DONE) {
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
      if (c->msg_len > cfg.size) die(EXIT_PROTO, "conn %d: echo longer than sent", c->idx);
    }
    i += k;
    c->remaining -= k;
    if (c->remaining == 0) frame_done(c);
  }
}

static void on_head(conn *c, const uint8_t *d, size_t n) {
  if (c->head_len + n > 8192) die(EXIT_PROTO, "conn %d: handshake response too long", c->idx);
  c->head = realloc(c->head, c->head_len + n + 1);
  if (!c->head) die(EXIT_PROTO, "out of memory");
  memcpy(c->head + c->head_len, d, n);
  c->head_len += n;
  c->head[c->head_len] = 0;
  char *end = strstr(c->head, "\r\n\r\n");
  if (!end) return;
  size_t hl = (size_t)(end + 4 - c->head);
  if (strncmp(c->head, "HTTP/1.1 101", 12))
    die(EXIT_PROTO, "conn %d: handshake refused: %.*s", c->idx, (int)strcspn(c->head, "\r\n"),
        c->head);
  int ok = 0;
  for (char *line = strstr(c->head, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
    static const char name[] = "sec-websocket-accept:";
    if (strncasecmp(line, name, sizeof name - 1)) continue;
    char *v = line + sizeof name - 1;
    while (*v == ' ' || *v == '\t') v++;
    size_t vl = strcspn(v, "\r\n");
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    ok = vl == strlen(c->accept) && !memcmp(v, c->accept, vl);
    break;
  }
  if (!ok) die(EXIT_PROTO, "conn %d: missing or wrong Sec-WebSocket-Accept", c->idx);
  if (strcasestr(c->head, "sec-websocket-extensions"))
    die(EXIT_PROTO, "conn %d: the server chose an extension we did not offer", c->idx);
  size_t rest = c->head_len - hl;
  uint8_t *tail = NULL;
  if (rest) {
    tail = xmalloc(rest);
    memcpy(tail, c->head + hl, rest);
  }
  free(c->head);
  c->head = NULL;
  c->head_len = 0;
  on_open(c);
  if (rest) feed(c, tail, rest);
  free(tail);
}

static uint8_t readbuf[READ_SIZE];

static void on_event(conn *c, uint32_t ev) {
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) die(EXIT_PROTO, "conn %d: connect: %s", c->idx, strerror(err));
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    send_request(c);
    return;
  }
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
    ssize_t n = recv(c->fd, readbuf, sizeof readbuf, 0);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      if (c->state == C_CLOSING) {
        finish(c);
        return;
      }
      die(EXIT_PROTO, "conn %d: recv: %s", c->idx, strerror(errno));
    }
    if (n == 0) {
      if (c->state == C_CLOSING) {
        finish(c);
        return;
      }
      die(EXIT_PROTO, "conn %d: the server dropped the connection without a close frame", c->idx);
    }
    if (n > 0) {
      if (c->state == C_HANDSHAKE)
        on_head(c, readbuf, (size_t)n);
      else
        feed(c, readbuf, (size_t)n);
    }
  }
  if (c->state != C_DONE) flush(c);
}

/* ---- process readings (the server, via --pid) --------------------------- */

static long read_rss_kb(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static double read_cpu_s(long pid) { /* utime + stime of pid */
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* fields after the command: state(3) ... utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* ---- the run -------------------------------------------------------------- */

/* Runs the event loop until deadline (seconds, monotonic) or until done()
 * says so. */
static void run_until(double deadline, int (*done)(void)) {
  struct epoll_event evs[256];
  for (;;) {
    if (done && done()) return;
    double left = deadline - now_s();
    if (left <= 0) return;
    int ms = left > 0.05 ? 50 : (int)(left * 1000) + 1;
    int n = epoll_wait(epfd, evs, 256, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      die(EXIT_PROTO, "epoll_wait: %s", strerror(errno));
    }
    now_cached = now_ns();
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    /* open more connections as handshakes finish */
    while (n_started < cfg.conns && n_pending_hs < MAX_PENDING_HS) start_connect(&conns[n_started]);
  }
}

static int all_open(void) { return n_open == cfg.conns; }
static int all_done(void) { return n_done == cfg.conns; }
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
    if (c->state != C_OPEN) continue;
    static const uint8_t bye[2] = {1000 >> 8, 1000 & 255};
    queue_control(c, 8, bye, 2);
    c->state = C_CLOSING;
    flush(c);
  }
  run_until(now_s() + CLOSE_LIMIT_S, all_done);
}

static void usage(void) {
  fputs("usage: loadgen ws://127.0.0.1:PORT/ [--mode echo|idle] [--conns N] [--size S]\n"
        "               [--inflight K] [--duration D] [--warmup W] [--text] [--pid PID]\n",
        stderr);
  exit(EXIT_USAGE);
}

static void parse_url(const char *u) {
  const char *p;
  if (strncmp(u, "ws://", 5)) die(EXIT_USAGE, "only ws:// URLs (got %s)", u);
  p = u + 5;
  if (!strncmp(p, "127.0.0.1:", 10))
    p += 10;
  else if (!strncmp(p, "localhost:", 10))
    p += 10;
  else
    die(EXIT_USAGE, "refusing to connect anywhere but 127.0.0.1 (got %s)", u);
  char *end;
  long port = strtol(p, &end, 10);
  if (end == p || port < 1 || port > 65535) die(EXIT_USAGE, "bad port in %s", u);
  cfg.port = (int)port;
  if (*end == 0) return; /* the path stays "/" */
  if (*end != '/' || strlen(end) >= sizeof cfg.path || strpbrk(end, " \r\n"))
    die(EXIT_USAGE, "bad path in %s", u);
  strcpy(cfg.path, end);
}

static double num_arg(const char *s, double lo, double hi, const char *what) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < lo || v > hi) die(EXIT_USAGE, "bad %s: %s", what, s);
  return v;
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
        die(EXIT_USAGE, "mode must be echo or idle");
    } else if (!strcmp(a, "--conns"))
      cfg.conns = (int)num_arg(v, 1, 60000, "--conns");
    else if (!strcmp(a, "--size"))
      cfg.size = (size_t)num_arg(v, 0, 16 << 20, "--size");
    else if (!strcmp(a, "--inflight"))
      cfg.inflight = (int)num_arg(v, 1, 4096, "--inflight");
    else if (!strcmp(a, "--duration"))
      cfg.duration = num_arg(v, 0, 600, "--duration");
    else if (!strcmp(a, "--warmup"))
      cfg.warmup = num_arg(v, 0, 60, "--warmup");
    else if (!strcmp(a, "--pid"))
      cfg.pid = (long)num_arg(v, 1, 1e9, "--pid");
    else
      usage();
  }
  if (!url) usage();
  parse_url(url);
  if (cfg.duration < 0) cfg.duration = cfg.idle ? 1 : 5;

  /* a hard bound on the whole run, whatever happens */
  signal(SIGALRM, on_alarm);
  alarm((unsigned)(CONNECT_LIMIT_S + cfg.warmup + cfg.duration + 2 * CLOSE_LIMIT_S + 15));
  signal(SIGPIPE, SIG_IGN);

  if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state || !rng_state)
    rng_state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
  build_templates();
  epfd = epoll_create1(EPOLL_CLOEXEC);
  conns = calloc((size_t)cfg.conns, sizeof *conns);
  if (!conns) die(EXIT_PROTO, "out of memory");
  for (int i = 0; i < cfg.conns; i++) conns[i].idx = i, conns[i].fd = -1;

  long rss0 = cfg.pid ? read_rss_kb(cfg.pid) : -1;
  double t0 = now_s();
  now_cached = now_ns();
  while (n_started < cfg.conns && n_pending_hs < MAX_PENDING_HS) start_connect(&conns[n_started]);
  run_until(t0 + CONNECT_LIMIT_S, all_open);
  if (!all_open())
    die(EXIT_PROTO, "only %d of %d connections opened within %d s", n_open, cfg.conns,
        CONNECT_LIMIT_S);
  double connect_s = now_s() - t0;

  if (cfg.idle) {
    run_until(now_s() + cfg.duration, NULL);
    if (n_open != cfg.conns) die(EXIT_PROTO, "connections were lost while idle");
    long rss1 = cfg.pid ? read_rss_kb(cfg.pid) : -1;
    /* now one message on each connection, to see that all are alive and
     * what an idle connection costs after it has been used once */
    now_cached = now_ns();
    for (int i = 0; i < cfg.conns; i++) {
      queue_message(&conns[i]);
      flush(&conns[i]);
    }
    echo_target = (uint64_t)cfg.conns;
    run_until(now_s() + 20, all_echoed);
    if (!all_echoed()) {
      uint64_t got = 0;
      for (int i = 0; i < cfg.conns; i++) got += conns[i].rx_seq;
      die(EXIT_PROTO, "only %llu of %d idle connections echoed their message within 20 s",
          (unsigned long long)got, cfg.conns);
    }
    run_until(now_s() + 0.5, NULL);
    long rss2 = cfg.pid ? read_rss_kb(cfg.pid) : -1;
    close_all();
    printf("mode=idle conns=%d connect_s=%.2f rss_before_kb=%ld rss_idle_kb=%ld rss_used_kb=%ld "
           "bytes_per_conn=%.0f bytes_per_conn_used=%.0f unclean_closes=%d\n",
           cfg.conns, connect_s, rss0, rss1, rss2,
           rss0 > 0 ? (double)(rss1 - rss0) * 1024.0 / cfg.conns : -1.0,
           rss0 > 0 ? (double)(rss2 - rss0) * 1024.0 / cfg.conns : -1.0, cfg.conns - n_done);
    return 0;
  }

  if (cfg.size < 8 && cfg.inflight > 1)
    fputs("loadgen: note: messages under 8 bytes carry no sequence number; order is not checked\n",
          stderr);
  run_until(now_s() + cfg.warmup, NULL);
  measuring = 1;
  double w0 = now_s(), c0 = self_cpu_s(), s0 = cfg.pid ? read_cpu_s(cfg.pid) : -1;
  run_until(w0 + cfg.duration, NULL);
  measuring = 0;
  double w1 = now_s(), c1 = self_cpu_s(), s1 = cfg.pid ? read_cpu_s(cfg.pid) : -1;
  if (n_open != cfg.conns) die(EXIT_PROTO, "connections were lost during the run");
  double secs = w1 - w0;
  if (rx_msgs == 0) die(EXIT_PROTO, "no echo at all during the measurement");
  close_all();
  printf("mode=echo conns=%d size=%zu inflight=%d seconds=%.2f msgs=%llu msgs_per_s=%.0f "
         "mb_per_s=%.1f p50_us=%llu p99_us=%llu max_us=%llu client_cpu=%.2f server_cpu=%.2f "
         "unclean_closes=%d\n",
         cfg.conns, cfg.size, cfg.inflight, secs, (unsigned long long)rx_msgs,
         (double)rx_msgs / secs, (double)rx_bytes / secs / 1e6, (unsigned long long)hist_pct(0.50),
         (unsigned long long)hist_pct(0.99), (unsigned long long)hist_max, (c1 - c0) / secs,
         s0 >= 0 ? (s1 - s0) / secs : -1.0, cfg.conns - n_done);
  return 0;
}
