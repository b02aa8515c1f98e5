#include "protocol/session.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/lex.h"

void session_init(session *s, const session_config *cfg, const session_hooks *hooks, void *ud) {
  memset(s, 0, sizeof *s);
  s->cfg = *cfg;
  s->hooks = hooks;
  s->ud = ud;
  s->close_code = FRAME_CLOSE_ABNORMAL;
}

void session_free(session *s) {
  proto_free(&s->rx);
  pmd_free(s->pmd);
  buf_free(&s->head);
  free(s->close_reason);
  free(s->protocol);
  free(s->offer);
  s->pmd = NULL, s->close_reason = NULL, s->protocol = NULL, s->offer = NULL;
}

void session_note_error(session *s, const char *why) {
  if (why && !s->error) s->error = why;
}

int session_live(const session *s) {
  return s->opened && (s->close == CLOSE_OPEN || s->close == CLOSE_PEER_PENDING ||
                       s->close == CLOSE_FAIL_PENDING);
}

static char *copy_string(const char *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = 0;
  return s;
}

static int queue_bytes(session *s, const buf *b) {
  return s->hooks->queue(s->ud, (const uint8_t *)b->data, b->len, NULL, 0, NULL, 0);
}

/* Sending */

/* One frame, masked with a fresh key on the client side. */
static int queue_frame(session *s, int opcode, int rsv, const uint8_t *data, size_t len) {
  uint8_t hdr[FRAME_MAX_HEADER], mask[4];
  int masked = !s->cfg.is_server;
  if (masked && s->hooks->random(s->ud, mask, 4)) return SESSION_NOMEM;
  size_t hl = frame_encode_header(hdr, 1, rsv, opcode, len, masked ? mask : NULL);
  int control = opcode == FRAME_PONG;
  return s->hooks->queue(s->ud, hdr, hl, data, len, masked ? mask : NULL, control) ? SESSION_NOMEM
                                                                                   : SESSION_OK;
}

static int queue_close(session *s, unsigned code, const char *reason, size_t len) {
  uint8_t payload[FRAME_MAX_CONTROL];
  size_t n = 0;
  if (code) {
    if (len > FRAME_MAX_CONTROL - 2) len = FRAME_MAX_CONTROL - 2;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (len) memcpy(payload + 2, reason, len);
    n = 2 + len;
  }
  return queue_frame(s, FRAME_CLOSE, 0, payload, n);
}

int session_check_send(const session *s, int opcode, const void *data, size_t len) {
  if (opcode == FRAME_TEXT && !utf8_valid(data, len)) return SESSION_BAD_UTF8;
  if (opcode == FRAME_PING && len > FRAME_MAX_CONTROL) return SESSION_BAD_LENGTH;
  if (!session_live(s)) return SESSION_CLOSED;
  if (len > SESSION_MAX_SEND) return SESSION_TOOBIG;
  return SESSION_OK;
}

int session_send(session *s, int opcode, const void *data, size_t len) {
  if (!session_live(s)) return SESSION_CLOSED;
  int data_frame = opcode == FRAME_TEXT || opcode == FRAME_BINARY;
  if (!data_frame || !s->pmd || !pmd_wants(s->pmd, len))
    return queue_frame(s, opcode, 0, data, len);
  buf *z = s->cfg.scratch;
  z->len = 0;
  if (pmd_deflate(s->pmd, data, len, z)) return SESSION_NOMEM;
  int rc = queue_frame(s, opcode, FRAME_RSV1, (const uint8_t *)z->data, z->len);
  if (z->cap > 1u << 20) buf_free(z); /* keep a modest scratch buffer only */
  return rc;
}

/* The close handshake: close.h decides; the session records and queues
 * close frames, and hands the I/O actions to its transport. */

static void set_reason(session *s, const char *reason, size_t len) {
  free(s->close_reason);
  s->close_reason = copy_string(reason ? reason : "", reason ? len : 0);
}

/* CLOSE_ACT_SEND_ECHO: the peer's code back (none when it sent none). */
static int send_echo(session *s) {
  unsigned code = s->close_code == FRAME_CLOSE_NO_STATUS ? 0 : s->close_code;
  const char *reason = s->close_reason ? s->close_reason : "";
  return queue_close(s, code, reason, strlen(reason));
}

/* CLOSE_ACT_SEND_FAIL: fail the connection (RFC 6455 7.1.7) and report why. */
static int send_fail(session *s) {
  const char *why = s->error ? s->error : "";
  int rc = queue_close(s, s->fail_code, why, strlen(why));
  s->close_code = s->fail_code;
  set_reason(s, why, strlen(why));
  return rc;
}

