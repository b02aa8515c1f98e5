/* The request and response parsers and checks on random heads; and the
 * builders fed random strings: whatever they accept must parse back to the
 * same values (no header injection). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/handshake.h"

static void parse_props(const char *s, size_t n, int response) {
  hs_head h;
  int (*parse)(const char *, size_t, hs_head *) = response ? hs_parse_response : hs_parse_request;
  int r = parse(s, n, &h);
  if (r < -2 || r > (int)n) abort();
  if (r > 0) {
    /* the head is complete exactly at r: a byte less needs more */
    if (parse(s, (size_t)r, &h) != r) abort();
    if (parse(s, (size_t)r - 1, &h) != 0) abort();
    if (h.nheaders > HS_MAX_HEADERS) abort();
    for (size_t i = 0; i < h.nheaders; i++) {
      const hs_header *f = &h.headers[i];
      if (f->name < s || f->name + f->name_len > s + r || f->value < s ||
          f->value + f->value_len > s + r || f->name_len == 0)
        abort();
      for (size_t k = 0; k < f->value_len; k++)
        if (f->value[k] == '\r' || f->value[k] == '\n' || f->value[k] == 0) abort();
    }
    if (!response) {
      const char *key, *why;
      static const char *ours[] = {"chat", "superchat", "v1.proto"};
      int c = hs_check_request(&h, &key, &why);
      if (c != 0 && c != 400 && c != 426 && c != -1) abort();
      if (c == 0 && (!key || key < s || key + HS_KEY_LEN > s + r)) abort();
      if (c != 0 && !why) abort();
      int sel = hs_select_protocol(&h, ours, 3);
      if (sel < -1 || sel > 2) abort();
      hs_has_token(&h, "Connection", "upgrade");
    } else {
      static const char *offered[] = {"chat", "superchat"};
      const char *proto, *why;
      size_t plen;
      int c = hs_check_response(&h, "dGhlIHNhbXBsZSBub25jZQ==", offered, 2, 0, &proto, &plen, &why);
      if (c != 0 && (c != -1 || !why)) abort();
      if (c == 0 && proto &&
          !((plen == 4 && !memcmp(proto, "chat", 4)) ||
            (plen == 9 && !memcmp(proto, "superchat", 9))))
        abort();
    }
  }
}

static int trimmed_equal(const char *v, size_t n, const char *want) {
  size_t a = 0, z = strlen(want);
  while (a < z && (want[a] == ' ' || want[a] == '\t')) a++;
  while (z > a && (want[z - 1] == ' ' || want[z - 1] == '\t')) z--;
  return n == z - a && memcmp(v, want + a, n) == 0;
}

/* Splits s at NUL bytes into up to 5 strings: target, host, protocols, name,
 * value; builds a request and a response with them. */
static void build_props(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  const char *part[5] = {"/", "h", "", "X", "y"};
  memcpy(s, data, size);
  s[size] = 0;
  char *p = s;
  for (int i = 0; i < 5 && p <= s + size; i++) {
    part[i] = p;
    p += strlen(p) + 1;
  }
  const char *names[] = {part[3]}, *values[] = {part[4]};
  static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
  buf b = {0};
  hs_head h;
  if (hs_build_request(&b, part[0], part[1], key, part[2], names, values, 1) == 0) {
    if (hs_parse_request(b.data, b.len, &h) != (int)b.len) abort();
    if (h.target_len != strlen(part[0]) || memcmp(h.target, part[0], h.target_len)) abort();
    /* the extra header is the last one, holding the value given */
    const hs_header *f = &h.headers[h.nheaders - 1];
    if (f->name_len != strlen(part[3]) || memcmp(f->name, part[3], f->name_len)) abort();
    if (!trimmed_equal(f->value, f->value_len, part[4])) abort();
  } else if (b.len) {
    abort(); /* a refused build appends nothing */
  }
  buf_free(&b);
  if (hs_build_response(&b, 200, names, values, 1, size) == 0) {
    if (hs_parse_response(b.data, b.len, &h) != (int)b.len || h.status != 200) abort();
  } else if (b.len) {
    abort();
  }
  buf_free(&b);
  if (hs_build_accept(&b, key, HS_KEY_LEN, part[2][0] ? part[2] : NULL, NULL) == 0) {
    static const char *offered[1];
    const char *proto, *why;
    size_t plen;
    offered[0] = part[2];
    if (hs_parse_response(b.data, b.len, &h) != (int)b.len) abort();
    if (hs_check_response(&h, key, offered, 1, 0, &proto, &plen, &why) != 0) abort();
  }
  buf_free(&b);
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const char *s = (const char *)data + 1;
  switch (data[0] % 3) {
  case 0:
    parse_props(s, size - 1, 0);
    break;
  case 1:
    parse_props(s, size - 1, 1);
    break;
  default:
    build_props(data + 1, size - 1);
    break;
  }
  return 0;
}
