#include "transport/conn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#endif

#include "transport/inbox.h"
#include "transport/outq.h"
#include "transport/topic.h"

enum {
  DIRECT_WRITE_MIN = 64 * 1024,
  /* libuv buffer lengths are unsigned ints: longer spans go as several
   * buffers. The send limits (SESSION_MAX_SEND, high_water at most
   * CONN_MAX_HIGH_WATER) keep a queue within WIRE_BUFS of them. */
  WIRE_CHUNK = 1 << 30,
  WIRE_BUFS = 24,
  /* a message this large gets a block of its own (see push_large) */
  ADOPT_MIN = 4096,
  WRITE_BUFS = 64,        /* buffers per writev from the queue */
  SEAL_BYTES = 64 * 1024, /* about the most a plain uv_write takes from it */
  PUMP_BYTES = 64 * 1024  /* about the most TLS encrypts from it per flush */
};

/* Appends p[0..n) to b[k..max) as buffers of at most WIRE_CHUNK bytes and
 * returns the new count, or max + 1 once they do not fit (the send limits
 * make that impossible; a write must never silently cover less). */
static unsigned wire_bufs(uv_buf_t *b, unsigned k, unsigned max, char *p, size_t n) {
  while (n && k < max) {
    size_t len = n < WIRE_CHUNK ? n : WIRE_CHUNK;
    b[k++] = uv_buf_init(p, (unsigned)len);
    p += len, n -= len;
  }
  return n ? max + 1 : k;
}

/* What the binding sees: the phases before the session opens, then the
 * close machine's progress (state_of). */
typedef enum conn_state {
  CONN_DIALING,   /* client: resolving and connecting */
  CONN_HANDSHAKE, /* reading the peer's request (server) or response (client) */
  CONN_HTTP,      /* server: a plain HTTP request waits for its answer */
  CONN_PENDING,   /* server: a valid upgrade waits for the application's verdict */
  CONN_OPEN,
  CONN_CLOSING, /* close frame sent, waiting for the peer's */
  CONN_DONE,    /* finished: no more frames either way */
  CONN_SSE      /* server: answered a GET with an event stream (conn_respond_sse) */
} conn_state;

typedef struct conn_write {
  uv_write_t req;
  char *base; /* owned: the ciphertext handed over, or NULL for the queue's segments */
  size_t cap; /* its size */
  size_t len; /* bytes still in flight */
} conn_write;

/* How bytes cross the socket: plain, or through TLS. */
typedef struct conn_io {
  void (*input)(conn *c, char *data, size_t n); /* bytes read from the socket */
  void (*flush)(conn *c);                       /* writes what is queued */
  int (*finish)(conn *c); /* before the FIN (TLS: close_notify); -1 after aborting c */
  int direct;             /* a large frame may go straight from the caller's bytes */
} conn_io;

struct conn {
  loop_obj obj; /* first: handle->data of tcp and timer points here */
  const conn_role *role;
  const conn_io *io;
  const session_policy *policy; /* server: what the request must meet */
  conn_link link;
  unsigned refs;
  uv_tcp_t tcp;
  uv_timer_t timer; /* handshake, keepalive, close and teardown deadlines */
  loop *loop;
  int64_t id;
  uint64_t woken;        /* loop->wake_gen when last put on the ready list */
  uint64_t heard;        /* uv_now() when the peer last sent anything (keepalive) */
  uint64_t ping_sent;    /* uv_now() when the keepalive ping went out */
  uint64_t drained;      /* bytes of completed waiting writes (see bytes_drained) */
  uint64_t ping_drained; /* bytes_drained() at the ping, or when last seen to grow */
  conn_opts opts;
  session s;
  unsigned phase : 3; /* CONN_DIALING..CONN_PENDING until the session opens */
  unsigned is_server : 1;
  unsigned tcp_closing : 1;
  unsigned reading : 1;
  unsigned awaiting_pong : 1;
  unsigned pong_grace : 2;     /* loop iterations granted past the pong deadline */
  unsigned want_write : 1;     /* a sender waits for the queue to drain */
  unsigned tls_ready : 1;      /* the TLS handshake is done */
  unsigned tls_closing : 1;    /* close_notify queued */
  unsigned tls_heard : 1;      /* the first bytes of TLS input came */
  tls *tls;                    /* NULL for plain TCP */
  loop_task tls_wait;          /* queued while its TLS handshake waits for budget */
  outq q;                      /* frames queued (plaintext), the front maybe in flight */
  buf cipher;                  /* TLS records waiting to be written */
  conn_write *inflight;        /* at most one uv_write at a time */
  inbox inbox;                 /* messages the handler has not taken yet */
  struct topic_member *topics; /* its subscriptions (topic.c) */
  uint64_t dropped;            /* publishes dropped over max_backlog */
  uint64_t paused_at;          /* uv_now() when reading paused for a full inbox */
  uint64_t skipped;            /* binary publishes an event stream skipped */
  uint64_t heartbeat_ms;       /* an event stream's comment interval, 0 for none */
  uint64_t beat_drained;       /* bytes_drained() at the last heartbeat */
  unsigned beat_waiting : 1;   /* that heartbeat found bytes queued */
};

/* Bytes of our waiting writes that the kernel has taken so far. A write
 * waits only when the kernel's buffer was full, so each of these bytes
 * means that the peer took some of our data: keepalive counts them as a
 * sign of life (bytes that went straight into a buffer with room prove
 * nothing). */
static uint64_t bytes_drained(const conn *c) {
  size_t left = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
  return c->drained + (c->inflight && c->inflight->len > left ? c->inflight->len - left : 0);
}

static conn_state state_of(const conn *c) {
  switch (c->s.close) {
  case CLOSE_LOCAL_CLOSING:
    return CONN_CLOSING;
  case CLOSE_DRAINING:
  case CLOSE_FIN_WAIT:
  case CLOSE_CLOSED:
    return CONN_DONE;
  default:
    return c->s.opened ? CONN_OPEN : (conn_state)c->phase;
  }
}

void conn_opts_default(conn_opts *o) {
  o->max_message = 16u << 20;
  o->max_head = 8192;
  o->high_water = 1u << 20;
  o->handshake_timeout_ms = 10000;
  o->close_timeout_ms = 5000;
  o->ping_interval_ms = 0;
  o->ping_timeout_ms = 0;
  o->max_backlog = 1u << 20;
  o->backlog_close = 0;
  pmd_config_default(&o->pmd);
}

