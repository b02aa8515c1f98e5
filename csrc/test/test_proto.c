#include <stdlib.h>

#include "test/check.h"
#include "protocol/pmd.h"
#include "protocol/proto.h"

static unsigned long null_data; /* the sink must never see a NULL pointer */

/* A sink that records every event. */
typedef struct event {
  char kind;   /* 'm'essage, 'i' ping, 'o' pong, 'c'lose */
  unsigned op; /* opcode of a message, code of a close */
  uint8_t *data;
  size_t len;
  const uint8_t *at; /* where the sink saw the data */
} event;

typedef struct log {
  event ev[64];
  size_t n;
} log;

static void record(void *ud, char kind, unsigned op, const uint8_t *d, size_t len) {
  log *l = ud;
  if (!d) null_data++;
  if (l->n == 64) return;
  event *e = &l->ev[l->n++];
  e->kind = kind, e->op = op, e->len = len, e->at = d;
  e->data = malloc(len + 1);
  if (len) memcpy(e->data, d, len);
}
static void on_message(void *ud, int op, const uint8_t *d, size_t n) {
  record(ud, 'm', (unsigned)op, d, n);
}
static void on_ping(void *ud, const uint8_t *d, size_t n) { record(ud, 'i', 0, d, n); }
static void on_pong(void *ud, const uint8_t *d, size_t n) { record(ud, 'o', 0, d, n); }
static void on_close(void *ud, unsigned code, const uint8_t *d, size_t n) {
  record(ud, 'c', code, d, n);
}
static const proto_sink sink = {on_message, on_ping, on_pong, on_close};

static void log_clear(log *l) {
  for (size_t i = 0; i < l->n; i++) free(l->ev[i].data);
  l->n = 0;
}

static int log_equal(const log *a, const log *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++) {
    const event *x = &a->ev[i], *y = &b->ev[i];
    if (x->kind != y->kind || x->op != y->op || x->len != y->len ||
        (x->len && memcmp(x->data, y->data, x->len)))
      return 0;
  }
  return 1;
}

static const uint8_t key[4] = {0x12, 0x9A, 0xFE, 0x45};

/* Appends a frame to out (masked with key when masked) and returns its size. */
static size_t mk(uint8_t *out, int fin, int rsv, int op, const void *payload, size_t len,
                 int masked) {
  size_t h = frame_encode_header(out, fin, rsv, op, len, masked ? key : NULL);
  if (masked)
    frame_mask_copy(out + h, payload, len, key, 0);
  else if (len)
    memcpy(out + h, payload, len);
  return h + len;
}

/* Feeds a copy of data (proto_feed unmasks in place) in one piece. */
static unsigned feed_copy(proto *p, const uint8_t *data, size_t n, log *l) {
  uint8_t *c = malloc(n + 1);
  if (n) memcpy(c, data, n);
  unsigned r = proto_feed(p, c, n, &sink, l);
  free(c);
  return r;
}

/* One fresh server (or client) proto, fed all of data at once. */
static unsigned run(int server, uint64_t max, const uint8_t *data, size_t n, log *l) {
  proto p;
  proto_init(&p, server, max);
  unsigned r = feed_copy(&p, data, n, l);
  CHECK(p.msg == NULL || r == 0);
  proto_free(&p);
  return r;
}

static const char *err_of(int server, const uint8_t *data, size_t n) {
  static proto p;
  log l = {0};
  proto_init(&p, server, 1 << 20);
  feed_copy(&p, data, n, &l);
  log_clear(&l);
  proto_free(&p);
  return p.error;
}

static void basics(void) {
  uint8_t b[300];
  log l = {0};
  size_t n = mk(b, 1, 0, FRAME_TEXT, "Hello", 5, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 0);
  CHECK(l.n == 1 && l.ev[0].kind == 'm' && l.ev[0].op == FRAME_TEXT);
  CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, "Hello");
  log_clear(&l);
  /* RFC 6455 5.7 samples: unmasked (to a client) and masked "Hello" */
  CHECK_EQ(run(0, 100, (const uint8_t *)"\x81\x05\x48\x65\x6c\x6c\x6f", 7, &l), 0);
  CHECK(l.n == 1);
  CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, "Hello");
  log_clear(&l);
  CHECK_EQ(run(1, 100, (const uint8_t *)"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11, &l), 0);
  CHECK(l.n == 1);
  CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, "Hello");
  log_clear(&l);
  /* fragmented "Hel" "lo", ping 'Hello' unmasked, and pong */
  CHECK_EQ(run(0, 100,
               (const uint8_t *)"\x01\x03\x48\x65\x6c\x89\x05Hello\x80\x02\x6c\x6f\x8a\x05Hello",
               23, &l),
           0);
  CHECK(l.n == 3 && l.ev[0].kind == 'i' && l.ev[1].kind == 'm' && l.ev[2].kind == 'o');
  CHECK_MEMSTR(l.ev[1].data, l.ev[1].len, "Hello");
  log_clear(&l);
  /* binary, empty text, empty binary, empty fragments, empty ping */
  n = mk(b, 1, 0, FRAME_BINARY, "\0\1\2", 3, 1);
  n += mk(b + n, 1, 0, FRAME_TEXT, "", 0, 1);
  n += mk(b + n, 1, 0, FRAME_BINARY, "", 0, 1);
  n += mk(b + n, 0, 0, FRAME_TEXT, "", 0, 1);
  n += mk(b + n, 0, 0, FRAME_CONT, "", 0, 1);
  n += mk(b + n, 0, 0, FRAME_CONT, "ab", 2, 1);
  n += mk(b + n, 1, 0, FRAME_CONT, "", 0, 1);
  n += mk(b + n, 1, 0, FRAME_PING, "", 0, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 0);
  CHECK_EQ(l.n, 5);
  CHECK(l.ev[0].op == FRAME_BINARY && l.ev[0].len == 3 && memcmp(l.ev[0].data, "\0\1\2", 3) == 0);
  CHECK(l.ev[1].op == FRAME_TEXT && l.ev[1].len == 0);
  CHECK(l.ev[2].op == FRAME_BINARY && l.ev[2].len == 0);
  CHECK(l.ev[3].op == FRAME_TEXT && l.ev[3].len == 2);
  CHECK(l.ev[4].kind == 'i' && l.ev[4].len == 0);
  log_clear(&l);
  /* empty input */
  proto p;
  proto_init(&p, 1, 100);
  CHECK_EQ(proto_feed(&p, NULL, 0, &sink, &l), 0);
  CHECK_EQ(l.n, 0);
  proto_free(&p);
  /* a sink without callbacks */
  static const proto_sink none = {0};
  proto_init(&p, 1, 100);
  n = mk(b, 1, 0, FRAME_TEXT, "x", 1, 1);
  n += mk(b + n, 1, 0, FRAME_PING, "x", 1, 1);
  n += mk(b + n, 1, 0, FRAME_CLOSE, "", 0, 1);
  CHECK_EQ(proto_feed(&p, b, n, &none, NULL), 0);
  CHECK(p.closed);
  proto_free(&p);
}