static void record(session *s, unsigned a, unsigned code, const char *text, size_t len) {
  if (a & CLOSE_ACT_RECORD_PEER) {
    s->close_code = code;
    set_reason(s, text, len);
  }
  if (a & CLOSE_ACT_RECORD_FAIL) s->fail_code = code, s->error = text;
  if (a & CLOSE_ACT_ABNORMAL) {
    s->close_code = FRAME_CLOSE_ABNORMAL;
    session_note_error(s, text);
  }
}

/* An action may feed the machine again (the transport's teardown: FLUSHED;
 * a failed write: ABORT); the rest of the outer step then finds the
 * connection dropped and does nothing. */
int session_event(session *s, close_event ev, unsigned code, const char *text, size_t len) {
  unsigned a = close_apply(&s->close, ev);
  record(s, a, code, text, len);
  if ((a & CLOSE_ACT_SEND_LOCAL) && queue_close(s, code, text, len) != SESSION_OK) {
    session_note_error(s, "out of memory");
    session_event(s, CLOSE_EV_ABORT, 0, NULL, 0);
    return SESSION_CLOSED;
  }
  /* an echo or failure frame that cannot be queued is moot: the teardown follows anyway */
  if (a & CLOSE_ACT_SEND_ECHO) send_echo(s);
  if (a & CLOSE_ACT_SEND_FAIL) send_fail(s);
  if (a & CLOSE_ACT_MARK_CLEAN) s->clean = 1;
  s->hooks->act(s->ud, a & SESSION_IO_ACTIONS);
  return a & CLOSE_ACT_REJECT ? SESSION_CLOSED : SESSION_OK;
}

int session_close(session *s, unsigned code, const char *reason, size_t len) {
  if (!frame_close_code_sendable(code)) return SESSION_BAD_CODE;
  if (len > FRAME_MAX_CONTROL - 2) return SESSION_BAD_LENGTH;
  if (!utf8_valid((const uint8_t *)reason, len)) return SESSION_BAD_UTF8;
  if (!session_live(s)) return SESSION_CLOSED;
  return session_event(s, CLOSE_EV_LOCAL_CLOSE, code, reason, len);
}

/* Receiving */

static void sink_message(void *ud, int opcode, const uint8_t *data, size_t len) {
  session *s = ud;
  if (!session_live(s)) return; /* after our close frame, data is moot */
  if (s->hooks->message(s->ud, opcode, data, len))
    session_event(s, CLOSE_EV_ERROR, FRAME_CLOSE_INTERNAL, "out of memory", 0);
}

static void sink_ping(void *ud, const uint8_t *data, size_t len) {
  session *s = ud;
  if (session_live(s)) queue_frame(s, FRAME_PONG, 0, data, len);
}

/* Unsolicited pongs are allowed and need nothing; keepalive sees them all. */
static void sink_pong(void *ud, const uint8_t *data, size_t len) {
  session *s = ud;
  (void)data, (void)len;
  if (session_live(s)) s->hooks->pong(s->ud);
}

/* With messages unread, the application sees them before the close, and
 * its replies go out before ours. */
static void sink_close(void *ud, unsigned code, const uint8_t *reason, size_t len) {
  session *s = ud;
  close_event ev = s->hooks->unread(s->ud) ? CLOSE_EV_PEER_CLOSE_UNREAD : CLOSE_EV_PEER_CLOSE;
  session_event(s, ev, code, (const char *)reason, len);
}

static const proto_sink sink = {sink_message, sink_ping, sink_pong, sink_close};

/* A bad frame fails the connection; as with the peer's close, the valid
 * messages before it are delivered first. */
void session_feed(session *s, uint8_t *data, size_t n) {
  unsigned code = proto_feed(&s->rx, data, n, &sink, s);
  if (!code) return;
  close_event ev = s->hooks->unread(s->ud) ? CLOSE_EV_ERROR_UNREAD : CLOSE_EV_ERROR;
  session_event(s, ev, code, s->rx.error, 0);
}

void *session_take_block(session *s, size_t *cap) {
  *cap = s->rx.msg_cap;
  return proto_take_message(&s->rx);
}

void session_start(session *s) {
  s->opened = 1;
  proto_init(&s->rx, s->cfg.is_server, s->cfg.max_message);
  if (s->pmd) s->rx.rsv_allowed = FRAME_RSV1, s->rx.inflater = s->pmd;
  if (s->head.len > s->head_len)
    session_feed(s, (uint8_t *)s->head.data + s->head_len, s->head.len - s->head_len);
}

