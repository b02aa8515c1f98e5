/* The request and response parsers and checks on random heads; the
 * incremental parser fed the same head in pieces (as the server and the
 * client read it, into a growing buffer) must give what the whole head gives;
 * and the builders fed random strings: whatever they accept must parse back
 * to the same values (no header injection). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/handshake.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

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

/* p and q at the same offset into their buffers (or both NULL) */
static int same_at(const char *p, const char *a, const char *q, const char *b) {
  return p && q ? p - a == q - b : p == q;
}

/* Heads parsed from two copies of the same bytes hold the same fields at the
 * same offsets. */
static int same_head(const hs_head *x, const char *a, const hs_head *y, const char *b) {
  if (x->status != y->status || x->minor_version != y->minor_version ||
      x->nheaders != y->nheaders || x->method_len != y->method_len ||
      x->target_len != y->target_len || x->reason_len != y->reason_len ||
      !same_at(x->method, a, y->method, b) || !same_at(x->target, a, y->target, b) ||
      !same_at(x->reason, a, y->reason, b))
    return 0;
  for (size_t i = 0; i < x->nheaders; i++) {
    const hs_header *f = &x->headers[i], *g = &y->headers[i];
    if (f->name_len != g->name_len || f->value_len != g->value_len ||
        !same_at(f->name, a, g->name, b) || !same_at(f->value, a, g->value, b) ||
        memcmp(f->name, g->name, f->name_len) || memcmp(f->value, g->value, f->value_len))
      return 0;
  }
  return 1;
}

/* The next piece's length, from a small generator seeded by the input's
 * first byte: pieces of 1 byte up to 128 bytes. */
static size_t piece(uint32_t *x, unsigned seed) {
  *x ^= *x << 13, *x ^= *x >> 17, *x ^= *x << 5;
  return 1 + *x % (1u << (seed % 8));
}

/* Appends like the server's read_head, keeping the spare room past the
 * bytes fed poisoned so that the parser cannot read what it was not given. */
static void append(buf *b, const char *s, size_t n) {
  if (b->data) ASAN_UNPOISON_MEMORY_REGION(b->data + b->len, b->cap - b->len);
  if (buf_append(b, s, n)) abort();
  ASAN_POISON_MEMORY_REGION(b->data + b->len, b->cap - b->len);
}

/* s fed in pieces chosen by seed, each time with the whole buffer so far,
 * stopping at the first final result as the transport does: the same result
 * (and head) as parsing the bytes fed, or all of s, at once; a final result
 * given again; work linear in the bytes fed. */
static void split_props(const char *s, size_t n, int response, unsigned seed) {
  int (*parse)(const char *, size_t, hs_head *) = response ? hs_parse_response : hs_parse_request;
  hs_parser p;
  hs_head h, w;
  buf b = {0};
  uint32_t x = 2654435761u * (seed + 1);
  int r = 0;
  hs_parser_init(&p, response);
  for (size_t off = 0; off < n && r == 0;) {
    size_t k = piece(&x, seed);
    if (k > n - off) k = n - off;
    append(&b, s + off, k);
    off += k;
    r = hs_parser_feed(&p, b.data, b.len, &h);
    if (p.examined > 4 * b.len + 16) abort();
  }
  /* h is only filled for a complete head */
  if (r != parse(s, n, &w) || (r > 0 && !same_head(&h, b.data, &w, s))) abort();
  if (b.len && (parse(b.data, b.len, &w) != r || (r > 0 && !same_head(&h, b.data, &w, b.data))))
    abort();
  if (r != 0 && hs_parser_feed(&p, b.data, b.len, &w) != r) abort();
  if (r > 0 && !same_head(&h, b.data, &w, b.data)) abort();
  if (b.data) ASAN_UNPOISON_MEMORY_REGION(b.data, b.cap);
  buf_free(&b);
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
  case 1:
    parse_props(s, size - 1, data[0] % 3);
    split_props(s, size - 1, data[0] % 3, data[0] / 3u);
    break;
  default:
    build_props(data + 1, size - 1);
    break;
  }
  return 0;
}
