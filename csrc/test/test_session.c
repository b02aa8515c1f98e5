/* The session without any I/O: a client and a server session wired to each
 * other through in-memory queues, through the opening handshake, messages,
 * pings, the close handshake and refusals. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "protocol/session.h"

typedef struct end {
  session s;
  buf out;          /* what it queued for the peer */
  char msgs[8][64]; /* messages it received */
  size_t nmsgs;
  unsigned acts; /* every I/O action it asked for */
  int unread, pongs, controls;
  unsigned char seed;
} end;

static int h_queue(void *ud, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                   const uint8_t *mask, int control) {
  end *e = ud;
  e->controls += control;
  if (buf_append(&e->out, a, an)) return -1;
  size_t at = e->out.len;
  if (buf_append(&e->out, b, bn)) return -1;
  if (mask) frame_mask((uint8_t *)e->out.data + at, bn, mask, 0);
  return 0;
}

static int h_message(void *ud, int opcode, const uint8_t *data, size_t len) {
  end *e = ud;
  if (e->nmsgs == 8 || len >= 63) return -1;
  snprintf(e->msgs[e->nmsgs++], 64, "%c:%.*s", opcode == FRAME_TEXT ? 't' : 'b', (int)len,
           (const char *)data);
  return 0;
}

static void h_act(void *ud, unsigned a) { ((end *)ud)->acts |= a; }
static int h_unread(void *ud) { return ((end *)ud)->unread; }
static void h_pong(void *ud) { ((end *)ud)->pongs++; }
static int h_random(void *ud, uint8_t *out, size_t n) {
  end *e = ud;
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(e->seed += 37);
  return 0;
}

static const session_hooks hooks = {h_queue, h_message, h_act, h_unread, h_pong, h_random};

static pmd_config no_pmd;
static buf scratch;

static void setup(end *e, int is_server) {
  memset(e, 0, sizeof *e);
  session_config cfg = {is_server, 1 << 20, 8192, &no_pmd, &scratch};
  session_init(&e->s, &cfg, &hooks, e);
}

static void teardown(end *e) {
  session_free(&e->s);
  buf_free(&e->out);
}

/* Moves what from queued for to, as frames (both open). */
static void pass(end *from, end *to) {
  buf b = from->out;
  from->out = (buf){0};
  session_feed(&to->s, (uint8_t *)b.data, b.len);
  buf_free(&b);
}

static const char *const protos[] = {"chat", "superchat"};
static const session_policy policy = {protos, 2, NULL, 0, 0, 0};

/* The opening handshake, the server fed the request in pieces of step bytes. */
static int open_pair(end *cl, end *sv, size_t step) {
  const char *const offered[] = {"superchat", "chat"};
  session_request r = {"/x?y=1", "example.com", offered, 2, NULL, NULL, 0, NULL};
  setup(cl, 0);
  setup(sv, 1);
  if (session_client_request(&cl->s, &r)) return -1;
  session_head_result res = SESSION_HEAD_MORE;
  for (size_t at = 0; at < cl->out.len; at += step) {
    size_t n = cl->out.len - at < step ? cl->out.len - at : step;
    res = session_server_head(&sv->s, cl->out.data + at, n, &policy);
    if (res != SESSION_HEAD_MORE) break;
  }
  cl->out.len = 0;
  if (res != SESSION_HEAD_OPEN) return -2;
  session_start(&sv->s);
  res = session_client_head(&cl->s, sv->out.data, sv->out.len);
  sv->out.len = 0;
  if (res != SESSION_HEAD_OPEN) return -3;
  session_start(&cl->s);
  return 0;
}

static void test_handshake(void) {
  end cl, sv;
  CHECK_EQ(open_pair(&cl, &sv, 1 << 20), 0);
  CHECK_STR(sv.s.protocol, "chat"); /* ours come first */
  CHECK_STR(cl.s.protocol, "chat");
  CHECK(session_live(&cl.s) && session_live(&sv.s));
  size_t len;
  const char *head = session_head(&sv.s, &len);
  CHECK(head && len > 20 && memcmp(head, "GET /x?y=1 HTTP/1.1\r\n", 21) == 0);
  teardown(&cl), teardown(&sv);
  /* the same outcome however the request is split */
  int all = 1;
  for (size_t step = 1; step < 40; step++) {
    int rc = open_pair(&cl, &sv, step);
    all &= rc == 0 && sv.s.protocol && strcmp(sv.s.protocol, "chat") == 0;
    teardown(&cl), teardown(&sv);
  }
  CHECK(all);
}

