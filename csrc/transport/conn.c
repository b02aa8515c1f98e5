#include "transport/conn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  DIRECT_WRITE_MIN = 64 * 1024,
  /* libuv buffer lengths are unsigned ints: longer spans go as several
   * buffers. The send limits (CONN_MAX_SEND, high_water at most
   * CONN_MAX_HIGH_WATER) keep a queue within WIRE_BUFS of them. */
  WIRE_CHUNK = 1 << 30,
  WIRE_BUFS = 24,
  /* a message this large gets a block of its own (see push_large) */
  ADOPT_MIN = 4096
};

/* Appends p[0..n) to b[k..) as buffers of at most WIRE_CHUNK bytes and
 * returns the new count, or WIRE_BUFS + 1 once they do not fit (the send
 * limits make that impossible; a write must never silently cover less). */
static unsigned wire_bufs(uv_buf_t *b, unsigned k, char *p, size_t n) {
  while (n && k < WIRE_BUFS) {
    size_t len = n < WIRE_CHUNK ? n : WIRE_CHUNK;
    b[k++] = uv_buf_init(p, (unsigned)len);
    p += len, n -= len;
  }
  return n ? WIRE_BUFS + 1 : k;
}

/* Bytes of our waiting writes that the kernel has taken so far. A write
 * waits only when the kernel's buffer was full, so each of these bytes
 * means that the peer took some of our data: keepalive counts them as a
 * sign of life (bytes that went straight into a buffer with room prove
 * nothing). */
static uint64_t bytes_drained(const conn *c) {
  size_t left = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
  return c->drained + (c->inflight && c->inflight->len > left ? c->inflight->len - left : 0);
}

void conn_opts_default(conn_opts *o) {
  o->max_message = 16u << 20;
  o->max_head = 8192;
  o->high_water = 1u << 20;
  o->handshake_timeout_ms = 10000;
  o->close_timeout_ms = 5000;
  o->ping_interval_ms = 0;
  o->ping_timeout_ms = 0;
  pmd_config_default(&o->pmd);
}

/* What an event of the close state machine carries: a close frame's code
 * and reason, a failure's code and text, or the text of a cut. */
typedef struct close_why {
  unsigned code;
  const char *text;
  size_t len;
} close_why;

static int close_drive(conn *c, close_event ev, const close_why *w);
static void begin_teardown(conn *c);

static void obj_close(loop_obj *o) { conn_close_handles((conn *)o); }
static void obj_flush(loop_obj *o) { conn_flush((conn *)o); }
static const loop_obj_ops conn_obj_ops = {obj_close, obj_flush};