static void lengths(void) {
  static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 100000};
  uint8_t *payload = malloc(100000), *b = malloc(100000 + 14);
  for (size_t i = 0; i < 100000; i++) payload[i] = (uint8_t)(i * 7);
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    size_t len = sizes[s];
    for (int server = 0; server < 2; server++) {
      size_t n = mk(b, 1, 0, FRAME_BINARY, payload, len, server);
      CHECK_EQ(n, len + (len <= 125 ? 2 : len <= 65535 ? 4 : 10) + (server ? 4 : 0));
      /* whole, then in chunks of 1000 */
      log l = {0};
      CHECK_EQ(run(server, 100000, b, n, &l), 0);
      CHECK(l.n == 1 && l.ev[0].len == len && memcmp(l.ev[0].data, payload, len) == 0);
      log_clear(&l);
      proto p;
      proto_init(&p, server, 100000);
      for (size_t at = 0; at < n; at += 1000) {
        size_t k = n - at < 1000 ? n - at : 1000;
        CHECK_EQ(proto_feed(&p, b + at, k, &sink, &l), 0);
      }
      CHECK(l.n == 1 && l.ev[0].len == len && memcmp(l.ev[0].data, payload, len) == 0);
      CHECK(p.msg == NULL);
      proto_free(&p);
      log_clear(&l);
      /* one byte over the limit: refused from the header alone */
      proto_init(&p, server, len ? len - 1 : 0);
      size_t h = mk(b, 1, 0, FRAME_BINARY, payload, len, server) - len;
      CHECK_EQ(proto_feed(&p, b, h, &sink, &l), len ? 1009 : 0);
      CHECK_EQ(l.n, len ? 0 : 1);
      proto_free(&p);
      log_clear(&l);
    }
  }
  /* 2^32: the header is parsed without allocating for the announced size */
  uint8_t h[FRAME_MAX_HEADER + 8];
  log l = {0};
  proto p;
  proto_init(&p, 1, (uint64_t)1 << 40);
  size_t hn = frame_encode_header(h, 1, 0, FRAME_BINARY, (uint64_t)1 << 32, key);
  CHECK_EQ(hn, 14);
  memset(h + hn, 0, 8);
  CHECK_EQ(proto_feed(&p, h, hn + 8, &sink, &l), 0);
  CHECK(p.remaining == ((uint64_t)1 << 32) - 8);
  CHECK(p.msg_cap <= 256);
  proto_free(&p);
  proto_init(&p, 1, ((uint64_t)1 << 32) - 1);
  hn = frame_encode_header(h, 1, 0, FRAME_BINARY, (uint64_t)1 << 32, key);
  CHECK_EQ(proto_feed(&p, h, hn, &sink, &l), 1009);
  CHECK_STR(p.error, "message too big");
  proto_free(&p);
  /* lengths not in shortest form are accepted */
  CHECK_EQ(run(0, 100,
               (const uint8_t *)"\x82\x7E\x00\x03"
                                "abc",
               7, &l),
           0);
  CHECK(l.n == 1 && l.ev[0].len == 3);
  log_clear(&l);
  CHECK_EQ(run(0, 100,
               (const uint8_t *)"\x82\x7F\0\0\0\0\0\0\0\x03"
                                "abc",
               13, &l),
           0);
  CHECK(l.n == 1 && l.ev[0].len == 3);
  log_clear(&l);
  CHECK_EQ(run(0, 100, (const uint8_t *)"\x89\x7E\x00\x01x", 5, &l), 0);
  CHECK(l.n == 1 && l.ev[0].kind == 'i');
  log_clear(&l);
  /* the most significant bit of a 64-bit length */
  CHECK_EQ(run(0, (uint64_t)-1, (const uint8_t *)"\x82\x7F\x80\0\0\0\0\0\0\0", 10, &l), 1002);
  CHECK_EQ(
      run(0, (uint64_t)-1, (const uint8_t *)"\x82\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 10, &l),
      1002);
  CHECK_EQ(
      run(0, (uint64_t)-1, (const uint8_t *)"\x82\x7F\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 10, &l), 0);
  CHECK_EQ(l.n, 0);
  free(payload);
  free(b);
}

/* The rules one frame breaks (or, with a code of 0, keeps), each with its
 * close code and message. */
static const struct one_frame {
  int server, fin, op;
  const char *payload; /* NULL: len bytes of 'a' */
  size_t len;
  int masked;
  unsigned code;
  const char *why;
} one_frame_rules[] = {
    {1, 1, FRAME_TEXT, "a", 1, 0, 1002, "unmasked client frame"},
    {0, 1, FRAME_TEXT, "a", 1, 1, 1002, "masked server frame"},
    {1, 1, FRAME_PING, "", 0, 0, 1002, "unmasked client frame"},
    {1, 1, FRAME_PING, NULL, 125, 1, 0, NULL},
    {1, 1, FRAME_PING, NULL, 126, 1, 1002, "control frame too long"},
    {1, 1, FRAME_PONG, NULL, 126, 1, 1002, "control frame too long"},
    {1, 1, FRAME_CLOSE, NULL, 126, 1, 1002, "control frame too long"},
    {1, 0, FRAME_PING, "a", 1, 1, 1002, "fragmented control frame"},
    {1, 0, FRAME_CLOSE, "", 0, 1, 1002, "fragmented control frame"},
    {1, 1, FRAME_CONT, "a", 1, 1, 1002, "continuation without a message"},
    {1, 0, FRAME_CONT, "a", 1, 1, 1002, "continuation without a message"},
    {1, 1, FRAME_CLOSE, "\x03", 1, 1, 1002, "close frame with 1-byte payload"},
    {1, 1, FRAME_CLOSE, "\x03\xE8\xC0\x80", 4, 1, 1002, "invalid UTF-8 in close reason"},
    {1, 1, FRAME_CLOSE, "\x03\xE8\xE2\x82", 4, 1, 1002, "invalid UTF-8 in close reason"},
    {1, 1, FRAME_TEXT, "a\xC0\x80", 3, 1, 1007, "invalid UTF-8 in text message"},
    /* ends mid-character */
    {1, 1, FRAME_TEXT, "\xE2\x82", 2, 1, 1007, "invalid UTF-8 in text message"},
    {1, 1, FRAME_BINARY, "a\xC0\x80", 3, 1, 0, NULL}, /* binary is not checked */
};

static void one_frame(void) {
  uint8_t b[200];
  char big[130];
  log l = {0};
  memset(big, 'a', sizeof big);
  for (size_t i = 0; i < sizeof one_frame_rules / sizeof *one_frame_rules; i++) {
    const struct one_frame *r = &one_frame_rules[i];
    unsigned long failed = check_failed;
    size_t n = mk(b, r->fin, 0, r->op, r->payload ? r->payload : big, r->len, r->masked);
    CHECK_EQ(run(r->server, 1000, b, n, &l), r->code);
    CHECK_STR(err_of(r->server, b, n), r->why);
    if (check_failed != failed) printf("    in one_frame_rules[%zu]\n", i);
    log_clear(&l);
  }
}

/* Every rule, with its close code and message. */
static void rules(void) {
  uint8_t b[400], big[200];
  log l = {0};
  size_t n;
  memset(big, 'a', sizeof big);
#define EXPECT(server, code, why)                                                                  \
  do {                                                                                             \
    CHECK_EQ(run(server, 1000, b, n, &l), code);                                                   \
    CHECK_STR(err_of(server, b, n), why);                                                          \
    log_clear(&l);                                                                                 \
  } while (0)
  for (int rsv = 1; rsv < 8; rsv++) {
    n = mk(b, 1, rsv, FRAME_TEXT, "a", 1, 1);
    EXPECT(1, 1002, "reserved bits set");
    n = mk(b, 1, rsv, FRAME_PING, "a", 1, 1);
    EXPECT(1, 1002, "reserved bits set");
  }
  for (int op = 3; op < 16; op++) {
    if (op >= 8 && op <= 10) continue;
    n = mk(b, 1, 0, op, "a", 1, 1);
    EXPECT(1, 1002, "reserved opcode");
    n = mk(b, 1, 0, op, "", 0, 0);
    EXPECT(0, 1002, "reserved opcode");
  }
  n = mk(b, 0, 0, FRAME_TEXT, "a", 1, 1);
  n += mk(b + n, 1, 0, FRAME_TEXT, "b", 1, 1);
  EXPECT(1, 1002, "new message inside a fragmented message");
  n = mk(b, 0, 0, FRAME_BINARY, "a", 1, 1);
  n += mk(b + n, 1, 0, FRAME_BINARY, "b", 1, 1);
  EXPECT(1, 1002, "new message inside a fragmented message");
  /* a finished message followed by a continuation */
  n = mk(b, 0, 0, FRAME_TEXT, "a", 1, 1);
  n += mk(b + n, 1, 0, FRAME_CONT, "b", 1, 1);
  n += mk(b + n, 1, 0, FRAME_CONT, "c", 1, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 1002);
  CHECK(l.n == 1 && l.ev[0].len == 2);
  log_clear(&l);
  /* close frames */
  static const unsigned bad_codes[] = {0,    999,  1004, 1005, 1006, 1015,
                                       1016, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof bad_codes / sizeof *bad_codes; i++) {
    uint8_t c[2] = {(uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i]};
    n = mk(b, 1, 0, FRAME_CLOSE, c, 2, 1);
    EXPECT(1, 1002, "invalid close code");
  }
  n = mk(b, 1, 0, FRAME_CLOSE, "\x0F\xA0\xE2\x82\xAC ok", 8, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 0);
  CHECK(l.n == 1 && l.ev[0].kind == 'c' && l.ev[0].op == 4000);
  CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, "\xE2\x82\xAC ok");
  log_clear(&l);
  static const unsigned good_codes[] = {1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999};
  for (size_t i = 0; i < sizeof good_codes / sizeof *good_codes; i++) {
    uint8_t c[2] = {(uint8_t)(good_codes[i] >> 8), (uint8_t)good_codes[i]};
    n = mk(b, 1, 0, FRAME_CLOSE, c, 2, 1);
    CHECK_EQ(run(1, 100, b, n, &l), 0);
    CHECK(l.n == 1 && l.ev[0].op == good_codes[i] && l.ev[0].len == 0);
    log_clear(&l);
  }
  /* a close with 123 bytes of reason, the most that fits */
  memcpy(big, "\x03\xE8", 2);
  n = mk(b, 1, 0, FRAME_CLOSE, big, 125, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 0);
  CHECK(l.n == 1 && l.ev[0].op == 1000 && l.ev[0].len == 123);
  log_clear(&l);
  memset(big, 'a', sizeof big);
  /* empty close: 1005; everything after a close is ignored */
  n = mk(b, 1, 0, FRAME_CLOSE, "", 0, 1);
  n += mk(b + n, 1, 0, FRAME_TEXT, "x", 1, 1);
  n += mk(b + n, 1, 0, 3, "x", 1, 1);
  proto p;
  proto_init(&p, 1, 100);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  CHECK(l.n == 1 && l.ev[0].kind == 'c' && l.ev[0].op == 1005 && l.ev[0].len == 0);
  CHECK(p.closed && p.error_code == 0);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  CHECK_EQ(l.n, 1);
  proto_free(&p);
  log_clear(&l);
  /* a close in the middle of a fragmented message ends it (no buffer kept) */
  n = mk(b, 0, 0, FRAME_TEXT, "abc", 3, 1);
  n += mk(b + n, 1, 0, FRAME_CLOSE, "\x03\xE8", 2, 1);
  proto_init(&p, 1, 100);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  CHECK(l.n == 1 && l.ev[0].kind == 'c' && l.ev[0].op == 1000);
  CHECK(p.msg == NULL);
  proto_free(&p);
  log_clear(&l);
  /* invalid UTF-8 in text */
  n = mk(b, 0, 0, FRAME_TEXT, "\xE2\x82", 2, 1);
  n += mk(b + n, 1, 0, FRAME_CONT, "", 0, 1);
  EXPECT(1, 1007, "invalid UTF-8 in text message");
  n = mk(b, 0, 0, FRAME_TEXT, "\xE2", 1, 1); /* a character split over fragments is fine */
  n += mk(b + n, 0, 0, FRAME_CONT, "\x82", 1, 1);
  n += mk(b + n, 1, 0, FRAME_CONT, "\xAC", 1, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 0);
  CHECK(l.n == 1);
  CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, "\xE2\x82\xAC");
  log_clear(&l);
  /* the size limit counts all fragments, and is checked at each header */
  n = mk(b, 0, 0, FRAME_BINARY, big, 60, 1);
  n += mk(b + n, 0, 0, FRAME_CONT, big, 40, 1);
  n += mk(b + n, 1, 0, FRAME_CONT, "", 0, 1);
  proto_init(&p, 1, 100);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  CHECK(l.n == 1 && l.ev[0].len == 100);
  proto_free(&p);
  log_clear(&l);
  n = mk(b, 0, 0, FRAME_BINARY, big, 60, 1);
  size_t h1 = n;
  n += mk(b + n, 1, 0, FRAME_CONT, big, 41, 1);
  proto_init(&p, 1, 100);
  CHECK_EQ(feed_copy(&p, b, h1 + 6, &l), 1009); /* the second header suffices */
  CHECK_STR(p.error, "message too big");
  CHECK(p.msg == NULL);
  proto_free(&p);
  /* errors are sticky */
  n = mk(b, 1, 0, FRAME_TEXT, "x", 1, 0);
  proto_init(&p, 1, 100);
  CHECK_EQ(feed_copy(&p, b, n, &l), 1002);
  n = mk(b, 1, 0, FRAME_TEXT, "x", 1, 1);
  CHECK_EQ(feed_copy(&p, b, n, &l), 1002);
  CHECK_EQ(l.n, 0);
  proto_free(&p);
  /* RSV bits an extension negotiated pass, others not */
  proto_init(&p, 1, 100);
  p.rsv_allowed = FRAME_RSV1;
  n = mk(b, 1, FRAME_RSV1, FRAME_TEXT, "x", 1, 1);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  CHECK(p.rsv == FRAME_RSV1 && l.n == 1);
  n = mk(b, 1, FRAME_RSV2, FRAME_TEXT, "x", 1, 1);
  CHECK_EQ(feed_copy(&p, b, n, &l), 1002);
  proto_free(&p);
  log_clear(&l);
#undef EXPECT
}

