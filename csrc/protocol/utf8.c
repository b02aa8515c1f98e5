/* A DFA in the style of Bjoern Hoehrmann's decoder, reduced to validation.
 * Each byte maps to a class; the state after a byte depends only on the
 * state before it and that class, so rejection happens at the first byte that
 * no valid sequence can contain. */
#include <string.h>

#include "protocol/utf8.h"

/* Byte classes: 0 ASCII, 1 80..8F, 2 90..9F, 3 A0..BF (continuations split
 * where the second byte of E0, ED, F0, F4 is restricted), 4 never valid
 * (C0, C1, F5..FF), 5 C2..DF, 6 E0, 7 E1..EC EE..EF, 8 ED, 9 F0, 10 F1..F3,
 * 11 F4. */
static const uint8_t cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  1,  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  2,  2,  2,  2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  3,  3,  3,  3, 3, 3, 3, 3, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5,  5,  5,  5,  5, 5, 5, 5, 5, 5, 5, 5, 6, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 8, 7, 7, 9, 10, 10, 10, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};

/* States: 0 accept, 1 reject, 2 one continuation to go, 3 two to go, 4 after
 * E0 (A0..BF next), 5 after ED (80..9F next: no surrogates), 6 three to go,
 * 7 after F0 (90..BF next: no overlongs), 8 after F4 (80..8F: <= U+10FFFF). */
static const uint8_t next[9][12] = {
    {0, 1, 1, 1, 1, 2, 4, 3, 5, 7, 6, 8}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    {1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}};

utf8_state utf8_feed(utf8_state s, const uint8_t *p, size_t n) {
  if (s > 8) return UTF8_REJECT;
  for (;;) {
    if (s == UTF8_ACCEPT) { /* text is mostly ASCII: skip it a word at a time */
      while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w & 0x8080808080808080u) break;
        p += 8, n -= 8;
      }
    }
    if (n == 0) return s;
    s = next[s][cls[*p++]];
    n--;
    if (s == UTF8_REJECT) return s;
  }
}

int utf8_valid(const uint8_t *p, size_t n) { return utf8_feed(UTF8_ACCEPT, p, n) == UTF8_ACCEPT; }