conn *conn_new(loop *l, int is_server, const conn_opts *o) {
  conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->obj.ops = &conn_obj_ops;
  c->refs = 3; /* the creator's and one per handle */
  c->loop = l;
  c->id = loop_new_id(l);
  c->opts = *o;
  c->is_server = is_server != 0;
  c->state = is_server ? CONN_HANDSHAKE : CONN_DIALING;
  c->close_code = FRAME_CLOSE_ABNORMAL;
  uv_tcp_init(&l->uv, &c->tcp);
  uv_timer_init(&l->uv, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  return c;
}

static void conn_free(conn *c) {
  inbox_free(&c->inbox, c->loop);
  proto_free(&c->proto);
  buf_free(&c->head);
  loop_release(c->loop, c->out.data, c->out.cap);
  buf_free(&c->cipher);
  loop_undefer(c->loop, &c->tls_wait);
  tls_free(c->tls);
  pmd_free(c->pmd);
  if (c->dial && c->dial->ai) uv_freeaddrinfo(c->dial->ai);
  free(c->close_reason);
  free(c->pong);
  free(c->dial);
  free(c->protocol);
  free(c);
}

void conn_ref(conn *c) { c->refs++; }

/* The one place a conn is freed: when nothing refers to it any more. */
void conn_unref(conn *c) {
  if (--c->refs == 0) conn_free(c);
}

void conn_on_handle_closed(uv_handle_t *h) { conn_unref(h->data); }

/* One entry per step is enough, however many messages arrive. */
static void wake(conn *c) {
  if (c->woken == c->loop->wake_gen) return;
  c->woken = c->loop->wake_gen;
  loop_wake(c->loop, c->id);
}

/* CLOSE_ACT_DROP: the one place the handles are closed. */
static void close_handles(conn *c) {
  if (c->tcp_closing) return;
  c->tcp_closing = 1;
  loop_unmark_dirty(c->loop, &c->obj);
  if (c->role && c->role->on_close) c->role->on_close(c);
  /* a dial retry may be closing the tcp handle already; its callback counts */
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
}

void conn_close_handles(conn *c) {
  if (!c->tcp_closing) close_drive(c, CLOSE_EV_GONE, NULL);
}

static void on_timer(uv_timer_t *t);

void conn_arm_timer(conn *c, uint64_t ms) {
  if (!c->tcp_closing) uv_timer_start(&c->timer, on_timer, ms, 0);
}

void conn_abort(conn *c, const char *why) {
  if (c->tcp_closing) return;
  if (why && !c->error) c->error = why;
  close_drive(c, CLOSE_EV_ABORT, NULL);
}

void conn_release(conn *c) {
  /* a finished connection completes its graceful teardown on its own */
  if (c->state != CONN_DONE) conn_abort(c, "connection was dropped by its owner");
  conn_unref(c);
}

void conn_mark_dirty(conn *c) {
  if (!c->tcp_closing) loop_mark_dirty(c->loop, &c->obj);
}

size_t conn_buffered(const conn *c) {
  return c->out.len + c->cipher.len + (c->inflight ? c->inflight->len : 0);
}

static void tls_resume(loop_task *t);

int conn_use_tls(conn *c, tls_ctx *ctx, const char *host) {
  if (!loop_plain(c->loop)) return -1;
  c->tls = tls_new(ctx, host, &c->cipher);
  c->tls_wait.run = tls_resume;
  return c->tls ? 0 : -1;
}

/* Encrypts the queued plaintext once the TLS handshake allows it (the
 * records land in c->cipher). What TLS does not take yet stays queued, to
 * go after the next input. 0, or -1 after aborting c. */
static int tls_pump(conn *c) {
  if (!c->tls_ready || !c->out.len || c->tls_closing) return 0;
  size_t done;
  if (tls_write(c->tls, c->out.data, c->out.len, &done) == TLS_ERROR) {
    conn_abort(c, tls_error(c->tls));
    return -1;
  }
  if (done == c->out.len) {
    loop_release(c->loop, c->out.data, c->out.cap);
    c->out = (buf){0};
  } else if (done) {
    memmove(c->out.data, c->out.data + done, c->out.len - done);
    c->out.len -= done;
  }
  return 0;
}

/* Writing */

static int queue_frame(conn *c, int opcode, int rsv, const uint8_t *data, size_t len);

static void after_drain(conn *c) {
  if (c->pong && conn_buffered(c) < c->opts.high_water) {
    if (c->state == CONN_OPEN) queue_frame(c, FRAME_PONG, 0, c->pong, c->pong_len);
    free(c->pong);
    c->pong = NULL;
  }
  if (c->want_write && conn_buffered(c) < c->opts.high_water) {
    c->want_write = 0;
    wake(c);
  }
  if (conn_buffered(c) == 0) close_drive(c, CLOSE_EV_FLUSHED, NULL);
}

static void on_write(uv_write_t *req, int status) {
  conn_write *w = (conn_write *)req;
  conn *c = req->data;
  if (status == 0) c->drained += w->len;
  loop_release(c->loop, w->base, w->cap);
  free(w);
  c->inflight = NULL;
  if (status < 0) {
    conn_abort(c, uv_strerror(status));
    return;
  }
  if (c->out.len || c->cipher.len)
    conn_flush(c);
  else
    after_drain(c);
}

void conn_flush(conn *c) {
  if (c->inflight || c->tcp_closing) return;
  buf *wire = &c->out;
  if (c->tls) {
    if (tls_pump(c)) return;
    wire = &c->cipher;
  }
  if (wire->len == 0) return;
  uv_buf_t b[WIRE_BUFS];
  unsigned nb = wire_bufs(b, 0, wire->data, wire->len);
  if (nb > WIRE_BUFS) {
    conn_abort(c, "write queue too large");
    return;
  }
  int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
  if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
  if (n < 0) {
    conn_abort(c, uv_strerror(n));
    return;
  }
  if ((size_t)n == wire->len) {
    loop_release(c->loop, wire->data, wire->cap); /* an idle connection holds no buffer */
    *wire = (buf){0};
    after_drain(c);
    return;
  }
  conn_write *w = malloc(sizeof *w);
  if (!w) {
    conn_abort(c, "out of memory");
    return;
  }
  w->base = wire->data;
  w->cap = wire->cap;
  w->len = wire->len - (size_t)n;
  w->req.data = c;
  *wire = (buf){0};
  c->inflight = w;
  nb = wire_bufs(b, 0, w->base + n, w->len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, b, nb, on_write);
  if (rc) {
    c->inflight = NULL;
    loop_release(c->loop, w->base, w->cap);
    free(w);
    conn_abort(c, uv_strerror(rc));
    return;
  }
  after_drain(c);
}

/* Appends one frame to the queue, masking it for a client. */
static int queue_frame(conn *c, int opcode, int rsv, const uint8_t *data, size_t len) {
  uint8_t hdr[FRAME_MAX_HEADER], mask[4];
  int masked = !c->is_server;
  if (masked && loop_random(c->loop, mask, 4)) return CONN_NOMEM;
  size_t hl = frame_encode_header(hdr, 1, rsv, opcode, len, masked ? mask : NULL);
  /* A large message goes straight from the caller's bytes, after what is
   * queued, in one writev: only what the kernel does not take is copied. */
  if (!masked && !c->tls && len >= DIRECT_WRITE_MIN && !c->inflight && !c->tcp_closing) {
    uv_buf_t b[WIRE_BUFS];
    unsigned nb = wire_bufs(b, 0, c->out.data, c->out.len);
    nb = wire_bufs(b, nb, (char *)hdr, hl);
    nb = wire_bufs(b, nb, (char *)data, len);
    if (nb > WIRE_BUFS) return CONN_TOOBIG;
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
      conn_abort(c, uv_strerror(n));
      return CONN_CLOSED;
    }
    size_t done = (size_t)n;
    if (c->out.len) { /* drop what left of the queue */
      size_t q = done < c->out.len ? done : c->out.len;
      memmove(c->out.data, c->out.data + q, c->out.len - q);
      c->out.len -= q;
      done -= q;
    }
    if (done < hl) {
      if (buf_append(&c->out, hdr + done, hl - done)) return CONN_NOMEM;
      done = 0;
    } else {
      done -= hl;
    }
    if (done < len && buf_append(&c->out, data + done, len - done)) return CONN_NOMEM;
    if (c->out.len)
      conn_mark_dirty(c);
    else
      loop_release(c->loop, c->out.data, c->out.cap), c->out = (buf){0};
    return CONN_OK;
  }
  if (!c->out.data) { /* start from a spare, even for a small frame: no malloc per message */
    size_t want = hl + len < LOOP_SPARE_MIN ? LOOP_SPARE_MIN : hl + len;
    c->out.data = loop_alloc(c->loop, want, &c->out.cap);
    if (!c->out.data) c->out.cap = 0;
  }
  if (buf_reserve(&c->out, hl + len)) return CONN_NOMEM;
  uint8_t *dst = (uint8_t *)c->out.data + c->out.len;
  memcpy(dst, hdr, hl);
  if (masked)
    frame_mask_copy(dst + hl, data, len, mask, 0);
  else if (len)
    memcpy(dst + hl, data, len);
  c->out.len += hl + len;
  conn_mark_dirty(c);
  return CONN_OK;
}

