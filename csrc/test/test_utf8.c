#include <stdlib.h>

#include "test/check.h"
#include "protocol/utf8.h"

/* Reference: index of the first byte after which no completion of the input
 * can be valid (n when there is none); *boundary tells whether all n bytes
 * form complete characters. A partial character is viable when some code point
 * in the range its bits allow is >= the least for its length, <= U+10FFFF and
 * not a surrogate. */
static size_t ref_scan(const uint8_t *s, size_t n, int *boundary) {
  size_t i = 0;
  *boundary = 1;
  while (i < n) {
    uint8_t b = s[i];
    int len;
    uint32_t cp, least;
    if (b < 0x80) {
      i++;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F, least = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F, least = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07, least = 0x10000;
    } else {
      return i;
    }
    for (int j = 0; j < len; j++) {
      if (j > 0) {
        if (i + (size_t)j >= n) {
          *boundary = 0;
          return n;
        }
        if ((s[i + (size_t)j] & 0xC0) != 0x80) return i + (size_t)j;
        cp = cp << 6 | (s[i + (size_t)j] & 0x3F);
      }
      int rest = len - 1 - j;
      uint32_t lo = cp << (6 * rest), hi = lo | ((1u << (6 * rest)) - 1);
      if (lo < least) lo = least;
      if (hi > 0x10FFFF) hi = 0x10FFFF;
      int viable = lo <= hi && !(lo >= 0xD800 && hi <= 0xDFFF);
      if (!viable) return i + (size_t)j;
    }
    i += (size_t)len;
  }
  return n;
}

/* Index of the byte at which feeding one byte at a time first rejects. */
static size_t feed_bytes(const uint8_t *s, size_t n, utf8_state *end) {
  utf8_state st = UTF8_ACCEPT;
  size_t bad = n;
  for (size_t i = 0; i < n; i++) {
    st = utf8_feed(st, s + i, 1);
    if (st == UTF8_REJECT && bad == n) bad = i;
  }
  *end = st;
  return bad;
}

static unsigned long mismatches;

static void compare(const uint8_t *s, size_t n) {
  int boundary;
  utf8_state end;
  size_t want = ref_scan(s, n, &boundary), got = feed_bytes(s, n, &end);
  int valid = want == n && boundary;
  if (got != want || utf8_valid(s, n) != valid || (end == UTF8_ACCEPT) != valid ||
      (end == UTF8_REJECT) != (want < n)) {
    if (mismatches++ < 10) {
      printf("mismatch for");
      for (size_t i = 0; i < n; i++) printf(" %02X", s[i]);
      printf(": ref %zu/%d, dfa %zu/%u\n", want, boundary, got, (unsigned)end);
    }
  }
}

static int valid_str(const char *s) { return utf8_valid((const uint8_t *)s, strlen(s)); }

/* at which byte of s (fed whole, then split at every point) the DFA rejects */
static size_t rejects_at(const char *s, size_t n) {
  utf8_state st;
  return feed_bytes((const uint8_t *)s, n, &st);
}

static void exhaustive(void) {
  uint8_t s[4];
  for (unsigned a = 0; a < 256; a++) {
    s[0] = (uint8_t)a;
    compare(s, 1);
    for (unsigned b = 0; b < 256; b++) {
      s[1] = (uint8_t)b;
      compare(s, 2);
      for (unsigned c = 0; c < 256; c++) {
        s[2] = (uint8_t)c;
        compare(s, 3);
      }
    }
  }
  static const uint8_t last[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xFF};
  for (unsigned a = 0xF0; a < 0x100; a++)
    for (unsigned b = 0; b < 256; b++)
      for (unsigned c = 0; c < 256; c++)
        for (size_t d = 0; d < sizeof last; d++) {
          s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = (uint8_t)c, s[3] = last[d];
          compare(s, 4);
        }
  CHECK_EQ(mismatches, 0);
}

