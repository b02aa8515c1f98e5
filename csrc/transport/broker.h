/* The Redis broker: joins this process's topics to every other process on
 * the same Redis through pub/sub (hiredis' async API, driven by our own
 * libuv handles). It belongs to the loop (l->broker); there is at most one.
 *
 * Two connections: one publishes, one subscribes to `prefix .. topic` for
 * each topic with local subscribers (topic.c reports the first join and the
 * last leave through l->topic_hook; the changes of one step go out
 * pipelined at the loop's flush). A published message travels in an
 * envelope: a magic/version byte, the 16-byte node id of the sender (random
 * per process), the kind byte (0 text, 1 binary), then the payload. A
 * process skips its own messages; the others' are published locally. Each
 * connection reconnects with full-jitter backoff; while the publishing one
 * is down, or its output above max_queue bytes, publishes are dropped and
 * counted. */
#ifndef DUPLEX_BROKER_H
#define DUPLEX_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "transport/loop.h"

#pragma GCC visibility push(hidden)

enum { BROKER_NODE_ID = 16, BROKER_HEADER = 2 + BROKER_NODE_ID, BROKER_MAGIC = 0xD1 };

typedef struct broker broker;

typedef struct broker_config {
  const char *host; /* TCP host, or NULL with path */
  int port;
  const char *path;     /* unix socket, or NULL */
  const char *password; /* NULL: no AUTH */
  int db;               /* < 0: no SELECT */
  const char *prefix;   /* channel prefix */
  size_t prefix_len;
  uint64_t timeout_ms;     /* connect (and AUTH, SELECT) within */
  uint64_t backoff_min_ms; /* reconnect delay bounds */
  uint64_t backoff_max_ms;
  size_t max_queue; /* bytes waiting for Redis past which publishes drop */
} broker_config;

typedef struct broker_info {
  const char *state; /* "connecting", "connected", "failed" (the first
                        connection did not come up), "closed" */
  const char *error; /* the last failure in words, or NULL */
  int64_t id;        /* woken on every change of state */
  uint64_t gen;      /* which broker (a closed one is gone) */
  uint64_t published, received, dropped, invalid;
} broker_info;

/* Starts connecting: 0, or -1 with *err set (a broker is set already, out
 * of memory). The loop holds it until broker_close or loop_close. */
int broker_open(loop *l, const broker_config *cfg, const char **err);

/* Fills *i for the broker of generation gen (0: the current one); a broker
 * that is gone reads "closed" with no counters. */
void broker_describe(loop *l, uint64_t gen, broker_info *i);

/* Closes the broker of generation gen (0: the current one), if still set. */
void broker_close(loop *l, uint64_t gen);

/* PUBLISHes the message to the other processes (nothing without a broker). */
void broker_publish(loop *l, const char *name, size_t len, const void *data, size_t n, int binary);

/* Decodes an envelope: 0 with *data, *n, *binary set, or -1 when it is not
 * one. own: the node id a message of this process would carry (then 1). */
int broker_decode(const void *msg, size_t len, const uint8_t *own, const void **data, size_t *n,
                  int *binary);

#pragma GCC visibility pop

#endif
