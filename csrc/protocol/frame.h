/* RFC 6455 section 5 frame encoding, masking and close-code rules. No I/O,
 * no allocation. The streaming parser lives in proto.h. */
#ifndef DUPLEX_FRAME_H
#define DUPLEX_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

enum frame_opcode {
  FRAME_CONT = 0x0,
  FRAME_TEXT = 0x1,
  FRAME_BINARY = 0x2,
  FRAME_CLOSE = 0x8,
  FRAME_PING = 0x9,
  FRAME_PONG = 0xA
};

enum {
  FRAME_MAX_HEADER = 14, /* 2 + 8 (64-bit length) + 4 (mask) */
  FRAME_MAX_CONTROL = 125,
  FRAME_RSV1 = 0x4, /* rsv bits as in (byte0 >> 4) & 7 */
  FRAME_RSV2 = 0x2,
  FRAME_RSV3 = 0x1
};

/* Close codes that never appear on the wire (RFC 6455 7.4.1). */
enum {
  FRAME_CLOSE_NORMAL = 1000,
  FRAME_CLOSE_GOING_AWAY = 1001,
  FRAME_CLOSE_PROTOCOL = 1002,
  FRAME_CLOSE_UNSUPPORTED = 1003,
  FRAME_CLOSE_NO_STATUS = 1005, /* reported locally: close frame had no code */
  FRAME_CLOSE_ABNORMAL = 1006,  /* reported locally: no close frame at all */
  FRAME_CLOSE_INVALID_DATA = 1007,
  FRAME_CLOSE_POLICY = 1008,
  FRAME_CLOSE_TOO_BIG = 1009,
  FRAME_CLOSE_EXTENSION = 1010,
  FRAME_CLOSE_INTERNAL = 1011,
  FRAME_CLOSE_TRY_AGAIN = 1013,
  FRAME_CLOSE_TLS = 1015 /* reported locally only */
};

static inline int frame_is_control(int opcode) { return (opcode & 0x8) != 0; }

/* Writes a frame header into out (at least FRAME_MAX_HEADER bytes) using the
 * shortest length form, and returns its size. mask is NULL for an unmasked
 * frame (server to client), else the 4 masking-key bytes. rsv is 0..7. */
size_t frame_encode_header(uint8_t *out, int fin, int rsv, int opcode, uint64_t len,
                           const uint8_t *mask);

/* XORs data[0..n) with the masking key in place; pos is the offset of data[0]
 * within the frame payload (only pos % 4 matters), so a payload can be
 * unmasked in pieces. Works a machine word at a time. */
void frame_mask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t pos);

/* dst[i] = src[i] ^ mask[(pos + i) % 4]; dst and src must not overlap. */
void frame_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                     uint64_t pos);

/* 1 when a peer may send this code in a close frame: 1000-1003, 1007-1014,
 * 3000-4999. 1004-1006, 1015, 1016-2999 and everything else are refused. */
int frame_close_code_ok(unsigned code);

/* 1 when a local endpoint may send this code (same set as the peer). */
static inline int frame_close_code_sendable(unsigned code) { return frame_close_code_ok(code); }

#pragma GCC visibility pop

#endif
