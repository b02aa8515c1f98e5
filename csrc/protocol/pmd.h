/* permessage-deflate (RFC 7692): negotiation of its parameters and the
 * per-message compressor and decompressor (zlib, raw deflate, the trailing
 * 0x00 0x00 0xff 0xff removed on send and restored on receive). No I/O. */
#ifndef DUPLEX_PMD_H
#define DUPLEX_PMD_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"
#include "protocol/handshake.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

/* What one side wants. */
typedef struct pmd_config {
  int enabled;
  int level;            /* zlib level 0-9 */
  int window_bits;      /* 9-15: the largest LZ77 window we compress with or ask for */
  int mem_level;        /* zlib memLevel 1-9 */
  int context_takeover; /* 0: both directions reset after every message, so
                           no zlib state outlives a message */
  size_t threshold;     /* messages shorter than this go out uncompressed */
} pmd_config;

void pmd_config_default(pmd_config *c);

/* What was agreed, from one side's point of view. */
typedef struct pmd_params {
  uint8_t deflate_bits;  /* window we compress with (9-15) */
  uint8_t inflate_bits;  /* window the peer compresses with (8-15) */
  uint8_t deflate_reset; /* we reset our context after every message */
  uint8_t inflate_reset; /* the peer resets its context after every message */
} pmd_params;

/* Server: picks the first acceptable permessage-deflate offer of the
 * Sec-WebSocket-Extensions headers in h and writes the response's extension
 * value (NUL-terminated) into resp. 1 when accepted, 0 when no offer could be
 * accepted (the handshake goes on without compression). */
int pmd_accept(const hs_head *h, const pmd_config *cfg, pmd_params *out, char *resp,
               size_t resp_size);

/* Client: the offer for the Sec-WebSocket-Extensions request header. */
void pmd_offer(const pmd_config *cfg, char *out, size_t size);

/* Client: checks the server's answer to pmd_offer. 1 when the extension was
 * accepted (out filled), 0 when the server declined it, -1 with *why when the
 * answer is not one we can accept (the connection must fail). */
int pmd_check(const hs_head *h, const pmd_config *cfg, pmd_params *out, const char **why);

/* Per-connection compression state. The zlib streams exist only while
 * needed: with resets, only during one message. */
typedef struct pmd pmd;

pmd *pmd_new(const pmd_params *params, const pmd_config *cfg);
void pmd_free(pmd *p);

/* Compresses one whole message, appending the payload (without the tail)
 * to out. 0, or -1 when zlib fails or memory runs out. */
int pmd_deflate(pmd *p, const uint8_t *data, size_t n, buf *out);

/* Decompresses one whole message into out, from out->len on, reserving
 * nothing else. Returns 0, 1009 as soon as the output would pass max bytes
 * (a bomb costs at most max), 1007 for invalid deflate data, 1011 when
 * memory runs out. Built on pmd_inflate_part. */
unsigned pmd_inflate(pmd *p, const uint8_t *data, size_t n, size_t max, buf *out);

enum { PMD_MORE = 1 }; /* pmd_inflate_part filled out and may have more */

/* Decompresses a message as its frames arrive, a piece at a time, so the
 * compressed message is never held whole. Takes input from *in (advancing
 * *in and *n past what it used) and writes at most room bytes at out,
 * setting *made to how many. last says the message ends with this piece:
 * its 00 00 ff ff tail is inflated after it, and the context is reset after
 * it when negotiated. Returns PMD_MORE when out filled up (call again with
 * fresh room, the same last, and what is left of the input, even none),
 * 0 when all the input is in and all the output out (with last: the
 * message is complete), 1007 for invalid deflate data, 1011 when memory
 * runs out; after an error the zlib stream is gone and *made bytes before
 * the error are still in out. The caller bounds the output: it gives no
 * more room than the message may still take (plus one byte, to see a bomb
 * go past the limit), and stops calling once it fails the message.
 *
 * A valid message inflates the same however it is cut. One that refers
 * back past the window we agreed on (under 15 bits) may fail or pass
 * depending on the cuts: zlib checks a distance against the window plus the
 * output of the current call. */
unsigned pmd_inflate_part(pmd *p, const uint8_t **in, size_t *n, int last, uint8_t *out,
                          size_t room, size_t *made);

/* Whether a message of n bytes should be compressed. */
int pmd_wants(const pmd *p, size_t n);

/* 1 when a and b make the same frame of any message: both start every
 * message afresh and compress with the same window, level, memLevel and
 * threshold. A sender to many connections (publish) then compresses a
 * message once for all of them; with context takeover it cannot. */
int pmd_same_output(const pmd *a, const pmd *b);

/* 1 while zlib state is kept between messages (context takeover). */
int pmd_holds_state(const pmd *p);

#pragma GCC visibility pop

#endif
