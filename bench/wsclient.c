/* wsclient: the pieces the benchmark clients share (see wsclient.h). */
#define _GNU_SOURCE
#include "wsclient.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
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

/* ---- small helpers ------------------------------------------------------ */

void wsc_die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", wsc_prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(code);
}

void *wsc_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) wsc_die(EXIT_PROTO, "out of memory");
  return p;
}

void *wsc_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) wsc_die(EXIT_PROTO, "out of memory");
  return p;
}

uint64_t wsc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double wsc_now_s(void) { return (double)wsc_now_ns() * 1e-9; }

double wsc_self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = ": time limit reached, giving up\n";
  ssize_t r = write(2, wsc_prog, strlen(wsc_prog)); /* strlen is async-signal-safe */
  r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(EXIT_TIMEOUT);
}

void wsc_time_limit(unsigned secs) {
  signal(SIGALRM, on_alarm);
  alarm(secs);
  signal(SIGPIPE, SIG_IGN);
}

/* The one generator of a single-threaded process. */
static uint64_t rng_state;

void wsc_rng_seed(void) {
  if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state || !rng_state)
    rng_state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
}

uint64_t wsc_rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

void wsc_parse_url(const char *u, int *port, char *path, size_t path_cap) {
  const char *p;
  if (strncmp(u, "ws://", 5)) wsc_die(EXIT_USAGE, "only ws:// URLs (got %s)", u);
  p = u + 5;
  if (!strncmp(p, "127.0.0.1:", 10) || !strncmp(p, "localhost:", 10))
    p += 10;
  else
    wsc_die(EXIT_USAGE, "refusing to connect anywhere but 127.0.0.1 (got %s)", u);
  char *end;
  long n = strtol(p, &end, 10);
  if (end == p || n < 1 || n > 65535) wsc_die(EXIT_USAGE, "bad port in %s", u);
  *port = (int)n;
  if (*end == 0) end = "/";
  if (*end != '/' || strlen(end) >= path_cap || strpbrk(end, " \r\n"))
    wsc_die(EXIT_USAGE, "bad path in %s", u);
  strcpy(path, end);
}

double wsc_num_arg(const char *s, double lo, double hi, const char *what) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < lo || v > hi) wsc_die(EXIT_USAGE, "bad %s: %s", what, s);
  return v;
}

int wsc_run_opt(const char *a, const char *v, double *duration, double *warmup, long *pid) {
  if (!strcmp(a, "--duration"))
    *duration = wsc_num_arg(v, 0, 600, "--duration");
  else if (!strcmp(a, "--warmup"))
    *warmup = wsc_num_arg(v, 0, 60, "--warmup");
  else if (!strcmp(a, "--pid"))
    *pid = (long)wsc_num_arg(v, 1, 1e9, "--pid");
  else
    return 0;
  return 1;
}

/* ---- connecting ---------------------------------------------------------- */

int wsc_connect(int epfd, int port, void *ptr, int idx) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) wsc_die(EXIT_PROTO, "socket: %s (raise ulimit -n?)", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1, never anything else */
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
    wsc_die(EXIT_PROTO, "conn %d: connect: %s", idx, strerror(errno));
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = ptr};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev))
    wsc_die(EXIT_PROTO, "epoll_ctl: %s", strerror(errno));
  return fd;
}

void wsc_check_connected(int fd, int idx) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) wsc_die(EXIT_PROTO, "conn %d: connect: %s", idx, strerror(err));
}

void wsc_set_events(int epfd, int fd, void *ptr, int *cur, int want_out) {
  if (*cur == want_out) return;
  struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = ptr};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev))
    wsc_die(EXIT_PROTO, "epoll_ctl: %s", strerror(errno));
  *cur = want_out;
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ------------------------ */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1_block(uint32_t h[5], const uint8_t *m) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)m[4 * i] << 24 | (uint32_t)m[4 * i + 1] << 16 | (uint32_t)m[4 * i + 2] << 8 |
           m[4 * i + 3];
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

/* Only ever hashes key + GUID (60 bytes): two blocks. */
static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  uint8_t m[128] = {0};
  if (len > sizeof m - 9) wsc_die(EXIT_PROTO, "sha1 input too long");
  size_t total = ((len + 8) / 64 + 1) * 64;
  memcpy(m, msg, len);
  m[len] = 0x80;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) m[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t off = 0; off < total; off += 64) sha1_block(h, m + off);
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

