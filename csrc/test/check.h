/* A tiny test harness. Every CHECK counts as passed or failed; a failure
 * prints file:line. A test's main ends with `return check_done();`, which
 * prints "N passed, N failed" and gives a non-zero exit on failure. */
#ifndef DUPLEX_CHECK_H
#define DUPLEX_CHECK_H

#include <stdio.h>
#include <string.h>

static unsigned long check_passed, check_failed;

static int check_report(int ok, const char *file, int line, const char *expr) {
  if (ok) {
    check_passed++;
  } else {
    check_failed++;
    printf("%s:%d: failed: %s\n", file, line, expr);
  }
  return ok;
}

#define CHECK(c) check_report((c) != 0, __FILE__, __LINE__, #c)

#define CHECK_EQ(a, b)                                                                             \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (!check_report(a_ == b_, __FILE__, __LINE__, #a " == " #b))                                 \
      printf("    %lld != %lld\n", a_, b_);                                                        \
  } while (0)

#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (!check_report(a_ == b_ || (a_ && b_ && strcmp(a_, b_) == 0), __FILE__, __LINE__,           \
                      #a " == " #b))                                                               \
      printf("    \"%s\" != \"%s\"\n", a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
  } while (0)

/* a is n bytes (not NUL-terminated) and must equal the string b */
#define CHECK_MEMSTR(a, n, b)                                                                      \
  do {                                                                                             \
    const char *a_ = (const char *)(a), *b_ = (b);                                                 \
    size_t n_ = (n);                                                                               \
    if (!check_report(a_ && n_ == strlen(b_) && memcmp(a_, b_, n_) == 0, __FILE__, __LINE__,       \
                      #a " == " #b))                                                               \
      printf("    \"%.*s\" != \"%s\"\n", a_ ? (int)n_ : 6, a_ ? a_ : "(null)", b_);                \
  } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

static int check_done(void) {
  printf("%lu passed, %lu failed\n", check_passed, check_failed);
  return check_failed != 0;
}

#endif
