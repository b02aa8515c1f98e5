/* probe: two small clients for bench/house.sh, each measuring one server
 * cost that the load generator cannot isolate. Blocking sockets, libc only,
 * 127.0.0.1 only, every wait bounded.
 *
 *   probe rtt PORT [--warmup W] [--count N] [--size S] [--pid PID]
 *     One connection; W round trips of S-byte binary messages (S <= 125),
 *     then SIGUSR1 to PID (bench/alloc_count.so starts counting), N round
 *     trips, then SIGUSR2 to PID (it writes its counts and stops). Prints
 *     round_trips=N seconds=T.
 *
 *   probe slowhead PORT [--conns C] [--bytes B] [--gap-us G] [--pid PID]
 *     C connections with TCP_NODELAY, each sending a valid B-byte upgrade
 *     request head one byte per write(): one byte to every connection, then
 *     G microseconds of sleep, so that the server reads about one byte per
 *     read. Then it waits for every 101. With --pid it reads the server's
 *     CPU time (the schedstat of every task in /proc/PID/task, in nanoseconds), its utime and
 *     stime (/proc/PID/stat, ticks) and its read() count (/proc/PID/io
 *     syscr) just before the first byte and just after the last 101, and
 *     prints the differences.
 *
 *   probe slowframe PORT [same options]
 *     The same, but the connections are upgraded in one write first and the
 *     B bytes fed a byte at a time are one masked binary frame (header
 *     included; B <= 65543), answered by its echo: the same reads and
 *     wake-ups through the frame receiver, which is linear, so slowhead minus
 *     slowframe is what the head parser adds.
 *
 * Exit status: 0 done, 1 usage, 2 protocol or I/O error, 3 time limit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wsclient.h"

const char wsc_prog[] = "probe";

enum { TIME_LIMIT_S = 120, IO_WAIT_MS = 15000, MAX_CONNS = 1000 };
enum { MAX_HEAD = 1 << 20 };

static int dial(int port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) wsc_die(EXIT_PROTO, "socket: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    wsc_die(EXIT_PROTO, "connect 127.0.0.1:%d: %s", port, strerror(errno));
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
    wsc_die(EXIT_PROTO, "TCP_NODELAY: %s", strerror(errno));
  return fd;
}

static void wait_fd(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  int r;
  do r = poll(&p, 1, IO_WAIT_MS);
  while (r < 0 && errno == EINTR);
  if (r <= 0) wsc_die(EXIT_PROTO, "no progress on a connection for %d ms", IO_WAIT_MS);
}

static void write_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      wait_fd(fd, POLLOUT);
      continue;
    }
    if (w <= 0) wsc_die(EXIT_PROTO, "write: %s", w < 0 ? strerror(errno) : "closed");
    s += w;
    n -= (size_t)w;
  }
}

static void read_exact(int fd, void *p, size_t n) {
  char *s = p;
  while (n > 0) {
    wait_fd(fd, POLLIN);
    ssize_t r = read(fd, s, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) wsc_die(EXIT_PROTO, "read: %s", r < 0 ? strerror(errno) : "connection closed");
    s += r;
    n -= (size_t)r;
  }
}

/* Reads a response head byte by byte (it is small, and no frame may be read
 * past its end) and checks that it is a 101. */
static void expect_101(int fd) {
  char head[4096];
  size_t n = 0;
  while (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) {
    if (n == sizeof head - 1) wsc_die(EXIT_PROTO, "response head too long");
    read_exact(fd, head + n, 1);
    n++;
  }
  head[n] = '\0';
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) wsc_die(EXIT_PROTO, "not a 101: %.60s", head);
}

/* A valid upgrade request head of exactly `bytes` bytes: the required
 * headers, then X-Pad headers of at most 200 bytes of filler. */
static char *make_head(size_t bytes, int port, unsigned id) {
  char *h = wsc_xmalloc(bytes + 1);
  int n = snprintf(h, bytes + 1,
                   "GET /slow/%u HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n",
                   id, port);
  if (n < 0 || (size_t)n + 2 + 16 > bytes) wsc_die(EXIT_USAGE, "--bytes too small for a head");
  size_t len = (size_t)n;
  for (unsigned i = 0; len + 2 < bytes; i++) {
    size_t room = bytes - 2 - len; /* what is left before the final CRLF */
    int k = snprintf(h + len, room + 1, "X-Pad-%02u: ", i);
    if (k < 0 || (size_t)k + 3 > room) { /* too little room for one more */
      memset(h + len - 2, 'p', room);    /* lengthen the last value instead */
      memcpy(h + len - 2 + room, "\r\n", 2);
      len += room;
      break;
    }
    size_t fill = room - (size_t)k - 2;
    if (fill > 200) fill = 200;
    memset(h + len + k, 'a' + (char)(i % 26), fill);
    memcpy(h + len + k + fill, "\r\n", 2);
    len += (size_t)k + fill + 2;
  }
  memcpy(h + len, "\r\n", 2);
  h[bytes] = '\0';
  return h;
}