/* ---- the opening handshake --------------------------------------------- */

size_t wsc_request(char *req, size_t cap, const char *path, int port, char accept[32]) {
  uint8_t raw[16], digest[20];
  char key[32], cat[80];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) wsc_die(EXIT_PROTO, "getrandom failed");
  base64(raw, sizeof raw, key);
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  sha1((const uint8_t *)cat, strlen(cat), digest);
  base64(digest, sizeof digest, accept);
  int n = snprintf(req, cap,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   path, port, key);
  if (n < 0 || (size_t)n >= cap) wsc_die(EXIT_PROTO, "upgrade request too long");
  return (size_t)n;
}

/* Checks a whole head (NUL-terminated, end at its blank line). */
static void check_head(const char *head, const char *end, const char *accept, int idx) {
  if (strncmp(head, "HTTP/1.1 101", 12))
    wsc_die(EXIT_PROTO, "conn %d: handshake refused: %.*s", idx, (int)strcspn(head, "\r\n"), head);
  int ok = 0;
  for (const char *line = strstr(head, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
    static const char name[] = "sec-websocket-accept:";
    if (strncasecmp(line, name, sizeof name - 1)) continue;
    const char *v = line + sizeof name - 1;
    while (*v == ' ' || *v == '\t') v++;
    size_t vl = strcspn(v, "\r\n");
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    ok = vl == strlen(accept) && !memcmp(v, accept, vl);
    break;
  }
  if (!ok) wsc_die(EXIT_PROTO, "conn %d: missing or wrong Sec-WebSocket-Accept", idx);
  if (strcasestr(head, "sec-websocket-extensions"))
    wsc_die(EXIT_PROTO, "conn %d: the server chose an extension we did not offer", idx);
}

size_t wsc_head_feed(char **head, size_t *head_len, const uint8_t *d, size_t n, const char *accept,
                     int idx) {
  if (*head_len + n > 8192) wsc_die(EXIT_PROTO, "conn %d: handshake response too long", idx);
  char *h = realloc(*head, *head_len + n + 1);
  if (!h) wsc_die(EXIT_PROTO, "out of memory");
  memcpy(h + *head_len, d, n);
  *head = h;
  *head_len += n;
  h[*head_len] = 0;
  char *end = strstr(h, "\r\n\r\n");
  if (!end) return 0;
  check_head(h, end, accept, idx);
  return (size_t)(end + 4 - h);
}

/* ---- connections ---------------------------------------------------------- */

void wsc_conn_start(wsc_client *cl, wsc_conn *c) {
  c->fd = wsc_connect(cl->epfd, cl->port, c, c->idx);
  c->state = WSC_CONNECTING;
  c->want_out = 1;
  cl->n_pending_hs++;
  cl->n_started++;
}

void wsc_conn_finish(wsc_client *cl, wsc_conn *c) {
  if (c->state == WSC_DONE) return;
  if (c->state == WSC_OPEN || c->state == WSC_CLOSING) cl->n_open--;
  c->state = WSC_DONE;
  close(c->fd);
  c->fd = -1;
  cl->n_done++;
  wsc_buf_free(&c->out);
}

int wsc_conn_flush(wsc_client *cl, wsc_conn *c) {
  if (wsc_buf_send(c->fd, &c->out)) {
    if (c->state == WSC_CLOSING) {
      wsc_conn_finish(cl, c);
      return -1;
    }
    wsc_die(EXIT_PROTO, "conn %d: send: %s", c->idx, strerror(errno));
  }
  wsc_set_events(cl->epfd, c->fd, c, &c->want_out, c->out.len > 0);
  return 0;
}

int wsc_conn_connecting(wsc_client *cl, wsc_conn *c, uint32_t events) {
  if (c->state != WSC_CONNECTING) return 0;
  wsc_check_connected(c->fd, c->idx);
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
    char req[512];
    size_t n = wsc_request(req, sizeof req, cl->path, cl->port, c->accept);
    wsc_buf_append(&c->out, req, n);
    c->state = WSC_HANDSHAKE;
    wsc_conn_flush(cl, c);
  }
  return 1;
}

