#include "transport/dial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What only a client needs while it dials (kept in its conn_link.data, so
 * that the many server-side connections do not carry it). */
typedef struct dialer {
  uv_getaddrinfo_t gai;
  struct addrinfo *ai, *ai_next;
  uv_connect_t connect_req;
  int resolving;     /* the uv_getaddrinfo request is out (it holds a reference) */
  const char *error; /* why the last address failed */
} dialer;

static dialer *dialer_of(conn *c) { return conn_link_of(c)->data; }

static void try_next(conn *c);

static void on_conn_close(conn *c) {
  dialer *d = dialer_of(c);
  if (d && d->resolving) uv_cancel((uv_req_t *)&d->gai); /* its callback still runs */
}

static void on_conn_free(conn *c) {
  dialer *d = dialer_of(c);
  if (d && d->ai) uv_freeaddrinfo(d->ai);
  free(d);
}

static const conn_role dial_role = {NULL, on_conn_close, on_conn_free, try_next};

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  dialer *d = dialer_of(c);
  if (status == UV_ECANCELED || conn_closing(c)) return;
  if (status < 0) {
    d->error = uv_strerror(status);
    if (d->ai_next)
      conn_retry(c);
    else
      conn_abort(c, d->error);
    return;
  }
  conn_connected(c);
}

static void try_next(conn *c) {
  dialer *d = dialer_of(c);
  while (d->ai_next) {
    struct addrinfo *a = d->ai_next;
    d->ai_next = a->ai_next;
    d->connect_req.data = c;
    int rc = uv_tcp_connect(&d->connect_req, conn_tcp(c), a->ai_addr, on_connect);
    if (rc == 0) return;
    d->error = uv_strerror(rc);
  }
  conn_abort(c, d->error ? d->error : "no address to connect to");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  conn *c = req->data;
  dialer *d = dialer_of(c);
  d->resolving = 0;
  if (conn_closing(c) || status < 0) {
    if (res) uv_freeaddrinfo(res);
    if (!conn_closing(c))
      conn_abort(c, status == UV_EAI_NONAME ? "host not found" : uv_strerror(status));
  } else {
    d->ai = d->ai_next = res;
    try_next(c);
  }
  conn_unref(c); /* the request's reference */
}

static int dial_start(conn *c, const char *host, const char *port) {
  dialer *d = dialer_of(c);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  d->gai.data = c;
  int rc = uv_getaddrinfo(&conn_loop(c)->uv, &d->gai, on_resolved, host, port, &hints);
  if (rc) return rc;
  d->resolving = 1;
  conn_ref(c);
  conn_start_dial(c);
  return 0;
}

/* The TLS policy: the common case (system CAs, verify, no client
 * certificate) shares one context kept in the loop, made on first use. */
static int start_tls(conn *c, const dial_request *r, char *err, size_t errsize) {
  loop *l = conn_loop(c);
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
  if (!(conn_link_of(c)->data = calloc(1, sizeof(dialer)))) return "out of memory";
  session_request q = {r->target, r->host_header, r->protocols, r->nprotocols,
                       r->names,  r->values,      r->nheaders,  r->origin};
  return conn_request(c, &q);
}

conn *dial_open(loop *l, const dial_request *r, const conn_opts *o, char *err, size_t errsize) {
  conn *c = conn_new(l, 0, o, &dial_role, NULL);
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
