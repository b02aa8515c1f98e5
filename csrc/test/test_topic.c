/* Topics over real sockets on 127.0.0.1: a publish to N subscribers makes
 * one frame block per form (plain, and compressed without context
 * takeover), never one per subscriber, and every subscriber receives the
 * message once. malloc is wrapped (-Wl,--wrap=malloc) to count blocks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "transport/api.h"
#include "transport/broker.h"
#include "transport/history.h"
#include "transport/topic.h"

void *__real_malloc(size_t n);
static unsigned long mallocs;
void *__wrap_malloc(size_t n);
void *__wrap_malloc(size_t n) {
  mallocs++;
  return __real_malloc(n);
}

enum { N = 64, STEPS = 3000 };

static conn *clients[N], *servers[N];

static int is_open(conn *c) {
  conn_info i;
  conn_describe(c, 0, &i);
  return strcmp(i.state, "open") == 0;
}

/* Steps the loop until every client and server side is open (bounded). */
static int connect_all(loop *l, server *s) {
  size_t accepted = 0;
  for (int step = 0; step < STEPS; step++) {
    loop_step(l, 5);
    loop_take_ready(l);
    conn *c;
    while (accepted < N && (c = server_accept(s))) servers[accepted++] = c;
    int open = accepted == N;
    for (int i = 0; open && i < N; i++) open = is_open(clients[i]) && is_open(servers[i]);
    if (open) return 1;
  }
  return 0;
}

/* Steps until n clients got one message each (and a few steps more, for
 * any extra), which must equal want; returns how many clients got it. (The
 * server accepts in its own order, so which clients are left out is not
 * known here, only how many.) */
static int receive_all(loop *l, int n, const char *want, size_t len, int *same) {
  int got[N] = {0}, have = 0, extra = 20;
  *same = 1;
  for (int step = 0; step < STEPS && (have < n || extra-- > 0); step++) {
    loop_step(l, 5);
    loop_take_ready(l);
    for (int i = 0; i < N; i++) {
      conn_message m;
      while (conn_receive(clients[i], &m) == CONN_OK) {
        if (m.len != len || memcmp(m.data, want, len) != 0 || got[i]) *same = 0;
        if (!got[i]++) have++;
        conn_message_done(clients[i], &m);
      }
    }
  }
  return have;
}

static void publish_counts(loop *l, server *s) {
  char msg[1000];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (char)('a' + i % 7);
  size_t queued = 0, dropped = 0;
  unsigned long before = mallocs;
  int rc = topic_publish(l, "t", 1, msg, sizeof msg, 0, NULL, &queued, &dropped);
  unsigned long blocks = mallocs - before;
  CHECK_EQ(rc, CONN_OK);
  CHECK_EQ(queued, N);
  CHECK_EQ(dropped, 0);
  /* one plain frame and one compressed frame for N subscribers (the zlib
   * stream of the one compressor that deflates allocates too: at most a
   * few blocks, however large N) */
  CHECK(blocks >= 2 && blocks <= 8);
  printf("publish to %d subscribers: %lu allocations\n", N, blocks);
  int same;
  CHECK_EQ(receive_all(l, N, msg, sizeof msg, &same), N);
  CHECK(same);
  (void)s;
}

static void membership(loop *l) {
  CHECK_EQ(topic_count(l, "t", 1), N);
  CHECK_EQ(topic_subscribe(servers[0], "t", 1), 0); /* already */
  CHECK_EQ(topic_unsubscribe(servers[0], "t", 1), 1);
  CHECK_EQ(topic_unsubscribe(servers[0], "t", 1), 0);
  CHECK(!topic_subscribed(servers[0], "t", 1));
  CHECK_EQ(topic_count(l, "t", 1), N - 1);
  size_t queued, dropped;
  CHECK_EQ(topic_publish(l, "t", 1, "x", 1, 0, servers[1], &queued, &dropped), CONN_OK);
  CHECK_EQ(queued, N - 2); /* neither the one that left nor the sender */
  int same;
  CHECK_EQ(receive_all(l, N - 2, "x", 1, &same), N - 2); /* not the one that left, nor the sender */
  CHECK(same);
  CHECK_EQ(topic_publish(l, "t", 1, "\xff", 1, 0, NULL, &queued, &dropped), CONN_BAD_UTF8);
  CHECK_EQ(topic_publish(l, "none", 4, "x", 1, 0, NULL, &queued, &dropped), CONN_OK);
  CHECK_EQ(queued, 0);
  CHECK_EQ(topic_subscribe(servers[0], "t", 1), 1);
}