static void close_handles(conn *c);
static void flush(conn *c);
static const session_hooks hooks;
static const conn_io plain_io;

static void obj_close(loop_obj *o) {
  conn *c = (conn *)o;
  if (!c->tcp_closing) session_event(&c->s, CLOSE_EV_GONE, 0, NULL, 0);
}
static void obj_flush(loop_obj *o) { flush((conn *)o); }
static const loop_obj_ops conn_obj_ops = {obj_close, obj_flush};

conn *conn_new(loop *l, int is_server, const conn_opts *o, const conn_role *role,
               const session_policy *policy) {
  conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->obj.ops = &conn_obj_ops;
  c->role = role;
  c->io = &plain_io;
  c->policy = policy;
  c->refs = 3; /* the creator's and one per handle */
  c->loop = l;
  c->id = loop_new_id(l);
  c->opts = *o;
  c->is_server = is_server != 0;
  c->phase = is_server ? CONN_HANDSHAKE : CONN_DIALING;
  session_config cfg = {is_server, o->max_message, o->max_head, &c->opts.pmd, &l->zbuf};
  session_init(&c->s, &cfg, &hooks, c);
  uv_tcp_init(&l->uv, &c->tcp);
  uv_timer_init(&l->uv, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  return c;
}

static void conn_free(conn *c) {
  topic_leave_all(c);
  if (c->role->on_free) c->role->on_free(c);
  inbox_free(&c->inbox, c->loop);
  session_free(&c->s);
  outq_free(&c->q, c->loop);
  buf_free(&c->cipher);
  loop_undefer(c->loop, &c->tls_wait);
  tls_free(c->tls);
  free(c);
}

void conn_ref(conn *c) { c->refs++; }

/* The one place a conn is freed: when nothing refers to it any more. */
void conn_unref(conn *c) {
  if (--c->refs == 0) conn_free(c);
}

static void on_handle_closed(uv_handle_t *h) { conn_unref(h->data); }

conn_link *conn_link_of(conn *c) { return &c->link; }
struct topic_member **conn_topics(conn *c) {
  return &c->topics;
}
loop *conn_loop(const conn *c) { return c->loop; }
uv_tcp_t *conn_tcp(conn *c) { return &c->tcp; }
int conn_closing(const conn *c) { return c->tcp_closing; }

/* One entry per step is enough, however many messages arrive. */
static void wake(conn *c) {
  if (c->woken == c->loop->wake_gen) return;
  c->woken = c->loop->wake_gen;
  loop_wake(c->loop, c->id);
}

static void mark_dirty(conn *c) {
  if (!c->tcp_closing) loop_mark_dirty(c->loop, &c->obj);
}

static size_t buffered(const conn *c) {
  /* a plain write in flight covers the queue's sealed segments */
  return c->q.bytes + c->cipher.len + (c->inflight && c->inflight->base ? c->inflight->len : 0);
}

/* CLOSE_ACT_DROP: the one place the handles are closed. */
static void close_handles(conn *c) {
  if (c->tcp_closing) return;
  c->tcp_closing = 1;
  topic_leave_all(c);
  if (c->phase == CONN_SSE) wake(c); /* its stream's coroutine waits for the end */
  loop_unmark_dirty(c->loop, &c->obj);
  if (c->role->on_close) c->role->on_close(c);
  /* a dial retry may be closing the tcp handle already; its callback counts */
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timer(uv_timer_t *t);

static void arm_timer(conn *c, uint64_t ms) {
  if (!c->tcp_closing) uv_timer_start(&c->timer, on_timer, ms, 0);
}

void conn_abort(conn *c, const char *why) {
  if (c->tcp_closing) return;
  session_note_error(&c->s, why);
  session_event(&c->s, CLOSE_EV_ABORT, 0, NULL, 0);
}

void conn_release(conn *c) {
  /* a finished connection completes its graceful teardown on its own */
  if (state_of(c) != CONN_DONE) conn_abort(c, "connection was dropped by its owner");
  conn_unref(c);
}

/* Ends a connection that never carried frames (a refused handshake, an
 * answered HTTP request, a TLS alert): flush, FIN, wait for the peer's. */
static void begin_teardown(conn *c) { session_event(&c->s, CLOSE_EV_END, 0, NULL, 0); }

/* Writing */

static void after_drain(conn *c) {
  if (c->want_write && buffered(c) < c->opts.high_water) {
    c->want_write = 0;
    wake(c);
  }
  if (buffered(c) == 0) session_event(&c->s, CLOSE_EV_FLUSHED, 0, NULL, 0);
}

static void on_write(uv_write_t *req, int status) {
  conn_write *w = (conn_write *)req;
  conn *c = req->data;
  if (status == 0) c->drained += w->len;
  if (w->base)
    loop_release(c->loop, w->base, w->cap);
  else if (status == 0)
    outq_consume(&c->q, c->loop, w->len); /* the sealed segments */
  free(w);
  c->inflight = NULL;
  if (status < 0) {
    conn_abort(c, uv_strerror(status));
    return;
  }
  if (c->q.n || c->cipher.len)
    flush(c);
  else
    after_drain(c);
}

/* What the kernel did not take waits in one uv_write: base owns the bytes
 * (NULL: they are the sealed segments of the queue). */
static void write_later(conn *c, char *base, size_t cap, const uv_buf_t *b, unsigned nb,
                        size_t len) {
  conn_write *w = malloc(sizeof *w);
  if (!w) {
    loop_release(c->loop, base, cap);
    conn_abort(c, "out of memory");
    return;
  }
  *w = (conn_write){.base = base, .cap = cap, .len = len};
  w->req.data = c;
  c->inflight = w;
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, b, nb, on_write);
  if (rc) {
    c->inflight = NULL;
    loop_release(c->loop, base, cap);
    free(w);
    conn_abort(c, uv_strerror(rc));
    return;
  }
  after_drain(c);
}

static int try_write(conn *c, const uv_buf_t *b, unsigned nb, size_t *done) {
  int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
  if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
  if (n < 0) {
    conn_abort(c, uv_strerror(n));
    return -1;
  }
  *done = (size_t)n;
  return 0;
}

/* Plain TCP: the queue's segments go out as they are, a writev of up to
 * WRITE_BUFS at a time; what the kernel does not take is sealed (at most
 * about SEAL_BYTES, so control frames queued meanwhile wait behind little)
 * and waits in a uv_write. */
static void plain_flush(conn *c) {
  uv_buf_t b[WRITE_BUFS];
  size_t len, done;
  while (c->q.n) {
    unsigned nb = outq_iov(&c->q, b, WRITE_BUFS, SIZE_MAX, &len);
    if (try_write(c, b, nb, &done)) return;
    outq_consume(&c->q, c->loop, done);
    if (done < len) break;
  }
  if (!c->q.n) {
    after_drain(c);
    return;
  }
  len = outq_seal(&c->q, SEAL_BYTES, WRITE_BUFS);
  unsigned nb = outq_iov(&c->q, b, WRITE_BUFS, len, &done);
  write_later(c, NULL, 0, b, nb, len);
}

/* TLS: records are made from the queue (tls_pump) into c->cipher, which
 * goes out as one buffer. */
static void cipher_flush(conn *c) {
  buf *wire = &c->cipher;
  if (!wire->len) return;
  uv_buf_t b[WIRE_BUFS];
  unsigned nb = wire_bufs(b, 0, WIRE_BUFS, wire->data, wire->len);
  size_t done;
  if (nb > WIRE_BUFS) {
    conn_abort(c, "write queue too large");
    return;
  }
  if (try_write(c, b, nb, &done)) return;
  if (done < wire->len) {
    nb = wire_bufs(b, 0, WIRE_BUFS, wire->data + done, wire->len - done);
    char *base = wire->data;
    size_t cap = wire->cap, len = wire->len - done;
    *wire = (buf){0};
    write_later(c, base, cap, b, nb, len);
    return;
  }
  loop_release(c->loop, wire->data, wire->cap); /* an idle connection holds no buffer */
  *wire = (buf){0};
  after_drain(c);
}

/* Sends what is queued (the loop's flush, once per step). */
static void flush(conn *c) {
  if (c->inflight || c->tcp_closing || c->phase == CONN_DIALING) return;
  c->io->flush(c);
}

/* A large frame goes straight from the caller's bytes, after what is
 * queued, in one writev: only what the kernel does not take is copied. */
static int write_direct(conn *c, const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
  uv_buf_t v[WRITE_BUFS + 2 * WIRE_BUFS];
  size_t queued, done;
  unsigned nb = outq_iov(&c->q, v, WRITE_BUFS, SIZE_MAX, &queued);
  if (queued < c->q.bytes) return 1; /* too many segments: queue it instead */
  unsigned max = WRITE_BUFS + 2 * WIRE_BUFS;
  nb = wire_bufs(v, nb, max, (char *)a, an);
  if (nb <= max) nb = wire_bufs(v, nb, max, (char *)b, bn);
  if (nb > max) return -1; /* the send limits make this impossible */
  if (try_write(c, v, nb, &done)) return 0;
  size_t q = done < queued ? done : queued;
  outq_consume(&c->q, c->loop, q);
  done -= q;
  size_t skip_a = done < an ? done : an, skip_b = done - skip_a;
  if (skip_a + skip_b < an + bn &&
      outq_append(&c->q, c->loop, a + skip_a, an - skip_a, b + skip_b, bn - skip_b, NULL))
    return -1;
  if (c->q.n) mark_dirty(c);
  return 0;
}

/* session_hooks.queue: a frame into the write queue (its blocks come from
 * the loop's spares: no malloc per message); a pong goes ahead of the data
 * that is not in flight yet. */
static int hook_queue(void *ud, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                      const uint8_t *mask, int control) {
  conn *c = ud;
  if (!mask && !control && c->io->direct && bn >= DIRECT_WRITE_MIN && !c->inflight &&
      !c->tcp_closing && c->phase != CONN_DIALING) {
    int rc = write_direct(c, a, an, b, bn);
    if (rc <= 0) return rc;
  }
  /* past high water, a pong takes the place of the last one still waiting:
   * the answer to the latest ping is enough (RFC 6455 5.5.3), and memory
   * stays where it is */
  if (control && buffered(c) >= c->opts.high_water) outq_drop_last_control(&c->q, c->loop);
  int rc = control ? outq_control(&c->q, c->loop, a, an, b, bn, mask)
                   : outq_append(&c->q, c->loop, a, an, b, bn, mask);
  if (rc) return -1;
  mark_dirty(c);
  return 0;
}

/* Plain TCP */

static void dispatch(conn *c, char *data, size_t n);

static int plain_finish(conn *c) {
  (void)c;
  return 0;
}
static const conn_io plain_io = {dispatch, plain_flush, plain_finish, 1};

/* TLS */

/* Encrypts queued plaintext once the TLS handshake allows it (the records
 * land in c->cipher), about PUMP_BYTES at a time so that a pong queued
 * later waits behind little. What TLS does not take yet stays queued, to go
 * after the next input. The bytes it took, or -1 after aborting c. */
static long tls_pump(conn *c) {
  if (!c->tls_ready || c->tls_closing) return 0;
  size_t pumped = 0;
  while (c->q.n && pumped < PUMP_BYTES) {
    uv_buf_t b;
    size_t len, done;
    outq_iov(&c->q, &b, 1, SIZE_MAX, &len);
    if (tls_write(c->tls, b.base, len, &done) == TLS_ERROR) {
      conn_abort(c, tls_error(c->tls));
      return -1;
    }
    outq_consume(&c->q, c->loop, done);
    pumped += done;
    if (done < len) break;
  }
  return (long)pumped;
}

/* Records a pump's worth at a time, for as long as the kernel takes them
 * all and plaintext is left. */
static void tls_flush(conn *c) {
  long pumped;
  do {
    if ((pumped = tls_pump(c)) < 0) return;
    cipher_flush(c);
  } while (pumped > 0 && c->q.n && !c->cipher.len && !c->inflight && !c->tcp_closing);
}

/* close_notify (so the peer can tell a cut from an end) after the last
 * byte: with plaintext still queued, the teardown runs again once it is out. */
static int tls_finish(conn *c) {
  if (!c->tls_ready || c->tls_closing) return 0;
  if (tls_pump(c) < 0) return -1;
  if (!c->q.n) {
    tls_shutdown(c->tls);
    c->tls_closing = 1;
  }
  return 0;
}

static void tls_input(conn *c, char *data, size_t n);
static const conn_io tls_io = {tls_input, tls_flush, tls_finish, 0};

static void tls_resume(loop_task *t);

int conn_use_tls(conn *c, tls_ctx *ctx, const char *host) {
  if (!loop_plain(c->loop)) return -1;
  c->tls = tls_new(ctx, host, &c->cipher);
  c->tls_wait.run = tls_resume;
  if (c->tls) c->io = &tls_io;
  return c->tls ? 0 : -1;
}

static void stop_reading(conn *c);

/* One TLS handshake step on what was fed, within the loop's budget: 1 once
 * the handshake is done, 0 while it waits (for input or for budget), -1
 * after ending c. */
static int tls_step(conn *c) {
  if (c->tls_wait.next || !loop_tls_step(c->loop)) {
    /* over budget: the input waits aside, and no more is read, until a
     * later step resumes the handshake (tls_resume) */
    if (tls_end_input(c->tls)) {
      conn_abort(c, "out of memory");
      return -1;
    }
    stop_reading(c);
    loop_defer(c->loop, &c->tls_wait);
    return 0;
  }
  int rc = tls_handshake(c->tls);
  mark_dirty(c); /* handshake records, or an alert */
  if (rc == TLS_ERROR) {
    /* send the alert (it tells the peer why) before closing */
    session_note_error(&c->s, tls_error(c->tls));
    if (!c->cipher.len)
      conn_abort(c, c->s.error);
    else
      begin_teardown(c);
    return -1;
  }
  if (rc == TLS_WANT) return 0;
  c->tls_ready = 1; /* and a client's request can go out now */
  return 1;
}

static void on_eof(conn *c, ssize_t err);

/* Decrypts all that was fed into the loop's plaintext buffer, handing it on
 * a buffer at a time (so a large frame usually arrives whole). */
static void tls_decrypt(conn *c) {
  char *plain = (char *)c->loop->plain;
  size_t have = 0;
  int status = TLS_OK;
  while (status == TLS_OK) {
    have += tls_read(c->tls, plain + have, LOOP_READ_SIZE - have, &status);
    if (have && (have == LOOP_READ_SIZE || status != TLS_OK)) {
      dispatch(c, plain, have);
      if (c->tcp_closing) return;
      have = 0;
    }
  }
  if (status == TLS_CLOSED)
    on_eof(c, UV_EOF);
  else if (status == TLS_ERROR)
    conn_abort(c, tls_error(c->tls));
  else
    mark_dirty(c); /* TLS may have records of its own, or queued output may go now */
}

/* Plain HTTP on a TLS port (a ws:// URL for a wss:// server): OpenSSL would
 * hang up without a word, so a plain HTTP answer tells the client what to
 * use. Only the first bytes are looked at: a TLS stream starts with a
 * record type (0x14-0x17), never a letter. 1 when c was answered so. */
static int tls_refuse_plain(conn *c, const char *data, size_t n) {
  static const char answer[] = "HTTP/1.1 400 This port speaks TLS: use wss://\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 33\r\n"
                               "Connection: close\r\n\r\n"
                               "This port speaks TLS: use wss://\n";
  if (!c->is_server || n < 4 || memcmp(data, "GET ", 4) != 0) return 0;
  if (buf_append(&c->cipher, answer, sizeof answer - 1)) {
    conn_abort(c, "out of memory");
    return 1;
  }
  session_note_error(&c->s, "plain HTTP on a TLS port");
  mark_dirty(c);
  begin_teardown(c);
  return 1;
}

/* Ciphertext from the peer, read by OpenSSL in place: all of it is consumed
 * (or set aside) before this returns, since the read buffer is the loop's. */
static void tls_input(conn *c, char *data, size_t n) {
  if (n && !c->tls_heard) {
    if (tls_refuse_plain(c, data, n)) return;
    c->tls_heard = 1;
  }
  tls_feed(c->tls, data, n);
  if (c->tls_ready || tls_step(c) == 1) tls_decrypt(c);
  if (tls_end_input(c->tls) && !c->tcp_closing) conn_abort(c, "out of memory");
}

static void start_reading(conn *c);

/* A handshake put off by tls_step, in a later step with budget. */
static void tls_resume(loop_task *t) {
  conn *c = (conn *)((char *)t - offsetof(conn, tls_wait));
  if (c->tcp_closing) return;
  start_reading(c);
  tls_input(c, NULL, 0);
}

/* Reading */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  conn *c = h->data;
  (void)hint;
  b->base = (char *)c->loop->readbuf;
  b->len = LOOP_READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void start_reading(conn *c) {
  if (c->reading || c->tcp_closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void stop_reading(conn *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void open_session(conn *c);

/* The server's side of the opening handshake, as the session decides it. */
static void server_head(conn *c, const char *data, size_t n) {
  switch (session_server_head(&c->s, data, n, c->policy)) {
  case SESSION_HEAD_MORE:
    break;
  case SESSION_HEAD_HTTP:
    c->phase = CONN_HTTP;
    stop_reading(c);
    c->role->on_ready(c);
    break;
  case SESSION_HEAD_PENDING: /* the handshake timer runs on meanwhile */
    c->phase = CONN_PENDING;
    stop_reading(c);
    c->role->on_ready(c);
    break;
  case SESSION_HEAD_REFUSED:
    begin_teardown(c);
    break;
  case SESSION_HEAD_FAILED:
    conn_abort(c, c->s.error);
    break;
  case SESSION_HEAD_OPEN:
    c->role->on_ready(c);
    open_session(c);
    session_trim_head(&c->s); /* the head waits for Lua to ask for ws.request */
    break;
  }
}

static void client_head(conn *c, const char *data, size_t n) {
  session_head_result r = session_client_head(&c->s, data, n);
  if (r == SESSION_HEAD_OPEN)
    open_session(c);
  else if (r != SESSION_HEAD_MORE)
    conn_abort(c, c->s.error);
}

/* Plaintext from the peer, by state. */
static void dispatch(conn *c, char *data, size_t n) {
  switch (state_of(c)) {
  case CONN_HANDSHAKE:
    if (c->is_server)
      server_head(c, data, n);
    else
      client_head(c, data, n);
    break;
  case CONN_OPEN:
  case CONN_CLOSING:
    session_feed(&c->s, (uint8_t *)data, n);
    break;
  default:
    break; /* done or answering HTTP: the rest is ignored */
  }
}

static void on_eof(conn *c, ssize_t err) {
  conn_state st = state_of(c);
  int early = st == CONN_DIALING || st == CONN_HANDSHAKE;
  const char *why = err != UV_EOF    ? uv_strerror((int)err)
                    : early          ? "connection closed during the handshake"
                    : st == CONN_SSE ? "the client closed the event stream"
                                     : "connection closed without a close frame";
  session_event(&c->s, CLOSE_EV_PEER_EOF, 0, why, 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  if (n == 0) return;
  if (n < 0) {
    on_eof(c, n);
    return;
  }
  c->heard = uv_now(&c->loop->uv);
  c->io->input(c, b->base, (size_t)n);
}

/* The close handshake's I/O. After the close frames (or a failure): send
 * what is queued, then FIN, then wait (bounded) for the peer's FIN so the
 * close frame is never cut off by a reset. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

/* CLOSE_ACT_SHUTDOWN */
static void send_fin(conn *c) {
  if (c->tcp_closing) return;
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown)) {
    free(req);
    session_event(&c->s, CLOSE_EV_GONE, 0, NULL, 0);
  }
}

/* CLOSE_ACT_TEARDOWN: once nothing is queued, CLOSE_EV_FLUSHED sends the FIN
 * (here, or from after_drain). */
static void teardown(conn *c) {
  if (c->tcp_closing || c->io->finish(c)) return;
  if (buffered(c))
    mark_dirty(c);
  else
    session_event(&c->s, CLOSE_EV_FLUSHED, 0, NULL, 0);
}

/* session_hooks.act: the I/O of a close step, in the order close.h gives.
 * An action may feed the machine again; the rest of the outer step then
 * finds the handles closing and does nothing. */
static void hook_act(void *ud, unsigned a) {
  conn *c = ud;
  if (c->topics && !(c->phase == CONN_SSE ? c->s.close == CLOSE_OPEN : session_live(&c->s)))
    topic_leave_all(c); /* nothing more may go to it */
  if (a & CLOSE_ACT_STOP_READING) stop_reading(c);
  if (a & CLOSE_ACT_WAKE) wake(c);
  if (a & CLOSE_ACT_TEARDOWN) teardown(c);
  if (a & CLOSE_ACT_SHUTDOWN) send_fin(c);
  if (a & CLOSE_ACT_START_READING) start_reading(c);
  if (a & CLOSE_ACT_ARM_TIMER) arm_timer(c, c->opts.close_timeout_ms);
  if (a & CLOSE_ACT_DROP) close_handles(c);
}

/* A large message gets a block of its own, so the inbox buffer never grows
 * (and copies what it holds) for it: the reassembled one is adopted as it
 * lies, one that came whole in a read is copied once. */
static int push_large(conn *c, int opcode, const uint8_t *data, size_t len) {
  size_t cap;
  void *block = session_take_block(&c->s, &cap);
  if (!block && (block = loop_alloc(c->loop, len, &cap))) memcpy(block, data, len);
  return block ? inbox_push_block(&c->inbox, c->loop, opcode, block, cap, len) : -1;
}

/* While reading is paused a peer that went away is not seen (its FIN waits
 * behind the unread bytes): the kernel's view of the socket tells. */
enum { PROBE_MS = 200, PAUSED_SLACK_MS = 20 };

#if defined(__linux__) && defined(TCP_INFO)
/* The kernel's view of c's socket, and its fd: 0, or -1 when there is none. */
static int tcp_info_of(conn *c, uv_os_fd_t *fd, struct tcp_info *ti) {
  socklen_t len = sizeof *ti;
  if (c->tcp_closing || uv_fileno((uv_handle_t *)&c->tcp, fd)) return -1;
  return getsockopt(*fd, IPPROTO_TCP, TCP_INFO, ti, &len) || len < 1 ? -1 : 0;
}
#endif

static int peer_gone(conn *c) {
#if defined(__linux__) && defined(TCP_INFO)
  uv_os_fd_t fd;
  struct tcp_info ti;
  if (tcp_info_of(c, &fd, &ti)) return 0;
  return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE;
#else
  (void)c;
  return 0;
#endif
}

/* Reading paused, a ping out for since_ms: 1 when the kernel shows the
 * peer there (data came in after the ping: the pong, unread) or cannot tell
 * (the unread bytes about fill our receive buffer, so the peer is held back
 * by us, not silent). */
static int paused_peer_alive(conn *c, uint64_t since_ms) {
#if defined(__linux__) && defined(TCP_INFO)
  uv_os_fd_t fd;
  struct tcp_info ti;
  socklen_t rlen = sizeof(int);
  int unread = 0, rcvbuf = 0;
  if (tcp_info_of(c, &fd, &ti)) return 1;
  /* the kernel counts in jiffies (4 ms at HZ=250): the doubt goes to the peer */
  if (ti.tcpi_last_data_recv < since_ms + PAUSED_SLACK_MS) return 1;
  if (ioctl(fd, FIONREAD, &unread) || getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &rlen))
    return 1;
  return unread >= rcvbuf / 4;
#else
  (void)c, (void)since_ms;
  return 1; /* no way to tell: a paused connection's silence says nothing */
#endif
}

static void pause_reading(conn *c) {
  stop_reading(c);
  c->paused_at = uv_now(&c->loop->uv);
  /* keepalive's timer probes too; else one of our own while paused */
  if (!c->opts.ping_interval_ms && c->s.close == CLOSE_OPEN) arm_timer(c, PROBE_MS);
}

/* The timer of a paused open connection: 1 when it found the peer gone
 * (the connection is failed). */
static int probe_paused(conn *c) {
  if (c->reading || c->s.close != CLOSE_OPEN || !peer_gone(c)) return 0;
  session_event(&c->s, CLOSE_EV_PEER_EOF, 0,
                "connection closed by the peer while reading was paused", 0);
  return 1;
}

static int hook_message(void *ud, int opcode, const uint8_t *data, size_t len) {
  conn *c = ud;
  int rc = len < ADOPT_MIN ? inbox_push_copy(&c->inbox, c->loop, opcode, data, len)
                           : push_large(c, opcode, data, len);
  if (rc) return -1;
  if (c->inbox.bytes >= c->opts.high_water && c->reading)
    pause_reading(c); /* the handler is behind */
  wake(c);
  return 0;
}

static int hook_unread(void *ud) { return !inbox_empty(&((conn *)ud)->inbox); }

/* The pong keepalive waits for starts the next quiet interval at once,
 * rather than at the pong deadline. */
static void hook_pong(void *ud) {
  conn *c = ud;
  if (!c->awaiting_pong) return;
  c->awaiting_pong = 0;
  arm_timer(c, c->opts.ping_interval_ms);
}

static int hook_random(void *ud, uint8_t *out, size_t n) {
  return loop_random(((conn *)ud)->loop, out, n);
}

static const session_hooks hooks = {hook_queue,  hook_message, hook_act,
                                    hook_unread, hook_pong,    hook_random};

/* Keepalive: a ping once the peer has been quiet for ping_interval; then
 * anything it sends within ping_timeout (the pong, or any other bytes), or
 * its taking more of our queued data (bytes_drained), shows it is there,
 * and silence fails the connection with 1011. */
static void await_pong(conn *c, uint64_t now, uint64_t drained) {
  if (drained > c->ping_drained) {
    /* the peer took more of what we sent before the ping (which waits
     * behind it): it is there, if only reading, behind a deep queue */
    c->heard = now;
    c->ping_drained = drained;
  }
  /* reading is paused because the handler is behind: the pong would wait
   * unread, so the kernel is asked whether anything came since the ping */
  if (!c->reading && paused_peer_alive(c, now - c->ping_sent)) c->heard = now;
  if (c->heard >= c->ping_sent) {
    c->awaiting_pong = 0;
    return;
  }
  if (!c->reading && now - c->paused_at < c->opts.ping_timeout_ms) {
    /* paused only just now: the pong may be on its way */
    arm_timer(c, c->opts.ping_timeout_ms - (now - c->paused_at));
  } else if (c->pong_grace < 2) {
    /* libuv runs timers before reading, so after a stall the pong may be
     * waiting unread; two more loop iterations (a peer in this process
     * needs one to answer) before we call it silence. 1 ms, not 0: a
     * 0 ms timer started here would run again before the poll. */
    c->pong_grace++;
    arm_timer(c, 1);
  } else {
    session_event(&c->s, CLOSE_EV_ERROR, FRAME_CLOSE_INTERNAL, "keepalive ping timed out", 0);
  }
}

static void keepalive(conn *c) {
  uint64_t now = uv_now(&c->loop->uv);
  uint64_t drained = bytes_drained(c);
  if (c->awaiting_pong) {
    await_pong(c, now, drained);
    if (c->awaiting_pong) return;
  }
  uint64_t quiet = now - c->heard;
  if (quiet < c->opts.ping_interval_ms) {
    arm_timer(c, c->opts.ping_interval_ms - quiet);
    return;
  }
  c->awaiting_pong = 1;
  c->pong_grace = 0;
  c->ping_sent = now;
  c->ping_drained = drained;
  session_send(&c->s, FRAME_PING, NULL, 0);
  arm_timer(c, c->opts.ping_timeout_ms);
}

/* An event stream's heartbeat: a comment, so that proxies see traffic;
 * and a client that took none of what waited at the last one is gone or
 * stuck, and dropped. */
static void sse_beat(conn *c) {
  static const uint8_t beat[] = ":\n\n";
  uint64_t drained = bytes_drained(c);
  if (buffered(c)) {
    if (c->beat_waiting && drained == c->beat_drained) {
      conn_abort(c, "the event stream client stopped reading");
      return;
    }
    c->beat_waiting = 1;
    c->beat_drained = drained;
  } else {
    c->beat_waiting = 0;
  }
  if (hook_queue(c, beat, sizeof beat - 1, NULL, 0, NULL, 0)) {
    conn_abort(c, "out of memory");
    return;
  }
  arm_timer(c, c->heartbeat_ms);
}

static void on_timer(uv_timer_t *t) {
  conn *c = t->data;
  conn_state st = state_of(c);
  if (st == CONN_DIALING || st == CONN_HANDSHAKE || st == CONN_HTTP || st == CONN_PENDING)
    conn_abort(c, "handshake timed out");
  else if (st == CONN_SSE)
    sse_beat(c);
  else if (c->s.close != CLOSE_OPEN)
    session_event(&c->s, CLOSE_EV_TIMEOUT, 0, "close handshake timed out", 0);
  else if (probe_paused(c))
    return;
  else if (c->opts.ping_interval_ms)
    keepalive(c);
  else if (!c->reading)
    arm_timer(c, PROBE_MS);
}

/* The handshake succeeded: frames flow, and the bytes that followed the
 * head are fed now. */
static void open_session(conn *c) {
  c->phase = CONN_OPEN;
  uv_timer_stop(&c->timer);
  c->heard = uv_now(&c->loop->uv);
  if (c->opts.ping_interval_ms) arm_timer(c, c->opts.ping_interval_ms);
  wake(c);
  start_reading(c);
  mark_dirty(c); /* a server's 101 */
  session_start(&c->s);
}

/* The owner's side */

void conn_serve(conn *c) {
  uv_tcp_nodelay(&c->tcp, 1);
  arm_timer(c, c->opts.handshake_timeout_ms);
  start_reading(c);
}

const char *conn_request(conn *c, const session_request *r) {
  return session_client_request(&c->s, r);
}

void conn_start_dial(conn *c) { arm_timer(c, c->opts.handshake_timeout_ms); }

void conn_connected(conn *c) {
  uv_tcp_nodelay(&c->tcp, 1);
  c->phase = CONN_HANDSHAKE;
  if (c->tls && tls_handshake(c->tls) == TLS_ERROR) { /* queues the ClientHello */
    conn_abort(c, tls_error(c->tls));
    return;
  }
  mark_dirty(c); /* the request is queued; with TLS it waits for the handshake */
  start_reading(c);
}

void conn_feed(conn *c, char *data, size_t n) {
  if (n && !c->tcp_closing) c->io->input(c, data, n);
}

static void on_retry_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (c->tcp_closing) { /* aborted while closing for a retry */
    on_handle_closed(h);
    return;
  }
  uv_tcp_init(&c->loop->uv, &c->tcp);
  c->tcp.data = c;
  c->role->on_retry(c);
}

void conn_retry(conn *c) { uv_close((uv_handle_t *)&c->tcp, on_retry_closed); }

/* Transport API for the binding */

static void remote_name(conn *c, char *out, size_t size) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char ip[64] = "?";
  int port = 0;
  out[0] = 0;
  if (c->tcp_closing || uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len)) return;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(out, size, "[%s]:%d", ip, port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(out, size, "%s:%d", ip, port);
  }
}

