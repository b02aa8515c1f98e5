/* Topics: which connections subscribe to which exact strings, and
 * publishing to them. The table belongs to the loop (l->topics, made on the
 * first subscribe); a topic lives while it has subscribers. A membership is
 * one small node on two lists (the topic's, in subscription order, and the
 * connection's), so subscribing costs tens of bytes and leaving is O(1) once
 * found. A connection leaves every topic as soon as it may no longer be
 * sent to (conn.c calls topic_leave_all).
 *
 * Publishing frames the message once (conn_shared) and queues the same
 * bytes for every subscriber (conn_publish). */
#ifndef DUPLEX_TOPIC_H
#define DUPLEX_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include "transport/conn.h"
#include "transport/loop.h"

#pragma GCC visibility push(hidden)

/* The longest topic name, in bytes. */
enum { TOPIC_MAX_NAME = 1024 };

typedef struct topic topic;
typedef struct topic_member topic_member;

/* 1 when c was added, 0 when it was subscribed already, -1 out of memory. */
int topic_subscribe(conn *c, const char *name, size_t len);

/* 1 when c was subscribed, else 0. What was published before stays queued. */
int topic_unsubscribe(conn *c, const char *name, size_t len);

int topic_subscribed(conn *c, const char *name, size_t len);

/* Calls fn for each of c's topics. fn must not change c's subscriptions. */
void topic_each(conn *c, void (*fn)(void *ud, const char *name, size_t len), void *ud);

/* Subscribers of the topic in this process. */
size_t topic_count(loop *l, const char *name, size_t len);

/* Queues the message for every subscriber but except (NULL: all), counting
 * in *queued and *dropped (over max_backlog). CONN_OK, CONN_BAD_UTF8,
 * CONN_TOOBIG or CONN_NOMEM (some subscribers may have it then). */
int topic_publish(loop *l, const char *name, size_t len, const void *data, size_t n, int binary,
                  conn *except, size_t *queued, size_t *dropped);

/* topic_publish, and when the topic keeps history, the message's id into id
 * (HISTORY_ID_MAX bytes) and its length into *idlen (0: no history). A
 * message from another process (the broker) is kept in history too. */
int topic_publish_id(loop *l, const char *name, size_t len, const void *data, size_t n, int binary,
                     conn *except, size_t *queued, size_t *dropped, char *id, size_t *idlen);

/* Makes the topic keep its last messages (history.h: size > 0, ttl_ms and
 * bytes 0 for no limit), replacing any history it had (its messages and
 * ids are gone then); size 0 ends the history, and the topic goes once it
 * has no subscribers. A topic with history lives on without subscribers but
 * counts none (topic_count, topic_names, the broker's hook). 0 or -1. */
int topic_history(loop *l, const char *name, size_t len, size_t size, int64_t ttl_ms, size_t bytes);

/* The newest id of the topic's history into id (HISTORY_ID_MAX bytes); its
 * length, 0 when none. */
size_t topic_last_id(loop *l, const char *name, size_t len, char *id);

/* topic_subscribe, and when c was added, first queues for c (conn_publish,
 * so its backlog policy applies) what the history holds after since (an id,
 * or "earliest"): no gap, no duplicate. *recovered 1 when that replay was
 * whole, 0 when nothing was replayed (no history, subscribed already, since
 * not ours, or messages after it no longer held). */
int topic_subscribe_since(conn *c, const char *name, size_t len, const char *since, size_t slen,
                          int *recovered);

/* Calls fn for every topic with subscribers in this process. */
void topic_names(loop *l, void (*fn)(void *ud, const char *name, size_t len), void *ud);

/* c leaves all its topics (it closes). */
void topic_leave_all(conn *c);

/* Frees the table (the loop closes; no connection is left). */
void topic_table_free(loop *l);

#pragma GCC visibility pop

#endif
