#include "transport/dial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "protocol/handshake.h"

/* A CONNECT through an HTTP proxy (RFC 9110 9.3.6): the request goes out
 * once TCP is up, and the proxy's answer head is read here, bounded by
 * max_head, before the conn reads for itself. */
typedef struct tunnel {
  uv_write_t write_req;
  uv_buf_t out; /* the CONNECT request (owned) */
  hs_parser parser;
  char *in;        /* the answer so far (owned until the tunnel is up) */
  size_t len, cap; /* bytes in it, and its size: max_head */
  size_t head_len; /* a refusal's head kept for dial_proxy_head */
  char why[192];   /* conn_describe's error points here */
} tunnel;

/* The most bytes of user:pass taken for Proxy-Authorization. */
enum { DIAL_MAX_AUTH = 4096 };

/* What only a client needs while it dials (kept in its conn_link.data, so
 * that the many server-side connections do not carry it). */
typedef struct dialer {
  uv_getaddrinfo_t gai;
  struct addrinfo *ai, *ai_next;
  uv_connect_t connect_req;
  int resolving;     /* the uv_getaddrinfo request is out (it holds a reference) */
  const char *error; /* why the last address failed */
  tunnel *tunnel;    /* NULL for a direct dial */
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
  if (d && d->tunnel) {
    free(d->tunnel->out.base);
    free(d->tunnel->in);
    free(d->tunnel);
  }
  free(d);
}

static const conn_role dial_role = {NULL, on_conn_close, on_conn_free, try_next};

/* The proxy */

static void tunnel_answered(conn *c, tunnel *t, const hs_head *h, size_t head_len) {
  uv_read_stop((uv_stream_t *)conn_tcp(c));
  if (h->status < 200 || h->status > 299) {
    int n = h->reason_len > 120 ? 120 : (int)h->reason_len;
    snprintf(t->why, sizeof t->why, "proxy refused: HTTP %d%s%.*s", h->status, n ? " " : "", n,
             h->reason);
    t->head_len = head_len;
    conn_abort(c, t->why);
    return;
  }
  conn_connected(c);
  /* a proxy may pass on what the origin sent right after its answer */
  conn_feed(c, t->in + head_len, t->len - head_len);
  free(t->in); /* conn_feed consumed or copied it all */
  t->in = NULL;
}

static void on_tunnel_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  tunnel *t = dialer_of(h->data)->tunnel;
  (void)hint;
  b->base = t->in + t->len;
  b->len = t->cap - t->len;
}

static void on_tunnel_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  tunnel *t = dialer_of(c)->tunnel;
  (void)b;
  if (n == 0 || conn_closing(c)) return;
  if (n < 0) {
    conn_abort(c, n == UV_EOF ? "the proxy closed the connection" : uv_strerror((int)n));
    return;
  }
  t->len += (size_t)n;
  hs_head h;
  int rc = hs_parser_feed(&t->parser, t->in, t->len, &h);
  if (rc > 0)
    tunnel_answered(c, t, &h, (size_t)rc);
  else if (rc == -2 || (rc == 0 && t->len == t->cap))
    conn_abort(c, "proxy response head too large");
  else if (rc < 0)
    conn_abort(c, "malformed proxy response");
}

static void on_tunnel_written(uv_write_t *req, int status) {
  conn *c = req->data;
  if (status < 0 && status != UV_ECANCELED && !conn_closing(c)) conn_abort(c, uv_strerror(status));
}

/* TCP to the proxy is up: ask for the tunnel and read the answer. */
static void tunnel_start(conn *c) {
  tunnel *t = dialer_of(c)->tunnel;
  uv_stream_t *s = (uv_stream_t *)conn_tcp(c);
  uv_tcp_nodelay(conn_tcp(c), 1);
  t->write_req.data = c;
  int rc = uv_write(&t->write_req, s, &t->out, 1, on_tunnel_written);
  if (!rc) rc = uv_read_start(s, on_tunnel_alloc, on_tunnel_read);
  if (rc) conn_abort(c, uv_strerror(rc));
}