/* A header cut anywhere still fails as soon as it can: the first two bytes of
 * a bad frame are enough. */
static void early_failure(void) {
  uint8_t b[16];
  log l = {0};
  proto p;
  size_t n = mk(b, 1, 0, 3, "abcd", 4, 1);
  proto_init(&p, 1, 100);
  CHECK_EQ(proto_feed(&p, b, 1, &sink, &l), 0);
  CHECK_EQ(proto_feed(&p, b + 1, 1, &sink, &l), 1002);
  proto_free(&p);
  (void)n;
}

/* Valid messages before a bad frame still reach the sink. */
static void before_error(void) {
  uint8_t b[100];
  log l = {0};
  size_t n = mk(b, 1, 0, FRAME_TEXT, "one", 3, 1);
  n += mk(b + n, 1, 0, FRAME_PING, "p", 1, 1);
  n += mk(b + n, 1, 0, FRAME_BINARY, "two", 3, 1);
  n += mk(b + n, 1, 0, 0xB, "", 0, 1);
  n += mk(b + n, 1, 0, FRAME_TEXT, "three", 5, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 1002);
  CHECK_EQ(l.n, 3);
  CHECK(l.ev[0].kind == 'm' && l.ev[1].kind == 'i' && l.ev[2].kind == 'm');
  CHECK_MEMSTR(l.ev[2].data, l.ev[2].len, "two");
  log_clear(&l);
  n = mk(b, 1, 0, FRAME_TEXT, "ok", 2, 1);
  n += mk(b + n, 1, 0, FRAME_TEXT, "\xFF", 1, 1);
  CHECK_EQ(run(1, 100, b, n, &l), 1007);
  CHECK_EQ(l.n, 1);
  log_clear(&l);
}

