/* alloc_count.so: an LD_PRELOAD allocation counter for bench/house.sh.
 *
 *   LD_PRELOAD=bench/alloc_count.so ALLOC_COUNT_OUT=/tmp/counts lua5.4 server.lua
 *   kill -USR1 PID   # start counting (after the warm-up)
 *   kill -USR2 PID   # stop, and write the counts to $ALLOC_COUNT_OUT
 *
 * It wraps malloc, calloc, realloc and free (glibc's __libc_* do the work,
 * so no dlsym is needed before the first allocation) and, while counting,
 * charges every call to the shared object its caller's return address lies
 * in (dladdr). That separates duplex's own C allocations (core.so) from the
 * Lua allocator's (PUC Lua's l_alloc calls realloc and free from the lua5.4
 * executable) and from libuv, OpenSSL or libc, without touching lua_Alloc.
 * LuaJIT's allocator is its own (mmap-backed), so its Lua objects do not
 * show up at all. The output has one line per object:
 *   <path> malloc=N calloc=N realloc=N free=N
 * where free counts free() of a non-NULL pointer. A counting tool has to
 * keep its counts in globals: this file is a bench tool, not part of duplex. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

enum { K_MALLOC, K_CALLOC, K_REALLOC, K_FREE, KINDS };
enum { MAX_OBJS = 32, CACHE = 512 };

typedef struct {
  void *base; /* dli_fbase: which object */
  const char *name;
  atomic_ulong n[KINDS];
} ac_obj;

typedef struct {
  atomic_uintptr_t ret;
  atomic_int obj;
} ac_slot;

static atomic_int ac_on;
static ac_obj ac_objs[MAX_OBJS];
static atomic_int ac_nobjs;
static ac_slot ac_cache[CACHE];
static _Thread_local int ac_busy; /* no counting inside our own dladdr */

static int ac_object_of(uintptr_t ret) {
  ac_slot *s = &ac_cache[(ret >> 2) % CACHE];
  if (atomic_load_explicit(&s->ret, memory_order_acquire) == ret)
    return atomic_load_explicit(&s->obj, memory_order_relaxed);
  Dl_info info;
  memset(&info, 0, sizeof info);
  if (!dladdr((void *)ret, &info)) info.dli_fname = "?";
  int n = atomic_load(&ac_nobjs), i;
  for (i = 0; i < n; i++)
    if (ac_objs[i].base == info.dli_fbase) break;
  if (i == n) {
    if (n == MAX_OBJS)
      i = MAX_OBJS - 1; /* the last slot takes the rest */
    else {
      ac_objs[i].base = info.dli_fbase;
      ac_objs[i].name = info.dli_fname ? info.dli_fname : "?";
      atomic_store(&ac_nobjs, n + 1);
    }
  }
  atomic_store_explicit(&s->obj, i, memory_order_relaxed);
  atomic_store_explicit(&s->ret, ret, memory_order_release);
  return i;
}

static void ac_count(int kind, void *ret) {
  if (!atomic_load_explicit(&ac_on, memory_order_relaxed) || ac_busy) return;
  ac_busy = 1;
  int i = ac_object_of((uintptr_t)ret);
  atomic_fetch_add_explicit(&ac_objs[i].n[kind], 1, memory_order_relaxed);
  ac_busy = 0;
}

void *malloc(size_t n) {
  ac_count(K_MALLOC, __builtin_return_address(0));
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t size) {
  ac_count(K_CALLOC, __builtin_return_address(0));
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n) {
  ac_count(K_REALLOC, __builtin_return_address(0));
  return __libc_realloc(p, n);
}

void free(void *p) {
  if (p) ac_count(K_FREE, __builtin_return_address(0));
  __libc_free(p);
}

/* ---- the signals: plain write(), nothing that allocates -------------------- */

static size_t ac_put(char *buf, size_t at, size_t cap, const char *s) {
  while (*s && at < cap) buf[at++] = *s++;
  return at;
}

static size_t ac_put_num(char *buf, size_t at, size_t cap, unsigned long v) {
  char digits[24];
  size_t n = 0;
  do digits[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  while (n > 0 && at < cap) buf[at++] = digits[--n];
  return at;
}

static void ac_dump(int fd) {
  static const char *const names[KINDS] = {" malloc=", " calloc=", " realloc=", " free="};
  int n = atomic_load(&ac_nobjs);
  for (int i = 0; i < n; i++) {
    char line[1024];
    size_t at = ac_put(line, 0, sizeof line - 1, ac_objs[i].name[0] ? ac_objs[i].name : "(main)");
    for (int k = 0; k < KINDS; k++) {
      at = ac_put(line, at, sizeof line - 1, names[k]);
      at = ac_put_num(line, at, sizeof line - 1, atomic_load(&ac_objs[i].n[k]));
    }
    line[at++] = '\n';
    ssize_t w = write(fd, line, at);
    (void)w;
  }
}

static void ac_on_signal(int sig) {
  if (sig == SIGUSR1) {
    atomic_store(&ac_on, 1);
    return;
  }
  atomic_store(&ac_on, 0);
  const char *path = getenv("ALLOC_COUNT_OUT");
  if (!path) return;
  /* write to a temporary name, then rename: the reader never sees half */
  char tmp[4096];
  size_t at = ac_put(tmp, 0, sizeof tmp - 5, path);
  at = ac_put(tmp, at, sizeof tmp - 1, ".tmp");
  tmp[at] = '\0';
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ac_dump(fd);
  close(fd);
  rename(tmp, path);
}

__attribute__((constructor)) static void ac_init(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = ac_on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
}
