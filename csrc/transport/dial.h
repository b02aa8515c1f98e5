/* The client side of a connection: build the upgrade request, apply the TLS
 * policy, resolve (never blocking), connect to each address in turn, send
 * the request, check the response. */
#ifndef DUPLEX_DIAL_H
#define DUPLEX_DIAL_H

#include <stddef.h>

#include "transport/conn.h"
#include "transport/tls.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

/* The most subprotocols and extra headers a dial takes. */
enum { DIAL_MAX_LIST = SESSION_MAX_LIST };

/* What to dial: the parts of a ws:// or wss:// URL, the subprotocols to
 * offer, extra request headers (names[i]: values[i]) and an optional
 * Origin. With secure set, tls says how to check the server: without ca,
 * cert and with verify on, every dial shares the loop's default context.
 * With proxy_host set, TCP goes to the HTTP proxy, which is asked to CONNECT
 * to host:port (its answer head bounded by max_head); TLS and the upgrade
 * then run through that tunnel as on a direct connection. proxy_auth is
 * "user:pass" for Basic Proxy-Authorization, or NULL. */
typedef struct dial_request {
  const char *host, *port;
  const char *target;      /* path and query */
  const char *host_header; /* Host value, with a port when not the default */
  const char *const *protocols;
  size_t nprotocols; /* at most DIAL_MAX_LIST */
  const char *const *names, *const *values;
  size_t nheaders; /* at most DIAL_MAX_LIST */
  const char *origin;
  int secure;
  tls_config tls;
  const char *proxy_host, *proxy_port; /* NULL: dial host directly */
  const char *proxy_auth;
} dial_request;

/* Starts dialing: a connection held by the caller (release it with
 * conn_release), whose waiters wake when it opens or fails (conn_describe
 * then says why). NULL with the reason in err when it cannot start. */
conn *dial_open(loop *l, const dial_request *r, const conn_opts *o, char *err, size_t errsize);

/* A dialed connection that a proxy refused (conn_describe's error starts
 * with "proxy refused: "): the proxy's response head, else NULL. c must
 * come from dial_open. */
const char *dial_proxy_head(conn *c, size_t *len);

#pragma GCC visibility pop

#endif
