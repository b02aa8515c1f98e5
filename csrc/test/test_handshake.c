#include <stdlib.h>

#include "test/check.h"
#include "protocol/handshake.h"
#include "protocol/lex.h"

static hs_head h;

static int req(const char *s) { return hs_parse_request(s, strlen(s), &h); }
static int resp(const char *s) { return hs_parse_response(s, strlen(s), &h); }

static const char rfc_request[] = "GET /chat HTTP/1.1\r\n"
                                  "Host: server.example.com\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Origin: http://example.com\r\n"
                                  "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "\r\n";

static void accept_key(void) {
  char out[HS_ACCEPT_LEN + 1];
  hs_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
  CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  char k1[HS_KEY_LEN + 1], k2[HS_KEY_LEN + 1];
  CHECK_EQ(hs_make_key(k1), 0);
  CHECK_EQ(hs_make_key(k2), 0);
  CHECK_EQ(strlen(k1), HS_KEY_LEN);
  CHECK(strcmp(k1, k2) != 0);
  CHECK(k1[22] == '=' && k1[23] == '=');
}

static void parse_request(void) {
  size_t n = strlen(rfc_request);
  CHECK_EQ(req(rfc_request), n);
  CHECK_MEMSTR(h.method, h.method_len, "GET");
  CHECK_MEMSTR(h.target, h.target_len, "/chat");
  CHECK_EQ(h.minor_version, 1);
  CHECK_EQ(h.nheaders, 7);
  CHECK_MEMSTR(h.headers[0].name, h.headers[0].name_len, "Host");
  CHECK_MEMSTR(h.headers[0].value, h.headers[0].value_len, "server.example.com");
  const hs_header *f = hs_find(&h, "sec-websocket-KEY");
  CHECK(f != NULL);
  if (f) CHECK_MEMSTR(f->value, f->value_len, "dGhlIHNhbXBsZSBub25jZQ==");
  CHECK(hs_find(&h, "Cookie") == NULL);
  CHECK(hs_find(&h, "Hos") == NULL);
  /* split anywhere: every proper prefix needs more */
  int bad = 0;
  for (size_t i = 0; i < n; i++)
    if (hs_parse_request(rfc_request, i, &h) != 0) bad++;
  CHECK_EQ(bad, 0);
  /* bytes after the head are not part of it */
  char more[600];
  snprintf(more, sizeof more, "%s\x81\x85garbage\r\n\r\n", rfc_request);
  CHECK_EQ(req(more), n);
  /* bare LF, and whitespace around values */
  CHECK_EQ(req("GET / HTTP/1.1\nHost:  a \t\nX-Empty:\n\n"), 36);
  CHECK_EQ(h.nheaders, 2);
  CHECK_MEMSTR(h.headers[0].value, h.headers[0].value_len, "a");
  CHECK_EQ(h.headers[1].value_len, 0);
  CHECK_EQ(req("GET / HTTP/1.0\r\n\r\n"), 18);
  CHECK_EQ(h.minor_version, 0);
  const char *utf = "GET /?q=\xC3\xA9 HTTP/1.1\r\nX: caf\xC3\xA9\r\n\r\n";
  CHECK_EQ(req(utf), strlen(utf));
  /* malformed */
  static const char *bad_heads[] = {
      "\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n",
      "GET /  HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1 \r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "GET / HTTP/1.10\r\n\r\n",
      "GET / http/1.1\r\n\r\n",
      "GET / HTTP/1.x\r\n\r\n",
      "G(T / HTTP/1.1\r\n\r\n",
      "GET /a\x01 HTTP/1.1\r\n\r\n",
      "GET /a\x7F HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
      "GET / HTTP/1.1\r\n: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\x7F\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\x1B[31m\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
  };
  bad = 0;
  for (size_t i = 0; i < sizeof bad_heads / sizeof *bad_heads; i++)
    if (req(bad_heads[i]) != -1) {
      printf("accepted: %s\n", bad_heads[i]);
      bad++;
    }
  CHECK_EQ(bad, 0);
  CHECK_EQ(hs_parse_request("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 27, &h), -1);
  CHECK_EQ(hs_parse_request("GET / HTTP/1.1\r\nX\0: a\r\n\r\n", 26, &h), -1);
  /* a bad line fails before the head ends */
  CHECK_EQ(req("GET / HTTP/1.1\r\nbad line\r\nHost: x"), -1);
  CHECK_EQ(req("GET / HTTP/1.1\r\nHost: x"), 0);
  CHECK_EQ(hs_parse_request(NULL, 0, &h), 0);
  /* header count limit */
  char many[4000] = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < HS_MAX_HEADERS; i++) strcat(many, "X: y\r\n");
  strcat(many, "\r\n");
  CHECK(req(many) > 0);
  CHECK_EQ(h.nheaders, HS_MAX_HEADERS);
  many[strlen(many) - 2] = 0;
  strcat(many, "X: y\r\n\r\n");
  CHECK_EQ(req(many), -2);
  /* a first line that cannot become a request fails before its line feed */
  CHECK_EQ(req("\x16\x03\x01\x02"), -1);
  CHECK_EQ(req("GET\x01"), -1);
  CHECK_EQ(req("GET /pa"), 0);
  CHECK_EQ(req("GE"), 0);
}

static void parse_response(void) {
  static const char r[] = "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                          "Sec-WebSocket-Protocol: chat\r\n\r\n";
  size_t n = strlen(r);
  CHECK_EQ(resp(r), n);
  CHECK_EQ(h.status, 101);
  CHECK_EQ(h.minor_version, 1);
  CHECK_MEMSTR(h.reason, h.reason_len, "Switching Protocols");
  CHECK(h.method == NULL);
  int bad = 0;
  for (size_t i = 0; i < n; i++)
    if (hs_parse_response(r, i, &h) != 0) bad++;
  CHECK_EQ(bad, 0);
  CHECK_EQ(resp("HTTP/1.1 200\r\n\r\n"), 16);
  CHECK_EQ(h.status, 200);
  CHECK_EQ(h.reason_len, 0);
  CHECK_EQ(resp("HTTP/1.0 404 \r\n\r\n"), 17);
  CHECK_EQ(h.status, 404);
  CHECK_EQ(resp("HTTP/1.1 20 OK\r\n\r\n"), -1);
  CHECK_EQ(resp("HTTP/1.1 2000 OK\r\n\r\n"), -1);
  CHECK_EQ(resp("HTTP/1.1 099 OK\r\n\r\n"), -1);
  CHECK_EQ(resp("HTTP/1.1 1O1 OK\r\n\r\n"), -1);
  CHECK_EQ(resp("HTTP/2 101 OK\r\n\r\n"), -1);
  CHECK_EQ(resp("HTTP/1.1 101 OK\x01\r\n\r\n"), -1);
  CHECK_EQ(resp("HTTP/1.1  101 OK\r\n\r\n"), -1);
  CHECK_EQ(resp("ICY 200 OK\r\n\r\n"), -1);
}

static void tokens(void) {
  CHECK(req("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n"
            "Connection: close\r\nX: a,,  b ,c\t,\r\n\r\n") > 0);
  CHECK(hs_has_token(&h, "connection", "upgrade"));
  CHECK(hs_has_token(&h, "Connection", "keep-alive"));
  CHECK(hs_has_token(&h, "Connection", "close")); /* second header */
  CHECK(hs_has_token(&h, "Upgrade", "websocket"));
  CHECK(hs_has_token(&h, "X", "a"));
  CHECK(hs_has_token(&h, "X", "b"));
  CHECK(hs_has_token(&h, "X", "c"));
  CHECK(!hs_has_token(&h, "X", "a,"));
  CHECK(!hs_has_token(&h, "X", "d"));
  CHECK(!hs_has_token(&h, "Connection", "upgrad"));
  CHECK(!hs_has_token(&h, "Connection", "keep"));
  CHECK(!hs_has_token(&h, "Missing", "x"));
  CHECK(req("GET / HTTP/1.1\r\nUpgrade: websocketx, xwebsocket\r\n\r\n") > 0);
  CHECK(!hs_has_token(&h, "Upgrade", "websocket"));
}

static const char *base = "GET /chat HTTP/1.1\r\n"
                          "Host: h\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n";

static int check_with(const char *extra, const char *method_line, const char **why) {
  char s[1000];
  const char *key;
  if (method_line)
    snprintf(s, sizeof s, "%s\r\n%s", method_line, strchr(base, '\n') + 1);
  else
    snprintf(s, sizeof s, "%s", base);
  strcat(s, extra);
  strcat(s, "\r\n");
  if (req(s) <= 0) return 1000;
  return hs_check_request(&h, &key, why);
}

static void check_request(void) {
  const char *key = NULL, *why = NULL;
  CHECK(req(rfc_request) > 0);
  CHECK_EQ(hs_check_request(&h, &key, &why), 0);
  CHECK(key != NULL && strncmp(key, "dGhlIHNhbXBsZSBub25jZQ==", HS_KEY_LEN) == 0);
  const char *ok = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  CHECK_EQ(check_with(ok, NULL, &why), 0);
  CHECK_EQ(check_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
                      NULL, &why),
           426);
  CHECK_STR(why, "unsupported Sec-WebSocket-Version (13 is required)");
  CHECK_EQ(check_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", NULL, &why), 426);
  CHECK_STR(why, "missing Sec-WebSocket-Version");
  CHECK_EQ(check_with("Sec-WebSocket-Version: 13\r\n", NULL, &why), 400);
  CHECK_STR(why, "missing Sec-WebSocket-Key");
  static const char *bad_keys[] = {
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",   /* 23 chars */
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n", /* 25 */
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQQ=\r\n",  /* 17 bytes */
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===\r\n",  /* bad padding */
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==\r\n",  /* bad character */
      "Sec-WebSocket-Key: dGhlIHNhbX=sZSBub25jZQ==\r\n",  /* padding inside */
      "Sec-WebSocket-Key: \r\n",
      ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" /* twice */
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
  };
  for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
    char e[300];
    snprintf(e, sizeof e, "%sSec-WebSocket-Version: 13\r\n", bad_keys[i]);
    CHECK_EQ(check_with(e, NULL, &why), 400);
    CHECK_STR(why, "invalid Sec-WebSocket-Key");
  }
  CHECK_EQ(check_with(ok, "POST /chat HTTP/1.1", &why), 400);
  CHECK_EQ(check_with(ok, "get /chat HTTP/1.1", &why), 400);
  CHECK_EQ(check_with(ok, "GET /chat HTTP/1.0", &why), 400);
  CHECK_EQ(check_with(ok, "GET /chat HTTP/1.2", &why), 0);
  /* no Host, two Hosts, no Connection upgrade */
  CHECK(req("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n") >
        0);
  CHECK_EQ(hs_check_request(&h, &key, &why), 400);
  CHECK_STR(why, "missing or repeated Host header");
  CHECK_EQ(check_with("Host: other\r\n", NULL, &why), 400);
  CHECK(req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n") >
        0);
  CHECK_EQ(hs_check_request(&h, &key, &why), 400);
  /* plain HTTP */
  CHECK(req("GET /index.html HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n") > 0);
  CHECK_EQ(hs_check_request(&h, &key, &why), -1);
  CHECK(why != NULL && key == NULL);
  CHECK(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n") > 0);
  CHECK_EQ(hs_check_request(&h, &key, &why), -1);
  /* token lists in Upgrade and Connection, any case */
  CHECK(req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo, WebSocket\r\nConnection: keep-alive, "
            "UPGRADE\r\nsec-websocket-key: "
            "dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version:13\r\n\r\n") > 0);
  CHECK_EQ(hs_check_request(&h, &key, &why), 0);
}

