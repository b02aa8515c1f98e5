#include "transport/dial.h"

#include <stdio.h>
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

static int dial_start(conn *c, const char *host, const char *port) {
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

/* The dialer with the offered subprotocols kept NUL-separated for the
 * response check. */
static conn_dialer *new_dialer(const dial_request *r) {
  size_t total = 1;
  for (size_t i = 0; i < r->nprotocols; i++) total += strlen(r->protocols[i]) + 1;
  conn_dialer *d = calloc(1, sizeof *d + total);
  if (!d) return NULL;
  char *p = d->offered;
  for (size_t i = 0; i < r->nprotocols; i++) {
    size_t len = strlen(r->protocols[i]) + 1;
    memcpy(p, r->protocols[i], len);
    p += len;
  }
  *p = 0;
  return d;
}

/* Queues the upgrade request: the extra headers, then Origin and the
 * extension offer; the protocols joined as "a, b". */
static const char *queue_request(conn *c, const dial_request *r) {
  const char *names[DIAL_MAX_LIST + 2], *values[DIAL_MAX_LIST + 2];
  size_t nh = r->nheaders < DIAL_MAX_LIST ? r->nheaders : DIAL_MAX_LIST;
  memcpy(names, r->names, nh * sizeof *names);
  memcpy(values, r->values, nh * sizeof *values);
  if (r->origin) names[nh] = "Origin", values[nh++] = r->origin;
  char offer[256];
  if (c->opts.pmd.enabled) {
    pmd_offer(&c->opts.pmd, offer, sizeof offer);
    names[nh] = "Sec-WebSocket-Extensions", values[nh++] = offer;
  }
  buf joined = {0};
  for (size_t i = 0; i < r->nprotocols; i++)
    if ((i && buf_append(&joined, ", ", 2)) ||
        buf_append(&joined, r->protocols[i], strlen(r->protocols[i])))
      return buf_free(&joined), "out of memory";
  if (r->nprotocols && buf_append(&joined, "", 1)) return buf_free(&joined), "out of memory";
  int rc = hs_build_request(&c->out, r->target, r->host_header, c->dial->key,
                            r->nprotocols ? joined.data : NULL, names, values, nh);
  buf_free(&joined);
  return rc ? "invalid header name or value" : NULL;
}

/* The TLS policy: the common case (system CAs, verify, no client
 * certificate) shares one context kept in the loop, made on first use. */
static int start_tls(conn *c, const dial_request *r, char *err, size_t errsize) {
  loop *l = c->loop;
  tls_ctx *ctx;
  if (!r->tls.ca && !r->tls.cert && r->tls.verify) {
    if (!l->tls_client) l->tls_client = tls_ctx_new(0, &r->tls, err, errsize);
    if (!l->tls_client) return -1;
    ctx = l->tls_client;
    tls_ctx_ref(ctx);
  } else if (!(ctx = tls_ctx_new(0, &r->tls, err, errsize))) {
    return -1;
  }
  int failed = conn_use_tls(c, ctx, r->host);
  tls_ctx_unref(ctx); /* the session holds its own reference */
  if (failed) snprintf(err, errsize, "cannot start TLS");
  return failed;
}

static const char *prepare(conn *c, const dial_request *r) {
  if (!(c->dial = new_dialer(r))) return "out of memory";
  if (hs_make_key(c->dial->key)) return "no randomness for the handshake key";
  return queue_request(c, r);
}

conn *dial_open(loop *l, const dial_request *r, const conn_opts *o, char *err, size_t errsize) {
  conn *c = conn_new(l, 0, o);
  if (!c) {
    snprintf(err, errsize, "out of memory");
    return NULL;
  }
  const char *why = prepare(c, r);
  int rc = 0;
  if (why)
    snprintf(err, errsize, "%s", why);
  else if (r->secure && start_tls(c, r, err, errsize))
    why = err;
  else if ((rc = dial_start(c, r->host, r->port)) != 0)
    snprintf(err, errsize, "cannot resolve %s: %s", r->host, uv_strerror(rc)), why = err;
  if (!why) return c;
  conn_release(c);
  return NULL;
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
