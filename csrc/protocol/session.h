/* One connection's WebSocket session, without I/O (in the style of
 * wsproto's Connection): everything between the bytes a transport reads and
 * writes and the messages an application sees.
 *
 * Opening: a server session parses the request head incrementally, checks
 * it, picks the subprotocol and the permessage-deflate parameters and queues
 * the 101 (or an error response); a client session queues the request and
 * checks the response head. Then it receives frames (proto.h, inflating as
 * they arrive), frames and compresses what is sent, answers pings (a pong is
 * queued with control set: the transport bounds them, see session_hooks) and runs the close
 * handshake (close.h), recording the codes and reasons the application is told.
 *
 * Everything it needs of its transport goes through session_hooks: queue
 * bytes, take a message, perform the I/O actions of a close step. It reads
 * and writes no socket, timer or Lua state. */
#ifndef DUPLEX_SESSION_H
#define DUPLEX_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"
#include "protocol/close.h"
#include "protocol/handshake.h"
#include "protocol/pmd.h"
#include "protocol/proto.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

typedef struct session_hooks {
  /* Queue a[0..an) then b[0..bn) for the peer, b XOR-masked with mask when
   * mask is not NULL: one frame, or a head. control is 1 for a pong, which
   * may go ahead of queued data frames (pings keep their place, so that
   * their pong tells how far behind the peer reads), and may take the place
   * of a pong still waiting: a peer that pings and never reads must not
   * fill memory, and the answer to its latest ping is enough (RFC 6455
   * 5.5.3). 0, or -1 when out of memory. */
  int (*queue)(void *ud, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
               const uint8_t *mask, int control);
  /* A complete data message (FRAME_TEXT, valid UTF-8, or FRAME_BINARY),
   * valid during the call (session_take_block may keep its block). 0, or -1
   * when it cannot be kept (out of memory: the session fails with 1011). */
  int (*message)(void *ud, int opcode, const uint8_t *data, size_t len);
  /* The I/O actions of a close step (SESSION_IO_ACTIONS bits, to perform
   * lowest first). */
  void (*act)(void *ud, unsigned actions);
  int (*unread)(void *ud);                         /* messages wait unread by the application */
  void (*pong)(void *ud);                          /* a pong arrived (keepalive may rest) */
  int (*random)(void *ud, uint8_t *out, size_t n); /* 0, or -1 when none */
} session_hooks;

/* The close actions the session performs itself (recording, close frames);
 * the others go to hooks->act. */
#define SESSION_OWN_ACTIONS                                                                        \
  (CLOSE_ACT_RECORD_PEER | CLOSE_ACT_RECORD_FAIL | CLOSE_ACT_ABNORMAL | CLOSE_ACT_SEND_LOCAL |     \
   CLOSE_ACT_SEND_ECHO | CLOSE_ACT_SEND_FAIL | CLOSE_ACT_MARK_CLEAN | CLOSE_ACT_REJECT)
#define SESSION_IO_ACTIONS (~(unsigned)SESSION_OWN_ACTIONS)

typedef struct session_config {
  int is_server;
  uint64_t max_message;
  size_t max_head;
  const pmd_config *pmd; /* the compression wishes; must outlive the session */
  buf *scratch;          /* deflate output, reused (may be shared by sessions) */
} session_config;

/* What a server accepts in an upgrade request. */
typedef struct session_policy {
  const char *const *protocols; /* ours, in order of preference */
  size_t nprotocols;
  const char *const *origins; /* allowed Origin values; none: any */
  size_t norigins;
  int has_http;   /* a plain HTTP request is the application's, else 426 */
  int has_accept; /* a valid upgrade waits for the application's verdict */
} session_policy;

/* What a client asks for in its upgrade request. */
typedef struct session_request {
  const char *target;      /* path and query */
  const char *host_header; /* Host value */
  const char *const *protocols;
  size_t nprotocols; /* at most SESSION_MAX_LIST */
  const char *const *names, *const *values;
  size_t nheaders; /* at most SESSION_MAX_LIST */
  const char *origin;
} session_request;

enum { SESSION_MAX_LIST = 64 };

/* The client's side of the handshake: its key and the subprotocols it
 * offered (NUL-separated, then an empty one), kept for the response. */
typedef struct session_offer {
  char key[HS_KEY_LEN + 1];
  char protocols[];
} session_offer;

