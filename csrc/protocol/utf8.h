/* Incremental UTF-8 validation (RFC 3629) for text messages that arrive in
 * pieces. Overlong forms, surrogates (U+D800..U+DFFF) and code points above
 * U+10FFFF are invalid. The state is a small integer carried between calls,
 * so a message split at any byte validates exactly like the whole. */
#ifndef DUPLEX_UTF8_H
#define DUPLEX_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

enum {
  UTF8_ACCEPT = 0, /* at a character boundary: a complete message may end here */
  UTF8_REJECT = 1  /* sticky: some byte fed so far can never be valid */
};

typedef uint32_t utf8_state;

/* Feeds n bytes and returns the new state. Reaches UTF8_REJECT at the first
 * byte that cannot continue any valid sequence (fail fast: 0xF4 0x90 rejects
 * at 0x90, not at the end). Once rejected, stays rejected. */
utf8_state utf8_feed(utf8_state s, const uint8_t *p, size_t n);

/* Whole-buffer check: 1 when p[0..n) is complete, valid UTF-8. */
int utf8_valid(const uint8_t *p, size_t n);

#pragma GCC visibility pop

#endif