static const char *const state_names[] = {"dialing", "handshake", "http",   "pending",
                                          "open",    "closing",   "closed", "sse"};

void conn_describe(conn *c, unsigned what, conn_info *out) {
  out->id = c->id;
  out->state = state_names[state_of(c)];
  out->opened = c->s.opened;
  out->closed = state_of(c) == CONN_DONE;
  out->close_code = c->s.close_code;
  out->close_reason = c->s.close_reason ? c->s.close_reason : "";
  out->clean = c->s.clean;
  out->error = c->s.error;
  out->http_status = c->s.http_status;
  out->protocol = c->s.protocol;
  out->compressed = c->s.pmd != NULL;
  out->buffered = buffered(c);
  out->dropped = c->dropped;
  out->skipped = c->skipped;
  out->remote[0] = out->peer_subject[0] = 0;
  if (what & CONN_INFO_REMOTE) remote_name(c, out->remote, sizeof out->remote);
  if ((what & CONN_INFO_PEER) && c->tls)
    tls_peer_subject(c->tls, out->peer_subject, sizeof out->peer_subject);
}

int64_t conn_id(const conn *c) { return c->id; }

int conn_receive(conn *c, conn_message *m) {
  const inbox_msg *front = inbox_peek(&c->inbox);
  if (front) {
    m->data = front->data;
    m->len = front->len;
    m->binary = front->opcode != FRAME_TEXT;
    return CONN_OK;
  }
  /* a pending close resolves now (while open, the event changes nothing) */
  if (c->s.close != CLOSE_OPEN) session_event(&c->s, CLOSE_EV_INBOX_DRAINED, 0, NULL, 0);
  switch (state_of(c)) {
  case CONN_DIALING:
  case CONN_HANDSHAKE:
  case CONN_OPEN:
  case CONN_CLOSING:
    return CONN_WAIT;
  default:
    return CONN_CLOSED;
  }
}

