/* The event loop object: a libuv loop plus everything duplex shares between
 * connections (the read buffer, the wake-up list, the sleep timers). There is
 * no global mutable state outside it. */
#ifndef DUPLEX_LOOP_H
#define DUPLEX_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "protocol/buf.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

struct conn;

/* One read buffer per loop, so idle connections hold none; large enough
 * that a 64 KiB frame usually arrives whole and is delivered without a copy. */
enum { LOOP_READ_SIZE = 256 * 1024 };

typedef struct loop_sleeper {
  uint64_t due; /* uv_now() milliseconds */
  int64_t id;
} loop_sleeper;

/* A spare block kept for reuse (see loop_alloc). */
typedef struct loop_block {
  void *p;
  size_t cap;
} loop_block;

enum { LOOP_SPARES = 16, LOOP_SPARE_MIN = 4096, LOOP_SPARE_BYTES = 8 << 20 };

typedef struct loop {
  uv_loop_t uv;
  uv_timer_t step_timer;  /* bounds one step's wait */
  uv_timer_t sleep_timer; /* fires for the earliest sleeper */
  uv_idle_t kick;         /* active: the step must not wait for I/O */
  /* ids of waitables whose waiters may run now; duplicates are allowed (the
   * Lua scheduler folds them). wake_all is set when the list could not grow,
   * so that no wake-up is ever lost, only made coarse. */
  int64_t *ready;
  size_t nready, ready_cap;
  int wake_all;
  int blocking;      /* inside a step that may wait for I/O */
  uint64_t wake_gen; /* counts the ready lists handed out (see loop_take_ready) */
  int64_t next_id;
  /* min-heap of sleeping coroutines by due time */
  loop_sleeper *sleepers;
  size_t nsleepers, sleepers_cap;
  /* connections with output waiting for the next flush, linked through
   * conn->next_dirty; one flush per step sends everything queued since the
   * last one in one write per connection (corking). */
  struct conn *dirty;
  int closing;
  struct tls_ctx *tls_client; /* default client TLS config, made on first use */
  buf zbuf;                   /* scratch for compressing one message */
  /* Large message and write buffers come and go at a high rate; giving each
   * back to malloc makes glibc trim and regrow its heap (page faults on every
   * message). A few spares live here instead, so idle connections still
   * hold none. */
  loop_block spares[LOOP_SPARES];
  size_t nspares, spare_bytes;
  uint8_t pool[256]; /* random bytes for client masking keys, refilled from OpenSSL */
  size_t pool_left;
  uint8_t readbuf[LOOP_READ_SIZE];
} loop;

int loop_init(loop *l);

/* Closes every handle and runs the loop until they are gone. */
void loop_close(loop *l);

int64_t loop_new_id(loop *l);

/* Marks id ready: its waiters are resumed after this step. */
void loop_wake(loop *l, int64_t id);

/* Registers a sleeper for id that wakes after ms milliseconds. 0 or -1 (out
 * of memory). */
int loop_sleep(loop *l, int64_t id, uint64_t ms);

/* Fills out with n <= 256 unpredictable bytes (RFC 6455 10.3 wants masking
 * keys an attacker cannot guess). 0, or -1 when OpenSSL has no entropy. */
int loop_random(loop *l, void *out, size_t n);

/* A block of at least n bytes (*cap tells its size), reusing a spare that
 * fits without wasting more than half of it; NULL when out of memory. */
void *loop_alloc(loop *l, size_t n, size_t *cap);

/* Gives a block back: kept as a spare when it is large and there is room,
 * else freed. */
void loop_release(loop *l, void *p, size_t cap);

/* Sends what every dirty connection has queued. */
void loop_flush(loop *l);

/* One step: flush, then run libuv once, waiting at most timeout_ms for an
 * event (0: poll without waiting, negative: wait for the next event). Returns
 * the number of ready ids, then available in l->ready (cleared by the next
 * step). Never call from inside a libuv callback. */
size_t loop_step(loop *l, int timeout_ms);

/* Empties the ready list once its ids have been handed to the scheduler. */
void loop_take_ready(loop *l);

/* Milliseconds until the next step has work: 0 when output or wake-ups are
 * pending, -1 when nothing is scheduled. */
int loop_timeout(loop *l);

/* 1 while anything (listener, connection, sleeper, queued output) keeps the
 * loop alive. */
int loop_alive(loop *l);

/* Transport API for the binding (see transport/api.h) */

/* The binding allocates the loop itself (as a Lua userdata). */
size_t loop_size(void);

/* The ready list of the last loop_step: n ids, and *all set when every
 * waiter should be resumed. */
const int64_t *loop_ready(const loop *l, size_t *n, int *all);

/* The backend descriptor to poll for an embedding host, or -1. */
int loop_pollfd(loop *l);

/* The loop's clock in milliseconds, refreshed. */
uint64_t loop_now(loop *l);

#pragma GCC visibility pop

#endif