/* Fail fast: a bad byte in the first fragment (or the first piece of one big
 * frame) fails before the rest arrives. */
static void fail_fast(void) {
  uint8_t *b = malloc(70000), *payload = malloc(65536);
  log l = {0};
  proto p;
  memset(payload, 'a', 65536);
  payload[10] = 0xFF;
  size_t n = mk(b, 0, 0, FRAME_TEXT, payload, 100, 1);
  proto_init(&p, 1, 1 << 20);
  CHECK_EQ(proto_feed(&p, b, n, &sink, &l), 1007);
  CHECK_STR(p.error, "invalid UTF-8 in text message");
  proto_free(&p);
  n = mk(b, 1, 0, FRAME_TEXT, payload, 65536, 1);
  proto_init(&p, 1, 1 << 20);
  CHECK_EQ(proto_feed(&p, b, 14 + 10, &sink, &l), 0);
  CHECK_EQ(proto_feed(&p, b + 24, 1, &sink, &l), 1007);
  proto_free(&p);
  /* the first fragment of a long message is checked before the others */
  payload[10] = 'a';
  payload[50] = 0xC0;
  n = mk(b, 0, 0, FRAME_TEXT, payload, 64, 1);
  proto_init(&p, 1, 1 << 20);
  CHECK_EQ(proto_feed(&p, b, n, &sink, &l), 1007);
  CHECK_EQ(l.n, 0);
  proto_free(&p);
  free(b);
  free(payload);
}

