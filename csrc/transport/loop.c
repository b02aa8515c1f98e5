#include "transport/loop.h"

#include "transport/topic.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "transport/tls.h"

static void noop_timer(uv_timer_t *t) { (void)t; }
static void noop_idle(uv_idle_t *t) { (void)t; }

static void on_sleep_timer(uv_timer_t *t);

/* A process started with stdin, stdout or stderr closed would hand that
 * number to libuv's own descriptors (epoll, its wake-up pipe), which libuv
 * refuses to close, and to sockets that a stray write to "stdout" would
 * then corrupt: such slots get /dev/null first, as daemons do. */
static void fill_std_fds(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int n = open("/dev/null", O_RDWR);
    if (n != fd && n >= 0) close(n); /* another thread took the slot: leave it */
  }
}

int loop_init(loop *l) {
  memset(l, 0, sizeof *l);
  fill_std_fds();
  int rc = uv_loop_init(&l->uv);
  if (rc) return rc;
  l->uv.data = l;
  uv_timer_init(&l->uv, &l->step_timer);
  uv_timer_init(&l->uv, &l->sleep_timer);
  uv_timer_init(&l->uv, &l->alarm_timer);
  /* no timer may keep the loop alive by itself */
  uv_unref((uv_handle_t *)&l->step_timer);
  uv_unref((uv_handle_t *)&l->sleep_timer);
  uv_unref((uv_handle_t *)&l->alarm_timer);
  uv_idle_init(&l->uv, &l->kick);
  uv_unref((uv_handle_t *)&l->kick);
  l->next_id = 1;
  l->wake_gen = 1;
  l->deferred.prev = l->deferred.next = &l->deferred;
  l->tls_steps = LOOP_TLS_STEPS;
  return 0;
}

/* Handles with data belong to a loop_obj; the loop's own timers have none. */
static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (!h->data) {
    uv_close(h, NULL);
    return;
  }
  loop_obj *o = h->data;
  o->ops->close(o);
}

void loop_close(loop *l) {
  l->closing = 1;
  uv_walk(&l->uv, close_any, NULL);
  uv_run(&l->uv, UV_RUN_DEFAULT);
  uv_loop_close(&l->uv);
  topic_table_free(l);
  if (l->tls_client) tls_ctx_unref(l->tls_client);
  buf_free(&l->zbuf);
  free(l->plain);
  l->plain = NULL;
  for (size_t i = 0; i < l->nspares; i++) free(l->spares[i].p);
  l->nspares = l->spare_bytes = 0;
  free(l->ready);
  free(l->sleepers);
  l->ready = NULL;
  l->sleepers = NULL;
}

int64_t loop_new_id(loop *l) { return l->next_id++; }

void loop_wake(loop *l, int64_t id) {
  if (l->blocking) {
    /* A timer callback may wake a waiter just before libuv polls for I/O
     * with no deadline; an active idle handle makes that poll return at
     * once (a 0 ms timer would not: libuv runs it in the same pass). */
    l->blocking = 0;
    uv_idle_start(&l->kick, noop_idle);
  }
  if (l->nready == l->ready_cap) {
    size_t cap = l->ready_cap ? l->ready_cap * 2 : 64;
    int64_t *p = realloc(l->ready, cap * sizeof *p);
    if (!p) {
      l->wake_all = 1;
      return;
    }
    l->ready = p;
    l->ready_cap = cap;
  }
  l->ready[l->nready++] = id;
}

/* Sleepers: a binary min-heap on due time. */

static void sift_up(loop_sleeper *h, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h[parent].due <= h[i].due) break;
    loop_sleeper t = h[parent];
    h[parent] = h[i];
    h[i] = t;
    i = parent;
  }
}

static void sift_down(loop_sleeper *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && h[l].due < h[m].due) m = l;
    if (r < n && h[r].due < h[m].due) m = r;
    if (m == i) break;
    loop_sleeper t = h[m];
    h[m] = h[i];
    h[i] = t;
    i = m;
  }
}

static void arm_sleep_timer(loop *l) {
  if (l->nsleepers == 0) {
    uv_timer_stop(&l->sleep_timer);
    uv_unref((uv_handle_t *)&l->sleep_timer);
    return;
  }
  uint64_t now = uv_now(&l->uv), due = l->sleepers[0].due;
  uv_timer_start(&l->sleep_timer, on_sleep_timer, due > now ? due - now : 0, 0);
  uv_ref((uv_handle_t *)&l->sleep_timer); /* a sleeper keeps the loop alive */
}