static void protocols(void) {
  static const char *ours[] = {"superchat", "chat"}, *other[] = {"x", "CHAT"};
  CHECK(req(rfc_request) > 0);
  CHECK_EQ(hs_select_protocol(&h, ours, 2), 0);
  CHECK_EQ(hs_select_protocol(&h, ours + 1, 1), 0);
  CHECK_EQ(hs_select_protocol(&h, other, 2), -1); /* subprotocol names are case-sensitive */
  CHECK_EQ(hs_select_protocol(&h, ours, 0), -1);
  CHECK(req("GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: chat\r\n\r\n") >
        0);
  CHECK_EQ(hs_select_protocol(&h, ours, 2), 1);
  CHECK(req("GET / HTTP/1.1\r\n\r\n") > 0);
  CHECK_EQ(hs_select_protocol(&h, ours, 2), -1);
}

/* A client request built, parsed and checked by the server, whose answer is
 * built, parsed and checked by the client. */
static void round_trip(void) {
  char key[HS_KEY_LEN + 1];
  static const char *names[] = {"Origin", "Cookie"}, *values[] = {"http://a.example", "k=v; x=y"};
  static const char *offered[] = {"chat", "superchat"};
  buf b = {0};
  CHECK_EQ(hs_make_key(key), 0);
  CHECK_EQ(hs_build_request(&b, "/path?q=1", "example.org:8080", key, "chat, superchat", names,
                            values, 2),
           0);
  int n = hs_parse_request(b.data, b.len, &h);
  CHECK_EQ(n, b.len);
  const char *k = NULL, *why = NULL;
  CHECK_EQ(hs_check_request(&h, &k, &why), 0);
  CHECK(k && memcmp(k, key, HS_KEY_LEN) == 0);
  CHECK_MEMSTR(h.target, h.target_len, "/path?q=1");
  const hs_header *f = hs_find(&h, "Host");
  CHECK(f && f->value_len == 16 && memcmp(f->value, "example.org:8080", 16) == 0);
  f = hs_find(&h, "cookie");
  CHECK(f && f->value_len == 8 && memcmp(f->value, "k=v; x=y", 8) == 0);
  static const char *ours[] = {"superchat"};
  int sel = hs_select_protocol(&h, ours, 1);
  CHECK_EQ(sel, 0);

  buf r = {0};
  CHECK_EQ(hs_build_accept(&r, k, HS_KEY_LEN, ours[sel], NULL), 0);
  CHECK_EQ(hs_parse_response(r.data, r.len, &h), r.len);
  CHECK_EQ(h.status, 101);
  const char *proto = NULL;
  size_t plen = 99;
  CHECK_EQ(hs_check_response(&h, key, offered, 2, 0, &proto, &plen, &why), 0);
  CHECK_MEMSTR(proto, plen, "superchat");
  buf_free(&r);
  CHECK_EQ(hs_build_accept(&r, k, HS_KEY_LEN, NULL, NULL), 0);
  CHECK_EQ(hs_parse_response(r.data, r.len, &h), r.len);
  CHECK_EQ(hs_check_response(&h, key, offered, 2, 0, &proto, &plen, &why), 0);
  CHECK(proto == NULL && plen == 0);
  CHECK(hs_find(&h, "Sec-WebSocket-Protocol") == NULL);
  CHECK_EQ(hs_build_accept(&r, k, HS_KEY_LEN, "bad\r\nX: y", NULL), -1);
  buf_free(&r);
  buf_free(&b);

  /* the request without protocols or extra headers */
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, NULL, NULL, 0), 0);
  CHECK_EQ(hs_parse_request(b.data, b.len, &h), b.len);
  CHECK(hs_find(&h, "Sec-WebSocket-Protocol") == NULL);
  CHECK_EQ(hs_check_request(&h, &k, &why), 0);
  buf_free(&b);
}

