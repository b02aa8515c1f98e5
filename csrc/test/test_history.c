/* The history ring: ids, replay after an id, and "not recovered" (nothing
 * replayed) when the id is made up, from another epoch, or messages after
 * it were trimmed by size, bytes or ttl. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "transport/history.h"

typedef struct {
  uint64_t seqs[64];
  char text[64][16];
  size_t n;
} got;

static void collect(void *ud, history_msg *m, uint64_t seq) {
  got *g = ud;
  if (g->n < 64) {
    g->seqs[g->n] = seq;
    size_t k = m->n < 15 ? m->n : 15;
    memcpy(g->text[g->n], m->data, k);
    g->text[g->n][k] = 0;
  }
  g->n++;
}

static uint64_t seqs = 1; /* the process's seqs */

static int range(history *h, const char *since, int64_t now, got *g) {
  memset(g, 0, sizeof *g);
  return history_range(h, since, strlen(since), now, collect, g);
}

static void add(history *h, const char *s, int64_t now) {
  uint64_t seq;
  CHECK_EQ(history_append(h, s, strlen(s), 0, now, &seq), 0);
}

static void test_ids_and_replay(void) {
  history *h = history_new(0xabcULL, &seqs, 4, 0, 0);
  char id[HISTORY_ID_MAX], first[HISTORY_ID_MAX];
  got g;
  CHECK_EQ(history_last_id(h, id), 0);
  CHECK_EQ(range(h, "earliest", 0, &g), 1);
  CHECK_EQ(g.n, 0);
  add(h, "a", 0);
  history_last_id(h, first);
  CHECK_STR(first, "0000000000000abc-1");
  add(h, "b", 0);
  add(h, "c", 0);
  CHECK_EQ(range(h, first, 0, &g), 1);
  CHECK_EQ(g.n, 2);
  CHECK_STR(g.text[0], "b");
  CHECK_STR(g.text[1], "c");
  history_last_id(h, id);
  CHECK_EQ(range(h, id, 0, &g), 1); /* up to date: nothing, recovered */
  CHECK_EQ(g.n, 0);
  CHECK_EQ(range(h, "earliest", 0, &g), 1);
  CHECK_EQ(g.n, 3);
  /* made up, another epoch, a seq not given yet */
  CHECK_EQ(range(h, "nonsense", 0, &g), 0);
  CHECK_EQ(range(h, "0000000000000abd-1", 0, &g), 0);
  CHECK_EQ(range(h, "0000000000000abc-9", 0, &g), 0);
  CHECK_EQ(range(h, "0000000000000abc-99999999999999999999999", 0, &g), 0);
  CHECK_EQ(g.n, 0);
  /* size: 4 kept; "a" (seq 1) trimmed, so after seq 1 is still whole, before it not */
  add(h, "d", 0);
  add(h, "e", 0);
  CHECK_EQ(history_count(h), 4);
  CHECK_EQ(range(h, first, 0, &g), 1);
  CHECK_EQ(g.n, 4);
  CHECK_STR(g.text[0], "b");
  add(h, "f", 0);
  CHECK_EQ(range(h, first, 0, &g), 0);
  CHECK_EQ(g.n, 0);
  CHECK_EQ(range(h, "earliest", 0, &g), 1);
  CHECK_EQ(g.n, 4);
  CHECK_STR(g.text[0], "c");
  history_free(h);
}

static void test_bytes(void) {
  history *h = history_new(1, &seqs, 100, 0, 10);
  got g;
  char id[HISTORY_ID_MAX];
  add(h, "12345", 0);
  history_last_id(h, id);
  add(h, "6789", 0);
  CHECK_EQ(history_bytes(h), 9);
  add(h, "ab", 0); /* 11 > 10: the oldest goes */
  CHECK_EQ(history_count(h), 2);
  CHECK_EQ(history_bytes(h), 6);
  CHECK_EQ(range(h, id, 0, &g), 1); /* seq 1 itself went; after it is whole */
  CHECK_EQ(g.n, 2);
  add(h, "this is too long", 0); /* larger than bytes: not kept, a gap */
  CHECK_EQ(history_count(h), 0);
  CHECK_EQ(range(h, id, 0, &g), 0);
  history_last_id(h, id);
  CHECK_EQ(range(h, id, 0, &g), 1);
  CHECK_EQ(g.n, 0);
  history_free(h);
}

static void test_ttl(void) {
  history *h = history_new(2, &seqs, 100, 1000, 0);
  got g;
  char id[HISTORY_ID_MAX];
  add(h, "old", 0);
  history_last_id(h, id);
  add(h, "mid", 500);
  add(h, "new", 1200);
  CHECK_EQ(history_count(h), 2); /* "old" trimmed on append */
  CHECK_EQ(range(h, id, 1200, &g), 1);
  CHECK_EQ(g.n, 2);
  CHECK_EQ(range(h, "earliest", 1600, &g), 1); /* "mid" trimmed on replay */
  CHECK_EQ(g.n, 1);
  CHECK_STR(g.text[0], "new");
  CHECK_EQ(range(h, id, 1600, &g), 0);
  history_trim(h, 5000);
  CHECK_EQ(history_count(h), 0);
  CHECK_EQ(history_bytes(h), 0);
  history_free(h);
}

static void hold(void *ud, history_msg *m, uint64_t seq) {
  (void)seq;
  history_msg_ref(m);
  *(history_msg **)ud = m;
}

/* a replay may hold a message past its trimming (ASan checks the rest) */
static void test_refs(void) {
  history *h = history_new(3, &seqs, 1, 0, 0);
  history_msg *held = NULL;
  add(h, "kept", 0);
  CHECK_EQ(history_range(h, "earliest", 8, 0, hold, &held), 1);
  CHECK(held != NULL);
  add(h, "next", 0); /* "kept" leaves the ring */
  history_free(h);
  CHECK_EQ(held->refs, 1);
  CHECK_MEMSTR(held->data, held->n, "kept");
  history_msg_unref(held);
  CHECK(history_new(0, &seqs, 0, 0, 0) == NULL);
}

/* two topics on one clock: an id of either says where the other resumes,
 * and a history made later holds nothing from before it */
static void test_shared_clock(void) {
  history *a = history_new(4, &seqs, 8, 0, 0), *b = history_new(4, &seqs, 8, 0, 0);
  char ida[HISTORY_ID_MAX], idb[HISTORY_ID_MAX];
  got g;
  add(a, "a1", 0);
  history_last_id(a, ida);
  add(b, "b1", 0);
  history_last_id(b, idb);
  add(a, "a2", 0);
  add(b, "b2", 0);
  CHECK_EQ(range(b, ida, 0, &g), 1); /* b after a1: b1 and b2 */
  CHECK_EQ(g.n, 2);
  CHECK_STR(g.text[0], "b1");
  CHECK_EQ(range(a, idb, 0, &g), 1); /* a after b1: a2 only */
  CHECK_EQ(g.n, 1);
  CHECK_STR(g.text[0], "a2");
  history *c = history_new(4, &seqs, 8, 0, 0);
  CHECK_EQ(range(c, ida, 0, &g), 0); /* c did not exist then */
  history_last_id(b, idb);
  CHECK_EQ(range(c, idb, 0, &g), 1); /* nothing was given since c began */
  CHECK_EQ(g.n, 0);
  history_free(a);
  history_free(b);
  history_free(c);
}

int main(void) {
  test_ids_and_replay();
  test_bytes();
  test_ttl();
  test_refs();
  test_shared_clock();
  return check_done();
}