static void test_messages(void) {
  end cl, sv;
  CHECK_EQ(open_pair(&cl, &sv, 7), 0);
  CHECK_EQ(session_send(&cl.s, FRAME_TEXT, "hello", 5), SESSION_OK);
  CHECK(cl.out.len == 2 + 4 + 5 && (uint8_t)cl.out.data[1] == (0x80 | 5)); /* masked */
  pass(&cl, &sv);
  CHECK_EQ(sv.nmsgs, 1);
  CHECK_STR(sv.msgs[0], "t:hello");
  CHECK_EQ(session_send(&sv.s, FRAME_BINARY, "ab", 2), SESSION_OK);
  CHECK(sv.out.len == 4 && (uint8_t)sv.out.data[1] == 2); /* not masked */
  pass(&sv, &cl);
  CHECK_STR(cl.msgs[0], "b:ab");
  CHECK_EQ(session_check_send(&cl.s, FRAME_TEXT, "\xff", 1), SESSION_BAD_UTF8);
  CHECK_EQ(session_check_send(&cl.s, FRAME_PING, "", 126), SESSION_BAD_LENGTH);
  /* a ping is answered at once, its pong queued as a control frame (the
   * transport may let it pass data, or replace one still waiting) ... */
  CHECK_EQ(session_send(&sv.s, FRAME_PING, "p1", 2), SESSION_OK);
  pass(&sv, &cl);
  CHECK_EQ(cl.controls, 1);
  pass(&cl, &sv);
  CHECK_EQ(sv.pongs, 1);
  /* ... each with its own ping's payload; data frames are not controls */
  session_send(&sv.s, FRAME_PING, "p2", 2);
  session_send(&sv.s, FRAME_PING, "p3", 2);
  pass(&sv, &cl);
  CHECK_EQ(cl.controls, 3);
  CHECK(cl.out.len == 2 * (2 + 4 + 2) && (uint8_t)cl.out.data[8] == 0x8A);
  CHECK(cl.out.data[14] == ('p' ^ cl.out.data[10]) && cl.out.data[15] == ('3' ^ cl.out.data[11]));
  CHECK_EQ(session_send(&cl.s, FRAME_TEXT, "d", 1), SESSION_OK);
  CHECK_EQ(cl.controls, 3);
  teardown(&cl), teardown(&sv);
}

static void test_close(void) {
  end cl, sv;
  CHECK_EQ(open_pair(&cl, &sv, 64), 0);
  CHECK_EQ(session_close(&cl.s, 999, "", 0), SESSION_BAD_CODE);
  CHECK_EQ(session_close(&cl.s, 4000, "bye", 3), SESSION_OK);
  CHECK_EQ(cl.s.close, CLOSE_LOCAL_CLOSING);
  CHECK(!session_live(&cl.s));
  CHECK_EQ(session_send(&cl.s, FRAME_TEXT, "x", 1), SESSION_CLOSED);
  pass(&cl, &sv); /* the server echoes it and tears down */
  CHECK_EQ(sv.s.close_code, 4000);
  CHECK_STR(sv.s.close_reason, "bye");
  CHECK(sv.s.clean && (sv.acts & CLOSE_ACT_TEARDOWN));
  pass(&sv, &cl);
  CHECK_EQ(cl.s.close_code, 4000);
  CHECK(cl.s.clean);
  teardown(&cl), teardown(&sv);
}

