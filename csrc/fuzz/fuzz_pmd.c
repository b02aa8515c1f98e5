/* permessage-deflate on random input: the extension parser through
 * pmd_accept and pmd_check (whatever they accept must be within range, and
 * the server's answer must be accepted by a client that made that offer),
 * and pmd_inflate on random data with a small limit (never more than the
 * limit plus one byte of output, never more than limit + 64 KiB of buffer,
 * a result among 0, 1007, 1009), which pmd_inflate_part in small pieces
 * with little room at a time must match: the same result, the same output
 * (see the exception for windows under 15 bits below). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/frame.h"
#include "protocol/handshake.h"
#include "protocol/pmd.h"

static void check_params(const pmd_params *p) {
  if (p->deflate_bits < 9 || p->deflate_bits > 15) abort();
  if (p->inflate_bits < 8 || p->inflate_bits > 15) abort();
  if (p->deflate_reset > 1 || p->inflate_reset > 1) abort();
}

/* Builds a head whose Sec-WebSocket-Extensions headers are the NUL-separated
 * parts of s (at most 3). */
static int make_head(const char *start, const uint8_t *s, size_t n, char *out, size_t size) {
  size_t len = strlen(start);
  memcpy(out, start, len);
  int parts = 0;
  size_t i = 0;
  while (i <= n && parts < 3) {
    size_t j = i;
    while (j < n && s[j]) j++;
    if (len + 32 + (j - i) + 4 > size) return -1;
    memcpy(out + len, "Sec-WebSocket-Extensions: ", 26);
    len += 26;
    for (size_t k = i; k < j; k++) out[len++] = (char)(s[k] == '\r' || s[k] == '\n' ? ' ' : s[k]);
    memcpy(out + len, "\r\n", 2);
    len += 2;
    parts++;
    i = j + 1;
  }
  memcpy(out + len, "\r\n", 2);
  return (int)(len + 2);
}

static void negotiate(const uint8_t *data, size_t size, uint8_t knobs) {
  static char head[8192];
  hs_head h;
  pmd_config cfg;
  pmd_config_default(&cfg);
  cfg.enabled = 1;
  cfg.window_bits = 9 + knobs % 7;
  cfg.context_takeover = (knobs >> 3) & 1;
  /* server side */
  int n = make_head("GET / HTTP/1.1\r\nHost: x\r\n", data, size, head, sizeof head);
  if (n > 0 && hs_parse_request(head, (size_t)n, &h) == n) {
    char resp[256];
    pmd_params p;
    memset(resp, 'x', sizeof resp);
    int r = pmd_accept(&h, &cfg, &p, resp, sizeof resp);
    if (r != 0 && r != 1) abort();
    if (r == 1) {
      check_params(&p);
      if (!memchr(resp, 0, sizeof resp) || strncmp(resp, "permessage-deflate", 18)) abort();
      if (p.deflate_bits > cfg.window_bits) abort();
      if (!cfg.context_takeover && !(p.deflate_reset && p.inflate_reset)) abort();
      /* the answer parses back, as a client that offered everything would see it */
      char rh[512];
      int m =
          snprintf(rh, sizeof rh, "HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: %s\r\n\r\n", resp);
      hs_head h2;
      if (m <= 0 || hs_parse_response(rh, (size_t)m, &h2) != m) abort();
      pmd_config any;
      pmd_config_default(&any);
      any.enabled = 1;
      any.window_bits = 15;
      pmd_params q;
      const char *why;
      int c = pmd_check(&h2, &any, &q, &why);
      /* only a client window of 8 can make a valid answer unusable for zlib */
      if (c != 1 && !(c == -1 && strstr(resp, "client_max_window_bits=8"))) abort();
      if (c == 1 && (q.inflate_bits != p.deflate_bits || q.inflate_reset != p.deflate_reset))
        abort();
    } else if (r == 0 && resp[0] != 'x' && resp[0] != 0) {
      abort(); /* a refusal writes nothing (or an empty string) */
    }
  }
  /* client side */
  n = make_head("HTTP/1.1 101 Switching Protocols\r\n", data, size, head, sizeof head);
  if (n > 0 && hs_parse_response(head, (size_t)n, &h) == n) {
    pmd_params p;
    const char *why = NULL;
    int r = pmd_check(&h, &cfg, &p, &why);
    if (r < -1 || r > 1) abort();
    if (r == -1 && !why) abort();
    if (r == 1) {
      check_params(&p);
      if (p.deflate_bits > cfg.window_bits) abort();
      if (cfg.window_bits < 15 && p.inflate_bits > cfg.window_bits) abort();
    }
  }
}

/* One message through pmd_inflate_part, piece bytes of input and at most
 * room bytes of output at a time, bounded by max as pmd_inflate bounds it. */