void conn_message_done(conn *c, conn_message *m) {
  (void)m; /* always the oldest one */
  inbox_pop(&c->inbox, c->loop);
  if (c->s.opened && c->s.close == CLOSE_OPEN && c->inbox.bytes < c->opts.high_water)
    start_reading(c);
}

int conn_send_message(conn *c, const void *data, size_t len, int binary) {
  int opcode = binary ? FRAME_BINARY : FRAME_TEXT;
  int rc = session_check_send(&c->s, opcode, data, len);
  if (rc != SESSION_OK) return rc;
  if (c->tcp_closing) return CONN_CLOSED;
  if (buffered(c) >= c->opts.high_water) {
    c->want_write = 1;
    return CONN_WAIT;
  }
  return session_send(&c->s, opcode, data, len);
}

int conn_send_ping(conn *c, const void *data, size_t len) {
  int rc = session_check_send(&c->s, FRAME_PING, data, len);
  if (rc != SESSION_OK) return rc;
  return c->tcp_closing ? CONN_CLOSED : session_send(&c->s, FRAME_PING, data, len);
}

int conn_start_close(conn *c, unsigned code, const char *reason, size_t len) {
  if (state_of(c) == CONN_SSE) {
    begin_teardown(c); /* what is queued goes out, then the FIN */
    return CONN_OK;
  }
  return session_close(&c->s, code, reason, len);
}

