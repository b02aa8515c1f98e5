#include "transport/conn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/dial.h"
#include "transport/server.h"

enum {
  DIRECT_WRITE_MIN = 64 * 1024,
  /* libuv buffer lengths are unsigned ints: longer spans go as several
   * buffers. The send limits (CONN_MAX_SEND, high_water at most
   * CONN_MAX_HIGH_WATER) keep a queue within WIRE_BUFS of them. */
  WIRE_CHUNK = 1 << 30,
  WIRE_BUFS = 24,
  /* what malloc adds to each unread message, charged against high_water
   * so that a flood of empty messages is bounded too */
  MSG_OVERHEAD = 16
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

static void begin_teardown(conn *c);

conn *conn_new(loop *l, int is_server, const conn_opts *o) {
  conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->kind = LOOP_OBJ_CONN;
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
  c->handles_open = 2;
  return c;
}

static void conn_free(conn *c) {
  conn_msg *m = c->inbox;
  while (m) {
    conn_msg *next = m->next;
    loop_release(c->loop, m, m->cap);
    m = next;
  }
  proto_free(&c->proto);
  buf_free(&c->head);
  loop_release(c->loop, c->out.data, c->out.cap);
  buf_free(&c->cipher);
  tls_free(c->tls);
  pmd_free(c->pmd);
  if (c->dial && c->dial->ai) uv_freeaddrinfo(c->dial->ai);
  free(c->close_reason);
  free(c->pong);
  free(c->dial);
  free(c->protocol);
  free(c);
}

/* The one place a conn is freed: when nothing refers to it any more. */
void conn_maybe_free(conn *c) {
  if (c->handles_open || c->user || c->gai_pending || c->server || c->dirty) return;
  conn_free(c);
}

void conn_on_handle_closed(uv_handle_t *h) {
  conn *c = h->data;
  c->handles_open--;
  conn_maybe_free(c);
}

/* One entry per step is enough, however many messages arrive. */
static void wake(conn *c) {
  if (c->woken == c->loop->wake_gen) return;
  c->woken = c->loop->wake_gen;
  loop_wake(c->loop, c->id);
}

static void set_done(conn *c) {
  if (c->state == CONN_DONE) return;
  c->state = CONN_DONE;
  wake(c);
}

void conn_close_handles(conn *c) {
  if (c->tcp_closing) return;
  c->tcp_closing = 1;
  set_done(c);
  if (c->server && !c->queued) server_unlink(c->server, c);
  if (c->gai_pending) uv_cancel((uv_req_t *)&c->dial->gai); /* its callback still runs */
  if (c->dirty) {                                           /* unlink from the loop's flush list */
    conn **p = &c->loop->dirty;
    while (*p && *p != c) p = &(*p)->next_dirty;
    if (*p) *p = c->next_dirty;
    c->dirty = 0;
  }
  /* a dial retry may be closing the tcp handle already; its callback counts */
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
}

static void on_timer(uv_timer_t *t);

void conn_arm_timer(conn *c, uint64_t ms) {
  if (!c->tcp_closing) uv_timer_start(&c->timer, on_timer, ms, 0);
}

void conn_abort(conn *c, const char *why) {
  if (c->tcp_closing) return;
  if (why && !c->error) c->error = why;
  if (!c->close_received && c->state != CONN_DONE) c->close_code = FRAME_CLOSE_ABNORMAL;
  conn_close_handles(c);
}

void conn_release(conn *c) {
  c->user = 0;
  /* a finished connection completes its graceful teardown on its own */
  if (c->state != CONN_DONE) conn_abort(c, "connection was dropped by its owner");
  conn_maybe_free(c);
}

void conn_mark_dirty(conn *c) {
  if (c->dirty || c->tcp_closing) return;
  c->dirty = 1;
  c->next_dirty = c->loop->dirty;
  c->loop->dirty = c;
}

size_t conn_buffered(const conn *c) {
  return c->out.len + c->cipher.len + (c->inflight ? c->inflight->len : 0);
}

int conn_use_tls(conn *c, tls_ctx *ctx, const char *host) {
  c->tls = tls_new(ctx, host);
  return c->tls ? 0 : -1;
}

/* Encrypts the queued plaintext (once the TLS handshake allows it) and moves
 * every pending record to c->cipher. 0, or -1 after aborting c. */
static int tls_pump(conn *c) {
  if (c->tls_ready && c->out.len && !c->tls_closing) {
    if (tls_write(c->tls, c->out.data, c->out.len) != TLS_OK) {
      conn_abort(c, tls_error(c->tls));
      return -1;
    }
    loop_release(c->loop, c->out.data, c->out.cap);
    c->out = (buf){0};
  }
  if (tls_take_out(c->tls, &c->cipher)) {
    conn_abort(c, "out of memory");
    return -1;
  }
  return 0;
}

/* Writing */

static int queue_frame(conn *c, int opcode, int rsv, const uint8_t *data, size_t len);

static void after_drain(conn *c) {
  if (c->pong && conn_buffered(c) < c->opts.high_water) {
    if (c->state == CONN_OPEN && !c->close_sent)
      queue_frame(c, FRAME_PONG, 0, c->pong, c->pong_len);
    free(c->pong);
    c->pong = NULL;
  }
  if (c->want_write && conn_buffered(c) < c->opts.high_water) {
    c->want_write = 0;
    wake(c);
  }
  if (c->close_after_flush && conn_buffered(c) == 0) {
    c->close_after_flush = 0;
    begin_teardown(c);
  }
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
  if (!c->out.data && hl + len >= LOOP_SPARE_MIN) { /* start from a spare */
    c->out.data = loop_alloc(c->loop, hl + len, &c->out.cap);
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
  c->close_sent = 1;
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

/* Fail the connection (RFC 6455 7.1.7): send a close frame with the code,
 * then drop TCP once it is out. */
static void fail_now(conn *c) {
  c->fail_pending = 0;
  const char *why = c->error ? c->error : "";
  if (!c->close_sent) queue_close(c, c->fail_code, why, strlen(why));
  c->close_code = c->fail_code;
  set_reason(c, why, strlen(why));
  set_done(c);
  begin_teardown(c);
}

/* After the close handshake or a failure: send what is queued, then FIN,
 * then wait (bounded) for the peer's FIN so the close frame is never cut off
 * by a reset. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static void begin_teardown(conn *c) {
  if (c->tcp_closing) return;
  set_done(c);
  if (c->tls && c->tls_ready && !c->tls_closing) {
    if (tls_pump(c)) return;
    tls_shutdown(c->tls); /* close_notify, so the peer can tell a cut from an end */
    c->tls_closing = 1;
    if (tls_pump(c)) return;
  }
  if (conn_buffered(c)) {
    c->close_after_flush = 1;
    conn_mark_dirty(c);
  } else {
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown)) {
      free(req);
      conn_close_handles(c);
      return;
    }
  }
  conn_start_reading(c); /* to see the peer's FIN */
  conn_arm_timer(c, c->opts.close_timeout_ms);
}

