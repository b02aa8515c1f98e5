#include "transport/outq.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/frame.h"

enum {
  /* libuv buffer lengths are unsigned ints: a longer segment goes as
   * several buffers */
  CHUNK = 1 << 30,
  RING_FIRST = 8,
  RING_MAX = 1 << 30 /* segments: far beyond what the send limits let queue */
};

outq_block *outq_block_new(size_t len) {
  if (len > SIZE_MAX - sizeof(outq_block)) return NULL;
  outq_block *b = malloc(sizeof *b + len);
  if (!b) return NULL;
  b->refs = 1;
  b->own = 0;
  b->cap = len;
  b->len = 0;
  return b;
}

void outq_block_unref(loop *l, outq_block *b) {
  if (--b->refs) return;
  if (b->own)
    loop_release(l, b, sizeof *b + b->cap);
  else
    free(b);
}

/* An own block with room for at least n bytes. A small one is a spare of
 * LOOP_SPARE_MIN bytes in all, header included: the size the inbox asks
 * for too, so that the loop's spares serve both with an exact fit. */
static outq_block *own_block(loop *l, size_t n) {
  size_t want = n < LOOP_SPARE_MIN - sizeof(outq_block) ? LOOP_SPARE_MIN - sizeof(outq_block) : n,
         cap;
  if (want > SIZE_MAX - sizeof(outq_block)) return NULL;
  outq_block *b = loop_alloc(l, sizeof *b + want, &cap);
  if (!b) return NULL;
  b->refs = 0;
  b->own = 1;
  b->cap = cap - sizeof *b;
  b->len = 0;
  return b;
}

static outq_seg *seg_at(const outq *q, size_t i) { return &q->ring[(q->head + i) & (q->cap - 1)]; }

/* The ring starts as the segment inside the queue: a queue of one segment
 * (the usual case) allocates nothing for it. */
static outq_seg *inline_seg(outq *q) { return &q->ring_one; }

static int ring_grow(outq *q) {
  if (q->cap == 0) {
    q->ring = inline_seg(q);
    q->cap = 1;
    q->head = 0;
    return 0;
  }
  if (q->cap >= RING_MAX) return -1;
  uint32_t cap = q->cap == 1 ? RING_FIRST : q->cap * 2;
  outq_seg *r = malloc(cap * sizeof *r);
  if (!r) return -1;
  for (size_t i = 0; i < q->n; i++) r[i] = *seg_at(q, i);
  if (q->ring != inline_seg(q)) free(q->ring);
  q->ring = r;
  q->cap = cap;
  q->head = 0;
  return 0;
}

/* Opens a slot at position i (shifting the later segments back). */
static outq_seg *insert_at(outq *q, size_t i) {
  if (q->n == q->cap && ring_grow(q)) return NULL;
  for (size_t k = q->n; k > i; k--) *seg_at(q, k) = *seg_at(q, k - 1);
  q->n++;
  return seg_at(q, i);
}

/* Copies the frame into b at its end. */
static void put(outq_block *b, const uint8_t *a, size_t an, const uint8_t *p, size_t pn,
                const uint8_t *mask) {
  uint8_t *dst = b->data + b->len;
  if (an) memcpy(dst, a, an);
  if (mask)
    frame_mask_copy(dst + an, p, pn, mask, 0);
  else if (pn)
    memcpy(dst + an, p, pn);
  b->len += an + pn;
}

/* The block to copy n bytes into: the last segment's when it is ours and has
 * room, else a new one. */
static outq_block *block_for(outq *q, loop *l, size_t n) {
  if (q->n) {
    outq_block *b = seg_at(q, q->n - 1)->b;
    if (b->own && b->cap - b->len >= n) return b;
  }
  return own_block(l, n);
}

static int add(outq *q, loop *l, size_t at, const uint8_t *a, size_t an, const uint8_t *p,
               size_t pn, const uint8_t *mask) {
  size_t n = an + pn;
  if (n < an) return -1;
  if (n == 0) return 0;
  outq_block *b = block_for(q, l, n);
  if (!b) return -1;
  outq_seg *last = q->n ? seg_at(q, q->n - 1) : NULL;
  /* the frame extends the last segment when it follows it in its block */
  if (at == q->n && last && last->b == b && last->off + last->len == b->len &&
      q->n > q->sealed + q->ctrl) {
    put(b, a, an, p, pn, mask);
    last->len += n;
    q->bytes += n;
    return 0;
  }
  outq_seg *s = insert_at(q, at);
  if (!s) {
    if (b->refs == 0) loop_release(l, b, sizeof *b + b->cap);
    return -1;
  }
  *s = (outq_seg){b, b->len, n};
  b->refs++;
  put(b, a, an, p, pn, mask);
  q->bytes += n;
  return 0;
}