static void test_failures(void) {
  end cl, sv;
  CHECK_EQ(open_pair(&cl, &sv, 64), 0);
  /* an unmasked frame to a server fails it with 1002, after the message before it */
  const uint8_t bad[] = {0x81, 0x01, 'x'};
  sv.unread = 1;
  session_feed(&sv.s, (uint8_t *)bad, sizeof bad);
  CHECK_EQ(sv.s.close, CLOSE_FAIL_PENDING);
  sv.unread = 0;
  session_event(&sv.s, CLOSE_EV_INBOX_DRAINED, 0, NULL, 0);
  CHECK_EQ(sv.s.close_code, 1002);
  CHECK(sv.out.len >= 4 && (uint8_t)sv.out.data[0] == 0x88);
  teardown(&cl), teardown(&sv);

  /* refusals: the response names the reason */
  static const char *const origins[] = {"https://ok.example"};
  session_policy strict = {NULL, 0, origins, 1, 0, 0};
  const char *req = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    "Origin: https://evil.example\r\n\r\n";
  setup(&sv, 1);
  CHECK_EQ(session_server_head(&sv.s, req, strlen(req), &strict), SESSION_HEAD_REFUSED);
  CHECK(sv.out.len > 12 && memcmp(sv.out.data, "HTTP/1.1 403", 12) == 0);
  CHECK_STR(sv.s.error, "origin not allowed");
  teardown(&sv);
  setup(&sv, 1);
  const char *plain = "GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n";
  CHECK_EQ(session_server_head(&sv.s, plain, strlen(plain), &policy), SESSION_HEAD_REFUSED);
  CHECK(sv.out.len > 12 && memcmp(sv.out.data, "HTTP/1.1 426", 12) == 0);
  teardown(&sv);
  session_policy web = policy;
  web.has_http = 1;
  setup(&sv, 1);
  CHECK_EQ(session_server_head(&sv.s, plain, strlen(plain), &web), SESSION_HEAD_HTTP);
  CHECK_EQ(sv.out.len, 0);
  teardown(&sv);

  /* a client refused with a status says so */
  setup(&cl, 0);
  session_request r = {"/", "a", NULL, 0, NULL, NULL, 0, NULL};
  CHECK(session_client_request(&cl.s, &r) == NULL);
  const char *no = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  CHECK_EQ(session_client_head(&cl.s, no, strlen(no)), SESSION_HEAD_FAILED);
  CHECK_EQ(cl.s.http_status, 404);
  CHECK_STR(cl.s.error, "server refused the upgrade");
  teardown(&cl);

  /* a TLS record (an alert, a ServerHello) for an answer names wss:// */
  static const char *const records[] = {"\x15\x03\x03\x00\x02\x02\x46", "\x16\x03\x03"};
  for (size_t i = 0; i < 2; i++) {
    setup(&cl, 0);
    CHECK(session_client_request(&cl.s, &r) == NULL);
    CHECK_EQ(session_client_head(&cl.s, records[i], strlen(records[i])), SESSION_HEAD_FAILED);
    CHECK_STR(cl.s.error, "the server answered in TLS, not HTTP (a wss:// server? use wss://)");
    teardown(&cl);
  }
  /* past the first byte those values are only bytes of a head */
  setup(&cl, 0);
  CHECK(session_client_request(&cl.s, &r) == NULL);
  CHECK_EQ(session_client_head(&cl.s, "HTTP/1.1 ", 9), SESSION_HEAD_MORE);
  CHECK_EQ(session_client_head(&cl.s, "\x16", 1), SESSION_HEAD_MORE);
  teardown(&cl);
}

/* With has_accept a valid upgrade waits for the application: nothing is
 * queued until session_accept (the 101, then frames flow both ways) or an
 * HTTP answer of its own; invalid requests are still refused at once. */
