/* History: one topic's last messages, kept so a client that comes back can
 * be replayed what it missed (DESIGN.md, History and Server-Sent Events).
 * Pure data structure, no I/O and no loop: the caller passes the time, so
 * the same interface can later be backed by a Redis stream (broker) without
 * changing its callers: append -> id, range(since) -> messages or "not
 * recovered", last id.
 *
 * Messages are refcounted copies (history_msg) so a replay can queue the
 * same bytes the ring holds. Ids are "<epoch>-<seq>": the epoch is chosen
 * per process, so an id from before a restart is recognised as not ours.
 * The seqs come from a clock the caller shares between histories (one per
 * process), so ids of different topics are ordered too: an id seen on one
 * topic of a stream tells where every other topic of it resumes. */
#ifndef DUPLEX_HISTORY_H
#define DUPLEX_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

/* Room for any id with its NUL: 16 hex digits, '-', 20 digits. */
enum { HISTORY_ID_MAX = 40 };

typedef struct history history;

typedef struct history_msg {
  size_t refs;
  size_t n;
  int binary;
  unsigned char data[];
} history_msg;

void history_msg_ref(history_msg *m);
void history_msg_unref(history_msg *m);

/* clock: the next seq to give (from 1), shared by every history of one
 * epoch, which must outlive them; what it gave before the history existed
 * counts as not held. size: most messages kept (> 0); ttl_ms: 0 for no age
 * limit; bytes: 0 for no byte limit. NULL when out of memory or size is 0. */
history *history_new(uint64_t epoch, uint64_t *clock, size_t size, int64_t ttl_ms, size_t bytes);
void history_free(history *h);

/* Keeps a copy of the message; its seq (the clock's next) in *seq. -1 out of memory
 * (nothing kept), else 0. A message larger than bytes is given a seq but not
 * kept, so a later replay from before it is not recovered. */
int history_append(history *h, const void *data, size_t n, int binary, int64_t now_ms,
                   uint64_t *seq);

/* Writes the id of seq into buf (HISTORY_ID_MAX bytes); its length. */
size_t history_id(const history *h, uint64_t seq, char *buf);

/* The newest id into buf; 0 when nothing was appended yet. */
size_t history_last_id(const history *h, char *buf);

/* Drops what is older than ttl. */
void history_trim(history *h, int64_t now_ms);

typedef void (*history_fn)(void *ud, history_msg *m, uint64_t seq);

/* Calls fn for every message after since ("earliest": all held), oldest
 * first; since may be an id of another history on the same clock. 1
 * recovered; 0 not (since made up, from another epoch, or some message
 * after it no longer held): fn is then never called. */
int history_range(history *h, const char *since, size_t len, int64_t now_ms, history_fn fn,
                  void *ud);

/* Messages held and their payload bytes. */
size_t history_count(const history *h);
size_t history_bytes(const history *h);

#pragma GCC visibility pop

#endif