typedef struct session {
  const session_hooks *hooks;
  void *ud;
  session_config cfg;
  proto rx; /* the frame receiver, once open */
  pmd *pmd; /* NULL unless permessage-deflate was negotiated */
  close_state close;
  unsigned opened : 1; /* the opening handshake succeeded */
  unsigned clean : 1;  /* both close frames went across */
  unsigned close_code; /* what the application is told */
  unsigned fail_code;  /* the failure's code, until its close frame is queued */
  char *close_reason;  /* malloc'd, NUL-terminated, or NULL */
  const char *error;   /* static text for the first failure */
  char *protocol;      /* the chosen subprotocol, or NULL */
  int http_status;     /* client: the status of a refused upgrade, else 0 */
  buf head;            /* the handshake head (and what followed it) */
  size_t head_len;     /* its length once complete */
  hs_parser head_parser;
  session_offer *offer; /* client only */
} session;

/* Results of the session_* calls that send, in the numbering conn.h uses. */
enum {
  SESSION_OK = 0,
  SESSION_CLOSED = 2,
  SESSION_NOMEM = 3,
  SESSION_TOOBIG = 4,
  SESSION_BAD_UTF8 = 5,
  SESSION_BAD_LENGTH = 6,
  SESSION_BAD_CODE = 7
};

/* The largest message a session sends. */
#define SESSION_MAX_SEND ((uint64_t)8 << 30)

/* Results of the head calls. */
typedef enum session_head_result {
  SESSION_HEAD_MORE,    /* incomplete: feed more */
  SESSION_HEAD_OPEN,    /* upgraded (server: the 101 is queued): call session_start */
  SESSION_HEAD_HTTP,    /* server: a plain HTTP request for the application */
  SESSION_HEAD_PENDING, /* server, has_accept: a valid upgrade; nothing queued until
                           session_accept (or an HTTP answer of the application's) */
  SESSION_HEAD_REFUSED, /* refused (server: the error response is queued); error says why */
  SESSION_HEAD_FAILED   /* cannot go on (out of memory; client: any refusal); error says why */
} session_head_result;

void session_init(session *s, const session_config *cfg, const session_hooks *hooks, void *ud);
void session_free(session *s);

/* Server: head bytes as they arrive. */
session_head_result session_server_head(session *s, const char *data, size_t n,
                                        const session_policy *p);

/* Server, after SESSION_HEAD_PENDING: negotiates and queues the 101 from
 * the saved head (which must still be there): SESSION_HEAD_OPEN (then call
 * session_start) or SESSION_HEAD_FAILED. */
session_head_result session_accept(session *s, const session_policy *p);

/* Client: queues the upgrade request. NULL, or why it cannot be made. */
const char *session_client_request(session *s, const session_request *r);

/* Client: response head bytes as they arrive. */
session_head_result session_client_head(session *s, const char *data, size_t n);

/* After SESSION_HEAD_OPEN: frames flow; the bytes that followed the head in
 * the same read are fed now. */
void session_start(session *s);

/* Frames from the peer (modified in place: unmasking). */
void session_feed(session *s, uint8_t *data, size_t n);

/* An event of the close machine from the transport (the peer's FIN, a
 * timeout, a flush, an abort...), with the code and text it carries.
 * SESSION_CLOSED when the machine refused it or our close frame could not be
 * queued. */
int session_event(session *s, close_event ev, unsigned code, const char *text, size_t len);

/* Checks a message or ping before the transport's own checks: SESSION_OK,
 * SESSION_BAD_UTF8, SESSION_BAD_LENGTH, SESSION_CLOSED, SESSION_TOOBIG. */
int session_check_send(const session *s, int opcode, const void *data, size_t len);

/* Frames (compressing when negotiated and worth it) and queues one whole
 * message or control frame. */
int session_send(session *s, int opcode, const void *data, size_t len);

/* The application closes: code and reason checked, then the close frame. */
int session_close(session *s, unsigned code, const char *reason, size_t len);

/* Inside hooks->message only: the malloc'd block holding the message (its
 * data at the start), or NULL when the message lies in the caller's input. */
void *session_take_block(session *s, size_t *cap);

/* Frames may still be sent and received (open, no close frame of ours sent
 * and none of the peer's answered). */
int session_live(const session *s);

/* Remembers why the connection failed, unless a reason is known already. */
void session_note_error(session *s, const char *why);

/* The saved head (server: the request; client: the response), NULL when
 * none is kept; session_trim_head keeps exactly the head and no more. */
const char *session_head(const session *s, size_t *len);
void session_trim_head(session *s);
void session_drop_head(session *s);

#pragma GCC visibility pop

#endif