/* Split at every byte boundary, and byte by byte: same events. */
static void splits(void) {
  uint8_t b[600], c[600], pay[200];
  for (size_t i = 0; i < sizeof pay; i++) pay[i] = (uint8_t)('a' + i % 26);
  for (int server = 0; server < 2; server++) {
    size_t n = mk(b, 0, 0, FRAME_TEXT, "h\xC3\xA9llo ", 7, server);
    n += mk(b + n, 1, 0, FRAME_PING, "ping", 4, server);
    n += mk(b + n, 0, 0, FRAME_CONT, pay, 130, server);
    n += mk(b + n, 1, 0, FRAME_PONG, "", 0, server);
    n += mk(b + n, 1, 0, FRAME_CONT, "\xE2\x82\xAC", 3, server);
    n += mk(b + n, 1, 0, FRAME_BINARY, pay, 200, server);
    n += mk(b + n, 1, 0, FRAME_TEXT, "", 0, server);
    n += mk(b + n, 1, 0, FRAME_BINARY, "\x01", 1, server);
    n += mk(b + n, 1, 0, FRAME_CLOSE, "\x03\xE9going", 7, server);
    n += mk(b + n, 1, 0, FRAME_TEXT, "ignored", 7, server);
    log whole = {0}, part = {0};
    CHECK_EQ(run(server, 1000, b, n, &whole), 0);
    CHECK_EQ(whole.n, 7);
    CHECK(whole.ev[0].kind == 'i' && whole.ev[1].kind == 'o' && whole.ev[2].kind == 'm');
    CHECK_EQ(whole.ev[2].len, 140);
    CHECK(whole.ev[6].kind == 'c' && whole.ev[6].op == 1001);
    int bad = 0;
    for (size_t cut = 0; cut <= n; cut++)
      for (size_t cut2 = cut; cut2 <= n; cut2 += (cut2 - cut < 16 ? 1 : 37)) {
        proto p;
        proto_init(&p, server, 1000);
        memcpy(c, b, n);
        unsigned r = proto_feed(&p, c, cut, &sink, &part);
        r |= proto_feed(&p, c + cut, cut2 - cut, &sink, &part);
        r |= proto_feed(&p, c + cut2, n - cut2, &sink, &part);
        if (r || !log_equal(&whole, &part) || p.msg) bad++;
        proto_free(&p);
        log_clear(&part);
      }
    CHECK_EQ(bad, 0);
    proto p;
    proto_init(&p, server, 1000);
    memcpy(c, b, n);
    unsigned r = 0;
    for (size_t i = 0; i < n; i++) r |= proto_feed(&p, c + i, 1, &sink, &part);
    CHECK_EQ(r, 0);
    CHECK(log_equal(&whole, &part));
    proto_free(&p);
    log_clear(&part);
    log_clear(&whole);
  }
}

/* The zero-copy path hands over the input itself; the copy path keeps a
 * buffer only while a message is in flight. */
static void zero_copy(void) {
  uint8_t b[100];
  log l = {0};
  proto p;
  proto_init(&p, 1, 100);
  size_t n = mk(b, 1, 0, FRAME_BINARY, "abcdef", 6, 1);
  CHECK_EQ(proto_feed(&p, b, n, &sink, &l), 0);
  CHECK(l.n == 1 && l.ev[0].at == b + 6);
  CHECK(p.msg == NULL && p.msg_cap == 0);
  log_clear(&l);
  n = mk(b, 1, 0, FRAME_BINARY, "abcdef", 6, 1);
  CHECK_EQ(proto_feed(&p, b, 8, &sink, &l), 0);
  CHECK(p.msg != NULL && l.n == 0);
  CHECK_EQ(proto_feed(&p, b + 8, n - 8, &sink, &l), 0);
  CHECK(l.n == 1 && l.ev[0].at != b + 6 && p.msg == NULL && p.msg_cap == 0);
  CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, "abcdef");
  proto_free(&p);
  log_clear(&l);
}