static int queue_close(conn *c, unsigned code, const char *reason, size_t len) {
  uint8_t payload[FRAME_MAX_CONTROL];
  size_t n = 0;
  if (code) {
    if (len > FRAME_MAX_CONTROL - 2) len = FRAME_MAX_CONTROL - 2;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (len) memcpy(payload + 2, reason, len);
    n = 2 + len;
  }
  return queue_frame(c, FRAME_CLOSE, 0, payload, n);
}

/* Reading */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  conn *c = h->data;
  (void)hint;
  b->base = (char *)c->loop->readbuf;
  b->len = LOOP_READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

void conn_start_reading(conn *c) {
  if (c->reading || c->tcp_closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void stop_reading(conn *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void set_reason(conn *c, const char *reason, size_t len) {
  free(c->close_reason);
  c->close_reason = malloc(len + 1);
  if (!c->close_reason) return;
  if (len) memcpy(c->close_reason, reason, len);
  c->close_reason[len] = 0;
}

/* The close handshake: protocol/close.h decides, the functions below act.
 * After the close frames (or a failure): send what is queued, then FIN, then
 * wait (bounded) for the peer's FIN so the close frame is never cut off by a
 * reset. */
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
    conn_close_handles(c);
  }
}

/* CLOSE_ACT_TEARDOWN: once nothing is queued, CLOSE_EV_FLUSHED sends the FIN
 * (here, or from after_drain). */
static void teardown(conn *c) {
  if (c->tcp_closing) return;
  if (c->tls && c->tls_ready && !c->tls_closing) {
    if (tls_pump(c)) return;
    /* close_notify (so the peer can tell a cut from an end) after the last
     * byte: with plaintext still queued, begin_teardown runs again once it is out */
    if (!c->out.len) {
      tls_shutdown(c->tls);
      c->tls_closing = 1;
    }
  }
  if (conn_buffered(c))
    conn_mark_dirty(c);
  else
    close_drive(c, CLOSE_EV_FLUSHED, NULL);
}

/* CLOSE_ACT_SEND_ECHO: the peer's code back (none when it sent none). */
static void send_echo(conn *c) {
  unsigned code = c->close_code == FRAME_CLOSE_NO_STATUS ? 0 : c->close_code;
  const char *reason = c->close_reason ? c->close_reason : "";
  queue_close(c, code, reason, strlen(reason));
}

/* CLOSE_ACT_SEND_FAIL: fail the connection (RFC 6455 7.1.7) and report why. */
static void send_fail(conn *c) {
  const char *why = c->error ? c->error : "";
  queue_close(c, c->fail_code, why, strlen(why));
  c->close_code = c->fail_code;
  set_reason(c, why, strlen(why));
}

/* The binding's view: the opening phases as the transport set them, then
 * the close machine's progress. */
static void show_state(conn *c) {
  if (c->close == CLOSE_LOCAL_CLOSING)
    c->state = CONN_CLOSING;
  else if (c->close == CLOSE_DRAINING || c->close == CLOSE_FIN_WAIT || c->close == CLOSE_CLOSED)
    c->state = CONN_DONE;
}

/* Applies ev and performs its actions in the order close.h gives. An action
 * may feed the machine again (teardown: FLUSHED; a failed write: ABORT); the
 * rest of the outer step then finds the handles closing and does nothing.
 * CONN_CLOSED when ev was refused or our own close frame could not be queued. */
static int close_drive(conn *c, close_event ev, const close_why *w) {
  static const close_why none = {0, NULL, 0};
  if (!w) w = &none;
  unsigned a = close_apply(&c->close, ev);
  show_state(c);
  if (a & CLOSE_ACT_RECORD_PEER) {
    c->close_code = w->code;
    set_reason(c, w->text, w->len);
  }
  if (a & CLOSE_ACT_RECORD_FAIL) c->fail_code = w->code, c->error = w->text;
  if (a & CLOSE_ACT_ABNORMAL) {
    c->close_code = FRAME_CLOSE_ABNORMAL;
    if (w->text && !c->error) c->error = w->text;
  }
  if (a & CLOSE_ACT_STOP_READING) stop_reading(c);
  if ((a & CLOSE_ACT_SEND_LOCAL) && queue_close(c, w->code, w->text, w->len) != CONN_OK) {
    conn_abort(c, "out of memory");
    return CONN_CLOSED;
  }
  if (a & CLOSE_ACT_SEND_ECHO) send_echo(c);
  if (a & CLOSE_ACT_SEND_FAIL) send_fail(c);
  if (a & CLOSE_ACT_MARK_CLEAN) c->clean = 1;
  if (a & CLOSE_ACT_WAKE) wake(c);
  if (a & CLOSE_ACT_TEARDOWN) teardown(c);
  if (a & CLOSE_ACT_SHUTDOWN) send_fin(c);
  if (a & CLOSE_ACT_START_READING) conn_start_reading(c);
  if (a & CLOSE_ACT_ARM_TIMER) conn_arm_timer(c, c->opts.close_timeout_ms);
  if (a & CLOSE_ACT_DROP) close_handles(c);
  return a & CLOSE_ACT_REJECT ? CONN_CLOSED : CONN_OK;
}

/* Ends a connection that never carried frames (a refused handshake, an
 * answered HTTP request, a TLS alert): flush, FIN, wait for the peer's. */
static void begin_teardown(conn *c) { close_drive(c, CLOSE_EV_END, NULL); }

/* A large message gets a block of its own, so the inbox buffer never grows
 * (and copies what it holds) for it: the reassembled one is adopted as it
 * lies, one that came whole in a read is copied once. */
static int push_large(conn *c, int opcode, const uint8_t *data, size_t len) {
  size_t cap = c->proto.msg_cap;
  void *block = proto_take_message(&c->proto);
  if (!block && (block = loop_alloc(c->loop, len, &cap))) memcpy(block, data, len);
  return block ? inbox_push_block(&c->inbox, c->loop, opcode, block, cap, len) : -1;
}

static void sink_message(void *ud, int opcode, const uint8_t *data, size_t len) {
  conn *c = ud;
  if (c->state != CONN_OPEN) return; /* after our close frame, data is moot */
  /* small messages are copied into the inbox buffer; a large (reassembled
   * or inflated) one keeps a block of its own */
  int rc = len < ADOPT_MIN ? inbox_push_copy(&c->inbox, c->loop, opcode, data, len)
                           : push_large(c, opcode, data, len);
  if (rc) {
    close_drive(c, CLOSE_EV_ERROR, &(close_why){FRAME_CLOSE_INTERNAL, "out of memory", 0});
    return;
  }
  if (c->inbox.bytes >= c->opts.high_water) stop_reading(c); /* the handler is behind */
  wake(c);
}

/* A peer that pings and never reads must not fill our memory with pongs:
 * above the high-water mark only the latest ping is answered, once the queue
 * drains, as RFC 6455 5.5.3 allows. */
static void sink_ping(void *ud, const uint8_t *data, size_t len) {
  conn *c = ud;
  if (c->state != CONN_OPEN) return;
  if (!c->pong && conn_buffered(c) < c->opts.high_water) {
    queue_frame(c, FRAME_PONG, 0, data, len);
    return;
  }
  if (!c->pong && !(c->pong = malloc(FRAME_MAX_CONTROL))) return; /* no memory: no pong */
  if (len) memcpy(c->pong, data, len);
  c->pong_len = (uint8_t)len;
}

/* Any bytes from the peer tell keepalive that it is there (c->heard); the
 * pong it waits for also starts the next quiet interval at once, rather than
 * at the pong deadline. Unsolicited pongs are allowed and need nothing. */
static void sink_pong(void *ud, const uint8_t *data, size_t len) {
  conn *c = ud;
  (void)data, (void)len;
  if (!c->awaiting_pong || c->state != CONN_OPEN) return;
  c->awaiting_pong = 0;
  conn_arm_timer(c, c->opts.ping_interval_ms);
}

/* With messages unread, the handler sees them before the close, and its
 * replies go out before ours, within the close timeout. */
static void sink_close(void *ud, unsigned code, const uint8_t *reason, size_t len) {
  conn *c = ud;
  close_event ev = !inbox_empty(&c->inbox) ? CLOSE_EV_PEER_CLOSE_UNREAD : CLOSE_EV_PEER_CLOSE;
  close_drive(c, ev, &(close_why){code, (const char *)reason, len});
}

static const proto_sink sink = {sink_message, sink_ping, sink_pong, sink_close};

/* A bad frame fails the connection; as with the peer's close, the valid
 * messages before it are delivered first. */
static void feed(conn *c, uint8_t *data, size_t n) {
  unsigned code = proto_feed(&c->proto, data, n, &sink, c);
  if (!code) return;
  close_event ev = !inbox_empty(&c->inbox) ? CLOSE_EV_ERROR_UNREAD : CLOSE_EV_ERROR;
  close_drive(c, ev, &(close_why){code, c->proto.error, 0});
}

static void on_eof(conn *c, ssize_t err) {
  int early = c->state == CONN_DIALING || c->state == CONN_HANDSHAKE;
  const char *why = err != UV_EOF ? uv_strerror((int)err)
                    : early       ? "connection closed during the handshake"
                                  : "connection closed without a close frame";
  close_drive(c, CLOSE_EV_PEER_EOF, &(close_why){0, why, 0});
}

/* Plaintext from the peer, by state. */
static void dispatch(conn *c, char *data, size_t n) {
  switch (c->state) {
  case CONN_HANDSHAKE:
    c->role->on_head(c, data, n);
    break;
  case CONN_OPEN:
  case CONN_CLOSING:
    feed(c, (uint8_t *)data, n);
    break;
  default:
    break; /* done or answering HTTP: the rest is ignored */
  }
}

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
  conn_mark_dirty(c); /* handshake records, or an alert */
  if (rc == TLS_ERROR) {
    /* send the alert (it tells the peer why) before closing */
    c->error = tls_error(c->tls);
    if (!c->cipher.len)
      conn_abort(c, c->error);
    else
      begin_teardown(c);
    return -1;
  }
  if (rc == TLS_WANT) return 0;
  c->tls_ready = 1; /* and a client's request can go out now */
  return 1;
}

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
    conn_mark_dirty(c); /* TLS may have records of its own, or queued output may go now */
}