static void sink_message(void *ud, int opcode, const uint8_t *data, size_t len) {
  conn *c = ud;
  if (c->state != CONN_OPEN) return; /* after our close frame, data is moot */
  /* a reassembled (or inflated) message is adopted as it lies; only small
   * ones are copied */
  size_t cap = c->proto.msg_reserve + c->proto.msg_cap;
  conn_msg *m = proto_take_message(&c->proto);
  if (m) {
    m->cap = cap;
  } else if ((m = loop_alloc(c->loop, offsetof(conn_msg, data) + len, &cap))) {
    m->cap = cap;
    if (len) memcpy(m->data, data, len);
  }
  if (!m) {
    c->fail_code = FRAME_CLOSE_INTERNAL;
    c->error = "out of memory";
    fail_now(c);
    return;
  }
  m->next = NULL;
  m->len = len;
  m->opcode = opcode;
  if (c->inbox_tail)
    c->inbox_tail->next = m;
  else
    c->inbox = m;
  c->inbox_tail = m;
  c->inbox_bytes += m->cap + MSG_OVERHEAD;
  if (c->inbox_bytes >= c->opts.high_water) stop_reading(c); /* the handler is behind */
  wake(c);
}

/* A peer that pings and never reads must not fill our memory with pongs:
 * above the high-water mark only the latest ping is answered, once the queue
 * drains, as RFC 6455 5.5.3 allows. */
