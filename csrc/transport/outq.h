/* A connection's write queue: segments of bytes in the order they go out,
 * each a span of a block. A block is the connection's own (what it sends
 * itself, copied in, several frames to a block) or a frame shared by many
 * queues (a publish: framed once, referenced by every subscriber's queue,
 * never copied). Blocks are reference-counted; a segment holds one
 * reference.
 *
 * Every segment boundary is a frame boundary, so a control frame (a ping or
 * pong) can go ahead of the data that is not in flight yet; the segments at
 * the front that a write in flight covers are "sealed" and stay put until
 * it completes. An empty queue holds no memory. */
#ifndef DUPLEX_OUTQ_H
#define DUPLEX_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "transport/loop.h"

#pragma GCC visibility push(hidden)

typedef struct outq_block {
  unsigned refs;
  unsigned own; /* from the loop's spares (see loop_alloc), else malloc'd */
  size_t cap;   /* bytes of data */
  size_t len;   /* bytes of data in use */
  uint8_t data[];
} outq_block;

/* A shared block of len bytes to fill, holding one reference; NULL when out
 * of memory. */
outq_block *outq_block_new(size_t len);
static inline void outq_block_ref(outq_block *b) { b->refs++; }
void outq_block_unref(loop *l, outq_block *b);

typedef struct outq_seg {
  outq_block *b;
  size_t off, len;
} outq_seg;

/* Zeroed, it is an empty queue. It must not move once used (its first
 * segment lives inside it). */
typedef struct outq {
  outq_seg ring_one; /* the ring while it holds one segment */
  outq_seg *ring;    /* segments [head, head + n) modulo cap (a power of 2) */
  size_t bytes;      /* in all segments */
  uint32_t cap, head, n;
  uint32_t sealed; /* segments at the front covered by the write in flight */
  uint32_t ctrl;   /* control frames right behind them */
} outq;

/* Appends a frame: a[0..an) then b[0..bn), b XOR-masked with mask when not
 * NULL. 0, or -1 when out of memory. */
int outq_append(outq *q, loop *l, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                const uint8_t *mask);

/* The same for a control frame, queued behind the sealed segments and the
 * control frames already waiting, ahead of all other data. */
int outq_control(outq *q, loop *l, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                 const uint8_t *mask);

/* Appends a shared frame (taking a reference of its own). 0 or -1. */
int outq_share(outq *q, loop *l, outq_block *b);

/* Fills v with at most max buffers covering the front of the queue, at
 * most limit bytes of it, and returns how many; *bytes tells how much they
 * cover. */
unsigned outq_iov(const outq *q, uv_buf_t *v, unsigned max, size_t limit, size_t *bytes);

/* Seals the unsealed segments at the front until they cover at least want
 * bytes, or all of them, or max buffers of outq_iov (at least one
 * segment); returns the bytes sealed. */
size_t outq_seal(outq *q, size_t want, unsigned max);

/* Drops n bytes from the front (what the kernel took). */
void outq_consume(outq *q, loop *l, size_t n);

/* Drops the last of the control frames waiting behind the sealed segments
 * (its bytes are used again when they end its block). */
void outq_drop_last_control(outq *q, loop *l);

/* Drops every unsealed segment (a connection that fails). */
void outq_drop_unsealed(outq *q, loop *l);

void outq_free(outq *q, loop *l);

#pragma GCC visibility pop

#endif
