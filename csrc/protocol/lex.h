/* HTTP lexing shared by the handshake, permessage-deflate and the transport
 * (RFC 9110 5.6): token characters, field-value characters, optional
 * whitespace, case-insensitive comparison, and lists separated by "," or
 * ";". Spans are (pointer, length) pairs into the caller's bytes. */
#ifndef DUPLEX_LEX_H
#define DUPLEX_LEX_H

#include <stddef.h>

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

/* tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
int lex_tchar(unsigned char c);

/* field-value and reason-phrase characters: HTAB, SP, VCHAR, obs-text */
int lex_text(unsigned char c);

/* OWS: SP or HTAB */
int lex_ows(char c);

/* Length of the run of tchars that starts s[0..n). */
size_t lex_token(const char *s, size_t n);

/* 1 when s is a non-empty, NUL-terminated token. */
int lex_is_token(const char *s);

/* 1 when s[0..n) equals t[0..m), ASCII letters compared without case. */
int lex_ieq(const char *s, size_t n, const char *t, size_t m);

/* lex_ieq against a NUL-terminated literal. */
int lex_is(const char *s, size_t n, const char *lit);

/* Drops OWS from both ends of the span *s, *n. */
void lex_trim(const char **s, size_t *n);

/* The items of a list separated by sep, each OWS-trimmed; empty items are
 * given too (a span with k separators holds k + 1 items), so that the caller
 * decides whether they are allowed. */
typedef struct lex_list {
  const char *p, *end; /* p is NULL once the last item was given */
  char sep;
} lex_list;

void lex_list_init(lex_list *l, const char *s, size_t n, char sep);

/* The next item into *s, *n: 1, or 0 when none is left. */
int lex_list_next(lex_list *l, const char **s, size_t *n);

#pragma GCC visibility pop

#endif
