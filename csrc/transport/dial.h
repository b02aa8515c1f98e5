/* The client side of a connection: resolve (never blocking), connect to each
 * address in turn, send the upgrade request, check the response. */
#ifndef DUPLEX_DIAL_H
#define DUPLEX_DIAL_H

#include <stddef.h>

#include "transport/conn.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

/* Resolves host, connects, sends the request (already built into c->out by
 * the caller, with c->dial set up) and checks the response. Waiters wake
 * when the state becomes CONN_OPEN or CONN_DONE (then c->error says why).
 * 0, or a libuv error when the resolution cannot start. */
int dial_start(conn *c, const char *host, const char *port);

#pragma GCC visibility pop

#endif
