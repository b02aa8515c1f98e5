#include <string.h>

#include "protocol/frame.h"

size_t frame_encode_header(uint8_t *out, int fin, int rsv, int opcode, uint64_t len,
                           const uint8_t *mask) {
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0xF));
  if (len <= 125) {
    out[1] = (uint8_t)len;
  } else if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* The key as a 64-bit word in memory order, starting at payload offset pos,
 * so that XOR with a word loaded from data at that offset unmasks it. */
static uint64_t key_word(const uint8_t mask[4], uint64_t pos) {
  uint8_t k[12]; /* the key three times: any 8 bytes from offset 0..3 */
  uint64_t w;
  memcpy(k, mask, 4), memcpy(k + 4, mask, 4), memcpy(k + 8, mask, 4);
  memcpy(&w, k + (pos & 3), 8);
  return w;
}

/* Both maskers: dst is src itself (in place) or does not overlap it. Each
 * word is loaded before it is stored, so in place is safe; inlined into both,
 * it compiles (gcc 12 -O2) to the same code the two loops of their own did. */
static inline void mask_to(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                           uint64_t pos) {
  uint64_t k = key_word(mask, pos), a, b;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    memcpy(&a, src + i, 8), memcpy(&b, src + i + 8, 8);
    a ^= k, b ^= k;
    memcpy(dst + i, &a, 8), memcpy(dst + i + 8, &b, 8);
  }
  if (i + 8 <= n) {
    memcpy(&a, src + i, 8);
    a ^= k;
    memcpy(dst + i, &a, 8);
    i += 8;
  }
  for (; i < n; i++) dst[i] = src[i] ^ mask[(pos + i) & 3];
}

void frame_mask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t pos) {
  mask_to(data, data, n, mask, pos);
}

void frame_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                     uint64_t pos) {
  mask_to(dst, src, n, mask, pos);
}

int frame_close_code_ok(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}