/* ---- the server's counters ------------------------------------------------ */

typedef struct {
  unsigned long long ns, utime, stime, syscr;
} server_cpu;

static unsigned long long read_schedstat_ns(int pid) {
  char path[64], line[128];
  unsigned long long sum = 0;
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) wsc_die(EXIT_PROTO, "cannot open %s", path);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[300];
    snprintf(p, sizeof p, "/proc/%d/task/%s/schedstat", pid, e->d_name);
    FILE *f = fopen(p, "r");
    unsigned long long ns = 0;
    if (f && fgets(line, sizeof line, f)) ns = strtoull(line, NULL, 10);
    if (f) fclose(f);
    sum += ns;
  }
  closedir(d);
  return sum;
}

static server_cpu read_server(int pid) {
  server_cpu s = {0, 0, 0, 0};
  s.ns = read_schedstat_ns(pid);
  if (wsc_read_ticks(pid, &s.utime, &s.stime))
    wsc_die(EXIT_PROTO, "cannot read or parse /proc/%d/stat", pid);
  long long syscr, syscw;
  wsc_read_io(pid, &syscr, &syscw);
  if (syscr >= 0) s.syscr = (unsigned long long)syscr;
  return s;
}

/* ---- the two modes ------------------------------------------------------------ */

static void round_trip(int fd, uint8_t *payload, size_t size, unsigned long seq) {
  uint8_t out[2 + 4 + 125], in[2 + 125];
  memcpy(payload, &seq, sizeof seq < size ? sizeof seq : size);
  out[0] = 0x82;
  out[1] = (uint8_t)(0x80 | size);
  uint32_t key = (uint32_t)(seq * 2654435761u) | 1u;
  memcpy(out + 2, &key, 4);
  for (size_t i = 0; i < size; i++) out[6 + i] = payload[i] ^ out[2 + (i & 3)];
  write_all(fd, out, 6 + size);
  read_exact(fd, in, 2 + size);
  if (in[0] != 0x82 || in[1] != size || memcmp(in + 2, payload, size) != 0)
    wsc_die(EXIT_PROTO, "bad echo for message %lu", seq);
}

/* A plain upgrade in one write; returns once the 101 is read. */
static int upgraded(int port) {
  int fd = dial(port);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   port);
  write_all(fd, req, (size_t)n);
  expect_101(fd);
  return fd;
}

static int mode_rtt(int port, long warmup, long count, long size, int pid) {
  if (size < 1 || size > 125) wsc_die(EXIT_USAGE, "--size must be 1..125");
  int fd = upgraded(port);
  uint8_t payload[125];
  memset(payload, 'x', sizeof payload);
  unsigned long seq = 0;
  for (long i = 0; i < warmup; i++) round_trip(fd, payload, (size_t)size, seq++);
  if (pid > 0 && kill(pid, SIGUSR1) != 0) wsc_die(EXIT_PROTO, "kill SIGUSR1: %s", strerror(errno));
  double t0 = wsc_now_s();
  for (long i = 0; i < count; i++) round_trip(fd, payload, (size_t)size, seq++);
  double t = wsc_now_s() - t0;
  if (pid > 0 && kill(pid, SIGUSR2) != 0) wsc_die(EXIT_PROTO, "kill SIGUSR2: %s", strerror(errno));
  printf("round_trips=%ld size=%ld seconds=%.3f\n", count, size, t);
  close(fd);
  return 0;
}

/* One masked binary frame of `bytes` bytes in all, header included (16-bit
 * length), and the unmasked echo the server must send back. */
static uint8_t *make_frame(size_t bytes, uint8_t **echo, size_t *echo_len) {
  size_t n = bytes - 8;
  uint8_t *f = wsc_xmalloc(bytes), *e = wsc_xmalloc(n + 4);
  uint8_t hdr[8] = {0x82, 0x80 | 126, (uint8_t)(n >> 8), (uint8_t)n, 0x5a, 0xc3, 0x17, 0x88};
  memcpy(f, hdr, 8);
  memcpy(e, (uint8_t[]){0x82, 126, (uint8_t)(n >> 8), (uint8_t)n}, 4);
  for (size_t i = 0; i < n; i++) {
    e[4 + i] = (uint8_t)('a' + i % 26);
    f[8 + i] = e[4 + i] ^ hdr[4 + (i & 3)];
  }
  *echo = e;
  *echo_len = n + 4;
  return f;
}