/* host:port, bracketed for IPv6, refused when it could break the request. */
static int authority_of(const dial_request *r, char *out, size_t size) {
  for (const char *p = r->host; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f) return -1;
  for (const char *p = r->port; *p; p++)
    if (*p < '0' || *p > '9') return -1;
  int n = strchr(r->host, ':') ? snprintf(out, size, "[%s]:%s", r->host, r->port)
                               : snprintf(out, size, "%s:%s", r->host, r->port);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

/* The CONNECT request into t->out. NULL or why not. */
static const char *tunnel_request(tunnel *t, const dial_request *r) {
  char authority[300];
  if (authority_of(r, authority, sizeof authority)) return "invalid host for a proxy CONNECT";
  size_t alen = r->proxy_auth ? strlen(r->proxy_auth) : 0;
  if (alen > DIAL_MAX_AUTH) return "proxy credentials too long";
  size_t cap = 2 * strlen(authority) + 4 * (alen / 3 + 1) + 96;
  char *q = malloc(cap);
  if (!q) return "out of memory";
  int n = snprintf(q, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", authority, authority);
  if (r->proxy_auth) {
    n += snprintf(q + n, cap - (size_t)n, "Proxy-Authorization: Basic ");
    n += EVP_EncodeBlock((unsigned char *)q + n, (const unsigned char *)r->proxy_auth, (int)alen);
    n += snprintf(q + n, cap - (size_t)n, "\r\n");
  }
  n += snprintf(q + n, cap - (size_t)n, "\r\n");
  t->out = uv_buf_init(q, (unsigned)n);
  return NULL;
}

static const char *prepare_tunnel(dialer *d, const dial_request *r, const conn_opts *o) {
  tunnel *t = calloc(1, sizeof *t);
  if (!t) return "out of memory";
  d->tunnel = t;
  hs_parser_init(&t->parser, 1);
  t->cap = o->max_head;
  if (!(t->in = malloc(t->cap))) return "out of memory";
  return tunnel_request(t, r);
}

/* Direct dials */

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
  if (d->tunnel)
    tunnel_start(c);
  else
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

static const char *prepare(conn *c, const dial_request *r, const conn_opts *o) {
  dialer *d = calloc(1, sizeof *d);
  if (!(conn_link_of(c)->data = d)) return "out of memory";
  session_request q = {r->target, r->host_header, r->protocols, r->nprotocols,
                       r->names,  r->values,      r->nheaders,  r->origin};
  const char *why = conn_request(c, &q);
  if (!why && r->proxy_host) why = prepare_tunnel(d, r, o);
  return why;
}

conn *dial_open(loop *l, const dial_request *r, const conn_opts *o, char *err, size_t errsize) {
  conn *c = conn_new(l, 0, o, &dial_role, NULL);
  if (!c) {
    snprintf(err, errsize, "out of memory");
    return NULL;
  }
  const char *why = prepare(c, r, o);
  /* through a proxy, TCP goes to it; TLS (with the origin's name) still
   * runs end to end, inside the tunnel */
  const char *host = r->proxy_host ? r->proxy_host : r->host;
  int rc = 0;
  if (why)
    snprintf(err, errsize, "%s", why);
  else if (r->secure && start_tls(c, r, err, errsize))
    why = err;
  else if ((rc = dial_start(c, host, r->proxy_host ? r->proxy_port : r->port)) != 0)
    snprintf(err, errsize, "cannot resolve %s: %s", host, uv_strerror(rc)), why = err;
  if (!why) return c;
  conn_release(c);
  return NULL;
}

const char *dial_proxy_head(conn *c, size_t *len) {
  dialer *d = dialer_of(c);
  if (!d || !d->tunnel || !d->tunnel->head_len) return NULL;
  *len = d->tunnel->head_len;
  return d->tunnel->in;
}
