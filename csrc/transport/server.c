#include "transport/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

static void unlink_handshaking(server *s, conn *c);

/* A handshaking conn holds the server's reference: it goes when the conn
 * closes before it was queued (a queued one waits for server_accept). */
static void on_conn_close(conn *c) {
  conn_link *k = conn_link_of(c);
  if (!k->owner || k->queued) return;
  unlink_handshaking(k->owner, c);
  conn_unref(c);
}

static void enqueue(conn *c);

static const conn_role server_role = {enqueue, on_conn_close, NULL, NULL};

static void link_handshaking(server *s, conn *c) {
  conn_link *k = conn_link_of(c);
  k->owner = s;
  k->prev = NULL;
  k->next = s->handshaking;
  if (s->handshaking) conn_link_of(s->handshaking)->prev = c;
  s->handshaking = c;
}

static void unlink_handshaking(server *s, conn *c) {
  conn_link *k = conn_link_of(c);
  if (k->prev)
    conn_link_of(k->prev)->next = k->next;
  else
    s->handshaking = k->next;
  if (k->next) conn_link_of(k->next)->prev = k->prev;
  k->prev = k->next = NULL;
  k->owner = NULL;
}

/* conn_role.on_ready: upgraded, or a plain HTTP request for the handler. */
static void enqueue(conn *c) {
  conn_link *k = conn_link_of(c);
  server *s = k->owner;
  unlink_handshaking(s, c);
  k->owner = s;
  k->queued = 1;
  k->next = NULL;
  if (s->queue_tail)
    conn_link_of(s->queue_tail)->next = c;
  else
    s->queue = c;
  s->queue_tail = c;
  loop_wake(s->loop, s->id);
}

conn *server_accept(server *s) {
  conn *c = s->queue;
  if (!c) return NULL;
  conn_link *k = conn_link_of(c);
  s->queue = k->next;
  if (!s->queue) s->queue_tail = NULL;
  k->next = NULL;
  k->queued = 0;
  k->owner = NULL; /* its reference passes to the caller */
  return c;
}

static void on_connection(uv_stream_t *stream, int status) {
  server *s = stream->data;
  if (status < 0 || s->closing) return;
  conn *c = conn_new(s->loop, 1, &s->opts, &server_role, &s->policy);
  if (!c) return;
  if (uv_accept(stream, (uv_stream_t *)conn_tcp(c)) || (s->tls && conn_use_tls(c, s->tls, NULL))) {
    conn_release(c);
    return;
  }
  link_handshaking(s, c);
  conn_serve(c);
}

static void obj_close(loop_obj *o) { server_close((server *)o); }
static void obj_flush(loop_obj *o) { (void)o; }
static const loop_obj_ops server_obj_ops = {obj_close, obj_flush};

/* libuv 1.44 has no UV_TCP_REUSEPORT: the socket is made here, so that
 * several processes may listen on one port (the kernel spreads the
 * connections among them). */
static int bind_reuseport(uv_tcp_t *t, const struct sockaddr *a) {
  int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int one = 1;
  socklen_t len =
      a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) || bind(fd, a, len)) {
    int e = errno;
    close(fd);
    return uv_translate_sys_error(e);
  }
  int rc = uv_tcp_open(t, fd);
  if (rc) close(fd);
  return rc;
}

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
  s->has_accept = o->has_accept != 0;
  s->tls = o->tls;
  s->protocols = copy_list(o->protocols, o->nprotocols);
  s->origins = copy_list(o->origins, o->norigins);
  s->nprotocols = s->protocols ? o->nprotocols : 0;
  s->norigins = s->origins ? o->norigins : 0;
  s->policy = (session_policy){(const char *const *)s->protocols,
                               s->nprotocols,
                               (const char *const *)s->origins,
                               s->norigins,
                               s->has_http,
                               s->has_accept};
  s->refs = 1; /* the caller's; the handle's is added once it exists */
  if (s->nprotocols != o->nprotocols || s->norigins != o->norigins) {
    server_free(s);
    *err = UV_ENOMEM;
    return NULL;
  }
  uv_tcp_init(&l->uv, &s->tcp);
  s->tcp.data = s;
  s->refs++;
  rc = o->reuseport ? bind_reuseport(&s->tcp, (struct sockaddr *)&addr)
                    : uv_tcp_bind(&s->tcp, (struct sockaddr *)&addr, 0);
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

void server_shutdown(server *s, int status) {
  if (!s->closing) {
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, on_server_closed);
  }
  /* a refused one stays listed until its teardown closes it */
  for (conn *c = s->handshaking, *next; c; c = next) {
    next = conn_link_of(c)->next;
    if (conn_refuse_handshake(c, status)) conn_abort(c, "server shutting down");
  }
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
  unsigned char ip[16];
  /* names are not resolved: say so rather than libuv's "invalid argument" */
  int literal = uv_inet_pton(AF_INET, host, ip) == 0 || uv_inet_pton(AF_INET6, host, ip) == 0;
  if (!s && !literal)
    snprintf(err, errsize,
             "host must be an IP address such as \"127.0.0.1\" or \"::1\" (got \"%s\")", host);
  else if (!s)
    snprintf(err, errsize, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
  return s;
}
