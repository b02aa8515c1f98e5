/* A WebSocket connection over a libuv TCP stream: handshake bytes, the
 * protocol state, an inbox of complete messages and a write queue. It
 * answers pings, runs the close handshake and its timers, enforces the
 * limits, and wakes its waiters (loop_wake(conn->id)) whenever something a
 * Lua caller may be waiting for has happened.
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

#include "protocol/buf.h"
#include "protocol/close.h"
#include "protocol/handshake.h"
#include "transport/inbox.h"
#include "transport/loop.h"
#include "protocol/pmd.h"
#include "protocol/proto.h"
#include "transport/tls.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

struct server;

typedef struct conn_opts {
  uint64_t max_message;
  size_t max_head;
  size_t high_water;
  uint64_t handshake_timeout_ms;
  uint64_t close_timeout_ms;
  uint64_t ping_interval_ms; /* 0: no keepalive */
  uint64_t ping_timeout_ms;
  pmd_config pmd; /* permessage-deflate wishes */
} conn_opts;

void conn_opts_default(conn_opts *o);

typedef enum conn_state {
  CONN_DIALING,   /* client: resolving and connecting */
  CONN_HANDSHAKE, /* reading the peer's request (server) or response (client) */
  CONN_HTTP,      /* server: a plain HTTP request waits for its answer */
  CONN_OPEN,
  CONN_CLOSING, /* close frame sent, waiting for the peer's */
  CONN_DONE     /* finished: no more frames either way */
} conn_state;

typedef struct conn_write {
  uv_write_t req;
  char *base; /* owned: the whole buffer handed over by conn_flush */
  size_t cap; /* its size */
  size_t len; /* bytes still in flight */
} conn_write;

struct conn;

/* What a conn's owner does with it while the opening handshake runs: the
 * server answers the request, the dialer checks the response. This keeps
 * conn.c from knowing either (no include circle). */
typedef struct conn_role {
  void (*on_head)(struct conn *c, const char *data, size_t n); /* head bytes arrived */
  void (*on_close)(struct conn *c); /* the handles are closing: let go of c */
} conn_role;

/* What only a client needs while it dials; kept apart so that the many
 * server-side connections do not carry it. */
typedef struct conn_dialer {
  uv_getaddrinfo_t gai;
  struct addrinfo *ai, *ai_next;
  uv_connect_t connect_req;
  int resolving; /* the uv_getaddrinfo request is out (it holds a reference) */
  char key[HS_KEY_LEN + 1];
  char offered[]; /* NUL-separated offered subprotocols, then an empty one */
} conn_dialer;

typedef struct conn {
  loop_obj obj; /* first: handle->data of tcp and timer points here */
  const conn_role *role;
  unsigned refs;
  uv_tcp_t tcp;
  uv_timer_t timer; /* handshake, keepalive, close and teardown deadlines */
  loop *loop;
  int64_t id;
  uint64_t woken;        /* loop->wake_gen when last put on the ready list */
  uint64_t heard;        /* uv_now() when the peer last sent anything (keepalive) */
  uint64_t ping_sent;    /* uv_now() when the keepalive ping went out */
  uint64_t drained;      /* bytes of completed waiting writes (see bytes_drained) */
  uint64_t ping_drained; /* bytes_drained() at the ping, or when last seen to grow */
  conn_opts opts;
  conn_state state;  /* what the binding shows; CLOSING and DONE follow `close` */
  close_state close; /* the close handshake's progress (protocol/close.h) */
  unsigned is_server : 1;
  unsigned tcp_closing : 1;
  unsigned reading : 1;
  unsigned clean : 1; /* outcome: both close frames went across (CLOSE_ACT_MARK_CLEAN) */
  unsigned awaiting_pong : 1;
  unsigned pong_grace : 2;  /* loop iterations granted past the pong deadline */
  unsigned want_write : 1;  /* a sender waits for the queue to drain */
  unsigned queued : 1;      /* in the server's accept queue */
  unsigned opened : 1;      /* the opening handshake succeeded */
  unsigned tls_ready : 1;   /* the TLS handshake is done */
  unsigned tls_closing : 1; /* close_notify queued */

  proto proto;
  buf head; /* handshake head (and what followed it) until taken */
  size_t head_len;
  hs_parser head_parser; /* resumes on each read until the head is complete */

  tls *tls;             /* NULL for plain TCP */
  loop_task tls_wait;   /* queued while its TLS handshake waits for budget */
  pmd *pmd;             /* NULL unless permessage-deflate was negotiated */
  buf out;              /* queued, not yet handed to the kernel (plaintext) */
  buf cipher;           /* TLS records waiting to be written */
  conn_write *inflight; /* at most one uv_write at a time */

  inbox inbox; /* messages the handler has not taken yet */

  unsigned close_code; /* what ws.close_code reports */
  unsigned fail_code;  /* code to fail with (CLOSE_ACT_RECORD_FAIL, then SEND_FAIL) */
  char *close_reason;  /* malloc'd, NUL-terminated, or NULL */
  uint8_t *pong;       /* malloc'd: the latest ping, unanswered while the queue is full */
  uint8_t pong_len;
  const char *error; /* static text for the last local failure */

  /* server side: the listener while handshaking or waiting to be accepted */
  struct server *server;
  struct conn *srv_prev, *srv_next;

  conn_dialer *dial; /* client side only, freed with the conn */
  char *protocol;    /* chosen subprotocol (client and server), or NULL */
  int dial_status;   /* HTTP status when the server refused, else 0 */
} conn;

