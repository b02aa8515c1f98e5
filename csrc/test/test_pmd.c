/* permessage-deflate (RFC 7692): negotiation on parsed heads, both sides,
 * and the compressor and decompressor (round trips, the removed tail,
 * context takeover, the bomb bound, corrupt data). */
#include <stdint.h>
#include <stdlib.h>

#include <zlib.h>

#include "test/check.h"
#include "protocol/frame.h"
#include "protocol/handshake.h"
#include "protocol/pmd.h"

static hs_head h;
static char headbuf[4096];

static const char req_start[] = "GET /chat HTTP/1.1\r\n"
                                "Host: example.com\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n";

static const char resp_start[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                 "Upgrade: websocket\r\n"
                                 "Connection: Upgrade\r\n"
                                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

/* A request (or response) head with up to two Sec-WebSocket-Extensions
 * headers (NULL: none). */
static int head2(int response, const char *ext1, const char *ext2) {
  int n = snprintf(headbuf, sizeof headbuf, "%s", response ? resp_start : req_start);
  if (ext1)
    n +=
        snprintf(headbuf + n, sizeof headbuf - (size_t)n, "Sec-WebSocket-Extensions: %s\r\n", ext1);
  if (ext2)
    n +=
        snprintf(headbuf + n, sizeof headbuf - (size_t)n, "Sec-WebSocket-Extensions: %s\r\n", ext2);
  n += snprintf(headbuf + n, sizeof headbuf - (size_t)n, "\r\n");
  int r = response ? hs_parse_response(headbuf, (size_t)n, &h)
                   : hs_parse_request(headbuf, (size_t)n, &h);
  return r == n;
}

static pmd_config cfg(int window_bits, int takeover) {
  pmd_config c;
  pmd_config_default(&c);
  c.enabled = 1;
  c.window_bits = window_bits;
  c.context_takeover = takeover;
  return c;
}

static char resp[256];
static pmd_params prm;

/* pmd_accept on a request with these extension headers. */
static int accept2(const pmd_config *c, const char *e1, const char *e2) {
  memset(&prm, 0xAA, sizeof prm);
  resp[0] = 0;
  if (!head2(0, e1, e2)) return -100;
  return pmd_accept(&h, c, &prm, resp, sizeof resp);
}

static int accept1(const pmd_config *c, const char *e) { return accept2(c, e, NULL); }

#define PARAMS(db, ib, dr, ir)                                                                     \
  do {                                                                                             \
    CHECK_EQ(prm.deflate_bits, db);                                                                \
    CHECK_EQ(prm.inflate_bits, ib);                                                                \
    CHECK_EQ(prm.deflate_reset, dr);                                                               \
    CHECK_EQ(prm.inflate_reset, ir);                                                               \
  } while (0)

static void server_accepts(void) {
  pmd_config c15 = cfg(15, 1), c12 = cfg(12, 1);

  /* a plain offer */
  CHECK_EQ(accept1(&c15, "permessage-deflate"), 1);
  CHECK_STR(resp, "permessage-deflate");
  PARAMS(15, 15, 0, 0);
  /* with a smaller configured window the server says which one it uses */
  CHECK_EQ(accept1(&c12, "permessage-deflate"), 1);
  CHECK_STR(resp, "permessage-deflate; server_max_window_bits=12");
  PARAMS(12, 15, 0, 0);
  /* names are case-insensitive, whitespace around ; and = is allowed */
  CHECK_EQ(accept1(&c15, "PerMessage-Deflate ;  client_max_window_bits"), 1);
  CHECK_STR(resp, "permessage-deflate");
  PARAMS(15, 15, 0, 0);

  /* what a browser sends */
  CHECK_EQ(accept1(&c12, "permessage-deflate; client_max_window_bits"), 1);
  CHECK_STR(resp, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");
  PARAMS(12, 12, 0, 0);

  /* no_context_takeover in either direction */
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_no_context_takeover"), 1);
  CHECK_STR(resp, "permessage-deflate; server_no_context_takeover");
  PARAMS(15, 15, 1, 0);
  CHECK_EQ(accept1(&c15, "permessage-deflate; client_no_context_takeover"), 1);
  CHECK_STR(resp, "permessage-deflate; client_no_context_takeover");
  PARAMS(15, 15, 0, 1);
  CHECK_EQ(
      accept1(&c15, "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
      1);
  CHECK_STR(resp, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  PARAMS(15, 15, 1, 1);

  /* context_takeover = false on our side: both parameters, whatever the offer */
  pmd_config nct = cfg(15, 0);
  CHECK_EQ(accept1(&nct, "permessage-deflate"), 1);
  CHECK_STR(resp, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  PARAMS(15, 15, 1, 1);

  /* server_max_window_bits narrows our compressor */
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_max_window_bits=10"), 1);
  CHECK_STR(resp, "permessage-deflate; server_max_window_bits=10");
  PARAMS(10, 15, 0, 0);
  CHECK_EQ(accept1(&c12, "permessage-deflate; server_max_window_bits=14"), 1);
  CHECK_STR(resp, "permessage-deflate; server_max_window_bits=12");
  PARAMS(12, 15, 0, 0);
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_max_window_bits=\"10\""), 1); /* quoted */
  PARAMS(10, 15, 0, 0);
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_max_window_bits=9"), 1);
  PARAMS(9, 15, 0, 0);
  /* 8 cannot be honoured: zlib has no raw 256-byte window */
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_max_window_bits=8"), 0);
  CHECK_STR(resp, "");

  /* client_max_window_bits with a value: the peer compresses with at most that */
  CHECK_EQ(accept1(&c15, "permessage-deflate; client_max_window_bits=10"), 1);
  CHECK_STR(resp, "permessage-deflate; client_max_window_bits=10");
  PARAMS(15, 10, 0, 0);
  CHECK_EQ(accept1(&c15, "permessage-deflate; client_max_window_bits=8"), 1);
  PARAMS(15, 8, 0, 0);
  /* without a value: the server may pick any; we pick our own window */
  CHECK_EQ(accept1(&c15, "permessage-deflate; client_max_window_bits"), 1);
  CHECK_STR(resp, "permessage-deflate");
  PARAMS(15, 15, 0, 0);
  /* no client_max_window_bits in the offer: the response must not hold it */
  CHECK_EQ(accept1(&c12, "permessage-deflate; server_max_window_bits=11"), 1);
  CHECK(strstr(resp, "client_max_window_bits") == NULL);
  PARAMS(11, 15, 0, 0);
}

static void server_several_offers(void) {
  pmd_config c15 = cfg(15, 1);
  /* several offers in one header: the first acceptable wins */
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_max_window_bits=10, permessage-deflate"), 1);
  PARAMS(10, 15, 0, 0);
  CHECK_EQ(accept1(&c15, "permessage-deflate, permessage-deflate; server_max_window_bits=10"), 1);
  PARAMS(15, 15, 0, 0);
  /* an unacceptable first offer is skipped */
  CHECK_EQ(accept1(&c15, "permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                         "client_no_context_takeover"),
           1);
  CHECK_STR(resp, "permessage-deflate; client_no_context_takeover");
  PARAMS(15, 15, 0, 1);
  /* an invalid first offer is skipped */
  CHECK_EQ(
      accept1(&c15, "permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=11"), 1);
  CHECK_STR(resp, "permessage-deflate; server_max_window_bits=11");
  PARAMS(11, 15, 0, 0);
  /* other extensions around it are ignored */
  CHECK_EQ(accept1(&c15, "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, foo"),
           1);
  CHECK_STR(resp, "permessage-deflate");
  /* across two headers */
  CHECK_EQ(accept2(&c15, "x-foo; bar=1", "permessage-deflate; server_no_context_takeover"), 1);
  CHECK_STR(resp, "permessage-deflate; server_no_context_takeover");
  PARAMS(15, 15, 1, 0);
  CHECK_EQ(accept2(&c15, "permessage-deflate; server_max_window_bits=16",
                   "permessage-deflate; server_max_window_bits=13"),
           1);
  PARAMS(13, 15, 0, 0);
  CHECK_EQ(accept2(&c15, "permessage-deflate; server_max_window_bits=12", "permessage-deflate"), 1);
  PARAMS(12, 15, 0, 0);
  /* empty list elements are fine */
  CHECK_EQ(accept1(&c15, " , ,permessage-deflate,"), 1);
  CHECK_STR(resp, "permessage-deflate");
}

static void server_declines(void) {
  pmd_config c15 = cfg(15, 1);
  static const char *bad[] = {
      "permessage-deflate; foo",     /* unknown parameter */
      "permessage-deflate; foo=bar", /* unknown parameter */
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover", /* duplicate */
      "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
      "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
      "permessage-deflate; server_no_context_takeover=1", /* takes no value */
      "permessage-deflate; client_no_context_takeover=true",
      "permessage-deflate; server_max_window_bits=16", /* out of range */
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=08", /* leading zero */
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; server_max_window_bits=1x",
      "permessage-deflate; server_max_window_bits=-9",
      "permessage-deflate; server_max_window_bits", /* missing value */
      "permessage-deflate; client_max_window_bits=16",
      "permessage-deflate; client_max_window_bits=08",
      "permessage-deflate; client_max_window_bits=\"\"",
      "permessage-deflate;", /* syntax errors */
      "permessage-deflate; ; server_no_context_takeover",
      "permessage-deflate; server_max_window_bits=",
      "permessage-deflate; server_max_window_bits=\"10",
      "permessage-deflate; server_max_window_bits=\"1 0\"",
      "permessage-deflate server_no_context_takeover",
      "permessage-deflate; =10",
      "permessage-deflate / 2",
      "@permessage-deflate",
      "\"permessage-deflate\"",
      "permessage-deflat", /* other extensions */
      "permessage-deflate-x",
      "x-webkit-deflate-frame",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int r = accept1(&c15, bad[i]);
    if (!check_report(r == 0 && resp[0] == 0, __FILE__, __LINE__, "declined"))
      printf("    offer \"%s\": %d \"%s\"\n", bad[i], r, resp);
  }
  /* no header at all */
  CHECK_EQ(accept2(&c15, NULL, NULL), 0);
  /* compression off on our side */
  pmd_config off = cfg(15, 1);
  off.enabled = 0;
  CHECK_EQ(accept1(&off, "permessage-deflate"), 0);
  CHECK_STR(resp, "");
  /* a response buffer too small to hold the longest answer is refused */
  CHECK(head2(0, "permessage-deflate", NULL));
  char small[32];
  CHECK_EQ(pmd_accept(&h, &c15, &prm, small, sizeof small), 0);
}

/* Client side ------------------------------------------------------------ */

static const char *why;

static int check1(const pmd_config *c, const char *e) {
  memset(&prm, 0xAA, sizeof prm);
  why = NULL;
  if (!head2(1, e, NULL)) return -100;
  return pmd_check(&h, c, &prm, &why);
}

static void client_offer(void) {
  char out[256];
  pmd_config c = cfg(15, 1);
  pmd_offer(&c, out, sizeof out);
  CHECK_STR(out, "permessage-deflate; client_max_window_bits");
  c = cfg(12, 1);
  pmd_offer(&c, out, sizeof out);
  CHECK_STR(out, "permessage-deflate; client_max_window_bits=12; server_max_window_bits=12");
  c = cfg(10, 0);
  pmd_offer(&c, out, sizeof out);
  CHECK_STR(out, "permessage-deflate; client_max_window_bits=10; server_max_window_bits=10; "
                 "server_no_context_takeover; client_no_context_takeover");
  /* our own offer is one our server accepts */
  pmd_config srv = cfg(15, 1);
  CHECK_EQ(accept1(&srv, out), 1);
  CHECK_STR(resp, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                  "server_max_window_bits=10; client_max_window_bits=10");
  PARAMS(10, 10, 1, 1);
  /* and the answer is one our client accepts */
  char answer[256];
  snprintf(answer, sizeof answer, "%s", resp);
  CHECK_EQ(check1(&c, answer), 1);
  PARAMS(10, 10, 1, 1);
}

static void client_check(void) {
  pmd_config c15 = cfg(15, 1), c12 = cfg(12, 1);
  /* accepted */
  CHECK_EQ(check1(&c15, "permessage-deflate"), 1);
  PARAMS(15, 15, 0, 0);
  CHECK_EQ(
      check1(&c15, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
      1);
  PARAMS(15, 15, 1, 1);
  CHECK_EQ(check1(&c15, "permessage-deflate; client_max_window_bits=10; server_max_window_bits=11"),
           1);
  PARAMS(10, 11, 0, 0);
  CHECK_EQ(check1(&c12, "permessage-deflate; server_max_window_bits=12"), 1);
  PARAMS(12, 12, 0, 0);
  CHECK_EQ(check1(&c12, "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
           1);
  PARAMS(9, 9, 0, 0);
  /* declined: no header */
  CHECK_EQ(check1(&c15, NULL), 0);
  /* not offered */
  CHECK_EQ(check1(&c15, "x-webkit-deflate-frame"), -1);
  CHECK(why != NULL);
  CHECK_EQ(check1(&c15, "permessage-deflate, x-foo"), -1);
  CHECK_EQ(check1(&c15, "permessage-deflate, permessage-deflate"), -1);
  pmd_config off = cfg(15, 1);
  off.enabled = 0;
  CHECK_EQ(check1(&off, "permessage-deflate"), -1);
  /* invalid parameters */
  static const char *bad[] = {
      "permessage-deflate; foo",
      "permessage-deflate; client_max_window_bits", /* a response must give a value */
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=08",
      "permessage-deflate; client_max_window_bits=8", /* zlib cannot compress with it */
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate;",
      "permessage-deflate; server_max_window_bits=\"10",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int r = check1(&c15, bad[i]);
    if (!check_report(r == -1 && why != NULL, __FILE__, __LINE__, "refused"))
      printf("    response \"%s\": %d\n", bad[i], r);
  }
  /* we asked for a 12-bit server window: a larger one, or none, fails */
  CHECK_EQ(check1(&c12, "permessage-deflate"), -1);
  CHECK_EQ(check1(&c12, "permessage-deflate; server_max_window_bits=13"), -1);
  /* we asked for no context takeover: the server must agree */
  pmd_config nct = cfg(15, 0);
  CHECK_EQ(check1(&nct, "permessage-deflate; client_no_context_takeover"), -1);
  CHECK_EQ(check1(&nct, "permessage-deflate; server_no_context_takeover"), 1);
  PARAMS(15, 15, 1, 1); /* we reset our side anyway */
}

/* Compression -------------------------------------------------------------- */

static pmd *pair_new(int bits, int reset, pmd **rx) {
  pmd_params p = {(uint8_t)bits, (uint8_t)bits, (uint8_t)reset, (uint8_t)reset};
  pmd_config c = cfg(bits, !reset);
  *rx = pmd_new(&p, &c);
  return pmd_new(&p, &c);
}

static int has_tail(const buf *b) {
  return b->len >= 4 && memcmp(b->data + b->len - 4, "\0\0\xff\xff", 4) == 0;
}

/* deflate then inflate data; returns the compressed size, or -1 */
static long round_trip(pmd *tx, pmd *rx, const uint8_t *data, size_t n) {
  buf z = {0}, out = {0};
  long zl = -1;
  if (pmd_deflate(tx, data, n, &z) == 0) {
    CHECK(!has_tail(&z));
    unsigned rc = pmd_inflate(rx, (const uint8_t *)z.data, z.len, n + 10, &out);
    CHECK_EQ(rc, 0);
    CHECK_EQ(out.len, n);
    if (out.len == n && n) CHECK_MEM(out.data, data, n);
    zl = (long)z.len;
  }
  buf_free(&z);
  buf_free(&out);
  return zl;
}

static uint64_t rng = 88172645463325252ull;
static uint8_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint8_t)(rng >> 24);
}

/* An empty message must still carry a block header: the receiver appends
 * 00 00 ff ff, which is only a valid (empty stored) block after one.
 * RFC 7692 7.2.3.6 shows the single byte 0x00. With context takeover,
 * pmd_deflate calls deflate(Z_SYNC_FLUSH) with no new input right after the
 * previous message's sync flush: zlib answers Z_BUF_ERROR and writes
 * nothing, so the payload is empty and the peer's inflater is left inside a
 * stored block; the next message then fails with 1007. */
static void empty_after_message(void) {
  pmd *rx, *tx = pair_new(15, 0, &rx);
  CHECK(round_trip(tx, rx, (const uint8_t *)"Hello", 5) > 0);
  buf z = {0};
  CHECK_EQ(pmd_deflate(tx, (const uint8_t *)"", 0, &z), 0);
  CHECK_EQ(z.len, 1); /* fails: 0 bytes */
  buf_free(&z);
  pmd_free(tx);
  pmd_free(rx);
  /* the same through a full exchange: empty, empty, then Hello twice */
  tx = pair_new(15, 0, &rx);
  CHECK(round_trip(tx, rx, (const uint8_t *)"", 0) >= 0);
  CHECK(round_trip(tx, rx, (const uint8_t *)"", 0) >= 0);
  CHECK(round_trip(tx, rx, (const uint8_t *)"Hello", 5) > 0); /* fails: 1007 */
  CHECK(round_trip(tx, rx, (const uint8_t *)"Hello", 5) > 0);
  pmd_free(tx);
  pmd_free(rx);
}

static void round_trips(void) {
  pmd *rx, *tx = pair_new(15, 0, &rx);
  /* empty: a single 0x00 byte on the wire (RFC 7692 7.2.3.6) */
  buf z = {0};
  CHECK_EQ(pmd_deflate(tx, (const uint8_t *)"", 0, &z), 0);
  CHECK_EQ(z.len, 1);
  CHECK(z.len == 1 && z.data[0] == 0);
  buf out = {0};
  CHECK_EQ(pmd_inflate(rx, (const uint8_t *)z.data, z.len, 100, &out), 0);
  CHECK_EQ(out.len, 0);
  buf_free(&z);
  buf_free(&out);
  /* small */
  const char *hello = "Hello";
  CHECK(round_trip(tx, rx, (const uint8_t *)hello, 5) > 0);
  /* RFC 7692 7.2.3.1: "Hello" compresses to these bytes on a fresh stream */
  pmd *rx2, *tx2 = pair_new(15, 1, &rx2);
  CHECK_EQ(pmd_deflate(tx2, (const uint8_t *)hello, 5, &z), 0);
  CHECK_EQ(z.len, 7);
  CHECK_MEM(z.data, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
  CHECK_EQ(pmd_inflate(rx2, (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 5, &out), 0);
  CHECK_MEMSTR(out.data, out.len, "Hello");
  buf_free(&out);
  /* the same with a final block (BFINAL set, as some peers send) */
  CHECK_EQ(pmd_inflate(rx2, (const uint8_t *)"\xf3\x48\xcd\xc9\xc9\x07\x00", 7, 5, &out), 0);
  CHECK_MEMSTR(out.data, out.len, "Hello");
  buf_free(&out);
  buf_free(&z);
  pmd_free(tx2);
  pmd_free(rx2);

  /* 1 MiB compressible and incompressible */
  size_t big = 1u << 20;
  uint8_t *text = malloc(big), *noise = malloc(big);
  for (size_t i = 0; i < big; i++) {
    text[i] = (uint8_t) "{\"type\":\"message\",\"nick\":\"alice\",\"text\":\"hi there\"}\n"[i % 52];
    noise[i] = rnd();
  }
  long zt = round_trip(tx, rx, text, big);
  CHECK(zt > 0 && zt < (long)big / 50);
  long zn = round_trip(tx, rx, noise, big);
  CHECK(zn > (long)big && zn < (long)big + (long)big / 100);
  /* several messages in a row, with the context kept */
  for (int i = 0; i < 20; i++) CHECK(round_trip(tx, rx, text + i * 7, 1000 + (size_t)i * 333) > 0);
  CHECK(round_trip(tx, rx, noise, 100) > 0);
  pmd_free(tx);
  pmd_free(rx);

  /* context takeover: a repeated message shrinks; without it, it doesn't */
  static const char json[] =
      "{\"type\":\"message\",\"nick\":\"alice\",\"room\":\"general\",\"text\":\"The quick brown "
      "fox "
      "jumps over the lazy dog while the chat server keeps every socket warm and tidy.\","
      "\"ts\":1700000000123,\"id\":4242}";
  size_t jn = sizeof json - 1;
  for (int reset = 0; reset <= 1; reset++) {
    for (int bits = 9; bits <= 15; bits += 3) {
      tx = pair_new(bits, reset, &rx);
      long first = round_trip(tx, rx, (const uint8_t *)json, jn);
      long second = round_trip(tx, rx, (const uint8_t *)json, jn);
      long third = round_trip(tx, rx, (const uint8_t *)json, jn);
      if (reset) {
        CHECK_EQ(second, first);
        CHECK_EQ(third, first);
      } else {
        CHECK(second < first / 4);
        CHECK(third <= second);
      }
      /* interleave other sizes and check they still come out right */
      for (int i = 0; i < 10; i++)
        CHECK(round_trip(tx, rx, noise + i * 1000, 50 + (size_t)i * 700) > 0);
      CHECK(round_trip(tx, rx, text, 300000) > 0);
      pmd_free(tx);
      pmd_free(rx);
    }
  }
  free(text);
  free(noise);
}

/* threshold */
static void wants(void) {
  pmd_params p = {15, 15, 0, 0};
  pmd_config c = cfg(15, 1);
  c.threshold = 32;
  pmd *x = pmd_new(&p, &c);
  CHECK(!pmd_wants(x, 0));
  CHECK(!pmd_wants(x, 31));
  CHECK(pmd_wants(x, 32));
  pmd_free(x);
  c.threshold = 0;
  x = pmd_new(&p, &c);
  CHECK(pmd_wants(x, 0));
  pmd_free(x);
}

/* Compresses n zero bytes with a plain zlib raw stream (sync flush, tail removed). */
static uint8_t *zeros_bomb(size_t n, size_t *zlen) {
  z_stream s;
  memset(&s, 0, sizeof s);
  deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
  size_t cap = n / 500 + 4096;
  uint8_t *out = malloc(cap), *zero = calloc(1, 1u << 20);
  s.next_out = out;
  s.avail_out = (uInt)cap;
  for (size_t left = n; left;) {
    size_t k = left < (1u << 20) ? left : (1u << 20);
    s.next_in = zero;
    s.avail_in = (uInt)k;
    deflate(&s, Z_NO_FLUSH);
    left -= k;
  }
  deflate(&s, Z_SYNC_FLUSH);
  *zlen = cap - s.avail_out - 4;
  deflateEnd(&s);
  free(zero);
  return out;
}

static void bomb(void) {
  pmd_params p = {15, 15, 0, 0};
  pmd_config c = cfg(15, 1);
  size_t zlen;
  /* about 1 KiB that inflates to 1 MiB, against a 64 KiB limit */
  uint8_t *z = zeros_bomb(1u << 20, &zlen);
  CHECK(zlen < 1100);
  pmd *rx = pmd_new(&p, &c);
  buf out = {0};
  CHECK_EQ(pmd_inflate(rx, z, zlen, 65536, &out), FRAME_CLOSE_TOO_BIG);
  CHECK(out.len <= 65536 + 1);
  CHECK(out.cap <= 65536 + 65536);
  buf_free(&out);
  /* the limit exactly: 1 MiB of zeros against max 1 MiB is fine, one byte less is not */
  pmd_free(rx);
  rx = pmd_new(&p, &c);
  CHECK_EQ(pmd_inflate(rx, z, zlen, 1u << 20, &out), 0);
  CHECK_EQ(out.len, 1u << 20);
  buf_free(&out);
  pmd_free(rx);
  rx = pmd_new(&p, &c);
  CHECK_EQ(pmd_inflate(rx, z, zlen, (1u << 20) - 1, &out), FRAME_CLOSE_TOO_BIG);
  CHECK(out.cap <= (1u << 20) + 65536);
  buf_free(&out);
  pmd_free(rx);
  free(z);

  /* 256 MiB of zeros (about 256 KiB compressed) with a header already in the
   * buffer (as conn.c does): never more than max + 64 KiB past it */
  z = zeros_bomb(256u << 20, &zlen);
  CHECK(zlen < (300u << 10));
  rx = pmd_new(&p, &c);
  CHECK(buf_append(&out, "0123456789abcdef", 16) == 0);
  CHECK_EQ(pmd_inflate(rx, z, zlen, 1u << 20, &out), FRAME_CLOSE_TOO_BIG);
  CHECK(out.cap <= 16 + (1u << 20) + 65536);
  CHECK_MEM(out.data, "0123456789abcdef", 16);
  buf_free(&out);
  pmd_free(rx);
  /* a small limit */
  rx = pmd_new(&p, &c);
  CHECK_EQ(pmd_inflate(rx, z, zlen, 10, &out), FRAME_CLOSE_TOO_BIG);
  CHECK(out.cap <= 10 + 65536);
  buf_free(&out);
  pmd_free(rx);
  free(z);
}

/* A small message must not cost a 64 KiB buffer: conn.c adopts the
 * inflated block as the queued message as it lies, and the inbox limit
 * (high_water) counts message bytes, so 1 MiB of queued 5-byte messages
 * would pin 200 000 x 64 KiB. pmd_inflate reserves min(max + 1 - produced,
 * 64 KiB) before its first inflate call, whatever the input size. */
static void small_message_small_buffer(void) {
  pmd_params p = {15, 15, 0, 0};
  pmd_config c = cfg(15, 1);
  pmd *rx = pmd_new(&p, &c);
  buf out = {0};
  CHECK_EQ(pmd_inflate(rx, (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 16u << 20, &out), 0);
  CHECK_EQ(out.len, 5);
  if (!check_report(out.cap <= 4096, __FILE__, __LINE__, "out.cap <= 4096 for a 5-byte message"))
    printf("    cap %zu\n", out.cap);
  buf_free(&out);
  pmd_free(rx);
}

static void corrupt(void) {
  pmd_params p = {15, 15, 0, 0};
  pmd_config c = cfg(15, 1);
  buf out = {0};
  static const struct {
    const char *d;
    size_t n;
  } bad[] = {
      {"\xff\xff\xff\xff", 4},     /* reserved block type 11 */
      {"\x07\x00", 2},             /* BTYPE 11 with BFINAL */
      {"\x00\x05\x00\x00\x00", 5}, /* stored block, LEN and NLEN disagree */
      {"\xf2\x48\xcd\xc9\xc9\x07\x00\xff\xff\xff\xff", 11},         /* good data, then junk */
      {"\x03\x02\x00", 3},                                          /* distance too far back */
      {"\x04\xc0\x81\x08\x00\x00\x00\x00\x20\x7f\xeb\x0b\x00", 13}, /* bad literal/length */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pmd *rx = pmd_new(&p, &c);
    unsigned rc = pmd_inflate(rx, (const uint8_t *)bad[i].d, bad[i].n, 1u << 20, &out);
    if (!check_report(rc == FRAME_CLOSE_INVALID_DATA, __FILE__, __LINE__, "corrupt -> 1007"))
      printf("    case %zu: %u\n", i, rc);
    buf_free(&out);
    pmd_free(rx);
  }
  /* a truncated message is incomplete, not an error: it inflates to a prefix */
  pmd *rx = pmd_new(&p, &c);
  CHECK_EQ(pmd_inflate(rx, (const uint8_t *)"\xf2\x48\xcd", 3, 100, &out), 0);
  CHECK(out.len <= 5);
  buf_free(&out);
  pmd_free(rx);
}

/* Without context takeover no zlib state outlives a message, either way;
 * with it, both streams stay. */
static void reset_frees_state(void) {
  pmd *rx, *tx = pair_new(15, 1, &rx);
  for (int i = 0; i < 1000; i++) {
    CHECK_EQ(round_trip(tx, rx, (const uint8_t *)"abcabcabcabcabc", 15) > 0, 1);
    if (pmd_holds_state(tx) || pmd_holds_state(rx)) break;
  }
  CHECK(!pmd_holds_state(tx));
  CHECK(!pmd_holds_state(rx));
  pmd_free(tx);
  pmd_free(rx);
  tx = pair_new(15, 0, &rx);
  CHECK(!pmd_holds_state(tx)); /* nothing before the first message */
  CHECK(round_trip(tx, rx, (const uint8_t *)"abcabcabcabcabc", 15) > 0);
  CHECK(pmd_holds_state(tx));
  CHECK(pmd_holds_state(rx));
  pmd_free(tx);
  pmd_free(rx);
}

/* Connections that reset with the same settings make the same bytes, so a
 * message published to all of them is compressed once. */
static void shared_output(void) {
  static const char msg[] = "{\"type\":\"message\",\"text\":\"hello hello hello hello\"}";
  pmd *rx1, *rx2, *rx3, *rx4;
  pmd *a = pair_new(12, 1, &rx1), *b = pair_new(12, 1, &rx2);
  pmd *c = pair_new(12, 0, &rx3), *d = pair_new(10, 1, &rx4);
  CHECK(pmd_same_output(a, b));
  CHECK(!pmd_same_output(a, c)); /* context takeover: output depends on history */
  CHECK(!pmd_same_output(c, c));
  CHECK(!pmd_same_output(a, d)); /* another window */
  buf x = {0}, y = {0};
  for (int i = 0; i < 3; i++) { /* the same bytes, message after message */
    x.len = y.len = 0;
    CHECK_EQ(pmd_deflate(a, (const uint8_t *)msg, sizeof msg - 1, &x), 0);
    CHECK_EQ(pmd_deflate(b, (const uint8_t *)msg, sizeof msg - 1, &y), 0);
    CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
  }
  /* and the frame made for a inflates on b's peer */
  buf out = {0};
  CHECK_EQ(pmd_inflate(rx2, (const uint8_t *)x.data, x.len, 1000, &out), 0);
  CHECK_MEMSTR(out.data, out.len, msg);
  buf_free(&out);
  buf_free(&x);
  buf_free(&y);
  pmd *all[] = {a, b, c, d, rx1, rx2, rx3, rx4};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) pmd_free(all[i]);
}

/* pmd_inflate_part over a message cut into pieces, with room rooms bytes at
 * a time; the output goes to out, *taken (if given) gets how much input was
 * passed. Returns the last result. */
static unsigned inflate_pieces(pmd *rx, const uint8_t *z, size_t n, size_t piece, size_t rooms,
                               size_t max, buf *out, size_t *taken) {
  size_t at = 0;
  unsigned rc = 0;
  do {
    const uint8_t *in = z + at;
    size_t k = n - at < piece ? n - at : piece;
    at += k;
    if (taken) *taken = at;
    int last = at == n;
    do {
      size_t made;
      if (buf_reserve(out, rooms)) return FRAME_CLOSE_INTERNAL;
      rc = pmd_inflate_part(rx, &in, &k, last, (uint8_t *)out->data + out->len, rooms, &made);
      CHECK(made <= rooms);
      out->len += made;
      if (out->len > max) return FRAME_CLOSE_TOO_BIG;
    } while (rc == PMD_MORE);
    if (rc) return rc;
    CHECK_EQ(k, 0); /* all of each piece is taken */
  } while (at < n);
  return rc;
}

/* Inflating a message in pieces, with little room at a time, gives what
 * inflating it whole gives: split at every byte, output a byte at a time. */
static void inflate_in_pieces(void) {
  size_t big = 20000;
  uint8_t *text = malloc(big);
  for (size_t i = 0; i < big; i++) text[i] = i % 3 ? (uint8_t)('a' + i % 26) : rnd();
  for (int reset = 0; reset <= 1; reset++) {
    pmd *rx, *tx = pair_new(15, reset, &rx);
    pmd *rx_whole, *tx2 = pair_new(15, reset, &rx_whole);
    for (int m = 0; m < 3; m++) { /* three messages: with takeover, each refers back */
      buf z = {0}, whole = {0}, out = {0};
      size_t len = m == 1 ? 0 : big / (size_t)(m + 1);
      CHECK_EQ(pmd_deflate(tx, text, len, &z), 0);
      CHECK_EQ(pmd_inflate(rx_whole, (const uint8_t *)z.data, z.len, big, &whole), 0);
      CHECK_EQ(whole.len, len);
      size_t piece = m == 0 ? 1 : m == 1 ? 1 : 97, rooms = m == 2 ? 1 : 300;
      CHECK_EQ(inflate_pieces(rx, (const uint8_t *)z.data, z.len, piece, rooms, big, &out, NULL),
               0);
      CHECK_EQ(out.len, len);
      if (out.len == len && len) CHECK_MEM(out.data, text, len);
      CHECK_EQ(pmd_holds_state(rx), !reset);
      buf_free(&z);
      buf_free(&whole);
      buf_free(&out);
    }
    pmd_free(tx), pmd_free(tx2), pmd_free(rx), pmd_free(rx_whole);
  }
  /* a final block (BFINAL) ends the message's stream: what follows it in
   * later pieces is ignored, as pmd_inflate ignores it, and the next message
   * starts afresh */
  pmd_params p = {15, 15, 0, 0};
  pmd_config c = cfg(15, 1);
  pmd *rx = pmd_new(&p, &c);
  buf out = {0};
  CHECK_EQ(inflate_pieces(rx, (const uint8_t *)"\xf3\x48\xcd\xc9\xc9\x07\x00junk", 11, 2, 2, 100,
                          &out, NULL),
           0);
  CHECK_MEMSTR(out.data, out.len, "Hello");
  out.len = 0;
  CHECK_EQ(
      inflate_pieces(rx, (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 3, 1, 100, &out, NULL),
      0);
  CHECK_MEMSTR(out.data, out.len, "Hello");
  buf_free(&out);
  /* corrupt data in a later piece: 1007 there, and the stream is gone */
  CHECK_EQ(inflate_pieces(rx, (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00\xff\xff\xff\xff", 11,
                          7, 64, 100, &out, NULL),
           FRAME_CLOSE_INVALID_DATA);
  CHECK(!pmd_holds_state(rx));
  buf_free(&out);
  pmd_free(rx);
  free(text);
}

/* A bomb inflated in pieces stops as soon as its output passes max, having
 * read only a small part of its input. */
static void bomb_in_pieces(void) {
  pmd_params p = {15, 15, 0, 0};
  pmd_config c = cfg(15, 1);
  size_t zlen, taken = 0;
  uint8_t *z = zeros_bomb(16u << 20, &zlen);
  pmd *rx = pmd_new(&p, &c);
  buf out = {0};
  CHECK_EQ(inflate_pieces(rx, z, zlen, 64, 4096, 1u << 16, &out, &taken), FRAME_CLOSE_TOO_BIG);
  CHECK(out.len <= (1u << 16) + 4096);
  CHECK(taken < zlen / 64); /* 1/256 of it inflates to max */
  buf_free(&out);
  pmd_free(rx);
  free(z);
}

int main(void) {
  server_accepts();
  server_several_offers();
  server_declines();
  client_offer();
  client_check();
  round_trips();
  empty_after_message();
  wants();
  bomb();
  corrupt();
  small_message_small_buffer();
  reset_frees_state();
  shared_output();
  inflate_in_pieces();
  bomb_in_pieces();
  return check_done();
}