static void named_cases(void) {
  CHECK(utf8_valid((const uint8_t *)"", 0));
  CHECK(utf8_valid(NULL, 0));
  CHECK(valid_str("hello"));
  CHECK(valid_str("\xC2\x80"));                                     /* U+0080 */
  CHECK(valid_str("\xDF\xBF"));                                     /* U+07FF */
  CHECK(valid_str("\xE0\xA0\x80"));                                 /* U+0800 */
  CHECK(valid_str("\xED\x9F\xBF"));                                 /* U+D7FF */
  CHECK(valid_str("\xEE\x80\x80"));                                 /* U+E000 */
  CHECK(valid_str("\xEF\xBF\xBF"));                                 /* U+FFFF */
  CHECK(valid_str("\xF0\x90\x80\x80"));                             /* U+10000 */
  CHECK(valid_str("\xF4\x8F\xBF\xBF"));                             /* U+10FFFF */
  CHECK(valid_str("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5")); /* Autobahn 6.2 */
  CHECK(!valid_str("\xC0\x80"));
  CHECK(!valid_str("\xC1\xBF"));
  CHECK(!valid_str("\xE0\x80\x80"));
  CHECK(!valid_str("\xE0\x9F\xBF"));
  CHECK(!valid_str("\xED\xA0\x80"));
  CHECK(!valid_str("\xED\xBF\xBF"));
  CHECK(!valid_str("\xF0\x8F\xBF\xBF"));
  CHECK(!valid_str("\xF4\x90\x80\x80"));
  CHECK(!valid_str("\xF5\x80\x80\x80"));
  CHECK(!valid_str("\xFF"));
  CHECK(!valid_str("\x80"));
  CHECK(!valid_str("a\xBF"));
  CHECK(!valid_str("\xC2")); /* truncated */
  CHECK(!valid_str("\xE1\x80"));
  CHECK(!valid_str("\xF1\x80\x80"));
  CHECK(!valid_str("\xC2\x41"));
  /* fail fast: the first byte that cannot continue */
  CHECK_EQ(rejects_at("\xC0\x80", 2), 0);
  CHECK_EQ(rejects_at("\xE0\x80\x80", 3), 1);
  CHECK_EQ(rejects_at("\xED\xA0\x80", 3), 1);
  CHECK_EQ(rejects_at("\xF4\x90\x80\x80", 4), 1);
  CHECK_EQ(rejects_at("\xF5", 1), 0);
  CHECK_EQ(rejects_at("ab\x80", 3), 2);
  CHECK_EQ(rejects_at("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"
                      "edited",
                      17),
           12);
  /* the intermediate state is neither accept nor reject mid-character */
  utf8_state st = utf8_feed(UTF8_ACCEPT, (const uint8_t *)"\xF0\x90", 2);
  CHECK(st != UTF8_ACCEPT && st != UTF8_REJECT);
  CHECK_EQ(utf8_feed(st, (const uint8_t *)"\x80\x80", 2), UTF8_ACCEPT);
  /* sticky */
  CHECK_EQ(utf8_feed(UTF8_REJECT, (const uint8_t *)"a", 1), UTF8_REJECT);
  CHECK_EQ(utf8_feed(UTF8_REJECT, NULL, 0), UTF8_REJECT);
  CHECK_EQ(utf8_feed(UTF8_ACCEPT, NULL, 0), UTF8_ACCEPT);
}

/* The word-at-a-time path: a bad byte at every position of long ASCII runs,
 * and multi-byte characters straddling every word boundary. */
static void fast_path(void) {
  uint8_t s[80];
  int bad = 0;
  for (size_t pos = 0; pos < sizeof s; pos++) {
    memset(s, 'x', sizeof s);
    s[pos] = 0x80;
    utf8_state st;
    if (feed_bytes(s, sizeof s, &st) != pos || utf8_valid(s, sizeof s)) bad++;
    if (utf8_feed(UTF8_ACCEPT, s, sizeof s) != UTF8_REJECT) bad++;
    if (utf8_valid(s, pos) != 1) bad++;
    memset(s, 'x', sizeof s);
    if (pos + 4 <= sizeof s) {
      memcpy(s + pos, "\xF0\x9F\x98\x80", 4); /* U+1F600 */
      if (!utf8_valid(s, sizeof s)) bad++;
      for (size_t cut = 0; cut <= sizeof s; cut++) {
        utf8_state a = utf8_feed(UTF8_ACCEPT, s, cut);
        if (utf8_feed(a, s + cut, sizeof s - cut) != UTF8_ACCEPT) bad++;
      }
      if (utf8_valid(s, pos + 3)) bad++; /* ends mid-character */
    }
  }
  CHECK_EQ(bad, 0);
}

/* Random mixes of valid characters and junk: whole and split agree with the
 * reference and with each other. */
static void random_split(void) {
  static const char *pieces[] = {"a",
                                 "~",
                                 "\x7F",
                                 "\xC2\xA9",
                                 "\xE2\x82\xAC",
                                 "\xF0\x9F\x92\xA9",
                                 "\xEF\xBF\xBF",
                                 "\xF4\x8F\xBF\xBF"};
  static const char *junk[] = {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF8", "\xE2\x82", "\xF4\x90"};
  unsigned seed = 12345;
  int bad = 0;
  for (int round = 0; round < 2000; round++) {
    uint8_t s[200];
    size_t n = 0;
    seed = seed * 1103515245 + 12345;
    int use_junk = (seed >> 16) % 3 == 0;
    while (n < 180) {
      seed = seed * 1103515245 + 12345;
      const char *p = pieces[(seed >> 16) % 8];
      if (use_junk && (seed >> 8) % 40 == 0) p = junk[(seed >> 20) % 6];
      memcpy(s + n, p, strlen(p));
      n += strlen(p);
    }
    int boundary;
    int valid = ref_scan(s, n, &boundary) == n && boundary;
    if (utf8_valid(s, n) != valid) bad++;
    for (size_t cut = 0; cut <= n; cut++) {
      utf8_state a = utf8_feed(UTF8_ACCEPT, s, cut);
      if ((utf8_feed(a, s + cut, n - cut) == UTF8_ACCEPT) != valid) bad++;
    }
  }
  CHECK_EQ(bad, 0);
}

int main(void) {
  named_cases();
  fast_path();
  random_split();
  exhaustive();
  return check_done();
}
