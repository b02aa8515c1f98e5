#include "transport/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/lex.h"

static char **copy_list(const char *const *src, size_t n) {
  if (!n) return NULL;
  char **dst = calloc(n, sizeof *dst);
  if (!dst) return NULL;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(src[i]) + 1;
    dst[i] = malloc(len);
    if (!dst[i]) {
      while (i--) free(dst[i]);
      free(dst);
      return NULL;
    }
    memcpy(dst[i], src[i], len);
  }
  return dst;
}

static void free_list(char **list, size_t n) {
  for (size_t i = 0; i < n; i++) free(list[i]);
  free(list);
}

static void server_free(server *s) {
  if (s->tls) tls_ctx_unref(s->tls);
  free_list(s->protocols, s->nprotocols);
  free_list(s->origins, s->norigins);
  free(s);
}

static void server_unref(server *s) {
  if (--s->refs == 0) server_free(s);
}

static void on_server_closed(uv_handle_t *h) { server_unref(h->data); }

static void server_on_head(conn *c, const char *data, size_t n);

static void unlink_handshaking(server *s, conn *c);

/* A handshaking conn holds the server's reference: it goes when the conn
 * closes before it was queued (a queued one waits for server_accept). */
static void on_conn_close(conn *c) {
  if (!c->server || c->queued) return;
  unlink_handshaking(c->server, c);
  conn_unref(c);
}

static const conn_role server_role = {server_on_head, on_conn_close};

static void link_handshaking(server *s, conn *c) {
  c->server = s;
  c->srv_prev = NULL;
  c->srv_next = s->handshaking;
  if (s->handshaking) s->handshaking->srv_prev = c;
  s->handshaking = c;
}

static void unlink_handshaking(server *s, conn *c) {
  if (c->srv_prev)
    c->srv_prev->srv_next = c->srv_next;
  else
    s->handshaking = c->srv_next;
  if (c->srv_next) c->srv_next->srv_prev = c->srv_prev;
  c->srv_prev = c->srv_next = NULL;
  c->server = NULL;
}

static void enqueue(server *s, conn *c) {
  unlink_handshaking(s, c);
  c->server = s;
  c->queued = 1;
  c->srv_next = NULL;
  if (s->queue_tail)
    s->queue_tail->srv_next = c;
  else
    s->queue = c;
  s->queue_tail = c;
  loop_wake(s->loop, s->id);
}

conn *server_accept(server *s) {
  conn *c = s->queue;
  if (!c) return NULL;
  s->queue = c->srv_next;
  if (!s->queue) s->queue_tail = NULL;
  c->srv_next = NULL;
  c->queued = 0;
  c->server = NULL; /* its reference passes to the caller */
  return c;
}

