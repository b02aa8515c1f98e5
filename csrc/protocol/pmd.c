#include "protocol/pmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "protocol/frame.h"
#include "protocol/lex.h"

void pmd_config_default(pmd_config *c) {
  c->enabled = 0;
  c->level = 6;
  c->window_bits =
      12; /* 4 KiB windows: most of the gain on chat and JSON at a fraction of 32 KiB */
  c->mem_level = 5;
  c->context_takeover = 1;
  c->threshold = 32;
}

/* One permessage-deflate offer or response, as parsed. */
typedef struct params {
  int snct, cnct; /* *_no_context_takeover present */
  int smwb;       /* server_max_window_bits: -1 absent, else 8..15 */
  int cmwb;       /* client_max_window_bits: -1 absent, 0 without value, else 8..15 */
  int valid;
} params;

/* A parameter's value: a token or a quoted string (no escapes: none of ours
 * need them), the whole of v[0..n). */
static int value(const char *v, size_t n, const char **s, size_t *len) {
  if (n && v[0] == '"') {
    *s = v + 1;
    *len = lex_token(v + 1, n - 1);
    return *len + 2 == n && v[n - 1] == '"' ? 0 : -1;
  }
  *s = v;
  *len = n;
  return n && lex_token(v, n) == n ? 0 : -1;
}

static int bits(const char *v, size_t n) {
  if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
  return -1;
}

/* One "name [= value]" parameter s[0..n) into p; -1 on a syntax error. */
static int param(const char *s, size_t n, params *p) {
  const char *pv = NULL, *rest;
  size_t pnlen = lex_token(s, n), pvlen = 0, rlen;
  if (!pnlen) return -1;
  rest = s + pnlen, rlen = n - pnlen;
  lex_trim(&rest, &rlen);
  if (rlen) {
    if (rest[0] != '=') return -1;
    rest++, rlen--;
    lex_trim(&rest, &rlen);
    if (value(rest, rlen, &pv, &pvlen)) return -1;
  }
  if (lex_is(s, pnlen, "server_no_context_takeover")) {
    if (p->snct || pv) p->valid = 0;
    p->snct = 1;
  } else if (lex_is(s, pnlen, "client_no_context_takeover")) {
    if (p->cnct || pv) p->valid = 0;
    p->cnct = 1;
  } else if (lex_is(s, pnlen, "server_max_window_bits")) {
    if (p->smwb != -1 || !pv || bits(pv, pvlen) < 0) p->valid = 0;
    p->smwb = pv ? bits(pv, pvlen) : 0;
  } else if (lex_is(s, pnlen, "client_max_window_bits")) {
    if (p->cmwb != -1 || (pv && bits(pv, pvlen) < 0)) p->valid = 0;
    p->cmwb = pv ? bits(pv, pvlen) : 0;
  } else {
    p->valid = 0; /* an unknown parameter makes the offer unacceptable */
  }
  return 0;
}

/* One extension "name *(; param)" s[0..n) (not empty); -1 on a syntax error. */
static int extension(const char *s, size_t n, int *is_pmd, params *p) {
  const char *e;
  size_t k;
  lex_list l;
  lex_list_init(&l, s, n, ';');
  lex_list_next(&l, &e, &k);
  if (!k || lex_token(e, k) != k) return -1;
  *is_pmd = lex_is(e, k, "permessage-deflate");
  *p = (params){0, 0, -1, -1, 1};
  while (lex_list_next(&l, &e, &k))
    if (param(e, k, p)) return -1;
  return 0;
}

/* Calls fn for each extension in every Sec-WebSocket-Extensions header.
 * Returns -1 on a syntax error, else the number of extensions seen. */
static int each_extension(const hs_head *h, int (*fn)(void *, int is_pmd, const params *),
                          void *ud) {
  int count = 0;
  for (size_t i = 0; i < h->nheaders; i++) {
    const hs_header *f = &h->headers[i];
    if (!lex_is(f->name, f->name_len, "Sec-WebSocket-Extensions")) continue;
    const char *e;
    size_t k;
    lex_list l;
    lex_list_init(&l, f->value, f->value_len, ',');
    while (lex_list_next(&l, &e, &k)) {
      if (!k) continue; /* empty list elements are allowed */
      int pmd;
      params p;
      if (extension(e, k, &pmd, &p)) return -1;
      count++;
      if (fn(ud, pmd, &p)) return count;
    }
  }
  return count;
}

