/* A connection's received messages, waiting for the handler. One buffer per
 * connection holds them back to back and is reused across messages, so a
 * steady stream costs no allocation: it comes from the loop's spares when
 * the first message arrives and goes back to them once the handler has
 * taken the last one, so an idle connection holds none. A large message
 * that was reassembled elsewhere is adopted as its block, not copied. */
#ifndef DUPLEX_INBOX_H
#define DUPLEX_INBOX_H

#include <stddef.h>
#include <stdint.h>

#include "transport/loop.h"

#pragma GCC visibility push(hidden)

typedef struct inbox_msg {
  const uint8_t *data; /* valid until inbox_pop */
  size_t len;
  int opcode;
} inbox_msg;

typedef struct inbox {
  char *data;
  size_t cap, len, pos; /* records live in data[pos..len) */
  size_t bytes;         /* memory the waiting messages hold (see inbox_push_*) */
  inbox_msg front;      /* what inbox_peek handed out */
} inbox;

/* Appends a copy of data. 0, or -1 when out of memory. */
int inbox_push_copy(inbox *q, loop *l, int opcode, const uint8_t *data, size_t len);

/* Appends a message lying in block (cap bytes, from malloc or loop_alloc),
 * taking it over. 0, or -1 when out of memory (the block is freed). */
int inbox_push_block(inbox *q, loop *l, int opcode, void *block, size_t cap, size_t len);

/* The oldest message, or NULL when none waits. */
const inbox_msg *inbox_peek(inbox *q);

/* Drops the oldest message. */
void inbox_pop(inbox *q, loop *l);

static inline int inbox_empty(const inbox *q) { return q->pos == q->len; }

void inbox_free(inbox *q, loop *l);

#pragma GCC visibility pop

#endif