static void on_sleep_timer(uv_timer_t *t) {
  loop *l = t->loop->data;
  uint64_t now = uv_now(&l->uv);
  while (l->nsleepers && l->sleepers[0].due <= now) {
    loop_wake(l, l->sleepers[0].id);
    l->sleepers[0] = l->sleepers[--l->nsleepers];
    sift_down(l->sleepers, l->nsleepers, 0);
  }
  arm_sleep_timer(l);
}

static void on_alarm(uv_timer_t *t) {
  loop *l = t->loop->data;
  uv_unref((uv_handle_t *)t);
  loop_wake(l, l->alarm_id);
}

void loop_alarm(loop *l, int64_t id, uint64_t ms) {
  l->alarm_id = id;
  uv_update_time(&l->uv); /* the due time was reckoned from a fresh clock */
  uv_timer_start(&l->alarm_timer, on_alarm, ms, 0);
  uv_ref((uv_handle_t *)&l->alarm_timer); /* as a sleeper does */
}

void loop_alarm_stop(loop *l) {
  uv_timer_stop(&l->alarm_timer);
  uv_unref((uv_handle_t *)&l->alarm_timer);
}

int loop_sleep(loop *l, int64_t id, uint64_t ms) {
  if (l->nsleepers == l->sleepers_cap) {
    size_t cap = l->sleepers_cap ? l->sleepers_cap * 2 : 16;
    loop_sleeper *p = realloc(l->sleepers, cap * sizeof *p);
    if (!p) return -1;
    l->sleepers = p;
    l->sleepers_cap = cap;
  }
  uv_update_time(&l->uv);
  l->sleepers[l->nsleepers] = (loop_sleeper){uv_now(&l->uv) + ms, id};
  sift_up(l->sleepers, l->nsleepers++);
  arm_sleep_timer(l);
  return 0;
}

int loop_random(loop *l, void *out, size_t n) {
  if (n > sizeof l->pool) return -1;
  if (l->pool_left < n) {
    if (RAND_bytes(l->pool, sizeof l->pool) != 1) return -1;
    l->pool_left = sizeof l->pool;
  }
  memcpy(out, l->pool + sizeof l->pool - l->pool_left, n);
  l->pool_left -= n;
  return 0;
}

void *loop_alloc(loop *l, size_t n, size_t *cap) {
  *cap = n;
  if (n < LOOP_SPARE_MIN || !l->nspares) return malloc(n ? n : 1); /* small: malloc is fast */
  size_t best = l->nspares;
  /* newest first (warm in the cache); an exact fit ends the search, as
   * most spares are of the few usual sizes */
  for (size_t i = l->nspares; i-- > 0;) {
    size_t c = l->spares[i].cap;
    if (c >= n && c / 2 <= n && (best == l->nspares || c < l->spares[best].cap)) best = i;
    if (c == n) break;
  }
  if (best < l->nspares) {
    void *p = l->spares[best].p;
    *cap = l->spares[best].cap;
    l->spare_bytes -= *cap;
    l->spares[best] = l->spares[--l->nspares];
    return p;
  }
  return malloc(n);
}

void loop_release(loop *l, void *p, size_t cap) {
  if (!p) return;
  if (cap >= LOOP_SPARE_MIN && l->nspares < LOOP_SPARES &&
      l->spare_bytes + cap <= LOOP_SPARE_BYTES && !l->closing) {
    l->spares[l->nspares++] = (loop_block){p, cap};
    l->spare_bytes += cap;
    return;
  }
  free(p);
}

void loop_mark_dirty(loop *l, loop_obj *o) {
  if (o->dirty_prev) return;
  o->dirty_next = l->dirty;
  if (l->dirty) l->dirty->dirty_prev = &o->dirty_next;
  o->dirty_prev = &l->dirty;
  l->dirty = o;
}

void loop_unmark_dirty(loop *l, loop_obj *o) {
  (void)l;
  if (!o->dirty_prev) return;
  *o->dirty_prev = o->dirty_next;
  if (o->dirty_next) o->dirty_next->dirty_prev = o->dirty_prev;
  o->dirty_next = NULL;
  o->dirty_prev = NULL;
}

uint8_t *loop_plain(loop *l) {
  if (!l->plain) l->plain = malloc(LOOP_READ_SIZE);
  return l->plain;
}

int loop_tls_step(loop *l) {
  if (!l->tls_steps) return 0;
  l->tls_steps--;
  return 1;
}