int conn_respond_http(conn *c, int status, const char *const *names, const char *const *values,
                      size_t nheaders, const char *body, size_t body_len) {
  buf out = {0};
  if (hs_build_response(&out, status, names, values, nheaders, body_len) ||
      buf_append(&out, body, body_len)) {
    buf_free(&out);
    return -1;
  }
  conn_state st = state_of(c);
  if ((st == CONN_HTTP || st == CONN_PENDING) && !c->tcp_closing) {
    if (hook_queue(c, (const uint8_t *)out.data, out.len, NULL, 0, NULL, 0))
      conn_abort(c, "out of memory");
    else
      begin_teardown(c);
  }
  buf_free(&out);
  return 0;
}

int conn_respond_sse(conn *c, const char *const *names, const char *const *values, size_t nheaders,
                     uint64_t retry_ms, uint64_t heartbeat_ms) {
  if (state_of(c) != CONN_HTTP || c->tcp_closing) return -1;
  buf out = {0};
  char retry[40];
  int k =
      retry_ms ? snprintf(retry, sizeof retry, "retry: %llu\n\n", (unsigned long long)retry_ms) : 0;
  if (hs_build_response(&out, 200, names, values, nheaders, HS_UNTIL_CLOSE) ||
      buf_append(&out, retry, (size_t)k)) {
    buf_free(&out);
    return -1;
  }
  int rc = hook_queue(c, (const uint8_t *)out.data, out.len, NULL, 0, NULL, 0);
  buf_free(&out);
  if (rc) {
    conn_abort(c, "out of memory");
    return 0;
  }
  c->phase = CONN_SSE;
  c->heartbeat_ms = heartbeat_ms;
  uv_timer_stop(&c->timer); /* the handshake's */
  if (heartbeat_ms) arm_timer(c, heartbeat_ms);
  start_reading(c); /* to see the client go; what it sends is ignored */
  return 0;
}

