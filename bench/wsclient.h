/* wsclient: what the benchmark clients (loadgen, fanout, probe) share: error
 * exits, clocks, the time limit, mask keys, the client side of the opening
 * handshake, frame headers, an output buffer, a latency histogram and the
 * readings of a server process in /proc. Linked into each program; plain
 * libc, 127.0.0.1 only. */
#ifndef WSCLIENT_H
#define WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

enum { EXIT_USAGE = 1, EXIT_PROTO = 2, EXIT_TIMEOUT = 3 };

/* Each program defines it: the prefix of its messages on stderr. */
extern const char wsc_prog[];

_Noreturn void wsc_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *wsc_xmalloc(size_t n);
void *wsc_xcalloc(size_t n, size_t size);

uint64_t wsc_now_ns(void); /* CLOCK_MONOTONIC */
double wsc_now_s(void);
double wsc_self_cpu_s(void); /* user + system time of this process */

/* Ignores SIGPIPE and exits EXIT_TIMEOUT after secs, whatever happens. */
void wsc_time_limit(unsigned secs);

/* Mask keys (xorshift64*): they need not be crypto here. */
void wsc_rng_seed(void);
uint64_t wsc_rng(void);

/* "ws://127.0.0.1:PORT/PATH" (or localhost): the port and the path ("/"
 * when none); anything else exits EXIT_USAGE. */
void wsc_parse_url(const char *u, int *port, char *path, size_t path_cap);
/* A number in [lo, hi] or an EXIT_USAGE exit that names what. */
double wsc_num_arg(const char *s, double lo, double hi, const char *what);
/* --duration (0..600 s), --warmup (0..60 s) and --pid, which both load
 * generators take: 1 when option a is one of them (its value v is set). */
int wsc_run_opt(const char *a, const char *v, double *duration, double *warmup, long *pid);

/* A non-blocking socket with TCP_NODELAY whose connect to 127.0.0.1:port has
 * started, registered with epfd for in and out (data.ptr = ptr). */
int wsc_connect(int epfd, int port, void *ptr, int idx);
/* Exits when the connect on fd failed. */
void wsc_check_connected(int fd, int idx);
/* Sets fd's epoll events to in, plus out when want_out; *cur caches them. */
void wsc_set_events(int epfd, int fd, void *ptr, int *cur, int want_out);

/* The upgrade request for path on 127.0.0.1:port with a fresh key, in req;
 * its length. accept gets the Sec-WebSocket-Accept the server must send. */
size_t wsc_request(char *req, size_t cap, const char *path, int port, char accept[32]);
/* Gathers the response head in *head (malloc'ed, *head_len bytes): 0 while it
 * is incomplete, then the length of the head, which is checked (101, the
 * accept value, no extension); what follows it in *head is frame data. */
size_t wsc_head_feed(char **head, size_t *head_len, const uint8_t *d, size_t n, const char *accept,
                     int idx);

/* A client frame header with its mask key in h (at most 14 bytes); its size. */
size_t wsc_encode_header(uint8_t *h, int opcode, uint64_t len, const uint8_t mask[4]);

/* Bytes to send: p[off..len). */
typedef struct wsc_buf {
  uint8_t *p;
  size_t off, len, cap;
} wsc_buf;

void wsc_buf_reserve(wsc_buf *b, size_t n); /* room for n more at p + len */
void wsc_buf_append(wsc_buf *b, const void *p, size_t n);
void wsc_buf_free(wsc_buf *b);
/* Sends what the kernel takes: 0, or -1 with errno on an error. */
int wsc_buf_send(int fd, wsc_buf *b);

/* One client connection; a program's own connection struct starts with it
 * (epoll's data.ptr points at both). */
enum wsc_state { WSC_NEW, WSC_CONNECTING, WSC_HANDSHAKE, WSC_OPEN, WSC_CLOSING, WSC_DONE };
typedef struct wsc_conn {
  int fd, idx;
  enum wsc_state state;
  int want_out;
  char accept[32];
  char *head; /* the response head while it arrives */
  size_t head_len;
  wsc_buf out;
} wsc_conn;

/* The connections' loop and counts. */
typedef struct wsc_client {
  int epfd, port;
  const char *path;
  int n_open, n_done, n_started, n_pending_hs;
} wsc_client;

void wsc_conn_start(wsc_client *cl, wsc_conn *c);  /* connect; counts it started and pending */
void wsc_conn_finish(wsc_client *cl, wsc_conn *c); /* closes it; counts it done */
/* Sends what is pending: -1 when a closing connection is gone (finished). */
int wsc_conn_flush(wsc_client *cl, wsc_conn *c);
/* While c connects: 1, and the upgrade request is sent once it can be. */
int wsc_conn_connecting(wsc_client *cl, wsc_conn *c, uint32_t events);
/* Bytes read into buf (0: none, or the closing connection is finished);
 * exits when the server drops an open connection. */
size_t wsc_conn_recv(wsc_client *cl, wsc_conn *c, uint8_t *buf, size_t cap);
/* Gathers the response head: NULL while incomplete, then the whole of what
 * came (the caller frees it), checked, with *rest bytes of frames at *rest_at. */
char *wsc_conn_head(wsc_conn *c, const uint8_t *d, size_t n, size_t *rest_at, size_t *rest);

/* Latency histogram, microseconds, ~0.1% resolution. */
enum { WSC_HIST_LIN = 2048, WSC_HIST_SUB = 1024, WSC_HIST_EXP = 30 };
typedef struct wsc_hist {
  uint64_t bins[WSC_HIST_LIN + WSC_HIST_EXP * WSC_HIST_SUB];
  uint64_t n, max;
} wsc_hist;

void wsc_hist_add(wsc_hist *h, uint64_t us);
uint64_t wsc_hist_pct(const wsc_hist *h, double p); /* p in [0, 1] */

/* The server process: VmRSS in kB (-1 when unreadable); utime and stime in
 * ticks from /proc/PID/stat (0, or -1 when unreadable); read and write
 * syscalls from /proc/PID/io (each -1 when unreadable). */
long wsc_read_rss_kb(long pid);
int wsc_read_ticks(long pid, unsigned long long *utime, unsigned long long *stime);
void wsc_read_io(long pid, long long *syscr, long long *syscw);

#endif
