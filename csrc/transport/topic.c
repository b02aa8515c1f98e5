#include "transport/topic.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/utf8.h"
#include "transport/history.h"

struct topic_member {
  topic *t;
  conn *c;
  topic_member *prev, *next; /* the topic's subscribers, oldest first */
  topic_member *cnext;       /* the connection's topics */
};

struct topic {
  topic *hnext;
  uint64_t hash;
  topic_member *first, *last;
  history *hist;   /* NULL unless topic_history: a topic with one outlives its subscribers */
  size_t n;        /* subscribers */
  unsigned pinned; /* publishes walking it: freed after them */
  size_t len;
  char name[];
};

typedef struct topic_table {
  topic **buckets;
  size_t nbuckets, ntopics; /* nbuckets: a power of 2 */
  uint64_t seed;            /* random: names from the network cannot aim at one bucket */
  uint64_t epoch;           /* random: ids from before a restart are not ours */
  uint64_t seqs;            /* the next history seq, shared by every topic (history.h) */
} topic_table;

/* FNV-1a over the name, seeded, then mixed (splitmix64's finalizer). */
static uint64_t hash_of(const topic_table *tt, const char *name, size_t len) {
  uint64_t h = 1469598103934665603ull ^ tt->seed;
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
  h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27, h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

static topic_table *table_of(loop *l, int create) {
  if (l->topics || !create) return l->topics;
  topic_table *tt = calloc(1, sizeof *tt);
  if (!tt) return NULL;
  tt->nbuckets = 16;
  tt->seqs = 1;
  tt->buckets = calloc(tt->nbuckets, sizeof *tt->buckets);
  if (!tt->buckets || loop_random(l, &tt->seed, sizeof tt->seed) ||
      loop_random(l, &tt->epoch, sizeof tt->epoch)) {
    free(tt->buckets);
    free(tt);
    return NULL;
  }
  l->topics = tt;
  return tt;
}

static topic *find(const topic_table *tt, const char *name, size_t len, uint64_t h) {
  if (!tt) return NULL;
  for (topic *t = tt->buckets[h & (tt->nbuckets - 1)]; t; t = t->hnext)
    if (t->hash == h && t->len == len && memcmp(t->name, name, len) == 0) return t;
  return NULL;
}

static topic *lookup(loop *l, const char *name, size_t len) {
  topic_table *tt = table_of(l, 0);
  return tt ? find(tt, name, len, hash_of(tt, name, len)) : NULL;
}

/* Doubles the buckets at one topic per bucket; without memory the chains
 * just grow longer. */
static void grow(topic_table *tt) {
  size_t n = tt->nbuckets * 2;
  topic **b = calloc(n, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < tt->nbuckets; i++) {
    for (topic *t = tt->buckets[i], *next; t; t = next) {
      next = t->hnext;
      t->hnext = b[t->hash & (n - 1)];
      b[t->hash & (n - 1)] = t;
    }
  }
  free(tt->buckets);
  tt->buckets = b;
  tt->nbuckets = n;
}

static topic *add_topic(topic_table *tt, const char *name, size_t len, uint64_t h) {
  topic *t = calloc(1, sizeof *t + len);
  if (!t) return NULL;
  t->hash = h;
  t->len = len;
  memcpy(t->name, name, len);
  if (tt->ntopics >= tt->nbuckets) grow(tt);
  topic **b = &tt->buckets[h & (tt->nbuckets - 1)];
  t->hnext = *b;
  *b = t;
  tt->ntopics++;
  return t;
}

static void drop_topic(topic_table *tt, topic *t) {
  topic **p = &tt->buckets[t->hash & (tt->nbuckets - 1)];
  while (*p != t) p = &(*p)->hnext;
  *p = t->hnext;
  tt->ntopics--;
  free(t);
}

static topic_member *membership(conn *c, const topic *t, topic_member ***link) {
  topic_member **p = conn_topics(c);
  while (*p && (*p)->t != t) p = &(*p)->cnext;
  if (link) *link = p;
  return *p;
}

int topic_subscribe(conn *c, const char *name, size_t len) {
  topic_table *tt = table_of(conn_loop(c), 1);
  if (!tt) return -1;
  uint64_t h = hash_of(tt, name, len);
  topic *t = find(tt, name, len, h);
  if (t && membership(c, t, NULL)) return 0;
  if (!t && !(t = add_topic(tt, name, len, h))) return -1;
  topic_member *m = malloc(sizeof *m);
  if (!m) {
    if (!t->n && !t->hist) drop_topic(tt, t);
    return -1;
  }
  *m = (topic_member){t, c, t->last, NULL, *conn_topics(c)};
  if (t->last)
    t->last->next = m;
  else
    t->first = m;
  t->last = m;
  if (t->n++ == 0 && conn_loop(c)->topic_hook) conn_loop(c)->topic_hook(conn_loop(c), name, len);
  *conn_topics(c) = m;
  return 1;
}

/* Unlinks m from both lists (link: where the connection's list points at
 * it) and drops its topic once nobody subscribes and no publish walks it. */
static void leave(loop *l, topic_member *m, topic_member **link) {
  topic *t = m->t;
  *link = m->cnext;
  if (m->prev)
    m->prev->next = m->next;
  else
    t->first = m->next;
  if (m->next)
    m->next->prev = m->prev;
  else
    t->last = m->prev;
  free(m);
  if (--t->n) return;
  if (l->topic_hook) l->topic_hook(l, t->name, t->len);
  if (!t->pinned && !t->hist) drop_topic(l->topics, t);
}

int topic_unsubscribe(conn *c, const char *name, size_t len) {
  topic *t = lookup(conn_loop(c), name, len);
  topic_member **link;
  topic_member *m = t ? membership(c, t, &link) : NULL;
  if (!m) return 0;
  leave(conn_loop(c), m, link);
  return 1;
}

int topic_subscribed(conn *c, const char *name, size_t len) {
  topic *t = lookup(conn_loop(c), name, len);
  return t && membership(c, t, NULL);
}

void topic_each(conn *c, void (*fn)(void *ud, const char *name, size_t len), void *ud) {
  for (topic_member *m = *conn_topics(c); m; m = m->cnext) fn(ud, m->t->name, m->t->len);
}

size_t topic_count(loop *l, const char *name, size_t len) {
  topic *t = lookup(l, name, len);
  return t ? t->n : 0;
}

void topic_names(loop *l, void (*fn)(void *ud, const char *name, size_t len), void *ud) {
  topic_table *tt = l->topics;
  if (!tt) return;
  for (size_t i = 0; i < tt->nbuckets; i++)
    for (topic *t = tt->buckets[i]; t; t = t->hnext)
      if (t->n) fn(ud, t->name, t->len);
}

void topic_leave_all(conn *c) {
  topic_member **head = conn_topics(c);
  while (*head) leave(conn_loop(c), *head, head);
}

/* The walk over the subscribers: a subscriber closed by its backlog policy
 * leaves the topic meanwhile, so the next one is taken first, and the topic
 * stays (pinned) even if the last one leaves. */
static int fan_out(loop *l, topic *t, conn_shared *msg, conn *except, size_t *queued,
                   size_t *dropped) {
  int rc = CONN_OK;
  t->pinned++;
  for (topic_member *m = t->first, *next; m; m = next) {
    next = m->next;
    if (m->c == except) continue;
    int r = conn_publish(m->c, msg);
    if (r == CONN_OK)
      (*queued)++;
    else if (r == CONN_DROPPED)
      (*dropped)++;
    else if (r == CONN_NOMEM)
      rc = CONN_NOMEM;
  }
  if (--t->pinned == 0 && t->n == 0 && !t->hist) drop_topic(l->topics, t);
  return rc;
}

int topic_publish_id(loop *l, const char *name, size_t len, const void *data, size_t n, int binary,
                     conn *except, size_t *queued, size_t *dropped, char *id, size_t *idlen) {
  *queued = *dropped = 0;
  if (idlen) *idlen = 0;
  if (!binary && !utf8_valid(data, n)) return CONN_BAD_UTF8;
  if (n > SESSION_MAX_SEND) return CONN_TOOBIG;
  topic *t = lookup(l, name, len);
  if (!t) return CONN_OK;
  conn_shared msg;
  conn_shared_init(&msg, binary, data, n);
  msg.event = t->name;
  msg.event_len = t->len;
  char own[HISTORY_ID_MAX];
  uint64_t seq;
  int kept = !t->hist || !history_append(t->hist, data, n, binary, (int64_t)loop_now(l), &seq);
  if (t->hist && kept) { /* event streams send the id too */
    char *buf = id ? id : own;
    msg.id_len = history_id(t->hist, seq, buf);
    msg.id = buf;
    if (idlen) *idlen = msg.id_len;
  }
  int rc = fan_out(l, t, &msg, except, queued, dropped);
  conn_shared_free(l, &msg);
  return kept ? rc : CONN_NOMEM;
}

int topic_publish(loop *l, const char *name, size_t len, const void *data, size_t n, int binary,
                  conn *except, size_t *queued, size_t *dropped) {
  return topic_publish_id(l, name, len, data, n, binary, except, queued, dropped, NULL, NULL);
}

int topic_history(loop *l, const char *name, size_t len, size_t size, int64_t ttl_ms,
                  size_t bytes) {
  topic_table *tt = table_of(l, 1);
  if (!tt) return -1;
  uint64_t h = hash_of(tt, name, len);
  topic *t = find(tt, name, len, h);
  if (!size) {
    if (!t || !t->hist) return 0;
    history_free(t->hist);
    t->hist = NULL;
    if (!t->n && !t->pinned) drop_topic(tt, t);
    return 0;
  }
  history *hist = history_new(tt->epoch, &tt->seqs, size, ttl_ms, bytes);
  if (!hist) return -1;
  if (!t && !(t = add_topic(tt, name, len, h))) {
    history_free(hist);
    return -1;
  }
  history_free(t->hist);
  t->hist = hist;
  return 0;
}

size_t topic_last_id(loop *l, const char *name, size_t len, char *id) {
  topic *t = lookup(l, name, len);
  return t && t->hist ? history_last_id(t->hist, id) : 0;
}

typedef struct replay {
  conn *c;
  topic *t;
} replay;

static void replay_one(void *ud, history_msg *m, uint64_t seq) {
  replay *r = ud;
  char id[HISTORY_ID_MAX];
  conn_shared msg;
  conn_shared_init(&msg, m->binary, m->data, m->n);
  msg.event = r->t->name;
  msg.event_len = r->t->len;
  msg.id = id;
  msg.id_len = history_id(r->t->hist, seq, id);
  conn_publish(r->c, &msg); /* dropped ones are counted by c's backlog policy */
  conn_shared_free(conn_loop(r->c), &msg);
}

int topic_subscribe_since(conn *c, const char *name, size_t len, const char *since, size_t slen,
                          int *recovered) {
  *recovered = 0;
  int rc = topic_subscribe(c, name, len);
  if (rc <= 0) return rc; /* subscribed already: it missed nothing, and gets no duplicates */
  topic *t = lookup(conn_loop(c), name, len);
  if (!t->hist) return rc;
  /* nothing runs between subscribing and replaying, so the replay ends where
   * live messages begin; a subscriber closed by its backlog policy meanwhile
   * leaves the topic on its own */
  replay r = {c, t};
  t->pinned++;
  *recovered = history_range(t->hist, since, slen, (int64_t)loop_now(conn_loop(c)), replay_one, &r);
  t->pinned--;
  return rc;
}

void topic_table_free(loop *l) {
  topic_table *tt = l->topics;
  if (!tt) return;
  for (size_t i = 0; i < tt->nbuckets; i++) {
    for (topic *t = tt->buckets[i], *next; t; t = next) {
      next = t->hnext;
      for (topic_member *m = t->first, *mn; m; m = mn) {
        mn = m->next;
        *conn_topics(m->c) = NULL; /* every conn leaves on closing: none should be here */
        free(m);
      }
      history_free(t->hist);
      free(t);
    }
  }
  free(tt->buckets);
  free(tt);
  l->topics = NULL;
}