int outq_append(outq *q, loop *l, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                const uint8_t *mask) {
  return add(q, l, q->n, a, an, b, bn, mask);
}

int outq_control(outq *q, loop *l, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                 const uint8_t *mask) {
  uint32_t at = q->sealed + q->ctrl;
  if (add(q, l, at, a, an, b, bn, mask)) return -1;
  q->ctrl++; /* always a segment of its own (see add) */
  return 0;
}

int outq_share(outq *q, loop *l, outq_block *b) {
  (void)l;
  if (b->len == 0) return 0;
  outq_seg *s = insert_at(q, q->n);
  if (!s) return -1;
  *s = (outq_seg){b, 0, b->len};
  outq_block_ref(b);
  q->bytes += b->len;
  return 0;
}

static unsigned chunks(size_t len) { return (unsigned)((len + CHUNK - 1) / CHUNK); }

unsigned outq_iov(const outq *q, uv_buf_t *v, unsigned max, size_t limit, size_t *bytes) {
  unsigned k = 0;
  size_t total = 0;
  for (size_t i = 0; i < q->n && k < max && total < limit; i++) {
    const outq_seg *s = seg_at(q, i);
    for (size_t off = 0; off < s->len && k < max && total < limit;) {
      size_t len = s->len - off < CHUNK ? s->len - off : CHUNK;
      if (len > limit - total) len = limit - total;
      v[k++] = uv_buf_init((char *)s->b->data + s->off + off, (unsigned)len);
      off += len;
      total += len;
    }
  }
  *bytes = total;
  return k;
}

size_t outq_seal(outq *q, size_t want, unsigned max) {
  size_t bytes = 0, i = q->sealed;
  unsigned bufs = 0;
  while (i < q->n && bytes < want) {
    const outq_seg *s = seg_at(q, i);
    if (i > q->sealed && bufs + chunks(s->len) > max) break;
    bufs += chunks(s->len);
    bytes += s->len;
    i++;
  }
  uint32_t k = (uint32_t)(i - q->sealed);
  q->ctrl = q->ctrl > k ? q->ctrl - k : 0;
  q->sealed = (uint32_t)i;
  return bytes;
}

static void release_ring(outq *q) {
  if (q->ring != inline_seg(q)) free(q->ring);
  q->ring = NULL;
  q->cap = q->head = q->n = q->sealed = q->ctrl = 0;
}

static void pop_front(outq *q, loop *l) {
  outq_block_unref(l, seg_at(q, 0)->b);
  q->head = (q->head + 1) & (q->cap - 1);
  q->n--;
  if (q->sealed)
    q->sealed--;
  else if (q->ctrl)
    q->ctrl--;
  if (q->n == 0) release_ring(q);
}

void outq_consume(outq *q, loop *l, size_t n) {
  while (n && q->n) {
    outq_seg *s = seg_at(q, 0);
    size_t k = n < s->len ? n : s->len;
    s->off += k, s->len -= k;
    q->bytes -= k, n -= k;
    if (s->len == 0) pop_front(q, l);
  }
}

void outq_drop_last_control(outq *q, loop *l) {
  if (!q->ctrl) return;
  uint32_t at = q->sealed + q->ctrl - 1;
  outq_seg *s = seg_at(q, at);
  outq_block *b = s->b;
  if (s->off + s->len == b->len) b->len = s->off; /* its bytes may be used again */
  q->bytes -= s->len;
  outq_block_unref(l, b);
  for (uint32_t i = at; i + 1 < q->n; i++) *seg_at(q, i) = *seg_at(q, i + 1);
  q->n--;
  q->ctrl--;
  if (q->n == 0) release_ring(q);
}

void outq_drop_unsealed(outq *q, loop *l) {
  while (q->n > q->sealed) {
    outq_seg *s = seg_at(q, q->n - 1);
    q->bytes -= s->len;
    outq_block_unref(l, s->b);
    q->n--;
  }
  q->ctrl = 0;
  if (q->n == 0) release_ring(q);
}

void outq_free(outq *q, loop *l) {
  q->sealed = 0;
  outq_drop_unsealed(q, l);
}