static void injection(void) {
  char key[HS_KEY_LEN + 1];
  buf b = {0};
  const char *n1[] = {"X-A"}, *v1[] = {"ok"};
  const char *n2[] = {"X-A\r\nEvil"}, *n3[] = {"X A"}, *n4[] = {""}, *n5[] = {"X:"};
  const char *v2[] = {"a\r\nEvil: 1"}, *v3[] = {"a\nb"}, *v4[] = {"a\rb"}, *v5[] = {"a\x01"};
  hs_make_key(key);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n1, v1, 1), 0);
  buf_free(&b);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n2, v1, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n3, v1, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n4, v1, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n5, v1, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n1, v2, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n1, v3, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n1, v4, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, NULL, n1, v5, 1), -1);
  CHECK_EQ(hs_build_request(&b, "/ HTTP/1.1\r\nX: y\r\n", "h", key, NULL, NULL, NULL, 0), -1);
  CHECK_EQ(hs_build_request(&b, "/a b", "h", key, NULL, NULL, NULL, 0), -1);
  CHECK_EQ(hs_build_request(&b, "", "h", key, NULL, NULL, NULL, 0), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h\r\nX: y", key, NULL, NULL, NULL, 0), -1);
  CHECK_EQ(hs_build_request(&b, "/", "", key, NULL, NULL, NULL, 0), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", key, "chat\r\nX: y", NULL, NULL, 0), -1);
  CHECK_EQ(hs_build_request(&b, "/", "h", "not a key, no sir!!!!!!!", NULL, NULL, NULL, 0), -1);
  CHECK_EQ(b.len, 0);
  CHECK_EQ(hs_build_response(&b, 200, n2, v1, 1, 0), -1);
  CHECK_EQ(hs_build_response(&b, 200, n1, v2, 1, 0), -1);
  CHECK_EQ(hs_build_response(&b, 200, n1, v4, 1, 0), -1);
  CHECK_EQ(b.len, 0);
  buf_free(&b);
}

static void responses(void) {
  buf b = {0};
  CHECK_EQ(hs_build_error(&b, 426, "version 13 only"), 0);
  int n = hs_parse_response(b.data, b.len, &h);
  CHECK(n > 0);
  CHECK_EQ(h.status, 426);
  CHECK_MEMSTR(h.reason, h.reason_len, "Upgrade Required");
  CHECK(hs_has_token(&h, "Upgrade", "websocket"));
  const hs_header *f = hs_find(&h, "Sec-WebSocket-Version");
  CHECK(f && f->value_len == 2 && memcmp(f->value, "13", 2) == 0);
  CHECK(hs_has_token(&h, "Connection", "close"));
  f = hs_find(&h, "Content-Length");
  CHECK(f && f->value_len == 2 && memcmp(f->value, "15", 2) == 0);
  CHECK_MEMSTR(b.data + n, b.len - (size_t)n, "version 13 only");
  buf_free(&b);
  CHECK_EQ(hs_build_error(&b, 400, NULL), 0);
  CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
  CHECK(hs_find(&h, "Upgrade") == NULL && hs_find(&h, "Sec-WebSocket-Version") == NULL);
  buf_free(&b);
  static const struct {
    int status;
    const char *reason;
  } phrases[] = {{101, "Switching Protocols"},
                 {200, "OK"},
                 {204, "No Content"},
                 {301, "Moved Permanently"},
                 {302, "Found"},
                 {304, "Not Modified"},
                 {400, "Bad Request"},
                 {401, "Unauthorized"},
                 {403, "Forbidden"},
                 {404, "Not Found"},
                 {405, "Method Not Allowed"},
                 {413, "Content Too Large"},
                 {426, "Upgrade Required"},
                 {500, "Internal Server Error"},
                 {503, "Service Unavailable"},
                 {299, "Unknown"}};
  for (size_t i = 0; i < sizeof phrases / sizeof *phrases; i++) {
    CHECK_EQ(hs_build_response(&b, phrases[i].status, NULL, NULL, 0, 0), 0);
    CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
    CHECK_EQ(h.status, phrases[i].status);
    CHECK_MEMSTR(h.reason, h.reason_len, phrases[i].reason);
    buf_free(&b);
  }
  static const char *names[] = {"Content-Type", "Location"}, *values[] = {"text/html", "/x"};
  CHECK_EQ(hs_build_response(&b, 200, names, values, 2, 1234), 0);
  CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
  f = hs_find(&h, "Content-Length");
  CHECK(f && f->value_len == 4 && memcmp(f->value, "1234", 4) == 0);
  CHECK(hs_has_token(&h, "Connection", "close"));
  CHECK_EQ(h.nheaders, 4);
  buf_free(&b);
  static const char *n2[] = {"content-length", "connection"}, *v2[] = {"5", "keep-alive"};
  CHECK_EQ(hs_build_response(&b, 200, n2, v2, 2, 1234), 0);
  CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
  CHECK_EQ(h.nheaders, 2);
  CHECK(!hs_has_token(&h, "Connection", "close"));
  buf_free(&b);
  CHECK_EQ(hs_build_response(&b, 204, NULL, NULL, 0, 0), 0);
  CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
  CHECK(hs_find(&h, "Content-Length") == NULL);
  buf_free(&b);
  CHECK_EQ(hs_build_response(&b, 42, NULL, NULL, 0, 0), -1);
  buf_free(&b);
}

static int check_resp(const char *s, const char **why) {
  static const char *offered[] = {"chat", "superchat"};
  const char *proto;
  size_t plen;
  if (resp(s) <= 0) return 1000;
  return hs_check_response(&h, "dGhlIHNhbXBsZSBub25jZQ==", offered, 2, 0, &proto, &plen, why);
}

static void check_response(void) {
  const char *why;
#define OK101 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
#define ACC "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
  CHECK_EQ(check_resp(OK101 ACC "\r\n", &why), 0);
  CHECK(why == NULL);
  CHECK_EQ(check_resp(OK101 ACC "Sec-WebSocket-Protocol: chat\r\n\r\n", &why), 0);
  CHECK_EQ(check_resp("HTTP/1.1 404 Not Found\r\n\r\n", &why), -1);
  CHECK_STR(why, "server answered 404");
  CHECK_EQ(check_resp("HTTP/1.1 200 OK\r\n" ACC "\r\n", &why), -1);
  CHECK_EQ(check_resp("HTTP/1.1 418 Teapot\r\n\r\n", &why), -1);
  CHECK_STR(why, "server did not answer 101 Switching Protocols");
  CHECK_EQ(check_resp(OK101 "\r\n", &why), -1);
  CHECK_STR(why, "missing Sec-WebSocket-Accept");
  CHECK_EQ(check_resp(OK101 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n", &why), -1);
  CHECK_STR(why, "wrong Sec-WebSocket-Accept");
  CHECK_EQ(check_resp(OK101 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOp=\r\n\r\n", &why),
           -1);
  CHECK_STR(why, "wrong Sec-WebSocket-Accept");
  CHECK_EQ(check_resp(OK101 "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n\r\n", &why),
           -1);
  CHECK_EQ(check_resp(OK101 ACC ACC "\r\n", &why), -1);
  CHECK_EQ(
      check_resp("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" ACC "\r\n", &why),
      -1);
  CHECK_STR(why, "missing Upgrade: websocket");
  CHECK_EQ(
      check_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ACC "\r\n", &why),
      -1);
  CHECK_STR(why, "missing Connection: upgrade");
  CHECK_EQ(check_resp(OK101 ACC "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", &why), -1);
  CHECK_STR(why, "server chose an extension we did not offer");
  CHECK_EQ(check_resp(OK101 ACC "Sec-WebSocket-Protocol: other\r\n\r\n", &why), -1);
  CHECK_STR(why, "server chose a subprotocol we did not offer");
  CHECK_EQ(check_resp(OK101 ACC "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n", &why), -1);
  CHECK_EQ(check_resp(OK101 ACC "Sec-WebSocket-Protocol: CHAT\r\n\r\n", &why), -1);
  CHECK_EQ(check_resp(OK101 ACC
                      "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                      &why),
           -1);
  /* nothing offered, something chosen */
  const char *proto;
  size_t plen;
  CHECK(resp(OK101 ACC "Sec-WebSocket-Protocol: chat\r\n\r\n") > 0);
  CHECK_EQ(hs_check_response(&h, "dGhlIHNhbXBsZSBub25jZQ==", NULL, 0, 0, &proto, &plen, &why), -1);
  CHECK_STR(why, "server chose a subprotocol we did not offer");
#undef OK101
#undef ACC
}

/* ---- the incremental parser -------------------------------------------- */

static int same_head(const hs_head *a, const hs_head *b) {
  if (a->method != b->method || a->method_len != b->method_len || a->target != b->target ||
      a->target_len != b->target_len || a->status != b->status || a->reason != b->reason ||
      a->reason_len != b->reason_len || a->minor_version != b->minor_version ||
      a->nheaders != b->nheaders)
    return 0;
  for (size_t i = 0; i < a->nheaders; i++) {
    const hs_header *x = &a->headers[i], *y = &b->headers[i];
    if (x->name != y->name || x->name_len != y->name_len || x->value != y->value ||
        x->value_len != y->value_len)
      return 0;
  }
  return 1;
}

static int parse_whole(int response, const char *s, size_t n, hs_head *out) {
  return response ? hs_parse_response(s, n, out) : hs_parse_request(s, n, out);
}

/* An 8 KiB request: a long target, HS_MAX_HEADERS headers, some with bare
 * LF, empty values and whitespace around values. */
static size_t big_request(char *s, size_t cap) {
  size_t n = (size_t)snprintf(s, cap, "GET /");
  for (int i = 0; i < 1500; i++) s[n++] = (char)('a' + i % 26);
  n += (size_t)snprintf(s + n, cap - n, "?q=1 HTTP/1.1\r\n");
  for (int i = 0; i < HS_MAX_HEADERS; i++) {
    const char *end = i % 7 == 3 ? "\n" : "\r\n";
    if (i % 11 == 5)
      n += (size_t)snprintf(s + n, cap - n, "X-Empty-%d:%s", i, end);
    else
      n += (size_t)snprintf(
          s + n, cap - n, "X-Header-%d: \t value %d %.90s \t%s", i, i,
          "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"
          "0123456789abcdefghijklmno",
          end);
  }
  n += (size_t)snprintf(s + n, cap - n, "\r\n\x81\x85tail");
  return n;
}

static const char big_response[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                   "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "server_no_context_takeover\n"
                                   "Sec-WebSocket-Protocol:  chat \r\n"
                                   "X-Empty:\r\n\r\nframes";

/* Fed as prefixes of s: split in two at every byte, then one byte at a
 * time. Each gives what the whole parse gives, every field alike. */
static void splits(int response, const char *s, size_t n) {
  static hs_head whole, part;
  int want = parse_whole(response, s, n, &whole);
  CHECK(want > 0);
  int bad = 0;
  for (size_t i = 0; i <= n; i++) {
    hs_parser p;
    hs_parser_init(&p, response);
    int first = hs_parser_feed(&p, s, i, &part);
    if (first != ((size_t)want <= i ? want : 0)) bad++;
    if (hs_parser_feed(&p, s, n, &part) != want || !same_head(&part, &whole)) bad++;
  }
  CHECK_EQ(bad, 0);
  hs_parser p;
  hs_parser_init(&p, response);
  size_t done = 0;
  for (size_t i = 1; i <= n && !done; i++) {
    int r = hs_parser_feed(&p, s, i, &part);
    if (r != 0) done = i;
    if (r != 0 && (r != want || !same_head(&part, &whole))) bad++;
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(done, want);
  /* once complete, it stays complete */
  CHECK_EQ(hs_parser_feed(&p, s, n, &part), want);
  CHECK(same_head(&part, &whole));
}

/* A malformed head fed a byte at a time fails at the very length at which a
 * whole parse of the prefix first fails, with the same result. */
static int fails_alike(int response, const char *s, size_t n) {
  hs_parser p;
  hs_head a, b;
  hs_parser_init(&p, response);
  for (size_t i = 0; i <= n; i++) {
    int inc = hs_parser_feed(&p, s, i, &a), whole = parse_whole(response, s, i, &b);
    if (inc != whole) return 0;
    if (inc < 0) return hs_parser_feed(&p, s, n, &a) == inc; /* the failure is final */
  }
  return 0; /* never failed */
}

static void incremental(void) {
  static char big[12000];
  size_t n = big_request(big, sizeof big);
  CHECK(n > 8000 && n < 9000);
  CHECK_EQ(hs_parse_request(big, n, &h), n - 6);
  CHECK_EQ(h.nheaders, HS_MAX_HEADERS);
  CHECK_MEMSTR(h.headers[5].name, h.headers[5].name_len, "X-Empty-5");
  CHECK_EQ(h.headers[5].value_len, 0);
  CHECK_MEMSTR(h.headers[3].value, 9, "value 3 0");
  splits(0, big, n);
  splits(0, rfc_request, strlen(rfc_request));
  splits(1, big_response, strlen(big_response));

  static const char *bad_requests[] = {
      "\x16\x03\x01\x02\x00",
      "GET\x01 / HTTP/1.1\r\n\r\n",
      " GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nbad line\r\nHost: x\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\x7F\r\n\r\n",
      "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
      "GET /a\x01 HTTP/1.1\r\n\r\n",
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; i++)
    if (!fails_alike(0, bad_requests[i], strlen(bad_requests[i]))) {
      printf("not alike: %s\n", bad_requests[i]);
      bad++;
    }
  CHECK_EQ(bad, 0);
  static const char *bad_responses[] = {
      "HTTP/1.1 1O1 OK\r\n\r\n",
      "ICY 200 OK\r\n\r\n",
      "HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n",
      "HTTP/1.1 101 OK\r\nX: a\r\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad_responses / sizeof *bad_responses; i++)
    CHECK(fails_alike(1, bad_responses[i], strlen(bad_responses[i])));
  /* a bad line deep in the big head, and one header too many */
  memcpy(big + 4000, "\x01", 1);
  CHECK(fails_alike(0, big, n));
  char many[4000] = "GET / HTTP/1.1\r\n";
  for (int i = 0; i <= HS_MAX_HEADERS; i++) strcat(many, "X: y\r\n");
  strcat(many, "\r\n");
  CHECK(fails_alike(0, many, strlen(many)));
  CHECK_EQ(hs_parse_request(many, strlen(many), &h), -2);
  /* the early refusal of a TLS hello: at its first byte */
  hs_parser p;
  hs_parser_init(&p, 0);
  CHECK_EQ(hs_parser_feed(&p, "\x16", 1, &h), -1);
}

/* The work is linear: fed a byte at a time, the parser looks at about as
 * many bytes as it does given the whole head at once, about three per byte
 * (finding line ends, checking lines, splitting the head into h); and its
 * resume point only moves forward, never past what it was given. */
static void linear(void) {
  static char big[12000];
  size_t n = big_request(big, sizeof big);
  hs_parser whole, p;
  hs_parser_init(&whole, 0);
  int want = hs_parser_feed(&whole, big, n, &h);
  CHECK(want > 0);
  CHECK(whole.examined <= 3 * (size_t)want + 16);
  hs_parser_init(&p, 0);
  size_t last_pos = 0, last_scan = 0, back = 0;
  for (size_t i = 1; i <= n; i++) {
    int r = hs_parser_feed(&p, big, i, &h);
    if (p.pos < last_pos || p.scan < last_scan || p.pos > i || p.scan > i) back++;
    if (r == 0 && p.scan != i) back++; /* nothing scanned twice */
    last_pos = p.pos, last_scan = p.scan;
    if (r) break;
  }
  CHECK_EQ(back, 0);
  CHECK(p.examined <= whole.examined + 16);
  CHECK(p.examined >= whole.examined);
  /* a response split in two anywhere before its end costs what the whole does */
  size_t rn = strlen(big_response), worst = 0;
  hs_parser_init(&whole, 1);
  int rwant = hs_parser_feed(&whole, big_response, rn, &h);
  CHECK(rwant > 0);
  for (size_t i = 0; i < (size_t)rwant; i++) {
    hs_parser_init(&p, 1);
    hs_parser_feed(&p, big_response, i, &h);
    hs_parser_feed(&p, big_response, rn, &h);
    if (p.examined > worst) worst = p.examined;
  }
  CHECK_EQ(worst, whole.examined);
}

static void lexing(void) {
  CHECK(lex_tchar('a') && lex_tchar('Z') && lex_tchar('0') && lex_tchar('~') && lex_tchar('!'));
  CHECK(!lex_tchar(' ') && !lex_tchar(':') && !lex_tchar(0) && !lex_tchar('"') &&
        !lex_tchar(0x80) && !lex_tchar(','));
  CHECK(lex_text('\t') && lex_text(' ') && lex_text('~') && lex_text(0xC3));
  CHECK(!lex_text('\r') && !lex_text('\n') && !lex_text(0) && !lex_text(0x7F));
  CHECK(lex_ows(' ') && lex_ows('\t') && !lex_ows('\r'));
  CHECK_EQ(lex_token("abc def", 7), 3);
  CHECK_EQ(lex_token("abc", 2), 2);
  CHECK_EQ(lex_token(" x", 2), 0);
  CHECK(lex_is_token("permessage-deflate") && !lex_is_token("") && !lex_is_token(NULL) &&
        !lex_is_token("a b"));
  CHECK(lex_ieq("Upgrade", 7, "uPGRADE", 7));
  CHECK(!lex_ieq("Upgrade", 7, "Upgrad", 6) && !lex_ieq("a[", 2, "A{", 2));
  CHECK(lex_is("Sec-WebSocket-Key", 17, "sec-websocket-key"));
  CHECK(!lex_is("Sec-WebSocket-Key", 16, "sec-websocket-key"));
  const char *s = " \t a b\t ";
  size_t n = strlen(s);
  lex_trim(&s, &n);
  CHECK_MEMSTR(s, n, "a b");
  s = " \t ", n = 3;
  lex_trim(&s, &n);
  CHECK_EQ(n, 0);
  /* lists: every item trimmed, empty ones given too */
  static const char *want[] = {"a", "", "b c", "", "d;x=1", ""};
  const char *v = " a ,, b c\t,  ,d;x=1,", *e;
  size_t k, i = 0, wrong = 0;
  lex_list l;
  lex_list_init(&l, v, strlen(v), ',');
  while (lex_list_next(&l, &e, &k))
    if (i >= 6 || k != strlen(want[i]) || memcmp(e, want[i++], k)) wrong++;
  CHECK_EQ(wrong, 0);
  CHECK_EQ(i, 6);
  CHECK(!lex_list_next(&l, &e, &k));
  lex_list_init(&l, "pmd; a=1 ;b", 11, ';');
  CHECK(lex_list_next(&l, &e, &k));
  CHECK_MEMSTR(e, k, "pmd");
  CHECK(lex_list_next(&l, &e, &k));
  CHECK_MEMSTR(e, k, "a=1");
  CHECK(lex_list_next(&l, &e, &k));
  CHECK_MEMSTR(e, k, "b");
  CHECK(!lex_list_next(&l, &e, &k));
  lex_list_init(&l, NULL, 0, ',');
  CHECK(lex_list_next(&l, &e, &k));
  CHECK_EQ(k, 0);
  CHECK(!lex_list_next(&l, &e, &k));
}

/* The one status table serves the reason phrases and the client's reasons. */
static void statuses(void) {
  CHECK_STR(hs_reason_phrase(101), "Switching Protocols");
  CHECK_STR(hs_reason_phrase(303), "See Other");
  CHECK_STR(hs_reason_phrase(431), "Request Header Fields Too Large");
  CHECK_STR(hs_reason_phrase(504), "Gateway Timeout");
  CHECK_STR(hs_reason_phrase(299), "Unknown");
  CHECK_STR(hs_reason_phrase(0), "Unknown");
  static const struct {
    int status;
    const char *why;
  } whys[] = {{200, "server answered 200 (not a WebSocket endpoint?)"},
              {301, "server answered 301 (redirect)"},
              {308, "server answered 308 (redirect)"},
              {401, "server answered 401 (authentication required)"},
              {426, "server answered 426 (unsupported WebSocket version)"},
              {429, "server answered 429"},
              {504, "server answered 504"},
              {204, "server did not answer 101 Switching Protocols"},
              {431, "server did not answer 101 Switching Protocols"},
              {599, "server did not answer 101 Switching Protocols"}};
  for (size_t i = 0; i < sizeof whys / sizeof *whys; i++) {
    char r[64];
    const char *proto, *why = NULL;
    size_t plen;
    snprintf(r, sizeof r, "HTTP/1.1 %d X\r\n\r\n", whys[i].status);
    CHECK(resp(r) > 0);
    CHECK_EQ(hs_check_response(&h, "dGhlIHNhbXBsZSBub25jZQ==", NULL, 0, 1, &proto, &plen, &why),
             -1);
    CHECK_STR(why, whys[i].why);
  }
}

/* Extensions: refused in a response unless offered; when offered they are
 * left to the extension's own check. The server's accept carries them. */
static void extensions(void) {
#define OK101 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
#define ACC "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
  static const char *offered[] = {"chat"};
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==", *proto, *why;
  size_t plen;
  CHECK(resp(OK101 ACC "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n") > 0);
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 0, &proto, &plen, &why), -1);
  CHECK_STR(why, "server chose an extension we did not offer");
  why = "unset";
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 1, &proto, &plen, &why), 0);
  CHECK(why == NULL);
  CHECK(resp(OK101 ACC "Sec-WebSocket-Extensions: x-other\r\n"
                       "Sec-WebSocket-Protocol: chat\r\n\r\n") > 0);
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 1, &proto, &plen, &why), 0);
  CHECK_MEMSTR(proto, plen, "chat");
  CHECK(resp(OK101 ACC "Sec-WebSocket-Extensions:\r\n\r\n") > 0); /* empty: none chosen */
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 0, &proto, &plen, &why), 0);
  /* an offered extension does not excuse the other checks */
  CHECK(resp(OK101 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n") > 0);
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 1, &proto, &plen, &why), -1);
  CHECK_STR(why, "missing Sec-WebSocket-Accept");