static void test_accept(void) {
  session_policy gated = policy;
  gated.has_accept = 1;
  const char *const offered[] = {"superchat"};
  session_request r = {"/room?id=7", "example.com", offered, 1, NULL, NULL, 0, NULL};
  end cl, sv;
  setup(&cl, 0);
  setup(&sv, 1);
  CHECK(session_client_request(&cl.s, &r) == NULL);
  /* the head in pieces, the last one with a frame right behind it (a
   * client must not send one before the 101, but if it does the bytes must
   * be neither lost nor misread) */
  const uint8_t early[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
  size_t head_len = cl.out.len;
  CHECK_EQ(buf_append(&cl.out, early, sizeof early), 0);
  session_head_result res = SESSION_HEAD_MORE;
  size_t at = 0;
  for (; at + 5 < head_len && res == SESSION_HEAD_MORE; at += 5)
    res = session_server_head(&sv.s, cl.out.data + at, 5, &gated);
  CHECK_EQ(res, SESSION_HEAD_MORE);
  res = session_server_head(&sv.s, cl.out.data + at, cl.out.len - at, &gated);
  cl.out.len = 0;
  CHECK_EQ(res, SESSION_HEAD_PENDING);
  CHECK_EQ(sv.out.len, 0); /* no 101 yet */
  CHECK(!sv.s.opened && !session_live(&sv.s));
  CHECK_EQ(session_send(&sv.s, FRAME_TEXT, "x", 1), SESSION_CLOSED);
  size_t len;
  const char *head = session_head(&sv.s, &len);
  CHECK(head && len > 25 && memcmp(head, "GET /room?id=7 HTTP/1.1\r\n", 25) == 0);
  CHECK_EQ(session_accept(&sv.s, &gated), SESSION_HEAD_OPEN);
  CHECK(sv.out.len > 12 && memcmp(sv.out.data, "HTTP/1.1 101", 12) == 0);
  CHECK_STR(sv.s.protocol, "superchat");
  session_start(&sv.s);
  CHECK_EQ(sv.nmsgs, 1); /* the early frame, fed at the start */
  CHECK_STR(sv.msgs[0], "t:hi");
  session_drop_head(&sv.s);
  CHECK_EQ(session_client_head(&cl.s, sv.out.data, sv.out.len), SESSION_HEAD_OPEN);
  sv.out.len = 0;
  session_start(&cl.s);
  CHECK_STR(cl.s.protocol, "superchat");
  CHECK_EQ(session_send(&cl.s, FRAME_TEXT, "up", 2), SESSION_OK);
  CHECK_EQ(session_send(&sv.s, FRAME_BINARY, "down", 4), SESSION_OK);
  pass(&cl, &sv), pass(&sv, &cl);
  CHECK_STR(sv.msgs[1], "t:up");
  CHECK_STR(cl.msgs[0], "b:down");
  /* once open there is nothing to accept any more */
  CHECK_EQ(session_accept(&sv.s, &gated), SESSION_HEAD_FAILED);
  teardown(&cl), teardown(&sv);

  /* refused by the application: the transport answers with an HTTP response
   * of the application's; the session stays unopened and the client sees
   * the status */
  setup(&cl, 0);
  setup(&sv, 1);
  CHECK(session_client_request(&cl.s, &r) == NULL);
  CHECK_EQ(session_server_head(&sv.s, cl.out.data, cl.out.len, &gated), SESSION_HEAD_PENDING);
  const char *const names[] = {"WWW-Authenticate"}, *const values[] = {"Bearer"};
  buf answer = {0};
  CHECK_EQ(hs_build_response(&answer, 401, names, values, 1, 2), 0);
  CHECK_EQ(buf_append(&answer, "no", 2), 0);
  CHECK_EQ(session_client_head(&cl.s, answer.data, answer.len), SESSION_HEAD_FAILED);
  CHECK_EQ(cl.s.http_status, 401);
  CHECK(!sv.s.opened && sv.out.len == 0);
  buf_free(&answer);
  teardown(&cl), teardown(&sv);

  /* invalid requests do not wait for a verdict */
  static const char *const origins[] = {"https://ok.example"};
  gated.origins = origins, gated.norigins = 1;
  const char *evil = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Origin: https://evil.example\r\n\r\n";
  setup(&sv, 1);
  CHECK_EQ(session_server_head(&sv.s, evil, strlen(evil), &gated), SESSION_HEAD_REFUSED);
  CHECK(sv.out.len > 12 && memcmp(sv.out.data, "HTTP/1.1 403", 12) == 0);
  teardown(&sv);
  const char *old =
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
  setup(&sv, 1);
  CHECK_EQ(session_server_head(&sv.s, old, strlen(old), &gated), SESSION_HEAD_REFUSED);
  CHECK(sv.out.len > 12 && memcmp(sv.out.data, "HTTP/1.1 426", 12) == 0);
  teardown(&sv);
  /* without a head there is nothing to accept */
  setup(&sv, 1);
  CHECK_EQ(session_accept(&sv.s, &gated), SESSION_HEAD_FAILED);
  CHECK_STR(sv.s.error, "no upgrade request to accept");
  teardown(&sv);
}

int main(void) {
  pmd_config_default(&no_pmd);
  no_pmd.enabled = 0;
  test_handshake();
  test_messages();
  test_close();
  test_failures();
  test_accept();
  buf_free(&scratch);
  return check_done();
}