/* Ciphertext from the peer, read by OpenSSL in place: all of it is consumed
 * (or set aside) before this returns, since the read buffer is the loop's. */
static void tls_input(conn *c, const char *data, size_t n) {
  tls_feed(c->tls, data, n);
  if (c->tls_ready || tls_step(c) == 1) tls_decrypt(c);
  if (tls_end_input(c->tls) && !c->tcp_closing) conn_abort(c, "out of memory");
}

/* A handshake put off by tls_step, in a later step with budget. */
static void tls_resume(loop_task *t) {
  conn *c = (conn *)((char *)t - offsetof(conn, tls_wait));
  if (c->tcp_closing) return;
  conn_start_reading(c);
  tls_input(c, NULL, 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  if (n == 0) return;
  if (n < 0) {
    on_eof(c, n);
    return;
  }
  c->heard = uv_now(&c->loop->uv);
  if (c->tls)
    tls_input(c, b->base, (size_t)n);
  else
    dispatch(c, b->base, (size_t)n);
}

/* Keepalive: a ping once the peer has been quiet for ping_interval; then
 * anything it sends within ping_timeout (the pong, or any other bytes), or
 * its taking more of our queued data (bytes_drained), shows it is there,
 * and silence fails the connection with 1011. */
static void keepalive(conn *c) {
  uint64_t now = uv_now(&c->loop->uv);
  uint64_t drained = bytes_drained(c);
  if (c->awaiting_pong && drained > c->ping_drained) {
    /* the peer took more of what we sent before the ping (which waits
     * behind it): it is there, if only reading, behind a deep queue */
    c->heard = now;
    c->ping_drained = drained;
  }
  if (c->awaiting_pong && c->heard < c->ping_sent) {
    if (!c->reading) {
      /* reading is paused because the handler is behind: whatever the peer
       * sent waits unread, so its silence says nothing */
      conn_arm_timer(c, c->opts.ping_timeout_ms);
    } else if (c->pong_grace < 2) {
      /* libuv runs timers before reading, so after a stall the pong may be
       * waiting unread; two more loop iterations (a peer in this process
       * needs one to answer) before we call it silence. 1 ms, not 0: a
       * 0 ms timer started here would run again before the poll. */
      c->pong_grace++;
      conn_arm_timer(c, 1);
    } else {
      close_drive(c, CLOSE_EV_ERROR,
                  &(close_why){FRAME_CLOSE_INTERNAL, "keepalive ping timed out", 0});
    }
    return;
  }
  c->awaiting_pong = 0;
  uint64_t quiet = now - c->heard;
  if (quiet < c->opts.ping_interval_ms) {
    conn_arm_timer(c, c->opts.ping_interval_ms - quiet);
    return;
  }
  c->awaiting_pong = 1;
  c->pong_grace = 0;
  c->ping_sent = now;
  c->ping_drained = drained;
  queue_frame(c, FRAME_PING, 0, NULL, 0);
  conn_arm_timer(c, c->opts.ping_timeout_ms);
}

static void on_timer(uv_timer_t *t) {
  conn *c = t->data;
  if (c->state == CONN_DIALING || c->state == CONN_HANDSHAKE || c->state == CONN_HTTP)
    conn_abort(c, "handshake timed out");
  else if (c->close != CLOSE_OPEN)
    close_drive(c, CLOSE_EV_TIMEOUT, &(close_why){0, "close handshake timed out", 0});
  else if (c->opts.ping_interval_ms)
    keepalive(c);
}

/* Called once the handshake succeeded; rest holds bytes that followed the
 * head in the same read. */
void conn_open(conn *c, const uint8_t *rest, size_t rest_len) {
  c->state = CONN_OPEN;
  c->opened = 1;
  proto_init(&c->proto, c->is_server, c->opts.max_message);
  if (c->pmd) c->proto.rsv_allowed = FRAME_RSV1, c->proto.inflater = c->pmd;
  uv_timer_stop(&c->timer);
  c->heard = uv_now(&c->loop->uv);
  if (c->opts.ping_interval_ms) conn_arm_timer(c, c->opts.ping_interval_ms);
  wake(c);
  conn_start_reading(c);
  if (rest_len) feed(c, (uint8_t *)rest, rest_len);
}

void conn_fail_handshake(conn *c, const char *why) {
  if (!c->error) c->error = why;
  begin_teardown(c);
}

int conn_send(conn *c, int opcode, const uint8_t *data, size_t len) {
  if (c->state != CONN_OPEN || c->tcp_closing) return CONN_CLOSED;
  if (len > CONN_MAX_SEND) return CONN_TOOBIG;
  if (conn_buffered(c) >= c->opts.high_water) {
    c->want_write = 1;
    return CONN_WAIT;
  }
  if (c->pmd && pmd_wants(c->pmd, len)) {
    buf *z = &c->loop->zbuf;
    z->len = 0;
    if (pmd_deflate(c->pmd, data, len, z)) return CONN_NOMEM;
    int rc = queue_frame(c, opcode, FRAME_RSV1, (const uint8_t *)z->data, z->len);
    if (z->cap > 1u << 20) buf_free(z); /* keep a modest scratch buffer only */
    return rc;
  }
  return queue_frame(c, opcode, 0, data, len);
}

int conn_ping(conn *c, const uint8_t *data, size_t len) {
  if (c->state != CONN_OPEN || c->tcp_closing) return CONN_CLOSED;
  return queue_frame(c, FRAME_PING, 0, data, len);
}

int conn_close(conn *c, unsigned code, const char *reason, size_t reason_len) {
  if (c->state != CONN_OPEN || c->tcp_closing) return CONN_CLOSED;
  return close_drive(c, CLOSE_EV_LOCAL_CLOSE, &(close_why){code, reason, reason_len});
}

void conn_respond(conn *c, const char *data, size_t len) {
  if (c->state != CONN_HTTP || c->tcp_closing) return;
  if (buf_append(&c->out, data, len)) {
    conn_abort(c, "out of memory");
    return;
  }
  begin_teardown(c);
}

void conn_remote(conn *c, char *out, size_t size) {
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

int conn_head_append(conn *c, const char *data, size_t n) {
  /* a little slack: the bytes after a complete head may be frames */
  if (c->head.len + n > c->opts.max_head + LOOP_READ_SIZE) return -1;
  return buf_append(&c->head, data, n);
}

/* Transport API for the binding */

static const char *const state_names[] = {"dialing", "handshake", "http",
                                          "open",    "closing",   "closed"};

void conn_describe(conn *c, unsigned what, conn_info *out) {
  out->id = c->id;
  out->state = state_names[c->state];
  out->opened = c->opened;
  out->closed = c->state == CONN_DONE;
  out->close_code = c->close_code;
  out->close_reason = c->close_reason ? c->close_reason : "";
  out->clean = c->clean;
  out->error = c->error;
  out->http_status = c->dial_status;
  out->protocol = c->protocol;
  out->compressed = c->pmd != NULL;
  out->buffered = conn_buffered(c);
  out->remote[0] = out->peer_subject[0] = 0;
  if (what & CONN_INFO_REMOTE) conn_remote(c, out->remote, sizeof out->remote);
  if ((what & CONN_INFO_PEER) && c->tls)
    tls_peer_subject(c->tls, out->peer_subject, sizeof out->peer_subject);
}

int conn_receive(conn *c, conn_message *m) {
  const inbox_msg *front = inbox_peek(&c->inbox);
  if (front) {
    m->data = front->data;
    m->len = front->len;
    m->binary = front->opcode != FRAME_TEXT;
    return CONN_OK;
  }
  close_drive(c, CLOSE_EV_INBOX_DRAINED, NULL); /* a pending close resolves now */
  switch (c->state) {
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
  if (c->state == CONN_OPEN && c->close == CLOSE_OPEN && c->inbox.bytes < c->opts.high_water)
    conn_start_reading(c);
}

int conn_send_message(conn *c, const void *data, size_t len, int binary) {
  if (!binary && !utf8_valid(data, len)) return CONN_BAD_UTF8;
  return conn_send(c, binary ? FRAME_BINARY : FRAME_TEXT, data, len);
}

int conn_send_ping(conn *c, const void *data, size_t len) {
  if (len > FRAME_MAX_CONTROL) return CONN_BAD_LENGTH;
  return conn_ping(c, data, len);
}

int conn_start_close(conn *c, unsigned code, const char *reason, size_t len) {
  if (!frame_close_code_sendable(code)) return CONN_BAD_CODE;
  if (len > FRAME_MAX_CONTROL - 2) return CONN_BAD_LENGTH;
  if (!utf8_valid((const uint8_t *)reason, len)) return CONN_BAD_UTF8;
  return conn_close(c, code, reason, len);
}

int conn_respond_http(conn *c, int status, const char *const *names, const char *const *values,
                      size_t nheaders, const char *body, size_t body_len) {
  buf out = {0};
  if (hs_build_response(&out, status, names, values, nheaders, body_len) ||
      buf_append(&out, body, body_len)) {
    buf_free(&out);
    return -1;
  }
  conn_respond(c, out.data, out.len);
  buf_free(&out);
  return 0;
}

const char *conn_head(const conn *c, size_t *len, int *request) {
  *len = c->head_len;
  *request = c->is_server;
  return c->head_len ? c->head.data : NULL;
}

void conn_drop_head(conn *c) {
  buf_free(&c->head);
  c->head_len = 0;
}
