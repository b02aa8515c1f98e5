#include "protocol/lex.h"

#include <string.h>

int lex_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int lex_text(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

int lex_ows(char c) { return c == ' ' || c == '\t'; }

size_t lex_token(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && lex_tchar((unsigned char)s[i])) i++;
  return i;
}

int lex_is_token(const char *s) {
  if (!s || !*s) return 0;
  size_t n = strlen(s);
  return lex_token(s, n) == n;
}

static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

int lex_ieq(const char *s, size_t n, const char *t, size_t m) {
  if (n != m) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)s[i]) != lower((unsigned char)t[i])) return 0;
  return 1;
}

int lex_is(const char *s, size_t n, const char *lit) { return lex_ieq(s, n, lit, strlen(lit)); }

void lex_trim(const char **s, size_t *n) {
  while (*n && lex_ows(**s)) (*s)++, (*n)--;
  while (*n && lex_ows((*s)[*n - 1])) (*n)--;
}

void lex_list_init(lex_list *l, const char *s, size_t n, char sep) {
  l->p = s ? s : "";
  l->end = l->p + (s ? n : 0);
  l->sep = sep;
}

int lex_list_next(lex_list *l, const char **s, size_t *n) {
  if (!l->p) return 0;
  const char *q = memchr(l->p, l->sep, (size_t)(l->end - l->p));
  *s = l->p;
  *n = (size_t)((q ? q : l->end) - l->p);
  l->p = q ? q + 1 : NULL;
  lex_trim(s, n);
  return 1;
}