static void big_message(void) {
  size_t total = 4 << 20, frag = 64, nfr = total / frag;
  uint8_t *b = malloc(nfr * (frag + 6)), pay[64];
  size_t n = 0;
  for (size_t i = 0; i < nfr; i++) {
    for (size_t j = 0; j < frag; j++) pay[j] = (uint8_t)('a' + (i + j) % 26);
    n += mk(b + n, i == nfr - 1, 0, i ? FRAME_CONT : FRAME_TEXT, pay, frag, 1);
  }
  log l = {0};
  proto p;
  proto_init(&p, 1, 16 << 20);
  CHECK_EQ(proto_feed(&p, b, n, &sink, &l), 0);
  CHECK(l.n == 1 && l.ev[0].len == total && l.ev[0].op == FRAME_TEXT);
  int same = 1;
  for (size_t i = 0; i < nfr && same; i++)
    for (size_t j = 0; j < frag; j++)
      if (l.ev[0].data[i * frag + j] != (uint8_t)('a' + (i + j) % 26)) same = 0;
  CHECK(same);
  CHECK(p.msg == NULL);
  proto_free(&p);
  log_clear(&l);
  /* the same, limited to one byte less, in 16 KiB reads */
  n = 0;
  for (size_t i = 0; i < nfr; i++)
    n += mk(b + n, i == nfr - 1, 0, i ? FRAME_CONT : FRAME_BINARY, pay, frag, 1);
  proto_init(&p, 1, total - 1);
  unsigned r = 0;
  size_t at = 0;
  for (; at < n && !r; at += 16384)
    r = proto_feed(&p, b + at, n - at < 16384 ? n - at : 16384, &sink, &l);
  CHECK_EQ(r, 1009);
  CHECK(at >= n - 16384); /* refused at the last fragment's header */
  CHECK_EQ(l.n, 0);
  proto_free(&p);
  free(b);
}

/* permessage-deflate ------------------------------------------------------ */

/* A compressor or decompressor with 15-bit windows; reset: no context
 * takeover. */
static pmd *new_pmd(int reset) {
  pmd_params prm = {15, 15, (uint8_t)reset, (uint8_t)reset};
  pmd_config cfg;
  pmd_config_default(&cfg);
  cfg.window_bits = 15;
  cfg.context_takeover = !reset;
  return pmd_new(&prm, &cfg);
}

/* The payload of one compressed message (tail removed), appended to z. */
static void squeeze(pmd *tx, const void *d, size_t n, buf *z) {
  CHECK_EQ(pmd_deflate(tx, d, n, z), 0);
}

/* A server proto that inflates RSV1 messages with rx. */
static void init_inflating(proto *p, uint64_t max, pmd *rx) {
  proto_init(p, 1, max);
  p->rsv_allowed = FRAME_RSV1;
  p->inflater = rx;
}

/* Frames n bytes of compressed payload z in pieces of at most frag bytes
 * into out and returns their size. starts: the first piece opens a message
 * of op (with RSV1), else it continues one; ends: FIN on the last piece. */
static size_t mk_pieces(uint8_t *out, int op, const void *z, size_t n, size_t frag, int starts,
                        int ends) {
  size_t at = 0, len = 0;
  do {
    size_t k = n - at < frag ? n - at : frag;
    int open = starts && at == 0;
    len += mk(out + len, ends && at + k == n, open ? FRAME_RSV1 : 0, open ? op : FRAME_CONT,
              (const uint8_t *)z + at, k, 1);
    at += k;
  } while (at < n);
  return len;
}

/* The first fragment of a long compressed text message inflates to a bad
 * byte: proto_feed fails with 1007 on that fragment alone. The message is
 * two compressed pieces, each ending in a sync flush: the first holds the
 * bad byte, the second 64 KiB of text, sent (when valid) in 1000-byte
 * fragments. */
static void inflate_fail_fast(void) {
  size_t big = 1 << 16;
  uint8_t *text = malloc(big), *b = malloc(2 * big + 4096);
  uint32_t seed = 1;
  for (size_t i = 0; i < big; i++) { /* random letters: about 40 KiB compressed */
    seed = seed * 1103515245u + 12345u;
    text[i] = (uint8_t)('a' + (seed >> 16) % 26);
  }
  for (int bad = 0; bad <= 1; bad++) {
    pmd *tx = new_pmd(0), *rx = new_pmd(0);
    buf z = {0};
    const char *start = bad ? "caf\xE9 au lait, " : "caf\xC3\xA9 au lait, ";
    squeeze(tx, start, strlen(start), &z);
    buf_append(&z, "\0\0\xff\xff", 4); /* the sync flush pmd_deflate strips */
    size_t cut = z.len;
    squeeze(tx, text, big, &z);
    size_t h = mk(b, 0, FRAME_RSV1, FRAME_TEXT, z.data, cut, 1);
    size_t n = h + mk_pieces(b + h, 0, z.data + cut, z.len - cut, 1000, 0, 1);
    CHECK(n - h > 2000); /* the rest is several fragments */
    proto p;
    log l = {0};
    init_inflating(&p, 1 << 20, rx);
    if (bad) {
      CHECK_EQ(proto_feed(&p, b, h, &sink, &l), 1007);
      CHECK_STR(p.error, "invalid UTF-8 in text message");
      CHECK(p.msg == NULL);
      CHECK_EQ(l.n, 0);
    } else { /* the same message, valid, comes out whole */
      CHECK_EQ(proto_feed(&p, b, h, &sink, &l), 0);
      CHECK(p.msg_len == strlen(start) && l.n == 0);
      CHECK_EQ(proto_feed(&p, b + h, n - h, &sink, &l), 0);
      CHECK(l.n == 1 && l.ev[0].op == FRAME_TEXT && l.ev[0].len == strlen(start) + big);
      CHECK(l.n == 1 && memcmp(l.ev[0].data + strlen(start), text, big) == 0);
    }
    log_clear(&l);
    proto_free(&p);
    buf_free(&z);
    pmd_free(tx);
    pmd_free(rx);
  }
  /* in one frame too: 1007 before the frame's end arrives */
  pmd *tx = new_pmd(1), *rx = new_pmd(1);
  buf z = {0};
  memcpy(text + 100, "\xED\xA0\x80", 3); /* a surrogate */
  squeeze(tx, text, big, &z);
  size_t n = mk(b, 1, FRAME_RSV1, FRAME_TEXT, z.data, z.len, 1);
  proto p;
  log l = {0};
  init_inflating(&p, 1 << 20, rx);
  unsigned r = 0;
  size_t at = 0;
  for (; at < n && !r; at += 16) r = proto_feed(&p, b + at, n - at < 16 ? n - at : 16, &sink, &l);
  CHECK_EQ(r, 1007);
  CHECK(at < n / 2);
  CHECK_EQ(l.n, 0);
  proto_free(&p);
  buf_free(&z);
  pmd_free(tx);
  pmd_free(rx);
  free(text);
  free(b);
}

