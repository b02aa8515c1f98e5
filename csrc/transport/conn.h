/* A WebSocket connection: an I/O shell around a session
 * (protocol/session.h) on a libuv TCP stream, plain or TLS behind one small
 * function table. It owns the socket, the timers (handshake, keepalive,
 * close), the write queue and an inbox of complete messages, performs the
 * I/O its session asks for, and wakes its waiters (loop_wake(id)) whenever
 * something a Lua caller may be waiting for has happened. Its struct is
 * private to conn.c.
 *
 * Lifetime: one reference count (conn_ref/conn_unref), as for every
 * transport object. conn_new returns a conn holding one reference for its
 * creator (the server until a binding accepts it, then the binding; the
 * binding for a dialled conn) and one for each of its two handles until
 * their close callbacks ran; an outstanding request (a DNS lookup) holds one
 * too. The last conn_unref frees it: nothing else ever does. */
#ifndef DUPLEX_CONN_H
#define DUPLEX_CONN_H

#include <stdint.h>
#include <uv.h>

#include "protocol/session.h"
#include "transport/loop.h"
#include "transport/tls.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

typedef struct conn_opts {
  uint64_t max_message;
  size_t max_head;
  size_t high_water;
  uint64_t handshake_timeout_ms;
  uint64_t close_timeout_ms;
  uint64_t ping_interval_ms; /* 0: no keepalive */
  uint64_t ping_timeout_ms;
  size_t max_backlog; /* queued bytes past which a publish is not queued */
  int backlog_close;  /* past it: close with 1013 (else drop the publish) */
  pmd_config pmd;     /* permessage-deflate wishes */
} conn_opts;

void conn_opts_default(conn_opts *o);

typedef struct conn conn;
struct topic_member;
struct outq_block;

/* What a conn's owner (server.c or dial.c) is told; this keeps conn.c from
 * knowing either (no include circle). */
typedef struct conn_role {
  void (*on_ready)(conn *c); /* server: upgraded, or a plain HTTP request: hand it out */
  void (*on_close)(conn *c); /* the handles are closing: let go of c */
  void (*on_free)(conn *c);  /* c is being freed: free what the owner keeps in it */
  void (*on_retry)(conn *c); /* client: a fresh TCP handle for the next address */
} conn_role;

/* The owner's part of a conn: a server's lists run through it; a dialer
 * keeps its state in data. */
typedef struct conn_link {
  conn *prev, *next;
  void *owner;
  void *data;
  unsigned queued; /* in the server's accept queue */
} conn_link;

/* Results of conn_receive/conn_send (the session's numbering). */
enum {
  CONN_OK = SESSION_OK,
  CONN_WAIT = 1,
  CONN_CLOSED = SESSION_CLOSED,
  CONN_NOMEM = SESSION_NOMEM,
  CONN_TOOBIG = SESSION_TOOBIG,
  CONN_DROPPED = 8, /* conn_publish: over max_backlog */
  CONN_SKIPPED = 9  /* conn_publish: binary, which an event stream cannot carry */
};

/* The largest high-water mark (the write path relies on it and on
 * SESSION_MAX_SEND to bound a queue). */
#define CONN_MAX_HIGH_WATER ((uint64_t)8 << 30)

/* A conn holding its creator's reference. A server conn reads the request
 * and answers it by policy (which must outlive the handshake); a client
 * conn dials (see conn_connected). NULL when out of memory. */
conn *conn_new(loop *l, int is_server, const conn_opts *o, const conn_role *role,
               const session_policy *policy);

conn_link *conn_link_of(conn *c);
loop *conn_loop(const conn *c);
uv_tcp_t *conn_tcp(conn *c);
int conn_closing(const conn *c); /* its handles are closing */

/* Server: reads the request of an accepted connection, within the
 * handshake timeout. */
void conn_serve(conn *c);

/* Client: queues the upgrade request (before connecting). NULL or why not. */
const char *conn_request(conn *c, const session_request *r);

/* Client: the timer that bounds resolving, connecting and the handshake. */
void conn_start_dial(conn *c);

/* Client: TCP is connected: the request (or the TLS hello) goes out. */
void conn_connected(conn *c);

/* Client: bytes the owner read from the socket before the conn reads for
 * itself (what followed a proxy's answer), handled as if just read. */
void conn_feed(conn *c, char *data, size_t n);

/* Client: closes the TCP handle for another address; role->on_retry runs
 * with a fresh one (unless c was aborted meanwhile). */
void conn_retry(conn *c);

/* Drops the TCP connection now (no close frame). */
void conn_abort(conn *c, const char *why);

/* The binding lets go of c (drops the creator's reference, aborting c
 * unless it has finished). */
void conn_release(conn *c);

void conn_ref(conn *c);
void conn_unref(conn *c);

/* The head of c's list of topic memberships (topic.c keeps it). */
struct topic_member **conn_topics(conn *c);

/* One message published to many connections: its frames are built on first
 * need, once per form (plain, or compressed with each distinct set of
 * parameters, or as a Server-Sent Event), and the same bytes are queued for
 * every subscriber. */
enum { CONN_SHARED_FORMS = 4 };
typedef struct conn_shared {
  int opcode;
  const uint8_t *data;
  size_t len;
  const char *event, *id; /* an event stream's "event:" (the topic) and "id:" (or NULL) */
  size_t event_len, id_len;
  struct outq_block *plain, *sse;
  struct {
    const pmd *params; /* a subscriber's compressor standing for its parameters */
    struct outq_block *frame;
  } z[CONN_SHARED_FORMS];
  unsigned nz;
} conn_shared;