/* The opening handshake */

/* Appends head bytes and parses what is there: the head's length once it is
 * complete, 0 while more is to come, -1 malformed, -2 too large. An
 * incomplete head never stays longer than max_head, so the buffer holds at
 * most max_head plus one read (the bytes after a head may be frames). */
static int read_head(session *s, const char *data, size_t n, hs_head *h) {
  if (!s->head.len) hs_parser_init(&s->head_parser, !s->cfg.is_server);
  if (buf_append(&s->head, data, n)) return -2;
  int len = hs_parser_feed(&s->head_parser, s->head.data, s->head.len, h);
  if (len > 0 && (size_t)len > s->cfg.max_head) return -2;
  if (len == 0 && s->head.len > s->cfg.max_head) return -2;
  if (len > 0) s->head_len = (size_t)len;
  return len == -2 ? -2 : len < 0 ? -1 : len;
}

static session_head_result refuse(session *s, int status, const char *why) {
  buf out = {0};
  session_note_error(s, why);
  int rc = hs_build_error(&out, status, why) || queue_bytes(s, &out);
  buf_free(&out);
  return rc ? SESSION_HEAD_FAILED : SESSION_HEAD_REFUSED;
}

static int origin_allowed(const session_policy *p, const hs_head *h) {
  if (!p->norigins) return 1;
  const hs_header *o = hs_find(h, "origin");
  if (!o) return 0;
  for (size_t i = 0; i < p->norigins; i++)
    if (lex_is(o->value, o->value_len, p->origins[i])) return 1;
  return 0;
}

/* Negotiates the subprotocol and compression and queues the 101. */
static session_head_result accept_upgrade(session *s, const session_policy *p, const hs_head *h,
                                          const char *key) {
  int pick = hs_select_protocol(h, p->protocols, p->nprotocols);
  const char *protocol = pick >= 0 ? p->protocols[pick] : NULL;
  if (protocol && !(s->protocol = copy_string(protocol, strlen(protocol))))
    return session_note_error(s, "out of memory"), SESSION_HEAD_FAILED;
  char ext[256] = "";
  pmd_params prm;
  if (pmd_accept(h, s->cfg.pmd, &prm, ext, sizeof ext) && !(s->pmd = pmd_new(&prm, s->cfg.pmd)))
    ext[0] = 0; /* no memory for it: go on without compression */
  buf out = {0};
  int rc =
      hs_build_accept(&out, key, HS_KEY_LEN, protocol, ext[0] ? ext : NULL) || queue_bytes(s, &out);
  buf_free(&out);
  if (rc) return session_note_error(s, "out of memory"), SESSION_HEAD_FAILED;
  return SESSION_HEAD_OPEN;
}

session_head_result session_server_head(session *s, const char *data, size_t n,
                                        const session_policy *p) {
  hs_head h;
  int len = read_head(s, data, n, &h);
  if (len == 0) return SESSION_HEAD_MORE;
  if (len == -2) return refuse(s, 431, "request head too large");
  if (len < 0) return refuse(s, 400, "malformed HTTP request");
  const char *key, *why;
  int status = hs_check_request(&h, &key, &why);
  if (status == -1)
    return p->has_http ? SESSION_HEAD_HTTP : refuse(s, 426, "this is a WebSocket endpoint");
  if (status) return refuse(s, status, why);
  if (!origin_allowed(p, &h)) return refuse(s, 403, "origin not allowed");
  if (p->has_accept) return SESSION_HEAD_PENDING; /* the head stays for session_accept */
  return accept_upgrade(s, p, &h, key);
}

/* The head was checked when it came in; parsing it again here spares every
 * session a copy of the key. */
session_head_result session_accept(session *s, const session_policy *p) {
  hs_head h;
  const char *key, *why;
  if (s->opened || !s->head_len || hs_parse_request(s->head.data, s->head_len, &h) <= 0 ||
      hs_check_request(&h, &key, &why) != 0) {
    session_note_error(s, "no upgrade request to accept");
    return SESSION_HEAD_FAILED;
  }
  return accept_upgrade(s, p, &h, key);
}

static session_head_result fail(session *s, const char *why) {
  session_note_error(s, why);
  return SESSION_HEAD_FAILED;
}