/* A compressed stream split at every byte gives the same events: compressed
 * text in fragments with a ping inside, compressed binary, an empty
 * compressed message, plain text. With context takeover, so every message
 * depends on the ones before. */
static void inflate_splits(void) {
  static const char json[] = "{\"type\":\"message\",\"nick\":\"alice\",\"text\":\"h\xC3\xA9llo "
                             "h\xC3\xA9llo h\xC3\xA9llo \xE2\x82\xAC\"}";
  uint8_t b[1024], c[1024];
  pmd *tx = new_pmd(0);
  buf z = {0};
  squeeze(tx, json, sizeof json - 1, &z);
  size_t n = mk_pieces(b, FRAME_TEXT, z.data, 9, 9, 1, 0); /* its first 9 bytes */
  n += mk(b + n, 1, 0, FRAME_PING, "ping", 4, 1);
  n += mk_pieces(b + n, 0, z.data + 9, z.len - 9, 7, 0, 1);
  z.len = 0;
  squeeze(tx, json, sizeof json - 1, &z); /* shorter: it refers to the first */
  n += mk_pieces(b + n, FRAME_BINARY, z.data, z.len, 1000, 1, 1);
  z.len = 0;
  squeeze(tx, "", 0, &z);
  n += mk_pieces(b + n, FRAME_TEXT, z.data, z.len, 1000, 1, 1);
  n += mk(b + n, 1, 0, FRAME_TEXT, "plain", 5, 1);
  buf_free(&z);
  pmd_free(tx);
  log whole = {0}, part = {0};
  proto p;
  pmd *rx = new_pmd(0);
  init_inflating(&p, 1000, rx);
  CHECK_EQ(feed_copy(&p, b, n, &whole), 0);
  proto_free(&p);
  pmd_free(rx);
  CHECK_EQ(whole.n, 5);
  CHECK(whole.n == 5 && whole.ev[0].kind == 'i' && whole.ev[1].op == FRAME_TEXT);
  CHECK(whole.n == 5 && whole.ev[2].op == FRAME_BINARY && whole.ev[3].len == 0);
  CHECK_MEMSTR(whole.ev[1].data, whole.ev[1].len, json);
  CHECK_MEMSTR(whole.ev[2].data, whole.ev[2].len, json);
  CHECK_MEMSTR(whole.ev[4].data, whole.ev[4].len, "plain");
  int bad = 0;
  for (size_t cut = 0; cut <= n; cut++) { /* two pieces, and byte by byte */
    for (int bytewise = 0; bytewise <= (cut == 0); bytewise++) {
      rx = new_pmd(0);
      init_inflating(&p, 1000, rx);
      memcpy(c, b, n);
      unsigned r = 0;
      if (bytewise)
        for (size_t i = 0; i < n; i++) r |= proto_feed(&p, c + i, 1, &sink, &part);
      else
        r = proto_feed(&p, c, cut, &sink, &part) | proto_feed(&p, c + cut, n - cut, &sink, &part);
      if (r || !log_equal(&whole, &part) || p.msg) bad++;
      proto_free(&p);
      pmd_free(rx);
      log_clear(&part);
    }
  }
  CHECK_EQ(bad, 0);
  log_clear(&whole);
}

/* A bomb stops at max_message with 1009, never holding more than
 * max_message + 1 inflated bytes, long before its input ends. */
static void inflate_bomb(void) {
  size_t big = 8u << 20, max = 1u << 16;
  uint8_t *zeros = calloc(1, big), *b = malloc(big / 64 + 4096);
  pmd *tx = new_pmd(1);
  buf z = {0};
  squeeze(tx, zeros, big, &z); /* 8 MiB in about 8 KiB */
  CHECK(z.len < big / 500);
  for (int frag = 0; frag <= 1; frag++) { /* one frame, and 100-byte fragments */
    size_t n = mk_pieces(b, FRAME_BINARY, z.data, z.len, frag ? 100 : z.len, 1, 1);
    pmd *rx = new_pmd(1);
    proto p;
    log l = {0};
    init_inflating(&p, max, rx);
    unsigned r = 0;
    size_t at = 0, peak = 0;
    for (; at < n && !r; at += 16) {
      r = proto_feed(&p, b + at, n - at < 16 ? n - at : 16, &sink, &l);
      if (p.msg_cap > peak) peak = p.msg_cap;
    }
    CHECK_EQ(r, 1009);
    CHECK_STR(p.error, "message too big");
    CHECK(peak <= max + 1);
    CHECK(at < n / 8); /* about 1/128 of the input inflates to max */
    CHECK(l.n == 0 && p.msg == NULL);
    proto_free(&p);
    pmd_free(rx);
  }
  /* the limit exactly: max zeros are fine, one more is not */
  for (int over = 0; over <= 1; over++) {
    z.len = 0;
    squeeze(tx, zeros, max + (size_t)over, &z);
    size_t n = mk_pieces(b, FRAME_BINARY, z.data, z.len, 10, 1, 1);
    pmd *rx = new_pmd(1);
    proto p;
    log l = {0};
    init_inflating(&p, max, rx);
    CHECK_EQ(feed_copy(&p, b, n, &l), over ? 1009 : 0);
    CHECK_EQ(l.n, 1 - over);
    if (!over) CHECK(l.n == 1 && l.ev[0].len == max && memcmp(l.ev[0].data, zeros, max) == 0);
    log_clear(&l);
    proto_free(&p);
    pmd_free(rx);
  }
  buf_free(&z);
  pmd_free(tx);
  free(zeros);
  free(b);
}