void conn_shared_init(conn_shared *m, int binary, const void *data, size_t len);
void conn_shared_free(loop *l, conn_shared *m);

/* Queues a published message for c, after what c queued before (the text
 * was checked by the publisher): CONN_OK; CONN_DROPPED when c's queue is
 * past max_backlog (counted in c's dropped; closed with 1013 when the policy
 * says so); CONN_CLOSED when c may not be sent to; CONN_NOMEM. Never waits. */
int conn_publish(conn *c, conn_shared *m);

/* Starts TLS on c (server: right after accept; client: before dialing);
 * host is the client's SNI and name to verify, or NULL. 0 or -1. */
int conn_use_tls(conn *c, tls_ctx *ctx, const char *host);

/* Transport API for the binding: with the server, loop and dial sections
 * it is all the binding uses (transport/api.h); the binding reads no field
 * of conn. */

/* What conn_describe fills in. Strings stay valid until c changes state. */
typedef struct conn_info {
  int64_t id;               /* the waitable id the connection wakes */
  const char *state;        /* "dialing", "handshake", "http", "pending", "open", "closing",
                               "closed", "sse" */
  int opened;               /* the opening handshake succeeded */
  int closed;               /* state "closed" */
  unsigned close_code;      /* what ws.close_code reports */
  const char *close_reason; /* "" when none */
  int clean;                /* both close frames went across */
  const char *error;        /* why it failed, or NULL */
  int http_status;          /* HTTP status of a refused dial, else 0 */
  const char *protocol;     /* chosen subprotocol, or NULL */
  int compressed;           /* permessage-deflate was negotiated */
  size_t buffered;          /* bytes queued or in flight */
  uint64_t dropped;         /* publishes dropped over max_backlog */
  uint64_t skipped;         /* binary publishes an event stream skipped */
  char remote[96];          /* "ip:port" (CONN_INFO_REMOTE), "" when unknown */
  char peer_subject[512];   /* peer certificate subject (CONN_INFO_PEER), "" when none */
} conn_info;

/* The costly parts of conn_describe, filled only when asked for. */
enum { CONN_INFO_REMOTE = 1, CONN_INFO_PEER = 2 };

void conn_describe(conn *c, unsigned what, conn_info *out);

/* A received message, valid until conn_message_done. */
typedef struct conn_message {
  const uint8_t *data;
  size_t len;
  int binary;
} conn_message;

/* The waitable id the connection wakes (conn_info.id, without the rest). */
int64_t conn_id(const conn *c);

/* CONN_OK with *m filled, CONN_WAIT, or CONN_CLOSED (conn_describe says how). */
int conn_receive(conn *c, conn_message *m);
void conn_message_done(conn *c, conn_message *m);

/* Results beside CONN_OK..CONN_TOOBIG for arguments the protocol refuses:
 * text or a close reason that is not UTF-8, a ping payload or a close reason
 * that is too long, a close code that may not be sent. */
enum {
  CONN_BAD_UTF8 = SESSION_BAD_UTF8,
  CONN_BAD_LENGTH = SESSION_BAD_LENGTH,
  CONN_BAD_CODE = SESSION_BAD_CODE
};

/* Queues a message or a ping, after the checks above. A message gets
 * CONN_WAIT when the queue is above the high-water mark (nothing queued:
 * retry after a wake-up). */
int conn_send_message(conn *c, const void *data, size_t len, int binary);
int conn_send_ping(conn *c, const void *data, size_t len);

/* Starts the close handshake, code and reason checked first. */
int conn_start_close(conn *c, unsigned code, const char *reason, size_t len);

/* Answers a plain HTTP request, or refuses a pending upgrade, with a
 * response built from status, headers and body. 0, or -1 when a header name
 * or value is invalid. */
int conn_respond_http(conn *c, int status, const char *const *names, const char *const *values,
                      size_t nheaders, const char *body, size_t body_len);

/* Server, state "http": answers 200 with headers and turns c into a
 * Server-Sent Events stream (state "sse"): a topic it subscribes to is sent
 * as events (conn_shared), with "retry: retry_ms" first (none for 0) and a
 * comment every heartbeat_ms (0: none); a client that takes nothing of what
 * is queued for a whole heartbeat is dropped, and the bytes it sends are
 * ignored. conn_start_close ends the stream. 0, or -1 when c is not "http"
 * or a header is invalid. */
int conn_respond_sse(conn *c, const char *const *names, const char *const *values, size_t nheaders,
                     uint64_t retry_ms, uint64_t heartbeat_ms);

/* Server, still reading the request head: answers status (503 at
 * shutdown) and ends the connection. 0, or -1 when c is past that (or a TLS
 * handshake is not done: then abort it). */
int conn_refuse_handshake(conn *c, int status);

/* Server, state "pending" (the policy's has_accept): the application
 * accepts the upgrade; the 101 goes out and the connection opens. 0, or -1
 * when c is not pending any more (dropped by the handshake timeout, say). */
int conn_accept_upgrade(conn *c);

/* The saved request (server) or response (client) head, NULL when none is
 * kept; *request tells which. conn_drop_head frees it (not while pending). */
const char *conn_head(const conn *c, size_t *len, int *request);
void conn_drop_head(conn *c);

#pragma GCC visibility pop

#endif
