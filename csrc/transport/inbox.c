#include "transport/inbox.h"

#include <string.h>

/* Each message is a record, then its bytes when inline, padded so the next
 * record is aligned. */
typedef struct record {
  size_t len;
  void *block; /* adopted block holding the bytes, or NULL: inline */
  size_t block_cap;
  int opcode;
} record;

enum {
  ALIGN = sizeof(size_t) > sizeof(void *) ? sizeof(size_t) : sizeof(void *),
  /* the smallest buffer: a spare-sized block, so it can be reused */
  FIRST_CAP = LOOP_SPARE_MIN
};

static size_t padded(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Room for n more bytes at the end: drops the consumed front when that is
 * enough, else moves to a larger block. */
static int reserve(inbox *q, loop *l, size_t n) {
  if (q->cap - q->len >= n) return 0;
  size_t live = q->len - q->pos;
  if (q->pos && q->cap - live >= n && live <= q->cap / 2) {
    memmove(q->data, q->data + q->pos, live);
    q->len = live, q->pos = 0;
    return 0;
  }
  if (n > (size_t)-1 / 4 - live) return -1;
  size_t want = live + n < FIRST_CAP ? FIRST_CAP : (live + n) * 2, cap;
  char *p = loop_alloc(l, want, &cap);
  if (!p) return -1;
  if (live) memcpy(p, q->data + q->pos, live);
  loop_release(l, q->data, q->cap);
  q->data = p, q->cap = cap, q->len = live, q->pos = 0;
  return 0;
}

static int push(inbox *q, loop *l, record r, const uint8_t *inline_data) {
  size_t body = inline_data ? padded(r.len) : 0;
  if (reserve(q, l, sizeof r + body)) return -1;
  memcpy(q->data + q->len, &r, sizeof r);
  if (r.len && inline_data) memcpy(q->data + q->len + sizeof r, inline_data, r.len);
  q->len += sizeof r + body;
  q->bytes += sizeof r + (inline_data ? body : r.block_cap);
  return 0;
}

int inbox_push_copy(inbox *q, loop *l, int opcode, const uint8_t *data, size_t len) {
  return push(q, l, (record){len, NULL, 0, opcode}, data ? data : (const uint8_t *)"");
}

int inbox_push_block(inbox *q, loop *l, int opcode, void *block, size_t cap, size_t len) {
  if (push(q, l, (record){len, block, cap, opcode}, NULL) == 0) return 0;
  loop_release(l, block, cap);
  return -1;
}

static record front_record(const inbox *q) {
  record r;
  memcpy(&r, q->data + q->pos, sizeof r);
  return r;
}

const inbox_msg *inbox_peek(inbox *q) {
  if (inbox_empty(q)) return NULL;
  record r = front_record(q);
  q->front.data = r.block ? r.block : (const uint8_t *)q->data + q->pos + sizeof r;
  q->front.len = r.len;
  q->front.opcode = r.opcode;
  return &q->front;
}

void inbox_pop(inbox *q, loop *l) {
  if (inbox_empty(q)) return;
  record r = front_record(q);
  size_t body = r.block ? 0 : padded(r.len);
  q->pos += sizeof r + body;
  q->bytes -= sizeof r + (r.block ? r.block_cap : body);
  if (r.block) loop_release(l, r.block, r.block_cap);
  if (inbox_empty(q)) inbox_free(q, l); /* back to the spares: idle holds nothing */
}

void inbox_free(inbox *q, loop *l) {
  while (!inbox_empty(q)) {
    record r = front_record(q);
    if (r.block) loop_release(l, r.block, r.block_cap);
    q->pos += sizeof r + (r.block ? 0 : padded(r.len));
  }
  loop_release(l, q->data, q->cap);
  *q = (inbox){0};
}