/* A sink that keeps the size of the block a message was delivered in. */
static size_t delivered_cap;
static void on_message_cap(void *ud, int op, const uint8_t *d, size_t n) {
  proto *p = ud;
  (void)op, (void)d, (void)n;
  delivered_cap = p->msg_cap;
}

/* With and without context takeover: every message inflates right, the
 * later ones (with takeover) from a fraction of the bytes, and (without) no
 * zlib state is kept between messages. A small message sits in a small
 * block. */
static void inflate_context(void) {
  static const char json[] =
      "{\"type\":\"message\",\"nick\":\"alice\",\"room\":\"general\",\"text\":\"The quick brown "
      "fox jumps over the lazy dog\",\"ts\":1700000000123}";
  uint8_t b[1024];
  for (int reset = 0; reset <= 1; reset++) {
    pmd *tx = new_pmd(reset), *rx = new_pmd(reset);
    proto p;
    init_inflating(&p, 1000, rx);
    size_t first = 0;
    for (int i = 0; i < 4; i++) {
      buf z = {0};
      squeeze(tx, json, sizeof json - 1, &z);
      if (i == 0) first = z.len;
      if (i > 0 && reset) CHECK_EQ(z.len, first);
      if (i > 0 && !reset) CHECK(z.len < first / 4);
      size_t n = mk_pieces(b, FRAME_TEXT, z.data, z.len, i == 2 ? 5 : z.len, 1, 1);
      log l = {0};
      CHECK_EQ(feed_copy(&p, b, n, &l), 0);
      CHECK(l.n == 1 && l.ev[0].op == FRAME_TEXT);
      CHECK_MEMSTR(l.ev[0].data, l.ev[0].len, json);
      CHECK_EQ(pmd_holds_state(rx), !reset);
      log_clear(&l);
      buf_free(&z);
    }
    proto_free(&p);
    pmd_free(tx);
    pmd_free(rx);
  }
  /* the block of a small inflated message is small */
  pmd *rx = new_pmd(1);
  proto p;
  init_inflating(&p, 16u << 20, rx);
  proto_sink keep = {on_message_cap, NULL, NULL, NULL};
  size_t n = mk(b, 1, FRAME_RSV1, FRAME_TEXT, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 1);
  CHECK_EQ(proto_feed(&p, b, n, &keep, &p), 0);
  CHECK(delivered_cap >= 5 && delivered_cap <= 4096);
  proto_free(&p);
  pmd_free(rx);
}

/* Invalid deflate data fails with 1007, in the first frame or a later one;
 * and compressed text must end on a character boundary. */
static void inflate_corrupt(void) {
  uint8_t b[256];
  static const struct {
    const char *d;
    size_t n;
  } bad[] = {
      {"\xff\xff\xff\xff", 4},     /* reserved block type 11 */
      {"\x00\x05\x00\x00\x00", 5}, /* stored block, LEN and NLEN disagree */
      {"\x03\x02\x00", 3},         /* distance too far back */
      {"\xf2\x48\xcd\xc9\xc9\x07\x00\xff\xff\xff\xff", 11}, /* good data, then junk */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    for (int op = FRAME_TEXT; op <= FRAME_BINARY; op++) {
      pmd *rx = new_pmd(0);
      proto p;
      log l = {0};
      init_inflating(&p, 1000, rx);
      size_t n = mk_pieces(b, op, bad[i].d, bad[i].n, 2, 1, 1);
      unsigned r = feed_copy(&p, b, n, &l);
      if (!check_report(r == 1007 && l.n == 0, __FILE__, __LINE__, "corrupt -> 1007"))
        printf("    case %zu, opcode %d: %u\n", i, op, r);
      CHECK_STR(p.error, "invalid deflate data");
      proto_free(&p);
      pmd_free(rx);
    }
  }
  /* a bad second fragment fails when it arrives, before the message ends */
  pmd *rx = new_pmd(0);
  proto p;
  log l = {0};
  init_inflating(&p, 1000, rx);
  size_t n = mk_pieces(b, FRAME_BINARY, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 7, 1, 0);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  n = mk_pieces(b, 0, "\xff\xff\xff\xff", 4, 4, 0, 0); /* LEN and NLEN disagree */
  CHECK_EQ(feed_copy(&p, b, n, &l), 1007);
  CHECK_EQ(l.n, 0);
  proto_free(&p);
  pmd_free(rx);
  /* "caf\xC3" then the end: the last character is cut */
  pmd *tx = new_pmd(1);
  rx = new_pmd(1);
  buf z = {0};
  squeeze(tx, "caf\xC3", 4, &z);
  n = mk_pieces(b, FRAME_TEXT, z.data, z.len, 3, 1, 1);
  init_inflating(&p, 1000, rx);
  CHECK_EQ(feed_copy(&p, b, n, &l), 1007);
  CHECK_STR(p.error, "invalid UTF-8 in text message");
  proto_free(&p);
  buf_free(&z);
  pmd_free(tx);
  pmd_free(rx);
  /* without an inflater, RSV1 messages pass as they came */
  proto_init(&p, 1, 1000);
  p.rsv_allowed = FRAME_RSV1;
  n = mk(b, 1, FRAME_RSV1, FRAME_TEXT, "\xff\xff", 2, 1);
  CHECK_EQ(feed_copy(&p, b, n, &l), 0);
  CHECK(l.n == 1);
  CHECK_MEM(l.ev[0].data, "\xff\xff", 2);
  log_clear(&l);
  proto_free(&p);
}

int main(void) {
  basics();
  lengths();
  one_frame();
  rules();
  early_failure();
  before_error();
  fail_fast();
  splits();
  zero_copy();
  big_message();
  inflate_fail_fast();
  inflate_splits();
  inflate_bomb();
  inflate_context();
  inflate_corrupt();
  CHECK_EQ(null_data, 0);
  return check_done();
}