/* The broker's hook: told of a topic's first join and last leave only. */
static int hook_calls;
static char hook_name[16];
static void count_hook(loop *l, const char *name, size_t len) {
  (void)l;
  hook_calls++;
  snprintf(hook_name, sizeof hook_name, "%.*s", (int)len, name);
}

static void topic_hook(loop *l) {
  l->topic_hook = count_hook;
  CHECK_EQ(topic_subscribe(servers[0], "h", 1), 1);
  CHECK_EQ(hook_calls, 1);
  CHECK(strcmp(hook_name, "h") == 0);
  CHECK_EQ(topic_subscribe(servers[1], "h", 1), 1);
  CHECK_EQ(topic_subscribe(servers[1], "h", 1), 0);
  CHECK_EQ(topic_unsubscribe(servers[0], "h", 1), 1);
  CHECK_EQ(hook_calls, 1);
  CHECK_EQ(topic_unsubscribe(servers[1], "h", 1), 1);
  CHECK_EQ(hook_calls, 2);
  CHECK_EQ(topic_unsubscribe(servers[1], "h", 1), 0);
  CHECK_EQ(hook_calls, 2);
  l->topic_hook = NULL;
}

static void count_name(void *ud, const char *name, size_t len) {
  (void)name;
  (void)len;
  (*(int *)ud)++;
}

/* A history-only topic: no subscribers counted, the broker is not told of
 * it; a subscribe since an id replays just what came after it. */
static void history_topic(loop *l) {
  hook_calls = 0;
  l->topic_hook = count_hook;
  int before = 0, after = 0;
  topic_names(l, count_name, &before);
  CHECK_EQ(topic_history(l, "hh", 2, 10, 0, 0), 0);
  CHECK_EQ(topic_count(l, "hh", 2), 0);
  topic_names(l, count_name, &after);
  CHECK_EQ(after, before);
  CHECK_EQ(hook_calls, 0);
  char id1[HISTORY_ID_MAX], id2[HISTORY_ID_MAX], last[HISTORY_ID_MAX];
  size_t q, d, n1, n2;
  CHECK_EQ(topic_last_id(l, "hh", 2, last), 0);
  CHECK_EQ(topic_publish_id(l, "hh", 2, "m1", 2, 0, NULL, &q, &d, id1, &n1), CONN_OK);
  CHECK_EQ(topic_publish_id(l, "hh", 2, "m2", 2, 0, NULL, &q, &d, id2, &n2), CONN_OK);
  CHECK(n1 > 0 && n2 > 0 && q == 0);
  CHECK(topic_last_id(l, "hh", 2, last) == n2 && memcmp(last, id2, n2) == 0);
  int recovered = -1;
  CHECK_EQ(topic_subscribe_since(servers[0], "hh", 2, id1, n1, &recovered), 1);
  CHECK_EQ(recovered, 1);
  CHECK_EQ(hook_calls, 1);
  CHECK_EQ(topic_count(l, "hh", 2), 1);
  int same;
  CHECK_EQ(receive_all(l, 1, "m2", 2, &same), 1); /* m2 only, once */
  CHECK(same);
  CHECK_EQ(topic_subscribe_since(servers[0], "hh", 2, id1, n1, &recovered), 0);
  CHECK_EQ(recovered, 0);
  CHECK_EQ(topic_unsubscribe(servers[0], "hh", 2), 1);
  CHECK_EQ(hook_calls, 2);
  CHECK_EQ(topic_last_id(l, "hh", 2, last), n2); /* it outlives its subscribers */
  CHECK_EQ(topic_subscribe_since(servers[1], "hh", 2, "bogus", 5, &recovered), 1);
  CHECK_EQ(recovered, 0);
  CHECK_EQ(topic_unsubscribe(servers[1], "hh", 2), 1);
  CHECK_EQ(topic_history(l, "hh", 2, 0, 0, 0), 0);
  CHECK_EQ(topic_last_id(l, "hh", 2, last), 0);
  /* this one is left for topic_table_free */
  CHECK_EQ(topic_history(l, "kept", 4, 4, 0, 0), 0);
  CHECK_EQ(topic_publish_id(l, "kept", 4, "x", 1, 0, NULL, &q, &d, id1, &n1), CONN_OK);
  l->topic_hook = NULL;
}