static unsigned inflate_split(pmd *p, const uint8_t *d, size_t n, size_t piece, size_t room,
                              size_t max, buf *out) {
  size_t at = 0;
  do {
    const uint8_t *in = d + at;
    size_t k = n - at < piece ? n - at : piece;
    at += k;
    unsigned rc;
    do {
      size_t made, r = max + 1 - out->len < room ? max + 1 - out->len : room;
      if (buf_reserve(out, r)) abort();
      rc = pmd_inflate_part(p, &in, &k, at == n, (uint8_t *)out->data + out->len, r, &made);
      if (made > r) abort();
      out->len += made;
      if (out->len > max) return FRAME_CLOSE_TOO_BIG;
    } while (rc == PMD_MORE);
    if (rc) return rc;
    if (k) abort(); /* a piece is taken whole */
  } while (at < n);
  return 0;
}

static void inflate_props(const uint8_t *data, size_t size, uint8_t knobs) {
  pmd_params prm = {15, (uint8_t)(8 + knobs % 8), 0, (uint8_t)((knobs >> 3) & 1)};
  pmd_config cfg;
  pmd_config_default(&cfg);
  size_t max = (size_t)1 << (knobs >> 4); /* 1 B .. 32 KiB */
  pmd *p = pmd_new(&prm, &cfg), *q = pmd_new(&prm, &cfg);
  if (!p || !q) abort();
  /* the input is split at the first 0xA5 0x5A marker into two messages */
  size_t cut = size;
  for (size_t i = 0; i + 1 < size; i++)
    if (data[i] == 0xA5 && data[i + 1] == 0x5A) {
      cut = i;
      break;
    }
  const uint8_t *msg[2] = {data, data + cut + 2};
  size_t len[2] = {cut, cut < size ? size - cut - 2 : 0};
  for (int m = 0; m < (cut < size ? 2 : 1); m++) {
    buf out = {0};
    buf_append(&out, "head", 4); /* inflate must append after what out already holds */
    unsigned rc = pmd_inflate(p, msg[m], len[m], max, &out);
    if (rc != 0 && rc != FRAME_CLOSE_INVALID_DATA && rc != FRAME_CLOSE_TOO_BIG) abort();
    if (out.len - 4 > max + 1) abort();
    if (rc == 0 && out.len - 4 > max) abort();
    if (out.cap > 4 + max + 65536 && out.cap > 256) abort();
    if (memcmp(out.data, "head", 4)) abort();
    buf split = {0};
    size_t piece = 1 + (size_t)(knobs * 7u + (unsigned)m) % 13, room = 1 + (knobs % 5) * 64u;
    unsigned rs = inflate_split(q, msg[m], len[m], piece, room, max, &split);
    /* below 15 bits zlib checks a distance against the window plus the
     * output of one call, so a stream that reaches past the agreed window
     * may pass whole and fail in pieces (or the other way), or fail before
     * the other side found it too big: then one side's 1007 may stand
     * against the other's 0 or 1009, and nothing else may differ */
    int strict = prm.inflate_bits == 15;
    int window_quirk = rs == FRAME_CLOSE_INVALID_DATA || rc == FRAME_CLOSE_INVALID_DATA;
    if (rs != rc && (strict || !window_quirk)) abort();
    if (!rc && !rs && (split.len != out.len - 4 || memcmp(split.data, out.data + 4, split.len)))
      abort();
    buf_free(&split);
    buf_free(&out);
    if (rc || rs) break; /* the next message would start from other states */
  }
  pmd_free(p);
  pmd_free(q);
}

/* deflate then inflate must give the input back, for any settings */
static void round_trip(const uint8_t *data, size_t size, uint8_t knobs) {
  uint8_t bits = (uint8_t)(9 + knobs % 7);
  pmd_params prm = {bits, bits, (uint8_t)((knobs >> 3) & 1), (uint8_t)((knobs >> 3) & 1)};
  pmd_config cfg;
  pmd_config_default(&cfg);
  cfg.level = (knobs >> 4) % 10;
  pmd *tx = pmd_new(&prm, &cfg), *rx = pmd_new(&prm, &cfg);
  /* two messages: the halves of the input (both non-empty, see test_pmd.c
   * for the empty-message case) */
  size_t half = size / 2;
  const uint8_t *msg[2] = {data, data + half};
  size_t len[2] = {half, size - half};
  for (int m = 0; m < 2; m++) {
    if (!len[m]) continue;
    buf z = {0}, out = {0};
    if (pmd_deflate(tx, msg[m], len[m], &z)) abort();
    if (z.len >= 4 && !memcmp(z.data + z.len - 4, "\0\0\xff\xff", 4)) abort();
    if (pmd_inflate(rx, (const uint8_t *)z.data, z.len, len[m], &out)) abort();
    if (out.len != len[m] || memcmp(out.data, msg[m], len[m])) abort();
    buf_free(&z);
    buf_free(&out);
  }
  pmd_free(tx);
  pmd_free(rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  switch (data[0] % 3) {
  case 0:
    negotiate(data + 2, size - 2, data[1]);
    break;
  case 1:
    inflate_props(data + 2, size - 2, data[1]);
    break;
  default:
    round_trip(data + 2, size - 2, data[1]);
    break;
  }
  return 0;
}