typedef struct accept_state {
  const pmd_config *cfg;
  pmd_params *out;
  char *resp;
  size_t resp_size;
  int done;
} accept_state;

static int accept_offer(void *ud, int is_pmd, const params *o) {
  accept_state *a = ud;
  if (!is_pmd || !o->valid) return 0;
  const pmd_config *cfg = a->cfg;
  int dbits = cfg->window_bits;
  if (o->smwb > 0 && o->smwb < dbits) dbits = o->smwb;
  if (dbits < 9) return 0; /* zlib cannot make raw streams with a 256-byte window */
  int ibits = 15;
  if (o->cmwb >= 0) {
    ibits = o->cmwb ? o->cmwb : 15;
    if (cfg->window_bits < ibits) ibits = cfg->window_bits;
  }
  int dreset = o->snct || !cfg->context_takeover, ireset = o->cnct || !cfg->context_takeover;
  int n = snprintf(a->resp, a->resp_size, "permessage-deflate%s%s",
                   dreset ? "; server_no_context_takeover" : "",
                   ireset ? "; client_no_context_takeover" : "");
  if (dbits < 15 || o->smwb > 0)
    n += snprintf(a->resp + n, a->resp_size - (size_t)n, "; server_max_window_bits=%d", dbits);
  if (o->cmwb >= 0 && ibits < 15)
    snprintf(a->resp + n, a->resp_size - (size_t)n, "; client_max_window_bits=%d", ibits);
  a->out->deflate_bits = (uint8_t)dbits;
  a->out->inflate_bits = (uint8_t)ibits;
  a->out->deflate_reset = (uint8_t)dreset;
  a->out->inflate_reset = (uint8_t)ireset;
  a->done = 1;
  return 1;
}

int pmd_accept(const hs_head *h, const pmd_config *cfg, pmd_params *out, char *resp,
               size_t resp_size) {
  accept_state a = {cfg, out, resp, resp_size, 0};
  if (!cfg->enabled || resp_size < 160) return 0;
  each_extension(h, accept_offer, &a);
  return a.done;
}

void pmd_offer(const pmd_config *cfg, char *out, size_t size) {
  int n = snprintf(out, size, "permessage-deflate; client_max_window_bits");
  if (cfg->window_bits < 15)
    n += snprintf(out + n, size - (size_t)n, "=%d; server_max_window_bits=%d", cfg->window_bits,
                  cfg->window_bits);
  if (!cfg->context_takeover)
    snprintf(out + n, size - (size_t)n, "; server_no_context_takeover; client_no_context_takeover");
}

typedef struct check_state {
  int pmd, other;
  params p;
} check_state;

static int note_response(void *ud, int is_pmd, const params *p) {
  check_state *s = ud;
  if (is_pmd) {
    s->pmd++;
    s->p = *p;
  } else {
    s->other++;
  }
  return 0;
}

int pmd_check(const hs_head *h, const pmd_config *cfg, pmd_params *out, const char **why) {
  check_state s;
  memset(&s, 0, sizeof s);
  int n = each_extension(h, note_response, &s);
  if (n < 0) return *why = "malformed Sec-WebSocket-Extensions", -1;
  if (n == 0) return 0;
  if (s.other || !cfg->enabled) return *why = "server chose an extension we did not offer", -1;
  if (s.pmd > 1) return *why = "server chose permessage-deflate twice", -1;
  const params *p = &s.p;
  int offered_bits = cfg->window_bits < 15;
  if (!p->valid || p->cmwb == 0) return *why = "invalid permessage-deflate parameters", -1;
  if (offered_bits && (p->smwb < 0 || p->smwb > cfg->window_bits))
    return *why = "server ignored our server_max_window_bits", -1;
  if (!cfg->context_takeover && !p->snct)
    return *why = "server ignored our server_no_context_takeover", -1;
  int dbits = cfg->window_bits;
  if (p->cmwb > 0 && p->cmwb < dbits) dbits = p->cmwb;
  if (dbits < 9) return *why = "server asked for an 8-bit window, which zlib cannot make", -1;
  out->deflate_bits = (uint8_t)dbits;
  out->inflate_bits = (uint8_t)(p->smwb > 0 ? p->smwb : 15);
  out->deflate_reset = (uint8_t)(p->cnct || !cfg->context_takeover);
  out->inflate_reset = (uint8_t)p->snct;
  return 1;
}