static void sink_ping(void *ud, const uint8_t *data, size_t len) {
  conn *c = ud;
  if (c->state != CONN_OPEN || c->close_sent) return;
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

/* Answers the peer's close frame (echoing its code) and ends the connection. */
static void finish_close(conn *c) {
  c->close_deferred = 0;
  if (!c->close_sent) {
    unsigned code = c->close_code == FRAME_CLOSE_NO_STATUS ? 0 : c->close_code;
    const char *reason = c->close_reason ? c->close_reason : "";
    queue_close(c, code, reason, strlen(reason));
  }
  c->clean = 1;
  begin_teardown(c);
}

static void sink_close(void *ud, unsigned code, const uint8_t *reason, size_t len) {
  conn *c = ud;
  c->close_received = 1;
  c->close_code = code;
  set_reason(c, (const char *)reason, len);
  if (c->inbox && !c->close_sent && c->state == CONN_OPEN) {
    /* as with a bad frame: the handler sees the messages before the close
     * and its replies go out before ours, within the close timeout */
    c->close_deferred = 1;
    stop_reading(c);
    conn_arm_timer(c, c->opts.close_timeout_ms);
    return;
  }
  finish_close(c);
}

static const proto_sink sink = {sink_message, sink_ping, sink_pong, sink_close};

static void feed(conn *c, uint8_t *data, size_t n) {
  unsigned code = proto_feed(&c->proto, data, n, &sink, c);
  if (!code || c->fail_pending || c->state == CONN_DONE) return;
  if (c->state == CONN_CLOSING) { /* garbage after our close frame */
    conn_abort(c, c->proto.error);
    return;
  }
  c->fail_code = code;
  c->error = c->proto.error;
  stop_reading(c);
  if (!c->inbox) {
    fail_now(c);
    return;
  }
  /* Deliver the valid messages first and let the handler answer them; the
   * close goes out when it comes back for more, or at the close timeout. */
  c->fail_pending = 1;
  conn_arm_timer(c, c->opts.close_timeout_ms);
}

static void on_eof(conn *c, ssize_t err) {
  if (c->state == CONN_DIALING || c->state == CONN_HANDSHAKE) {
    if (!c->error)
      c->error = err == UV_EOF ? "connection closed during the handshake" : uv_strerror((int)err);
  } else if (c->state != CONN_DONE) {
    if (!c->error)
      c->error = err == UV_EOF ? "connection closed without a close frame" : uv_strerror((int)err);
    c->close_code = FRAME_CLOSE_ABNORMAL;
  }
  conn_close_handles(c);
}

/* Plaintext from the peer, by state. */
static void dispatch(conn *c, char *data, size_t n) {
  switch (c->state) {
  case CONN_HANDSHAKE:
    if (c->is_server)
      server_on_head(c, data, n);
    else
      dial_on_head(c, data, n);
    break;
  case CONN_OPEN:
  case CONN_CLOSING:
    feed(c, (uint8_t *)data, n);
    break;
  default:
    break; /* done or answering HTTP: the rest is ignored */
  }
}

static void tls_input(conn *c, const char *data, size_t n) {
  if (tls_feed(c->tls, data, n)) {
    conn_abort(c, "out of memory");
    return;
  }
  if (!c->tls_ready) {
    int rc = tls_handshake(c->tls);
    conn_mark_dirty(c); /* handshake records, or an alert */
    if (rc == TLS_ERROR) {
      /* send the alert (it tells the peer why) before closing */
      c->error = tls_error(c->tls);
      if (tls_take_out(c->tls, &c->cipher) || !c->cipher.len)
        conn_abort(c, c->error);
      else
        begin_teardown(c);
      return;
    }
    if (rc == TLS_WANT) return;
    c->tls_ready = 1; /* and a client's request can go out now */
  }
  /* the ciphertext is in OpenSSL's buffer: the read buffer is free again */
  char *plain = (char *)c->loop->readbuf;
  for (;;) {
    int status;
    size_t got = tls_read(c->tls, plain, LOOP_READ_SIZE, &status);
    if (got) {
      dispatch(c, plain, got);
      if (c->tcp_closing) return;
      continue;
    }
    if (status == TLS_WANT) break;
    if (status == TLS_CLOSED) {
      on_eof(c, UV_EOF);
      return;
    }
    conn_abort(c, tls_error(c->tls));
    return;
  }
  conn_mark_dirty(c); /* TLS may have records of its own to send */
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
      c->error = "keepalive ping timed out";
      c->fail_code = FRAME_CLOSE_INTERNAL;
      fail_now(c);
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
  switch (c->state) {
  case CONN_DIALING:
  case CONN_HANDSHAKE:
  case CONN_HTTP:
    conn_abort(c, "handshake timed out");
    break;
  case CONN_OPEN:
    if (c->close_deferred) {
      finish_close(c);
    } else if (c->fail_pending) {
      fail_now(c);
    } else if (c->opts.ping_interval_ms) {
      keepalive(c);
    }
    break;
  case CONN_CLOSING:
    c->error = "close handshake timed out";
    c->close_code = FRAME_CLOSE_ABNORMAL;
    conn_close_handles(c);
    break;
  case CONN_DONE:
    conn_close_handles(c);
    break;
  }
}

/* Called once the handshake succeeded; rest holds bytes that followed the
 * head in the same read. */
void conn_open(conn *c, const uint8_t *rest, size_t rest_len) {
  c->state = CONN_OPEN;
  c->opened = 1;
  proto_init(&c->proto, c->is_server, c->opts.max_message);
  c->proto.msg_reserve = offsetof(conn_msg, data);
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
  set_done(c);
  begin_teardown(c);
}

void conn_msg_free(conn *c, conn_msg *m) { loop_release(c->loop, m, m->cap); }

int conn_recv(conn *c, conn_msg **msg) {
  conn_msg *m = c->inbox;
  if (m) {
    c->inbox = m->next;
    if (!c->inbox) c->inbox_tail = NULL;
    c->inbox_bytes -= m->cap + MSG_OVERHEAD;
    if (c->state == CONN_OPEN && !c->fail_pending && !c->close_deferred &&
        c->inbox_bytes < c->opts.high_water)
      conn_start_reading(c);
    *msg = m;
    return CONN_OK;
  }
  if (c->close_deferred) {
    finish_close(c);
    return CONN_CLOSED;
  }
  if (c->fail_pending) {
    fail_now(c);
    return CONN_CLOSED;
  }
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

int conn_send(conn *c, int opcode, const uint8_t *data, size_t len) {
  if (c->state != CONN_OPEN || c->close_sent || c->tcp_closing) return CONN_CLOSED;
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
  if (c->state != CONN_OPEN || c->close_sent || c->tcp_closing) return CONN_CLOSED;
  return queue_frame(c, FRAME_PING, 0, data, len);
}

int conn_close(conn *c, unsigned code, const char *reason, size_t reason_len) {
  if (c->state != CONN_OPEN || c->tcp_closing) return CONN_CLOSED;
  if (c->close_deferred) {
    finish_close(c);
    return CONN_OK;
  }
  if (c->fail_pending) {
    fail_now(c);
    return CONN_OK;
  }
  if (queue_close(c, code, reason, reason_len) != CONN_OK) {
    conn_abort(c, "out of memory");
    return CONN_CLOSED;
  }
  c->state = CONN_CLOSING;
  conn_arm_timer(c, c->opts.close_timeout_ms);
  conn_start_reading(c); /* the peer's close frame must get through */
  return CONN_OK;
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
