/* A TCP listener that runs the server side of the opening handshake and
 * queues upgraded connections (and plain HTTP requests) for the binding. */
#ifndef DUPLEX_SERVER_H
#define DUPLEX_SERVER_H

#include <uv.h>

#include "transport/conn.h"
#include "transport/loop.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

typedef struct server_opts {
  conn_opts conn;
  const char *const *protocols; /* our subprotocols, in order of preference */
  size_t nprotocols;
  const char *const *origins; /* allowed Origin values; none: any */
  size_t norigins;
  int has_http;   /* plain HTTP requests are queued for the binding, else 426 */
  int has_accept; /* valid upgrades are queued "pending", for the binding's verdict */
  int backlog;
  int reuseport; /* SO_REUSEPORT: several processes share the port */
  tls_ctx *tls;  /* the server takes over this reference; NULL: plain TCP */
} server_opts;

typedef struct server {
  loop_obj obj;  /* first: handle->data of tcp points here */
  unsigned refs; /* the binding's and the handle's, as for a conn */
  uv_tcp_t tcp;
  loop *loop;
  int64_t id;
  conn_opts opts;
  char **protocols, **origins; /* owned copies */
  tls_ctx *tls;                /* one reference, or NULL */
  size_t nprotocols, norigins;
  unsigned has_http : 1;
  unsigned has_accept : 1;
  unsigned closing : 1;
  session_policy policy;    /* what a request must meet (over the copies above) */
  conn *handshaking;        /* doubly linked through their conn_link */
  conn *queue, *queue_tail; /* waiting for server_accept, through conn_link.next */
  int port;
} server;

/* Listens on host:port (port 0 picks a free one, then server->port tells
 * it). Returns NULL with *err set to a libuv error code on failure. Takes
 * over o->tls in either case. */
server *server_listen(loop *l, const char *host, int port, const server_opts *o, int *err);

/* The next connection ready for a handler (upgraded: "open" or later;
 * plain HTTP: "http"; an upgrade waiting for conn_accept_upgrade or a
 * refusal: "pending"), its reference now the caller's, or NULL. */
conn *server_accept(server *s);

/* Replaces the TLS configuration for connections accepted from now on
 * (takes over the reference to ctx). */
void server_set_tls(server *s, tls_ctx *ctx);

/* Stops listening and drops connections not yet handed out. Connections
 * already accepted carry on. */
void server_close(server *s);

/* Stops listening and answers status to every connection still sending
 * its request head; what is queued for server_accept stays for the binding
 * to answer. */
void server_shutdown(server *s, int status);

/* The binding lets go of s; freed once its handle is closed. */
void server_release(server *s);

/* Transport API for the binding (see transport/api.h) */

typedef struct server_info {
  int64_t id; /* the waitable id: woken when a connection can be accepted */
  int port;   /* the port listened on */
  int closing;
} server_info;

void server_describe(const server *s, server_info *out);

/* server_listen with the failure in words ("cannot listen on host:port:
 * why") in err. */
server *server_start(loop *l, const char *host, int port, const server_opts *o, char *err,
                     size_t errsize);

#pragma GCC visibility pop

#endif