static void on_connection(uv_stream_t *stream, int status) {
  server *s = stream->data;
  if (status < 0 || s->closing) return;
  conn *c = conn_new(s->loop, 1, &s->opts);
  if (!c) return;
  if (uv_accept(stream, (uv_stream_t *)&c->tcp)) {
    conn_release(c);
    return;
  }
  if (s->tls && conn_use_tls(c, s->tls, NULL)) {
    conn_release(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->role = &server_role;
  link_handshaking(s, c);
  conn_arm_timer(c, s->opts.handshake_timeout_ms);
  conn_start_reading(c);
}

static void reply_error(conn *c, int status, const char *why) {
  loop_release(c->loop, c->out.data, c->out.cap); /* the write queue's blocks are the loop's */
  c->out = (buf){0};
  hs_build_error(&c->out, status, why);
  conn_fail_handshake(c, why);
}

static int origin_allowed(const server *s, const hs_head *h) {
  if (!s->norigins) return 1;
  const hs_header *o = hs_find(h, "origin");
  if (!o) return 0;
  for (size_t i = 0; i < s->norigins; i++)
    if (lex_is(o->value, o->value_len, s->origins[i])) return 1;
  return 0;
}

/* Appends the bytes to the head and parses what is there: the head's
 * length once it is complete, else 0 (more to come, or refused). */
static size_t read_head(conn *c, const char *data, size_t n, hs_head *h) {
  if (!c->head.len) hs_parser_init(&c->head_parser, 0);
  if (conn_head_append(c, data, n)) {
    reply_error(c, 431, "request head too large");
    return 0;
  }
  int len = hs_parser_feed(&c->head_parser, c->head.data, c->head.len, h);
  if (len > 0 && (size_t)len > c->opts.max_head) len = -2;
  if (len == 0 && c->head.len > c->opts.max_head) len = -2;
  if (len == -2)
    reply_error(c, 431, "request head too large");
  else if (len < 0)
    reply_error(c, 400, "malformed HTTP request");
  return len > 0 ? (size_t)len : 0;
}

/* A request without "Upgrade: websocket" goes to the http handler, if any. */
static void take_http(server *s, conn *c) {
  if (!s->has_http) {
    reply_error(c, 426, "this is a WebSocket endpoint");
    return;
  }
  c->state = CONN_HTTP;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  enqueue(s, c);
}

/* Negotiates the subprotocol and compression and queues the 101. -1 when
 * out of memory. */
static int answer_upgrade(server *s, conn *c, const hs_head *h, const char *key) {
  int pick = hs_select_protocol(h, (const char *const *)s->protocols, s->nprotocols);
  const char *protocol = pick >= 0 ? s->protocols[pick] : NULL;
  if (protocol) {
    size_t plen = strlen(protocol) + 1;
    if (!(c->protocol = malloc(plen))) return -1;
    memcpy(c->protocol, protocol, plen);
  }
  char ext[256] = "";
  pmd_params prm;
  if (pmd_accept(h, &c->opts.pmd, &prm, ext, sizeof ext) && !(c->pmd = pmd_new(&prm, &c->opts.pmd)))
    ext[0] = 0; /* no memory for it: go on without compression */
  return hs_build_accept(&c->out, key, HS_KEY_LEN, protocol, ext[0] ? ext : NULL);
}

static void server_on_head(conn *c, const char *data, size_t n) {
  server *s = c->server;
  hs_head h;
  size_t len = s ? read_head(c, data, n, &h) : 0;
  if (!len) return;
  c->head_len = len;
  const char *key, *why;
  int status = hs_check_request(&h, &key, &why);
  if (status == -1) {
    take_http(s, c);
  } else if (status) {
    reply_error(c, status, why);
  } else if (!origin_allowed(s, &h)) {
    reply_error(c, 403, "origin not allowed");
  } else if (answer_upgrade(s, c, &h, key)) {
    conn_abort(c, "out of memory");
  } else {
    conn_mark_dirty(c);
    enqueue(s, c);
    conn_open(c, (const uint8_t *)c->head.data + len, c->head.len - len);
    /* the head waits for Lua to ask for ws.request: keep it and no more */
    char *head = c->head.cap > c->head_len ? realloc(c->head.data, c->head_len) : NULL;
    if (head) {
      c->head.data = head;
      c->head.len = c->head.cap = c->head_len;
    }
  }
}

static void obj_close(loop_obj *o) { server_close((server *)o); }
static void obj_flush(loop_obj *o) { (void)o; }
static const loop_obj_ops server_obj_ops = {obj_close, obj_flush};

server *server_listen(loop *l, const char *host, int port, const server_opts *o, int *err) {
  struct sockaddr_storage addr;
  int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                             : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  server *s = rc ? NULL : calloc(1, sizeof *s);
  if (!s) {
    *err = rc ? rc : UV_ENOMEM;
    if (o->tls) tls_ctx_unref(o->tls); /* ours even when we fail */
    return NULL;
  }
  s->obj.ops = &server_obj_ops;
  s->loop = l;
  s->id = loop_new_id(l);
  s->opts = o->conn;
  s->has_http = o->has_http != 0;
  s->tls = o->tls;
  s->protocols = copy_list(o->protocols, o->nprotocols);
  s->origins = copy_list(o->origins, o->norigins);
  s->nprotocols = s->protocols ? o->nprotocols : 0;
  s->norigins = s->origins ? o->norigins : 0;
  s->refs = 1; /* the caller's; the handle's is added once it exists */
  if (s->nprotocols != o->nprotocols || s->norigins != o->norigins) {
    server_free(s);
    *err = UV_ENOMEM;
    return NULL;
  }
  uv_tcp_init(&l->uv, &s->tcp);
  s->tcp.data = s;
  s->refs++;
  rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&addr, 0);
  if (!rc) rc = uv_listen((uv_stream_t *)&s->tcp, o->backlog > 0 ? o->backlog : 511, on_connection);
  if (rc) {
    *err = rc;
    s->refs--; /* the caller gets nothing */
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, on_server_closed);
    return NULL;
  }
  int len = sizeof addr;
  uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&addr, &len);
  s->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                             : ((struct sockaddr_in *)&addr)->sin_port);
  return s;
}

void server_set_tls(server *s, tls_ctx *ctx) {
  if (s->tls) tls_ctx_unref(s->tls);
  s->tls = ctx;
}

void server_close(server *s) {
  if (s->closing) return;
  s->closing = 1;
  uv_close((uv_handle_t *)&s->tcp, on_server_closed);
  while (s->handshaking) conn_abort(s->handshaking, "server closed");
  while (s->queue) conn_release(server_accept(s));
  loop_wake(s->loop, s->id);
}

void server_release(server *s) {
  server_close(s);
  server_unref(s);
}

/* Transport API for the binding */

void server_describe(const server *s, server_info *out) {
  out->id = s->id;
  out->port = s->port;
  out->closing = s->closing;
}

server *server_start(loop *l, const char *host, int port, const server_opts *o, char *err,
                     size_t errsize) {
  int rc = 0;
  server *s = server_listen(l, host, port, o, &rc);
  if (!s) snprintf(err, errsize, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
  return s;
}
