/* Differential: utf8_valid against a plain decoder, and utf8_feed split at
 * every position (and byte by byte) against utf8_valid. */
#include <stdlib.h>

#include "protocol/utf8.h"

/* The plain decoder: decode each character, then judge its value. */
static int ref_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len;
    uint8_t b = s[i];
    if (b < 0x80)
      len = 1, cp = b;
    else if (b >= 0xC2 && b <= 0xDF)
      len = 2, cp = b & 0x1Fu;
    else if (b >= 0xE0 && b <= 0xEF)
      len = 3, cp = b & 0x0Fu;
    else if (b >= 0xF0 && b <= 0xF4)
      len = 4, cp = b & 0x07u;
    else
      return 0;
    if (n - i < len) return 0;
    for (size_t j = 1; j < len; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += len;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int valid = utf8_valid(data, size);
  if (valid != ref_valid(data, size)) abort();
  for (size_t cut = 0; cut <= size; cut++) {
    utf8_state s = utf8_feed(UTF8_ACCEPT, data, cut);
    s = utf8_feed(s, data + cut, size - cut);
    if ((s == UTF8_ACCEPT) != valid) abort();
  }
  /* byte by byte: once rejected, every longer prefix is invalid too */
  utf8_state s = UTF8_ACCEPT;
  for (size_t i = 0; i < size; i++) {
    utf8_state t = utf8_feed(s, data + i, 1);
    if (s == UTF8_REJECT && t != UTF8_REJECT) abort();
    if ((t == UTF8_ACCEPT) != ref_valid(data, i + 1)) abort();
    s = t;
  }
  if ((s == UTF8_ACCEPT) != valid) abort();
  return 0;
}