#undef OK101
#undef ACC
  buf b = {0};
  const char *ext = "permessage-deflate; server_no_context_takeover; client_max_window_bits=10";
  CHECK_EQ(hs_build_accept(&b, key, HS_KEY_LEN, "chat", ext), 0);
  CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
  const hs_header *f = hs_find(&h, "Sec-WebSocket-Extensions");
  CHECK(f != NULL);
  if (f) CHECK_MEMSTR(f->value, f->value_len, ext);
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 1, &proto, &plen, &why), 0);
  CHECK_MEMSTR(proto, plen, "chat");
  CHECK_EQ(hs_check_response(&h, key, offered, 1, 0, &proto, &plen, &why), -1);
  size_t len = b.len;
  CHECK_EQ(hs_build_accept(&b, key, HS_KEY_LEN, NULL, "x\r\nEvil: 1"), -1);
  CHECK_EQ(hs_build_accept(&b, key, HS_KEY_LEN, NULL, "x\001"), -1);
  CHECK_EQ(b.len, len); /* a refused build appends nothing */
  buf_free(&b);
  CHECK_EQ(hs_build_accept(&b, key, HS_KEY_LEN, NULL, "permessage-deflate"), 0);
  CHECK_EQ(hs_parse_response(b.data, b.len, &h), b.len);
  CHECK(hs_find(&h, "Sec-WebSocket-Protocol") == NULL);
  CHECK(hs_has_token(&h, "Sec-WebSocket-Extensions", "permessage-deflate"));
  CHECK_MEMSTR(b.data + b.len - 4, 4, "\r\n\r\n");
  buf_free(&b);
}

int main(void) {
  accept_key();
  parse_request();
  parse_response();
  tokens();
  check_request();
  protocols();
  round_trip();
  injection();
  responses();
  check_response();
  incremental();
  linear();
  lexing();
  statuses();
  extensions();
  return check_done();
}