/* Compression */

struct pmd {
  pmd_params prm;
  int level, mem_level;
  size_t threshold;
  z_stream *def, *inf;
  uint8_t tail_fed; /* bytes of the message's 00 00 ff ff tail inflated so far */
  uint8_t ended;    /* a final block ended this message's stream */
};

pmd *pmd_new(const pmd_params *prm, const pmd_config *cfg) {
  pmd *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->prm = *prm;
  p->level = cfg->level;
  p->mem_level = cfg->mem_level;
  p->threshold = cfg->threshold;
  return p;
}

static void end_deflate(pmd *p) {
  if (!p->def) return;
  deflateEnd(p->def);
  free(p->def);
  p->def = NULL;
}

static void end_inflate(pmd *p) {
  if (!p->inf) return;
  inflateEnd(p->inf);
  free(p->inf);
  p->inf = NULL;
}

void pmd_free(pmd *p) {
  if (!p) return;
  end_deflate(p);
  end_inflate(p);
  free(p);
}

int pmd_wants(const pmd *p, size_t n) { return n >= p->threshold; }

int pmd_same_output(const pmd *a, const pmd *b) {
  return a->prm.deflate_reset && b->prm.deflate_reset &&
         a->prm.deflate_bits == b->prm.deflate_bits && a->level == b->level &&
         a->mem_level == b->mem_level && a->threshold == b->threshold;
}

int pmd_holds_state(const pmd *p) { return p->def != NULL || p->inf != NULL; }