size_t wsc_conn_recv(wsc_client *cl, wsc_conn *c, uint8_t *buf, size_t cap) {
  ssize_t n = recv(c->fd, buf, cap, 0);
  if (n > 0) return (size_t)n;
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (c->state == WSC_CLOSING) { /* our close went first: the server may just go */
    wsc_conn_finish(cl, c);
    return 0;
  }
  if (n < 0) wsc_die(EXIT_PROTO, "conn %d: recv: %s", c->idx, strerror(errno));
  wsc_die(EXIT_PROTO, "conn %d: the server dropped the connection without a close frame", c->idx);
}

char *wsc_conn_head(wsc_conn *c, const uint8_t *d, size_t n, size_t *rest_at, size_t *rest) {
  size_t hl = wsc_head_feed(&c->head, &c->head_len, d, n, c->accept, c->idx);
  if (!hl) return NULL;
  char *head = c->head;
  *rest_at = hl;
  *rest = c->head_len - hl;
  c->head = NULL;
  c->head_len = 0;
  return head;
}

/* ---- frames out ---------------------------------------------------------- */

size_t wsc_encode_header(uint8_t *h, int opcode, uint64_t len, const uint8_t mask[4]) {
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

void wsc_buf_reserve(wsc_buf *b, size_t n) {
  if (b->off && b->off == b->len) b->off = b->len = 0;
  if (b->cap - b->len >= n) return;
  if (b->off) { /* slide the pending bytes down first */
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->cap - b->len >= n) return;
  }
  size_t cap = b->cap ? b->cap : 1024;
  while (cap - b->len < n) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) wsc_die(EXIT_PROTO, "out of memory");
  b->p = p;
  b->cap = cap;
}

void wsc_buf_append(wsc_buf *b, const void *p, size_t n) {
  wsc_buf_reserve(b, n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

void wsc_buf_free(wsc_buf *b) {
  free(b->p);
  b->p = NULL;
  b->cap = b->len = b->off = 0;
}

int wsc_buf_send(int fd, wsc_buf *b) {
  while (b->off < b->len) {
    ssize_t n = send(fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return -1;
    }
    b->off += (size_t)n;
  }
  if (b->off == b->len) b->off = b->len = 0;
  return 0;
}

/* ---- latency histogram --------------------------------------------------- */

void wsc_hist_add(wsc_hist *h, uint64_t us) {
  size_t i;
  if (us > h->max) h->max = us;
  if (us < WSC_HIST_LIN) {
    i = (size_t)us;
  } else {
    int e = 63 - __builtin_clzll(us); /* >= 11 */
    if (e - 11 >= WSC_HIST_EXP) e = 11 + WSC_HIST_EXP - 1, us = ((uint64_t)2 << e) - 1;
    i = WSC_HIST_LIN + (size_t)(e - 11) * WSC_HIST_SUB +
        (size_t)((us >> (e - 10)) & (WSC_HIST_SUB - 1));
  }
  h->bins[i]++;
  h->n++;
}

static uint64_t hist_value(size_t i) {
  if (i < WSC_HIST_LIN) return i;
  size_t e = (i - WSC_HIST_LIN) / WSC_HIST_SUB + 11, sub = (i - WSC_HIST_LIN) % WSC_HIST_SUB;
  return ((uint64_t)1 << e) + ((uint64_t)sub << (e - 10));
}

uint64_t wsc_hist_pct(const wsc_hist *h, double p) {
  if (!h->n) return 0;
  uint64_t want = (uint64_t)(p * (double)h->n + 0.5), seen = 0;
  if (want < 1) want = 1;
  for (size_t i = 0; i < sizeof h->bins / sizeof h->bins[0]; i++) {
    seen += h->bins[i];
    if (seen >= want) return hist_value(i);
  }
  return h->max;
}

/* ---- the server's counters in /proc ------------------------------------- */

long wsc_read_rss_kb(long pid) {
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

int wsc_read_ticks(long pid, unsigned long long *utime, unsigned long long *stime) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  /* fields after the command: state(3) ... utime(14) stime(15) */
  if (!p ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", utime, stime) != 2)
    return -1;
  return 0;
}

void wsc_read_io(long pid, long long *syscr, long long *syscw) {
  char path[64], line[128];
  snprintf(path, sizeof path, "/proc/%ld/io", pid);
  *syscr = *syscw = -1;
  FILE *f = fopen(path, "r");
  if (!f) return; /* not ours to read: the figures are left out */
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "syscw:", 6)) *syscw = strtoll(line + 6, NULL, 10);
    if (!strncmp(line, "syscr:", 6)) *syscr = strtoll(line + 6, NULL, 10);
  }
  fclose(f);
}
