#include "transport/history.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  history_msg *m;
  uint64_t seq;
  int64_t t_ms;
} slot;

struct history {
  uint64_t epoch;
  char prefix[17]; /* the epoch as 16 hex digits and '-': every id starts so */
  size_t size, max_bytes, bytes;
  int64_t ttl_ms;
  size_t head, count; /* head: the oldest slot */
  uint64_t *clock;    /* the seq the next append gets (shared) */
  uint64_t last_seq;  /* of the newest append, 0 before the first */
  uint64_t lost;      /* every seq <= lost is no longer held */
  slot *ring;
};

void history_msg_ref(history_msg *m) { m->refs++; }

void history_msg_unref(history_msg *m) {
  if (m && --m->refs == 0) free(m);
}

history *history_new(uint64_t epoch, uint64_t *clock, size_t size, int64_t ttl_ms, size_t bytes) {
  if (size == 0 || size > SIZE_MAX / sizeof(slot)) return NULL;
  history *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->ring = calloc(size, sizeof(slot));
  if (!h->ring) {
    free(h);
    return NULL;
  }
  h->epoch = epoch;
  h->size = size;
  h->ttl_ms = ttl_ms;
  h->max_bytes = bytes;
  h->clock = clock;
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) h->prefix[i] = hex[(epoch >> (60 - 4 * i)) & 15];
  h->prefix[16] = '-';
  h->lost = *clock - 1;
  return h;
}

static void drop_oldest(history *h) {
  slot *s = &h->ring[h->head];
  h->lost = s->seq;
  h->bytes -= s->m->n;
  history_msg_unref(s->m);
  s->m = NULL;
  h->head = (h->head + 1) % h->size;
  h->count--;
}

void history_free(history *h) {
  if (!h) return;
  while (h->count) drop_oldest(h);
  free(h->ring);
  free(h);
}

void history_trim(history *h, int64_t now_ms) {
  if (h->ttl_ms <= 0) return;
  while (h->count && now_ms - h->ring[h->head].t_ms > h->ttl_ms) drop_oldest(h);
}

int history_append(history *h, const void *data, size_t n, int binary, int64_t now_ms,
                   uint64_t *seq) {
  if (n > SIZE_MAX - sizeof(history_msg)) return -1;
  uint64_t s = *h->clock;
  if (h->max_bytes && n > h->max_bytes) {
    /* not kept: everything up to it is lost to a replay */
    while (h->count) drop_oldest(h);
    h->lost = h->last_seq = *seq = s;
    ++*h->clock;
    return 0;
  }
  history_msg *m = malloc(sizeof *m + n);
  if (!m) return -1;
  m->refs = 1;
  m->n = n;
  m->binary = binary;
  if (n) memcpy(m->data, data, n);
  history_trim(h, now_ms);
  if (h->count == h->size) drop_oldest(h);
  while (h->max_bytes && h->count && h->bytes + n > h->max_bytes) drop_oldest(h);
  slot *sl = &h->ring[(h->head + h->count) % h->size];
  sl->m = m;
  sl->seq = s;
  sl->t_ms = now_ms;
  h->count++;
  h->bytes += n;
  h->last_seq = *seq = s;
  ++*h->clock;
  return 0;
}

/* By hand: every publish to a topic with history makes one. */
size_t history_id(const history *h, uint64_t seq, char *buf) {
  char digits[20];
  size_t n = 0;
  do digits[n++] = (char)('0' + seq % 10);
  while (seq /= 10);
  memcpy(buf, h->prefix, 17);
  for (size_t i = 0; i < n; i++) buf[17 + i] = digits[n - 1 - i];
  buf[17 + n] = 0;
  return 17 + n;
}

size_t history_last_id(const history *h, char *buf) {
  return h->last_seq ? history_id(h, h->last_seq, buf) : 0;
}

/* 1 when id is one of ours (this epoch, a seq already given), its seq. */
static int parse_id(const history *h, const char *id, size_t len, uint64_t *seq) {
  if (len < 18 || len >= HISTORY_ID_MAX || id[16] != '-') return 0;
  uint64_t e = 0, s = 0;
  for (size_t i = 0; i < 16; i++) {
    char c = id[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return 0;
    e = e << 4 | (uint64_t)d;
  }
  for (size_t i = 17; i < len; i++) {
    if (id[i] < '0' || id[i] > '9' || s > (UINT64_MAX - 9) / 10) return 0;
    s = s * 10 + (uint64_t)(id[i] - '0');
  }
  if (e != h->epoch || s >= *h->clock) return 0;
  *seq = s;
  return 1;
}

int history_range(history *h, const char *since, size_t len, int64_t now_ms, history_fn fn,
                  void *ud) {
  history_trim(h, now_ms);
  uint64_t from;
  if (len == 8 && memcmp(since, "earliest", 8) == 0) {
    from = h->count ? h->ring[h->head].seq - 1 : *h->clock - 1;
  } else if (!parse_id(h, since, len, &from)) {
    return 0;
  }
  if (from < h->lost) return 0;
  for (size_t i = 0; i < h->count; i++) {
    slot *s = &h->ring[(h->head + i) % h->size];
    if (s->seq > from) fn(ud, s->m, s->seq);
  }
  return 1;
}

size_t history_count(const history *h) { return h->count; }
size_t history_bytes(const history *h) { return h->bytes; }