const char *conn_head(const conn *c, size_t *len, int *request) {
  *request = c->is_server;
  return session_head(&c->s, len);
}

/* A pending upgrade keeps its head for conn_accept_upgrade. */
void conn_drop_head(conn *c) {
  if (state_of(c) != CONN_PENDING) session_drop_head(&c->s);
}

int conn_refuse_handshake(conn *c, int status) {
  if (!c->is_server || state_of(c) != CONN_HANDSHAKE || c->tcp_closing) return -1;
  if (c->tls && !c->tls_ready) return -1; /* no channel to answer on yet */
  static const char body[] = "server shutting down\n";
  static const char *const names[] = {"Content-Type"}, *const values[] = {"text/plain"};
  stop_reading(c);
  c->phase = CONN_HTTP;
  return conn_respond_http(c, status, names, values, 1, body, sizeof body - 1);
}

int conn_accept_upgrade(conn *c) {
  if (state_of(c) != CONN_PENDING || c->tcp_closing) return -1;
  if (session_accept(&c->s, c->policy) != SESSION_HEAD_OPEN) {
    conn_abort(c, c->s.error);
    return -1;
  }
  open_session(c);
  session_drop_head(&c->s); /* the binding read it while the verdict was pending */
  return 0;
}

/* Publishing */

