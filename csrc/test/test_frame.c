#include <stdlib.h>

#include "test/check.h"
#include "protocol/frame.h"

static void encode(void) {
  uint8_t h[FRAME_MAX_HEADER];
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_TEXT, 0, NULL), 2);
  CHECK(h[0] == 0x81 && h[1] == 0x00);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_TEXT, 125, NULL), 2);
  CHECK(h[1] == 125);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_BINARY, 126, NULL), 4);
  CHECK(h[0] == 0x82 && h[1] == 126 && h[2] == 0 && h[3] == 126);
  CHECK_EQ(frame_encode_header(h, 0, 0, FRAME_BINARY, 65535, NULL), 4);
  CHECK(h[0] == 0x02 && h[1] == 126 && h[2] == 0xFF && h[3] == 0xFF);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_BINARY, 65536, NULL), 10);
  CHECK_MEM(h, "\x82\x7F\0\0\0\0\0\x01\0\0", 10);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_BINARY, (uint64_t)1 << 32, NULL), 10);
  CHECK_MEM(h + 2, "\0\0\0\x01\0\0\0\0", 8);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_BINARY, 0x0102030405060708u, NULL), 10);
  CHECK_MEM(h + 2, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  /* masked: RFC 6455 5.7 "Hello" from a client */
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_TEXT, 5, key), 6);
  CHECK_MEM(h, "\x81\x85\x37\xfa\x21\x3d", 6);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_TEXT, 126, key), 8);
  CHECK(h[1] == (0x80 | 126));
  CHECK_MEM(h + 4, key, 4);
  CHECK_EQ(frame_encode_header(h, 1, 0, FRAME_TEXT, 65536, key), 14);
  CHECK(h[1] == (0x80 | 127));
  CHECK_MEM(h + 10, key, 4);
  CHECK_EQ(frame_encode_header(h, 1, FRAME_RSV1, FRAME_TEXT, 1, NULL), 2);
  CHECK(h[0] == 0xC1);
  CHECK_EQ(frame_encode_header(h, 1, 7, FRAME_PING, 1, NULL), 2);
  CHECK(h[0] == 0xF9);
  CHECK_EQ(frame_encode_header(h, 0, 0, FRAME_CONT, 3, NULL), 2);
  CHECK(h[0] == 0x00);

  uint8_t hello[5];
  frame_mask_copy(hello, (const uint8_t *)"Hello", 5, key, 0);
  CHECK_MEM(hello, "\x7f\x9f\x4d\x51\x58", 5);
  frame_mask(hello, 5, key, 0);
  CHECK_MEM(hello, "Hello", 5);
}

static void mask_all(void) {
  uint8_t src[128], ref[128], got[128], cp[128 + 8];
  static const uint8_t key[4] = {0xA1, 0x02, 0xF3, 0x7C};
  int bad = 0;
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 37 + 11);
  for (size_t n = 0; n <= 100; n++)
    for (uint64_t pos = 0; pos < 8; pos++)
      for (size_t align = 0; align < 8; align++) {
        uint64_t p = pos + (align ? ((uint64_t)1 << 40) : 0); /* only pos % 4 matters */
        for (size_t i = 0; i < n; i++) ref[i] = src[i] ^ key[(p + i) % 4];
        memcpy(got + align, src, n);
        frame_mask(got + align, n, key, p);
        if (memcmp(got + align, ref, n)) bad++;
        memset(cp, 0xEE, sizeof cp);
        frame_mask_copy(cp + align, src, n, key, p);
        if (memcmp(cp + align, ref, n) || (n + align < sizeof cp && cp[n + align] != 0xEE)) bad++;
      }
  CHECK_EQ(bad, 0);
  /* unmasking in pieces equals unmasking at once */
  uint8_t a[100], b[100];
  bad = 0;
  for (size_t cut1 = 0; cut1 <= 100; cut1++)
    for (size_t cut2 = cut1; cut2 <= 100; cut2 += 7) {
      memcpy(a, src, 100), memcpy(b, src, 100);
      frame_mask(a, 100, key, 0);
      frame_mask(b, cut1, key, 0);
      frame_mask(b + cut1, cut2 - cut1, key, cut1);
      frame_mask(b + cut2, 100 - cut2, key, cut2);
      if (memcmp(a, b, 100)) bad++;
    }
  CHECK_EQ(bad, 0);
  frame_mask(NULL, 0, key, 3);
  CHECK(1);
}

static void close_codes(void) {
  int bad = 0;
  for (unsigned c = 0; c < 70000; c++) {
    int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
    if (frame_close_code_ok(c) != want) bad++;
  }
  CHECK_EQ(bad, 0);
  CHECK(frame_close_code_ok(1000));
  CHECK(frame_close_code_ok(1014));
  CHECK(frame_close_code_ok(3000));
  CHECK(frame_close_code_ok(4999));
  CHECK(!frame_close_code_ok(999));
  CHECK(!frame_close_code_ok(1004));
  CHECK(!frame_close_code_ok(1005));
  CHECK(!frame_close_code_ok(1006));
  CHECK(!frame_close_code_ok(1015));
  CHECK(!frame_close_code_ok(1016));
  CHECK(!frame_close_code_ok(2999));
  CHECK(!frame_close_code_ok(5000));
  CHECK(!frame_close_code_ok(65535));
  CHECK(frame_close_code_sendable(1000));
  CHECK(!frame_close_code_sendable(1005));
  CHECK(frame_is_control(FRAME_CLOSE) && frame_is_control(FRAME_PING) &&
        frame_is_control(FRAME_PONG));
  CHECK(!frame_is_control(FRAME_TEXT) && !frame_is_control(FRAME_CONT));
}

int main(void) {
  encode();
  mask_all();
  close_codes();
  return check_done();
}