/* Results of conn_receive/conn_send. */
enum { CONN_OK = 0, CONN_WAIT = 1, CONN_CLOSED = 2, CONN_NOMEM = 3, CONN_TOOBIG = 4 };

/* The largest message conn_send takes and the largest high-water mark (the
 * write path relies on both to bound a queue). */
#define CONN_MAX_SEND ((uint64_t)8 << 30)
#define CONN_MAX_HIGH_WATER ((uint64_t)8 << 30)

/* Server side: takes over an accepted socket (tcp must be initialised and
 * accepted into c->tcp by the caller via conn_new). */
conn *conn_new(loop *l, int is_server, const conn_opts *o);

/* Starts the server handshake on an accepted connection. */
void conn_start_server(conn *c);

/* Queues one whole message (or control frame). CONN_WAIT when the queue is
 * above the high-water mark (nothing queued: retry after a wake-up). */
int conn_send(conn *c, int opcode, const uint8_t *data, size_t len);
int conn_ping(conn *c, const uint8_t *data, size_t len);

/* Starts the close handshake with code (0: no code) and reason. */
int conn_close(conn *c, unsigned code, const char *reason, size_t reason_len);

/* Answers a plain HTTP request (state CONN_HTTP): out holds the response. */
void conn_respond(conn *c, const char *data, size_t len);

/* Drops the TCP connection now (no close frame). */
void conn_abort(conn *c, const char *why);

/* The binding lets go of c (drops the creator's reference, aborting c
 * unless it has finished). */
void conn_release(conn *c);

void conn_ref(conn *c);
void conn_unref(conn *c);

/* Sends what is queued (called by loop_flush). */
void conn_flush(conn *c);

/* Bytes queued or in flight. */
size_t conn_buffered(const conn *c);

/* Starts TLS on c (server: right after accept; client: before dialing);
 * host is the client's SNI and name to verify, or NULL. 0 or -1. */
int conn_use_tls(conn *c, tls_ctx *ctx, const char *host);

/* Writes "ip:port" (IPv6 as "[ip]:port") of the peer into out. */
void conn_remote(conn *c, char *out, size_t size);

/* Internal, shared with server.c and dial.c. */
void conn_mark_dirty(conn *c);
void conn_start_reading(conn *c);
void conn_open(conn *c, const uint8_t *rest, size_t rest_len);
void conn_fail_handshake(conn *c, const char *why);
void conn_close_handles(conn *c);
void conn_on_handle_closed(uv_handle_t *h);
void conn_arm_timer(conn *c, uint64_t ms);
/* Appends handshake bytes; -1 when the head grows past max_head. */
int conn_head_append(conn *c, const char *data, size_t n);

/* Transport API for the binding: with the server, loop and dial sections
 * it is all the binding uses (transport/api.h); the binding reads no field
 * of conn. */

/* What conn_describe fills in. Strings stay valid until c changes state. */
typedef struct conn_info {
  int64_t id;               /* the waitable id the connection wakes */
  const char *state;        /* "dialing", "handshake", "http", "open", "closing", "closed" */
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

/* CONN_OK with *m filled, CONN_WAIT, or CONN_CLOSED (conn_describe says how). */
int conn_receive(conn *c, conn_message *m);
void conn_message_done(conn *c, conn_message *m);

/* Results beside CONN_OK..CONN_TOOBIG for arguments the protocol refuses:
 * text or a close reason that is not UTF-8, a ping payload or a close reason
 * that is too long, a close code that may not be sent. */
enum { CONN_BAD_UTF8 = 5, CONN_BAD_LENGTH = 6, CONN_BAD_CODE = 7 };

/* conn_send and conn_ping with the checks above. */
int conn_send_message(conn *c, const void *data, size_t len, int binary);
int conn_send_ping(conn *c, const void *data, size_t len);

/* conn_close with code and reason checked first. */
int conn_start_close(conn *c, unsigned code, const char *reason, size_t len);

/* Answers a plain HTTP request with a response built from status, headers
 * and body. 0, or -1 when a header name or value is invalid. */
int conn_respond_http(conn *c, int status, const char *const *names, const char *const *values,
                      size_t nheaders, const char *body, size_t body_len);

/* The saved request (server) or response (client) head, NULL when none is
 * kept; *request tells which. conn_drop_head frees it. */
const char *conn_head(const conn *c, size_t *len, int *request);
void conn_drop_head(conn *c);

#pragma GCC visibility pop

#endif
