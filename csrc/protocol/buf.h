/* A growable byte buffer. Owned by whoever embeds it; buf_free releases it. */
#ifndef DUPLEX_BUF_H
#define DUPLEX_BUF_H

#include <stdlib.h>
#include <string.h>

typedef struct buf {
  char *data;
  size_t len, cap;
} buf;

/* Makes room for n more bytes; 0 on success, -1 when out of memory. */
static inline int buf_reserve(buf *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  if (n > (size_t)-1 / 2 - b->len) return -1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < n) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

static inline int buf_append(buf *b, const void *p, size_t n) {
  if (buf_reserve(b, n)) return -1;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static inline int buf_appends(buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

static inline void buf_free(buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

#endif