static void expect_echo(int fd, const uint8_t *echo, size_t len) {
  uint8_t *in = wsc_xmalloc(len);
  read_exact(fd, in, len);
  if (memcmp(in, echo, len) != 0) wsc_die(EXIT_PROTO, "bad echo of the slow frame");
  free(in);
}

/* slowhead: the bytes are an upgrade head, the answer a 101. slowframe: the
 * connections are upgraded first, the bytes are one frame, the answer its
 * echo (the same reads and wake-ups, through the frame receiver instead of
 * the head parser: the baseline for slowhead). */
static int mode_slow(int port, int frame, long conns, long bytes, long gap_us, int pid) {
  if (conns < 1 || conns > MAX_CONNS) wsc_die(EXIT_USAGE, "--conns must be 1..%d", MAX_CONNS);
  if (bytes < 130 || bytes > (frame ? 65535 + 8 : MAX_HEAD))
    wsc_die(EXIT_USAGE, "--bytes out of range");
  int fds[MAX_CONNS];
  uint8_t *data[MAX_CONNS], *echo = NULL;
  size_t echo_len = 0;
  for (long c = 0; c < conns; c++) {
    fds[c] = frame ? upgraded(port) : dial(port);
    data[c] = frame ? make_frame((size_t)bytes, &echo, &echo_len)
                    : (uint8_t *)make_head((size_t)bytes, port, (unsigned)c);
    if (frame && c + 1 < conns) free(echo);
  }
  usleep(100000); /* let the server accept them all before the clock starts */
  server_cpu a = pid > 0 ? read_server(pid) : (server_cpu){0, 0, 0, 0};
  double t0 = wsc_now_s();
  struct timespec gap = {.tv_sec = gap_us / 1000000, .tv_nsec = (gap_us % 1000000) * 1000};
  for (long i = 0; i < bytes; i++) {
    for (long c = 0; c < conns; c++) write_all(fds[c], data[c] + i, 1);
    if (gap_us > 0) nanosleep(&gap, NULL);
  }
  for (long c = 0; c < conns; c++) {
    if (frame)
      expect_echo(fds[c], echo, echo_len);
    else
      expect_101(fds[c]);
  }
  double t = wsc_now_s() - t0;
  server_cpu b = pid > 0 ? read_server(pid) : a;
  printf("%s=%ld bytes=%ld seconds=%.3f server_ns=%llu server_utime_ticks=%llu "
         "server_stime_ticks=%llu server_reads=%llu\n",
         frame ? "frames" : "heads", conns, bytes, t, b.ns - a.ns, b.utime - a.utime,
         b.stime - a.stime, b.syscr - a.syscr);
  for (long c = 0; c < conns; c++) {
    close(fds[c]);
    free(data[c]);
  }
  free(echo);
  return 0;
}

static long opt_long(int argc, char **argv, const char *name, long dflt) {
  for (int i = 3; i + 1 < argc; i += 2)
    if (strcmp(argv[i], name) == 0) return strtol(argv[i + 1], NULL, 10);
  return dflt;
}

int main(int argc, char **argv) {
  if (argc < 3 || (argc - 3) % 2 != 0)
    wsc_die(EXIT_USAGE,
            "usage: probe rtt|slowhead|slowframe PORT [--option value]... (see probe.c)");
  wsc_time_limit(TIME_LIMIT_S);
  int port = atoi(argv[2]);
  if (port <= 0 || port > 65535) wsc_die(EXIT_USAGE, "bad port %s", argv[2]);
  int pid = (int)opt_long(argc, argv, "--pid", 0);
  if (strcmp(argv[1], "rtt") == 0)
    return mode_rtt(port, opt_long(argc, argv, "--warmup", 2000),
                    opt_long(argc, argv, "--count", 16000), opt_long(argc, argv, "--size", 16),
                    pid);
  if (strcmp(argv[1], "slowhead") == 0 || strcmp(argv[1], "slowframe") == 0)
    return mode_slow(port, strcmp(argv[1], "slowframe") == 0, opt_long(argc, argv, "--conns", 20),
                     opt_long(argc, argv, "--bytes", 8000), opt_long(argc, argv, "--gap-us", 200),
                     pid);
  wsc_die(EXIT_USAGE, "unknown mode %s", argv[1]);
  return EXIT_USAGE;
}
