/* Random bytes into the receiver, as a server and as a client. The input is
 * fed whole and then in three pieces cut where the fuzzer says: both feeds
 * must give the same events and the same result. With an inflater, RSV1
 * messages are inflated as they arrive: no message passes max_message and
 * every text is valid UTF-8, compressed or not. */
#include <stdlib.h>
#include <string.h>

#include "protocol/pmd.h"
#include "protocol/proto.h"

typedef struct digest {
  uint64_t h;
  size_t events;
  const proto *p;
} digest;

static void mix(digest *d, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) d->h = (d->h ^ b[i]) * 0x100000001B3u;
}

static void event(void *ud, unsigned kind, unsigned op, const uint8_t *p, size_t n) {
  digest *d = ud;
  if (!p) abort();
  d->events++;
  mix(d, &kind, sizeof kind), mix(d, &op, sizeof op), mix(d, &n, sizeof n), mix(d, p, n);
}
static void on_message(void *ud, int op, const uint8_t *p, size_t n) {
  if (op != FRAME_TEXT && op != FRAME_BINARY) abort();
  /* compressed text (RSV1) is unchecked only when nothing inflates it */
  const digest *d = ud;
  int checked = !(d->p->msg_rsv & FRAME_RSV1) || d->p->inflater;
  if (op == FRAME_TEXT && checked && !utf8_valid(p, n)) abort();
  if (n > d->p->max_message) abort();
  if ((d->p->msg_rsv & ~d->p->rsv_allowed) != 0) abort();
  event(ud, 1, (unsigned)op, p, n);
}
static void on_ping(void *ud, const uint8_t *p, size_t n) {
  if (n > 125) abort();
  event(ud, 2, 0, p, n);
}
static void on_pong(void *ud, const uint8_t *p, size_t n) {
  if (n > 125) abort();
  event(ud, 3, 0, p, n);
}
static void on_close(void *ud, unsigned code, const uint8_t *p, size_t n) {
  if (code != 1005 && !frame_close_code_ok(code)) abort();
  if (!utf8_valid(p, n)) abort();
  event(ud, 4, code, p, n);
}
static const proto_sink sink = {on_message, on_ping, on_pong, on_close};

/* flags: bits 0-2 the RSV bits allowed, bit 3 an inflater (bit 7: it resets
 * after every message), bits 4-7 the limit */
static unsigned feed(int server, unsigned flags, uint64_t max, const uint8_t *in, size_t n,
                     size_t cut1, size_t cut2, digest *d) {
  proto p;
  uint8_t *c = malloc(n ? n : 1);
  if (n) memcpy(c, in, n);
  proto_init(&p, server, max);
  p.rsv_allowed = flags & 7;
  pmd *rx = NULL;
  if (flags & 8) {
    /* 15 bits: below, a stream that reaches past the window may pass or
     * fail depending on the cuts (see pmd_inflate_part) */
    pmd_params prm = {15, 15, 0, (uint8_t)(flags >> 7)};
    pmd_config cfg;
    pmd_config_default(&cfg);
    if (!(rx = pmd_new(&prm, &cfg))) abort();
    p.inflater = rx;
  }
  d->p = &p;
  unsigned r = proto_feed(&p, c, cut1, &sink, d);
  unsigned r2 = proto_feed(&p, c + cut1, cut2 - cut1, &sink, d);
  unsigned r3 = proto_feed(&p, c + cut2, n - cut2, &sink, d);
  /* an error is sticky; once closed, the result stays 0 */
  if ((r && (r2 != r || r3 != r)) || (r2 && r3 != r2)) abort();
  if (r3 && r3 != 1002 && r3 != 1007 && r3 != 1009 && r3 != 1011) abort();
  if (r3 && (!p.error || p.error_code != r3)) abort();
  if (!p.msg_opcode && p.msg) abort(); /* no buffer held between messages */
  if (p.msg_len > p.msg_cap || p.msg_len > max) abort();
  proto_free(&p);
  pmd_free(rx);
  free(c);
  return r3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  static const uint64_t maxes[] = {0, 1, 125, 126, 1000, 65536, (uint64_t)1 << 40};
  unsigned flags = data[0];
  size_t n = size - 3, cut1 = n ? data[1] % (n + 1) : 0, cut2 = n ? data[2] % (n + 1) : 0;
  const uint8_t *in = data + 3;
  uint64_t max = maxes[(flags >> 4) % 7];
  if (cut2 < cut1) {
    size_t t = cut1;
    cut1 = cut2, cut2 = t;
  }
  for (int server = 0; server < 2; server++) {
    digest whole = {0xCBF29CE484222325u, 0, NULL}, split = whole;
    unsigned a = feed(server, flags, max, in, n, n, n, &whole);
    unsigned b = feed(server, flags, max, in, n, cut1, cut2, &split);
    if (a != b || whole.h != split.h || whole.events != split.events) abort();
  }
  return 0;
}