int pmd_deflate(pmd *p, const uint8_t *data, size_t n, buf *out) {
  /* An empty message is one byte, the start of an empty stored block that the
   * receiver's 00 00 ff ff completes (RFC 7692 7.2.3.6). zlib would write
   * nothing after a previous sync flush, leaving the peer mid-block. */
  if (n == 0) return buf_append(out, "", 1);
  if (!p->def) {
    p->def = calloc(1, sizeof *p->def);
    if (!p->def) return -1;
    if (deflateInit2(p->def, p->level, Z_DEFLATED, -p->prm.deflate_bits, p->mem_level,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      free(p->def);
      p->def = NULL;
      return -1;
    }
  }
  z_stream *z = p->def;
  z->next_in = (Bytef *)data;
  int rc;
  do {
    size_t chunk = n / 4 + 64;
    if (chunk > 1u << 30) chunk = 1u << 30;
    if (buf_reserve(out, chunk)) return -1;
    size_t in = n > 1u << 30 ? 1u << 30 : n;
    z->avail_in = (uInt)in;
    z->next_out = (Bytef *)out->data + out->len;
    z->avail_out = (uInt)chunk;
    rc = deflate(z, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR) return -1;
    out->len += chunk - z->avail_out;
    n -= in - z->avail_in;
    data += in - z->avail_in;
    z->next_in = (Bytef *)data;
  } while (n || z->avail_out == 0);
  /* a sync flush ends with an empty stored block, 00 00 ff ff: RFC 7692 drops it */
  if (out->len >= 4 && memcmp(out->data + out->len - 4, "\0\0\xff\xff", 4) == 0) out->len -= 4;
  if (p->prm.deflate_reset) end_deflate(p);
  return 0;
}

static const uint8_t tail[4] = {0, 0, 0xff, 0xff};

static int open_inflate(pmd *p) {
  if (p->inf) return 0;
  p->inf = calloc(1, sizeof *p->inf);
  if (!p->inf) return -1;
  if (inflateInit2(p->inf, -p->prm.inflate_bits) != Z_OK) {
    free(p->inf);
    p->inf = NULL;
    return -1;
  }
  return 0;
}

/* The next message starts with no tail fed; afresh when the peer resets its
 * context, or after a failure (the stream is then in no known state). */
static void end_message(pmd *p, int failed) {
  p->tail_fed = 0;
  p->ended = 0;
  if (failed || p->prm.inflate_reset) end_inflate(p);
}

/* One inflate call on what comes next: the message's data, then (last) its
 * tail. *used gets the input bytes it took. */
static int inflate_once(pmd *p, const uint8_t **in, size_t *n, int last, size_t *used) {
  z_stream *z = p->inf;
  int from_tail = *n == 0 && last;
  const uint8_t *d = from_tail ? tail + p->tail_fed : *in;
  size_t left = from_tail ? sizeof tail - p->tail_fed : *n;
  size_t step = left > 1u << 30 ? 1u << 30 : left; /* zlib counts in 32 bits */
  z->next_in = (Bytef *)d;
  z->avail_in = (uInt)step;
  int rc = inflate(z, Z_SYNC_FLUSH);
  *used = step - z->avail_in;
  if (from_tail) {
    p->tail_fed = (uint8_t)(p->tail_fed + *used);
  } else {
    *in += *used;
    *n -= *used;
  }
  return rc;
}

unsigned pmd_inflate_part(pmd *p, const uint8_t **in, size_t *n, int last, uint8_t *out,
                          size_t room, size_t *made) {
  *made = 0;
  if (!p->ended && open_inflate(p)) return end_message(p, 1), FRAME_CLOSE_INTERNAL;
  if (p->ended) { /* a final block ended the stream: the rest of the message is moot */
    *in += *n;
    *n = 0;
  }
  while (!p->ended) {
    z_stream *z = p->inf;
    size_t space = room > 1u << 30 ? 1u << 30 : room, used;
    z->next_out = out + *made;
    z->avail_out = (uInt)space;
    int rc = inflate_once(p, in, n, last, &used);
    *made += space - z->avail_out;
    room -= space - z->avail_out;
    if (rc == Z_STREAM_END) { /* a final block: the next message starts afresh */
      inflateReset(z);
      p->ended = 1;
      *in += *n;
      *n = 0;
      break;
    }
    if (rc == Z_MEM_ERROR) return end_message(p, 1), FRAME_CLOSE_INTERNAL;
    if (rc != Z_OK && rc != Z_BUF_ERROR) return end_message(p, 1), FRAME_CLOSE_INVALID_DATA;
    if (room == 0) return PMD_MORE; /* output may be pending: call again with room */
    if (*n == 0 && (!last || p->tail_fed == sizeof tail)) break; /* all in, all out */
    /* zlib took nothing with input and room to spare: it never will */
    if (!used && z->avail_out == space) return end_message(p, 1), FRAME_CLOSE_INVALID_DATA;
  }
  if (last) end_message(p, 0);
  return 0;
}

unsigned pmd_inflate(pmd *p, const uint8_t *data, size_t n, size_t max, buf *out) {
  size_t start = out->len;
  /* guess the output from the input, then grow geometrically: a small
   * message must not cost a large buffer */
  size_t grow = n < 256 ? 1024 : n < (SIZE_MAX - 64) / 4 ? 4 * n + 64 : n;
  for (;;) {
    /* room for one byte past max, to see a bomb go past it */
    size_t room = max - (out->len - start);
    if (room < SIZE_MAX) room++;
    size_t chunk = room < grow ? room : grow;
    if (out->cap - out->len < chunk) {
      char *m = realloc(out->data, out->len + chunk);
      if (!m) return end_message(p, 1), FRAME_CLOSE_INTERNAL;
      out->data = m;
      out->cap = out->len + chunk;
    }
    size_t made;
    unsigned rc = pmd_inflate_part(p, &data, &n, 1, (uint8_t *)out->data + out->len, chunk, &made);
    out->len += made;
    if (out->len - start > max) return end_message(p, 1), FRAME_CLOSE_TOO_BIG;
    if (rc != PMD_MORE) return rc;
    if (grow < (SIZE_MAX >> 2)) grow *= 2;
  }
}