void conn_shared_init(conn_shared *m, int binary, const void *data, size_t len) {
  memset(m, 0, sizeof *m);
  m->opcode = binary ? FRAME_BINARY : FRAME_TEXT;
  m->data = data;
  m->len = len;
}

void conn_shared_free(loop *l, conn_shared *m) {
  if (m->plain) outq_block_unref(l, m->plain);
  if (m->sse) outq_block_unref(l, m->sse);
  m->sse = NULL;
  for (unsigned i = 0; i < m->nz; i++) outq_block_unref(l, m->z[i].frame);
  m->plain = NULL;
  m->nz = 0;
}

/* A whole unmasked frame in a shared block. */
static struct outq_block *make_frame(int opcode, int rsv, const uint8_t *data, size_t len) {
  uint8_t hdr[FRAME_MAX_HEADER];
  size_t hl = frame_encode_header(hdr, 1, rsv, opcode, len, NULL);
  struct outq_block *b = outq_block_new(hl + len);
  if (!b) return NULL;
  memcpy(b->data, hdr, hl);
  if (len) memcpy(b->data + hl, data, len);
  b->len = hl + len;
  return b;
}

static struct outq_block *plain_frame(conn_shared *m) {
  if (!m->plain) m->plain = make_frame(m->opcode, 0, m->data, m->len);
  return m->plain;
}