/* The offer kept for the response check: the protocols NUL-separated. */
static session_offer *new_offer(const session_request *r) {
  size_t total = 1;
  for (size_t i = 0; i < r->nprotocols; i++) total += strlen(r->protocols[i]) + 1;
  session_offer *o = calloc(1, sizeof *o + total);
  if (!o) return NULL;
  char *p = o->protocols;
  for (size_t i = 0; i < r->nprotocols; i++) {
    size_t len = strlen(r->protocols[i]) + 1;
    memcpy(p, r->protocols[i], len);
    p += len;
  }
  *p = 0;
  return o;
}

/* The request: the extra headers, then Origin and the extension offer;
 * the protocols joined as "a, b". */
static const char *build_request(session *s, const session_request *r, buf *out) {
  const char *names[SESSION_MAX_LIST + 2], *values[SESSION_MAX_LIST + 2];
  size_t nh = r->nheaders < SESSION_MAX_LIST ? r->nheaders : SESSION_MAX_LIST;
  if (nh) {
    memcpy(names, r->names, nh * sizeof *names);
    memcpy(values, r->values, nh * sizeof *values);
  }
  if (r->origin) names[nh] = "Origin", values[nh++] = r->origin;
  char offer[256];
  if (s->cfg.pmd->enabled) {
    pmd_offer(s->cfg.pmd, offer, sizeof offer);
    names[nh] = "Sec-WebSocket-Extensions", values[nh++] = offer;
  }
  buf joined = {0};
  for (size_t i = 0; i < r->nprotocols; i++)
    if ((i && buf_append(&joined, ", ", 2)) ||
        buf_append(&joined, r->protocols[i], strlen(r->protocols[i])))
      return buf_free(&joined), "out of memory";
  if (r->nprotocols && buf_append(&joined, "", 1)) return buf_free(&joined), "out of memory";
  int rc = hs_build_request(out, r->target, r->host_header, s->offer->key,
                            r->nprotocols ? joined.data : NULL, names, values, nh);
  buf_free(&joined);
  return rc ? "invalid header name or value" : NULL;
}

const char *session_client_request(session *s, const session_request *r) {
  if (!(s->offer = new_offer(r))) return "out of memory";
  if (hs_make_key(s->offer->key)) return "no randomness for the handshake key";
  buf out = {0};
  const char *why = build_request(s, r, &out);
  if (!why && queue_bytes(s, &out)) why = "out of memory";
  buf_free(&out);
  return why;
}

/* Checks the 101: key, subprotocol, extensions. */
static session_head_result check_upgrade(session *s, const hs_head *h) {
  const char *offered[SESSION_MAX_LIST];
  size_t noffered = 0;
  for (const char *p = s->offer->protocols; *p && noffered < SESSION_MAX_LIST; p += strlen(p) + 1)
    offered[noffered++] = p;
  const char *protocol, *why;
  size_t plen;
  pmd_params prm;
  int compressed = pmd_check(h, s->cfg.pmd, &prm, &why);
  if (compressed < 0) return fail(s, why);
  /* the request offered extensions exactly when compression is on */
  if (hs_check_response(h, s->offer->key, offered, noffered, s->cfg.pmd->enabled, &protocol, &plen,
                        &why))
    return fail(s, why);
  if (compressed && !(s->pmd = pmd_new(&prm, s->cfg.pmd))) return fail(s, "out of memory");
  if (protocol && !(s->protocol = copy_string(protocol, plen))) return fail(s, "out of memory");
  return SESSION_HEAD_OPEN;
}

session_head_result session_client_head(session *s, const char *data, size_t n) {
  hs_head h;
  /* a TLS record (an alert or a handshake) where the status line should be */
  if (!s->head.len && n && (data[0] == 0x15 || data[0] == 0x16))
    return fail(s, "the server answered in TLS, not HTTP (a wss:// server? use wss://)");
  int len = read_head(s, data, n, &h);
  if (len == 0) return SESSION_HEAD_MORE;
  if (len == -2) return fail(s, "response head too large");
  if (len < 0) return fail(s, "malformed HTTP response");
  if (h.status != 101) {
    s->http_status = h.status;
    return fail(s, "server refused the upgrade");
  }
  return check_upgrade(s, &h);
}

const char *session_head(const session *s, size_t *len) {
  *len = s->head_len;
  return s->head_len ? s->head.data : NULL;
}

void session_trim_head(session *s) {
  char *head = s->head.cap > s->head_len ? realloc(s->head.data, s->head_len) : NULL;
  if (head) {
    s->head.data = head;
    s->head.len = s->head.cap = s->head_len;
  }
}

void session_drop_head(session *s) {
  buf_free(&s->head);
  s->head_len = 0;
}
