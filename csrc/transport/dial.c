#include "transport/dial.h"

#include <stdlib.h>
#include <string.h>

static void try_next(conn *c);

static void dial_on_head(conn *c, const char *data, size_t n);

static void on_conn_close(conn *c) {
  if (c->dial->resolving) uv_cancel((uv_req_t *)&c->dial->gai); /* its callback still runs */
}

static const conn_role dial_role = {dial_on_head, on_conn_close};

static void on_retry_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (c->tcp_closing) { /* aborted while closing for a retry */
    conn_on_handle_closed(h);
    return;
  }
  uv_tcp_init(&c->loop->uv, &c->tcp);
  c->tcp.data = c;
  try_next(c);
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->handle->data;
  if (status == UV_ECANCELED || c->tcp_closing) return;
  if (status < 0) {
    c->error = uv_strerror(status);
    if (c->dial->ai_next)
      uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
    else
      conn_abort(c, c->error);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->state = CONN_HANDSHAKE;
  if (c->tls && tls_handshake(c->tls) == TLS_ERROR) { /* queues the ClientHello */
    conn_abort(c, tls_error(c->tls));
    return;
  }
  conn_mark_dirty(c); /* the request was queued by the caller; with TLS it waits */
  conn_start_reading(c);
}

static void try_next(conn *c) {
  while (c->dial->ai_next) {
    struct addrinfo *a = c->dial->ai_next;
    c->dial->ai_next = a->ai_next;
    int rc = uv_tcp_connect(&c->dial->connect_req, &c->tcp, a->ai_addr, on_connect);
    if (rc == 0) return;
    c->error = uv_strerror(rc);
  }
  conn_abort(c, c->error ? c->error : "no address to connect to");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  conn *c = req->data;
  c->dial->resolving = 0;
  if (c->tcp_closing || status < 0) {
    if (res) uv_freeaddrinfo(res);
    if (!c->tcp_closing)
      conn_abort(c, status == UV_EAI_NONAME ? "host not found" : uv_strerror(status));
  } else {
    c->dial->ai = c->dial->ai_next = res;
    try_next(c);
  }
  conn_unref(c); /* the request's reference */
}

int dial_start(conn *c, const char *host, const char *port) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->dial->gai.data = c;
  c->role = &dial_role;
  int rc = uv_getaddrinfo(&c->loop->uv, &c->dial->gai, on_resolved, host, port, &hints);
  if (rc) return rc;
  c->dial->resolving = 1;
  conn_ref(c);
  conn_arm_timer(c, c->opts.handshake_timeout_ms);
  return 0;
}

static void dial_on_head(conn *c, const char *data, size_t n) {
  if (!c->head.len) hs_parser_init(&c->head_parser, 1);
  if (conn_head_append(c, data, n)) {
    conn_abort(c, "response head too large");
    return;
  }
  hs_head h;
  int len = hs_parser_feed(&c->head_parser, c->head.data, c->head.len, &h);
  if ((len == 0 && c->head.len > c->opts.max_head) || len == -2 ||
      (len > 0 && (size_t)len > c->opts.max_head)) {
    conn_abort(c, "response head too large");
    return;
  }
  if (len == 0) return;
  if (len < 0) {
    conn_abort(c, "malformed HTTP response");
    return;
  }
  c->head_len = (size_t)len;
  if (h.status != 101) {
    c->dial_status = h.status;
    conn_abort(c, "server refused the upgrade");
    return;
  }
  const char *offered[64];
  size_t noffered = 0;
  for (const char *p = c->dial->offered; *p && noffered < 64; p += strlen(p) + 1)
    offered[noffered++] = p;
  const char *protocol, *why;
  size_t plen;
  pmd_params prm;
  int compressed = pmd_check(&h, &c->opts.pmd, &prm, &why);
  if (compressed < 0) {
    conn_abort(c, why);
    return;
  }
  /* the request offered extensions exactly when compression is on */
  if (hs_check_response(&h, c->dial->key, offered, noffered, c->opts.pmd.enabled, &protocol, &plen,
                        &why)) {
    conn_abort(c, why);
    return;
  }
  if (compressed && !(c->pmd = pmd_new(&prm, &c->opts.pmd))) {
    conn_abort(c, "out of memory");
    return;
  }
  if (protocol) {
    c->protocol = malloc(plen + 1);
    if (!c->protocol) {
      conn_abort(c, "out of memory");
      return;
    }
    memcpy(c->protocol, protocol, plen);
    c->protocol[plen] = 0;
  }
  conn_open(c, (const uint8_t *)c->head.data + len, c->head.len - (size_t)len);
}