/* The frame compressed by p, made once for every compressor whose output is
 * the same; NULL when out of memory or when there are more distinct forms
 * than CONN_SHARED_FORMS (then the caller compresses for c alone). */
static struct outq_block *deflated_frame(conn *c, conn_shared *m, pmd *p) {
  for (unsigned i = 0; i < m->nz; i++)
    if (pmd_same_output(m->z[i].params, p)) return m->z[i].frame;
  if (m->nz == CONN_SHARED_FORMS) return NULL;
  buf *z = &c->loop->zbuf;
  z->len = 0;
  if (pmd_deflate(p, m->data, m->len, z)) return NULL;
  struct outq_block *b = make_frame(m->opcode, FRAME_RSV1, (const uint8_t *)z->data, z->len);
  if (z->cap > 1u << 20) buf_free(z); /* keep a modest scratch buffer only */
  if (!b) return NULL;
  m->z[m->nz].params = p;
  m->z[m->nz++].frame = b;
  return b;
}

/* Past max_backlog: drop this message for c, or close c with 1013; what
 * was queued but not yet in flight goes with it then, so the close frame
 * does not wait behind it. */
static int over_backlog(conn *c) {
  c->dropped++;
  if (c->opts.backlog_close && c->phase == CONN_SSE) {
    outq_drop_unsealed(&c->q, c->loop);
    begin_teardown(c);
  } else if (c->opts.backlog_close) {
    outq_drop_unsealed(&c->q, c->loop);
    static const char why[] = "subscriber too slow";
    session_close(&c->s, FRAME_CLOSE_TRY_AGAIN, why, sizeof why - 1);
  }
  return CONN_DROPPED;
}

/* A line break in an event's data: CRLF, LF or CR (the HTML standard's
 * event stream grammar); the length of the one at p, or 0. */
static size_t line_break(const uint8_t *p, const uint8_t *end) {
  if (*p == '\n') return 1;
  if (*p != '\r') return 0;
  return p + 1 < end && p[1] == '\n' ? 2 : 1;
}

static uint8_t *put(uint8_t *p, const void *s, size_t n) {
  if (n) memcpy(p, s, n);
  return p + n;
}

/* The event for m, once for every stream: "id:", "event:", a "data:" line
 * per line of the text, and the blank line that dispatches it. */
static struct outq_block *sse_event(conn_shared *m) {
  const uint8_t *d = m->data, *end = d + m->len;
  size_t lines = 1;
  for (const uint8_t *p = d; p < end; p++) {
    size_t k = line_break(p, end);
    if (k) lines++, p += k - 1;
  }
  size_t room = m->id_len + m->event_len + m->len + lines * 7 + 16;
  struct outq_block *b = outq_block_new(room);
  if (!b) return NULL;
  uint8_t *o = b->data;
  if (m->id) o = put(put(put(o, "id: ", 4), m->id, m->id_len), "\n", 1);
  o = put(put(put(o, "event: ", 7), m->event, m->event_len), "\n", 1);
  const uint8_t *line = d;
  for (const uint8_t *p = d;; p++) {
    size_t k = p < end ? line_break(p, end) : 1;
    if (!k) continue;
    o = put(put(put(o, "data: ", 6), line, (size_t)(p - line)), "\n", 1);
    if (p >= end) break;
    p += k - 1;
    line = p + 1;
  }
  o = put(o, "\n", 1);
  b->len = (size_t)(o - b->data);
  return b;
}

static int sse_publish(conn *c, conn_shared *m) {
  if (c->tcp_closing || c->s.close != CLOSE_OPEN) return CONN_CLOSED;
  if (m->opcode == FRAME_BINARY) {
    c->skipped++;
    return CONN_SKIPPED;
  }
  if (buffered(c) >= c->opts.max_backlog) return over_backlog(c);
  if (!m->sse && !(m->sse = sse_event(m))) return CONN_NOMEM;
  if (outq_share(&c->q, c->loop, m->sse)) return CONN_NOMEM;
  mark_dirty(c);
  return CONN_OK;
}

int conn_publish(conn *c, conn_shared *m) {
  if (c->phase == CONN_SSE) return sse_publish(c, m);
  if (c->tcp_closing || !session_live(&c->s)) return CONN_CLOSED;
  if (buffered(c) >= c->opts.max_backlog) return over_backlog(c);
  pmd *p = c->s.pmd;
  int compress = p && pmd_wants(p, m->len);
  /* a client masks each frame afresh, and a compressor that keeps its
   * context makes output of its own: those frame it for themselves */
  struct outq_block *b = NULL;
  if (c->is_server && !compress)
    b = plain_frame(m);
  else if (c->is_server && pmd_same_output(p, p))
    b = deflated_frame(c, m, p);
  if (!b) return session_send(&c->s, m->opcode, m->data, m->len);
  if (outq_share(&c->q, c->loop, b)) return CONN_NOMEM;
  mark_dirty(c);
  return CONN_OK;
}