/* Envelopes: magic, node id, kind, payload; anything else is refused. */
static void envelopes(void) {
  uint8_t own[BROKER_NODE_ID] = {1, 2, 3}, other[BROKER_NODE_ID] = {9};
  uint8_t m[BROKER_HEADER + 3] = {BROKER_MAGIC};
  memcpy(m + 1, other, BROKER_NODE_ID);
  m[1 + BROKER_NODE_ID] = 1;
  memcpy(m + BROKER_HEADER, "\0\xff\x01", 3);
  const void *data;
  size_t n;
  int binary;
  CHECK_EQ(broker_decode(m, sizeof m, own, &data, &n, &binary), 0);
  CHECK_EQ(n, 3);
  CHECK_EQ(binary, 1);
  CHECK(data == m + BROKER_HEADER);
  CHECK_EQ(broker_decode(m, BROKER_HEADER, own, &data, &n, &binary), 0);
  CHECK_EQ(n, 0);
  CHECK_EQ(broker_decode(m, BROKER_HEADER - 1, own, &data, &n, &binary), -1);
  CHECK_EQ(broker_decode(m, sizeof m, other, &data, &n, &binary), 1); /* our own */
  m[1 + BROKER_NODE_ID] = 2;
  CHECK_EQ(broker_decode(m, sizeof m, own, &data, &n, &binary), -1);
  m[1 + BROKER_NODE_ID] = 0;
  m[0] = 0xD2;
  CHECK_EQ(broker_decode(m, sizeof m, own, &data, &n, &binary), -1);
}

int main(void) {
  loop *l = malloc(loop_size());
  CHECK(l && loop_init(l) == 0);
  server_opts so = {0};
  conn_opts_default(&so.conn);
  so.conn.pmd.enabled = 1;
  so.conn.pmd.context_takeover = 0; /* shared compressed frames */
  so.backlog = 512;
  char err[256];
  server *s = server_start(l, "127.0.0.1", 0, &so, err, sizeof err);
  CHECK(s);
  server_info si;
  server_describe(s, &si);
  char port[16];
  snprintf(port, sizeof port, "%d", si.port);
  for (int i = 0; i < N; i++) {
    dial_request r = {.host = "127.0.0.1", .port = port, .target = "/", .host_header = "127.0.0.1"};
    conn_opts co;
    conn_opts_default(&co);
    co.pmd.enabled = i % 2; /* half compressed, half not */
    clients[i] = dial_open(l, &r, &co, err, sizeof err);
    CHECK(clients[i]);
  }
  CHECK(connect_all(l, s));
  for (int i = 0; i < N; i++) CHECK_EQ(topic_subscribe(servers[i], "t", 1), 1);
  membership(l);
  topic_hook(l);
  history_topic(l);
  envelopes();
  publish_counts(l, s);
  for (int i = 0; i < N; i++) conn_release(clients[i]), conn_release(servers[i]);
  server_close(s);
  server_release(s);
  loop_close(l);
  free(l);
  return check_done();
}
