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

/* What the loop knows of the objects whose handles it runs (connections and
 * listeners): each starts with a loop_obj, and every handle's data points at
 * it, so the loop reaches them through these operations alone. */
typedef struct loop_obj loop_obj;
typedef struct loop_obj_ops {
  void (*close)(loop_obj *o); /* close every handle (loop_close) */
  void (*flush)(loop_obj *o); /* send what was queued (loop_flush) */
} loop_obj_ops;
struct loop_obj {
  const loop_obj_ops *ops;
  loop_obj *dirty_next, **dirty_prev; /* dirty_prev is NULL when not listed */
};

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

enum { LOOP_SPARES = 64, LOOP_SPARE_MIN = 4096, LOOP_SPARE_BYTES = 8 << 20 };

/* Work put off to the next step: a TLS handshake over the step's budget.
 * Embedded in its owner; next is NULL while it is not queued. */
typedef struct loop_task {
  struct loop_task *prev, *next;
  void (*run)(struct loop_task *t);
} loop_task;

/* TLS handshake steps (SSL_do_handshake calls on new input) per loop step.
 * A server's first step (X25519 and a signature) costs about 0.1 ms with an
 * EC P-256 key and 0.4 ms with RSA-2048 (openssl speed on the 2-core test
 * machine; older cores 2-3 times that). 16 keep the handshake work of one
 * step within a few ms, so that a flood of ClientHellos (epoll hands over
 * up to 1024 ready sockets at once) delays open connections by that much
 * at most, not by hundreds of ms; and the per-step cost (a poll, a Lua
 * scheduler pass: tens of us) stays small beside 16 handshakes, so a loop
 * with nothing else to do still runs them at nearly full speed. */
enum { LOOP_TLS_STEPS = 16 };

/* The signals Lua may watch (loop_signal), as slots. */
enum { LOOP_NSIGNALS = 5 };

typedef struct loop {
  uv_loop_t uv;
  uv_timer_t step_timer;  /* bounds one step's wait */
  uv_timer_t sleep_timer; /* fires for the earliest sleeper */
  uv_timer_t alarm_timer; /* the Lua scheduler's own timers (loop_alarm) */
  int64_t alarm_id;       /* the id it wakes */
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
  /* objects with output waiting for the next flush; one flush per step
   * sends everything queued since the last one in one write per connection
   * (corking). Doubly linked: a closing connection leaves it in O(1). */
  loop_obj *dirty;
  int closing;
  struct tls_ctx *tls_client; /* default client TLS config, made on first use */
  struct topic_table *topics; /* made on the first subscribe (topic.c) */
  buf zbuf;                   /* scratch for compressing one message */
  /* The Redis broker (broker.c), or NULL; topic_hook is its hook, told
   * when a topic gets its first subscriber or loses its last (NULL without
   * a broker, so topics cost nothing more then). */
  struct broker *broker;
  void (*topic_hook)(struct loop *l, const char *name, size_t len);
  uint64_t broker_gen;
  /* Large message and write buffers come and go at a high rate; giving each
   * back to malloc makes glibc trim and regrow its heap (page faults on every
   * message). A few spares live here instead, so idle connections still
   * hold none. */
  loop_block spares[LOOP_SPARES];
  size_t nspares, spare_bytes;
  /* decrypted TLS input: the ciphertext sits in readbuf while OpenSSL reads
   * it in place, so the plaintext needs a buffer of its own (made when the
   * first TLS connection starts, shared by all) */
  uint8_t *plain;
  unsigned tls_steps; /* handshake steps left in this step (LOOP_TLS_STEPS) */
  loop_task deferred; /* ring of handshakes put off, oldest first */
  /* signals watched for Lua (loop_signal), by LOOP_SIG_* slot; their
   * handles are unref'd: a watched signal keeps nothing alive */
  uv_signal_t signals[LOOP_NSIGNALS];
  int64_t signal_id[LOOP_NSIGNALS];     /* the id a delivery wakes, 0: not watched */
  unsigned signal_count[LOOP_NSIGNALS]; /* deliveries not yet taken */
  unsigned signal_inited;               /* bit per slot: handle initialised */
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

/* One alarm, re-armed at will, for waits that may be called off (a
 * receive with a timeout, a timer that is stopped): wakes id after ms
 * milliseconds and keeps the loop alive until then, unlike a sleeper that
 * nobody waits for any more. loop_alarm_stop calls it off. */
void loop_alarm(loop *l, int64_t id, uint64_t ms);
void loop_alarm_stop(loop *l);

/* Fills out with n <= 256 unpredictable bytes (RFC 6455 10.3 wants masking
 * keys an attacker cannot guess). 0, or -1 when OpenSSL has no entropy. */
int loop_random(loop *l, void *out, size_t n);

/* A block of at least n bytes (*cap tells its size), reusing a spare that
 * fits without wasting more than half of it; NULL when out of memory. */
void *loop_alloc(loop *l, size_t n, size_t *cap);

/* Gives a block back: kept as a spare when it is large and there is room,
 * else freed. */
void loop_release(loop *l, void *p, size_t cap);

/* Lists o for the next flush (once, however often it is called). */
void loop_mark_dirty(loop *l, loop_obj *o);

/* Takes o off the flush list if it is there. */
void loop_unmark_dirty(loop *l, loop_obj *o);

static inline int loop_is_dirty(const loop_obj *o) { return o->dirty_prev != NULL; }

/* The shared plaintext buffer of LOOP_READ_SIZE bytes, made on first use;
 * NULL when out of memory. */
uint8_t *loop_plain(loop *l);

/* Takes one TLS handshake step from this loop step's budget: 1, or 0 when
 * it is spent (then loop_defer the work). */
int loop_tls_step(loop *l);

/* Queues t to run at the start of a later step, within its budget (queued
 * work keeps the loop from waiting for I/O). loop_undefer unqueues it (and
 * does nothing when it is not queued). */
void loop_defer(loop *l, loop_task *t);
void loop_undefer(loop *l, loop_task *t);

/* Sends what every dirty object has queued. */
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

/* Watches signal signum (one of SIGINT, SIGTERM, SIGHUP, SIGUSR1,
 * SIGUSR2): each delivery is counted and wakes id; id 0 stops watching
 * (the process's default action comes back). 0, or a libuv error (UV_EINVAL
 * for another signal). */
int loop_signal(loop *l, int signum, int64_t id);

/* Deliveries of signum since the last call (0 for a signal not watched). */
unsigned loop_signal_take(loop *l, int signum);

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