void loop_defer(loop *l, loop_task *t) {
  if (t->next) return;
  t->next = &l->deferred;
  t->prev = l->deferred.prev;
  t->prev->next = t;
  l->deferred.prev = t;
}

void loop_undefer(loop *l, loop_task *t) {
  (void)l;
  if (!t->next) return;
  t->prev->next = t->next;
  t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static int has_deferred(const loop *l) { return l->deferred.next != &l->deferred; }

/* A fresh budget, spent on the oldest put-off work first: new handshakes
 * wait behind it, so none waits for ever. */
static void run_deferred(loop *l) {
  l->tls_steps = LOOP_TLS_STEPS;
  while (l->tls_steps && has_deferred(l)) {
    loop_task *t = l->deferred.next;
    loop_undefer(l, t);
    t->run(t);
  }
}

void loop_flush(loop *l) {
  while (l->dirty) {
    loop_obj *o = l->dirty;
    loop_unmark_dirty(l, o);
    o->ops->flush(o);
  }
}

size_t loop_step(loop *l, int timeout_ms) {
  run_deferred(l);
  loop_flush(l);
  if (l->nready || l->wake_all || has_deferred(l)) timeout_ms = 0;
  if (timeout_ms == 0) {
    uv_run(&l->uv, UV_RUN_NOWAIT);
  } else {
    if (timeout_ms > 0) uv_timer_start(&l->step_timer, noop_timer, (uint64_t)timeout_ms, 0);
    l->blocking = 1;
    uv_run(&l->uv, UV_RUN_ONCE);
    l->blocking = 0;
    uv_timer_stop(&l->step_timer);
    uv_idle_stop(&l->kick);
  }
  /* callbacks may have queued pongs and close replies: send them now */
  loop_flush(l);
  return l->nready;
}

void loop_take_ready(loop *l) {
  l->nready = 0;
  l->wake_all = 0;
  l->wake_gen++;
}

int loop_timeout(loop *l) {
  if (l->nready || l->wake_all || l->dirty || has_deferred(l)) return 0;
  /* the host may have spent a while elsewhere since the last step */
  uv_update_time(&l->uv);
  /* libuv says 0 for a loop with nothing in it (a step would return at
   * once), but a host polling pollfd() needs "no deadline" there: a 0 would
   * have it re-arm a 0 ms timer forever */
  if (!uv_loop_alive(&l->uv)) return -1;
  return uv_backend_timeout(&l->uv);
}

int loop_alive(loop *l) {
  return l->nready || l->wake_all || l->dirty || has_deferred(l) || uv_loop_alive(&l->uv);
}

/* Signals */

static const int watchable[LOOP_NSIGNALS] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};

static int signal_slot(int signum) {
  for (int i = 0; i < LOOP_NSIGNALS; i++)
    if (watchable[i] == signum) return i;
  return -1;
}

static void on_signal(uv_signal_t *h, int signum) {
  loop *l = h->loop->data;
  int i = signal_slot(signum);
  if (i < 0 || !l->signal_id[i]) return;
  l->signal_count[i]++;
  loop_wake(l, l->signal_id[i]);
}

int loop_signal(loop *l, int signum, int64_t id) {
  int i = signal_slot(signum);
  if (i < 0) return UV_EINVAL;
  uv_signal_t *h = &l->signals[i];
  if (!id) {
    if (l->signal_inited & (1u << i)) uv_signal_stop(h);
    l->signal_id[i] = 0;
    l->signal_count[i] = 0;
    return 0;
  }
  if (!(l->signal_inited & (1u << i))) {
    int rc = uv_signal_init(&l->uv, h);
    if (rc) return rc;
    uv_unref((uv_handle_t *)h);
    l->signal_inited |= 1u << i;
  }
  l->signal_id[i] = id;
  return uv_signal_start(h, on_signal, signum);
}

unsigned loop_signal_take(loop *l, int signum) {
  int i = signal_slot(signum);
  if (i < 0) return 0;
  unsigned n = l->signal_count[i];
  l->signal_count[i] = 0;
  return n;
}

/* Transport API for the binding */

size_t loop_size(void) { return sizeof(loop); }

const int64_t *loop_ready(const loop *l, size_t *n, int *all) {
  *n = l->nready;
  *all = l->wake_all;
  return l->ready;
}

int loop_pollfd(loop *l) { return uv_backend_fd(&l->uv); }

uint64_t loop_now(loop *l) {
  uv_update_time(&l->uv);
  return uv_now(&l->uv);
}
