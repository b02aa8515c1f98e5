/* The parser checks whole lines only (up to each LF), and a complete but
 * malformed line fails at once, without waiting for the end of the head.
 * Fed the head as it grows, it resumes at the first unfinished line, and
 * when the blank line arrives it splits the head into h in one more pass:
 * the parser keeps no pointer into a buffer that may move. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "protocol/handshake.h"
#include "protocol/lex.h"

static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- parsing ---------------------------------------------------------- */

enum { STAGE_METHOD, STAGE_FIRST, STAGE_HEADERS };

/* "HTTP/1.x" exactly; returns x or -1 */
static int version(const char *s, size_t n) {
  if (n != 8 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9') return -1;
  return s[7] - '0';
}

static int request_line(const char *s, size_t n, hs_head *h) {
  size_t i = lex_token(s, n), t;
  if (i == 0 || i == n || s[i] != ' ') return -1;
  h->method = s, h->method_len = i;
  t = ++i;
  while (i < n && (unsigned char)s[i] > ' ' && s[i] != 0x7F) i++;
  if (i == t || i == n || s[i] != ' ') return -1;
  h->target = s + t, h->target_len = i - t;
  return (h->minor_version = version(s + i + 1, n - i - 1)) < 0 ? -1 : 0;
}

static int status_line_in(const char *s, size_t n, hs_head *h) {
  if (n < 12 || (h->minor_version = version(s, 8)) < 0 || s[8] != ' ') return -1;
  for (int i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    h->status = h->status * 10 + (s[i] - '0');
  }
  if (h->status < 100) return -1;
  if (n > 12) { /* the reason phrase may be empty, even without its space */
    if (s[12] != ' ') return -1;
    for (size_t i = 13; i < n; i++)
      if (!lex_text((unsigned char)s[i])) return -1;
    h->reason = s + 13, h->reason_len = n - 13;
  } else {
    h->reason = s + 12;
  }
  return 0;
}

/* A header line (not empty) into f; -2 when well formed but there is no room
 * left (full), -1 when malformed. */
static int header_line(const char *s, size_t n, int full, hs_header *f) {
  if (lex_ows(s[0])) return -1; /* obsolete line folding */
  size_t i = lex_token(s, n);
  if (i == 0 || i == n || s[i] != ':') return -1;
  if (full) return -2; /* well formed, but too large */
  for (size_t k = i + 1; k < n; k++)
    if (!lex_text((unsigned char)s[k])) return -1;
  f->name = s, f->name_len = i;
  f->value = s + i + 1, f->value_len = n - i - 1;
  lex_trim(&f->value, &f->value_len);
  return 0;
}

static void clear(hs_head *h) {
  h->method = h->target = h->reason = NULL;
  h->method_len = h->target_len = h->reason_len = 0;
  h->status = 0;
  h->minor_version = 0;
  h->nheaders = 0;
}

/* The line b[start..lf) without its CR. */
static void cut(const char *b, size_t start, size_t lf, const char **s, size_t *n) {
  *s = b + start;
  *n = lf - start;
  if (*n && (*s)[*n - 1] == '\r') (*n)--;
}

/* The next complete line, looking for its LF only past what was scanned. */
static int next_line(hs_parser *p, const char *b, size_t len, const char **s, size_t *n) {
  if (p->scan >= len) return 0;
  const char *lf = memchr(b + p->scan, '\n', len - p->scan);
  size_t end = lf ? (size_t)(lf - b) : len;
  p->examined += end - p->scan + (lf != NULL);
  if (!lf) return p->scan = len, 0;
  cut(b, p->pos, end, s, n);
  p->pos = p->scan = end + 1;
  return 1;
}

/* No request line yet: refuse at once what can never start a request (a TLS
 * hello on a plain port) rather than wait for a line feed. b[0..from) are
 * method characters already seen. */
static int request_start(hs_parser *p, const char *b, size_t from, size_t len) {
  for (size_t i = from; i < len; i++) {
    p->examined++;
    if (lex_tchar((unsigned char)b[i])) continue;
    if (i == 0 || b[i] != ' ') return -1;
    p->stage = STAGE_FIRST; /* a method and its space: the line may go on */
    break;
  }
  return 0;
}

/* Checks one complete line; 0 to go on, the head's length after its blank
 * line, or -1 / -2. h only serves as scratch here. */
static int check_line(hs_parser *p, const char *s, size_t n, hs_head *h) {
  p->examined += n;
  if (p->stage != STAGE_HEADERS) {
    p->stage = STAGE_HEADERS;
    return p->response ? status_line_in(s, n, h) : request_line(s, n, h);
  }
  if (n == 0) return p->pos > INT_MAX ? -1 : (int)p->pos;
  int r = header_line(s, n, p->nheaders == HS_MAX_HEADERS, &h->headers[0]);
  if (r == 0) p->nheaders++;
  return r;
}

static int advance(hs_parser *p, const char *b, size_t len, hs_head *h) {
  const char *s;
  size_t n;
  for (;;) {
    size_t from = p->scan;
    if (!next_line(p, b, len, &s, &n))
      return p->stage == STAGE_METHOD ? request_start(p, b, from, len) : 0;
    int r = check_line(p, s, n, h);
    if (r) return r;
  }
}

/* The complete, checked head b[0..p->pos) into h. */
static int fill(hs_parser *p, const char *b, hs_head *h) {
  size_t pos = 0, end = p->pos;
  const char *s;
  size_t n;
  clear(h);
  p->examined += end;
  for (int first = 1;; first = 0) {
    const char *lf = memchr(b + pos, '\n', end - pos);
    if (!lf) return -1; /* the caller changed bytes it had fed */
    cut(b, pos, (size_t)(lf - b), &s, &n);
    pos = (size_t)(lf - b) + 1;
    if (first) {
      if ((p->response ? status_line_in(s, n, h) : request_line(s, n, h)) < 0) return -1;
    } else if (n == 0) {
      return 0;
    } else if (header_line(s, n, h->nheaders == HS_MAX_HEADERS, &h->headers[h->nheaders])) {
      return -1;
    } else {
      h->nheaders++;
    }
  }
}

void hs_parser_init(hs_parser *p, int response) {
  memset(p, 0, sizeof *p);
  p->response = (unsigned char)(response != 0);
  p->stage = response ? STAGE_FIRST : STAGE_METHOD;
}

int hs_parser_feed(hs_parser *p, const char *b, size_t len, hs_head *h) {
  clear(h);
  if (!p->result) p->result = advance(p, b, len, h);
  if (p->result > 0 && fill(p, b, h)) p->result = -1;
  return p->result;
}

int hs_parse_request(const char *b, size_t len, hs_head *h) {
  hs_parser p;
  hs_parser_init(&p, 0);
  return hs_parser_feed(&p, b, len, h);
}

int hs_parse_response(const char *b, size_t len, hs_head *h) {
  hs_parser p;
  hs_parser_init(&p, 1);
  return hs_parser_feed(&p, b, len, h);
}

const hs_header *hs_find(const hs_head *h, const char *name) {
  for (size_t i = 0; i < h->nheaders; i++)
    if (lex_is(h->headers[i].name, h->headers[i].name_len, name)) return &h->headers[i];
  return NULL;
}

static size_t count(const hs_head *h, const char *name) {
  size_t c = 0;
  for (size_t i = 0; i < h->nheaders; i++)
    c += (size_t)lex_is(h->headers[i].name, h->headers[i].name_len, name);
  return c;
}

/* 1 when the comma-separated list v[0..n) holds token (ci: case-insensitive) */
static int list_has(const char *v, size_t n, const char *token, int ci) {
  size_t tlen = strlen(token), k;
  const char *e;
  lex_list l;
  lex_list_init(&l, v, n, ',');
  while (lex_list_next(&l, &e, &k))
    if (ci ? lex_ieq(e, k, token, tlen) : (k == tlen && memcmp(e, token, tlen) == 0)) return 1;
  return 0;
}

static int has_token(const hs_head *h, const char *name, const char *token, int ci) {
  for (size_t i = 0; i < h->nheaders; i++) {
    const hs_header *f = &h->headers[i];
    if (lex_is(f->name, f->name_len, name) && list_has(f->value, f->value_len, token, ci)) return 1;
  }
  return 0;
}

int hs_has_token(const hs_head *h, const char *name, const char *token) {
  return has_token(h, name, token, 1);
}

/* ---- keys --------------------------------------------------------------- */

/* base64 of exactly 16 bytes. EVP_DecodeBlock takes '=' anywhere and skips
 * leading whitespace, so the padding is checked here and the alphabet (and
 * the length, which leading whitespace would change) there. */
static int key_ok(const char *key, size_t n) {
  unsigned char raw[18];
  return n == HS_KEY_LEN && !memchr(key, '=', HS_KEY_LEN - 2) && key[22] == '=' && key[23] == '=' &&
         EVP_DecodeBlock(raw, (const unsigned char *)key, HS_KEY_LEN) == 18;
}

void hs_accept_key(const char *key, size_t key_len, char out[HS_ACCEPT_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  memset(out, 0, HS_ACCEPT_LEN + 1); /* if OpenSSL fails: matches no real key */
  if (c && EVP_DigestInit_ex(c, EVP_sha1(), NULL) && EVP_DigestUpdate(c, key, key_len) &&
      EVP_DigestUpdate(c, guid, sizeof guid - 1) && EVP_DigestFinal_ex(c, md, &mdlen) &&
      mdlen == 20)
    EVP_EncodeBlock((unsigned char *)out, md, 20);
  EVP_MD_CTX_free(c);
}

int hs_make_key(char out[HS_KEY_LEN + 1]) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return -1;
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
  return 0;
}

/* ---- server side -------------------------------------------------------- */

int hs_check_request(const hs_head *h, const char **key, const char **why) {
  const hs_header *f;
  *key = NULL;
  *why = NULL;
  if (!has_token(h, "Upgrade", "websocket", 1)) return *why = "not a WebSocket upgrade", -1;
  if (h->method_len != 3 || memcmp(h->method, "GET", 3) != 0)
    return *why = "WebSocket upgrade method is not GET", 400;
  if (h->minor_version < 1) return *why = "WebSocket upgrade needs HTTP/1.1", 400;
  if (count(h, "Host") != 1) return *why = "missing or repeated Host header", 400;
  if (!has_token(h, "Connection", "upgrade", 1))
    return *why = "Connection header lacks \"upgrade\"", 400;
  f = hs_find(h, "Sec-WebSocket-Version");
  if (!f) return *why = "missing Sec-WebSocket-Version", 426;
  if (count(h, "Sec-WebSocket-Version") != 1 || f->value_len != 2 || memcmp(f->value, "13", 2))
    return *why = "unsupported Sec-WebSocket-Version (13 is required)", 426;
  f = hs_find(h, "Sec-WebSocket-Key");
  if (!f) return *why = "missing Sec-WebSocket-Key", 400;
  if (count(h, "Sec-WebSocket-Key") != 1 || !key_ok(f->value, f->value_len))
    return *why = "invalid Sec-WebSocket-Key", 400;
  *key = f->value;
  return 0;
}

int hs_select_protocol(const hs_head *h, const char *const *ours, size_t nours) {
  for (size_t i = 0; i < nours; i++)
    if (ours[i] && ours[i][0] && has_token(h, "Sec-WebSocket-Protocol", ours[i], 0)) return (int)i;
  return -1;
}

/* One row per status we name: its reason phrase, and what a client that
 * asked for an upgrade says of it (NULL: the generic refusal). */
#define SAID(code, note) "server answered " #code note
static const struct status_row {
  int status;
  const char *reason, *why;
} status_rows[] = {
    {101, "Switching Protocols", NULL},
    {200, "OK", SAID(200, " (not a WebSocket endpoint?)")},
    {201, "Created", NULL},
    {204, "No Content", NULL},
    {301, "Moved Permanently", SAID(301, " (redirect)")},
    {302, "Found", SAID(302, " (redirect)")},
    {303, "See Other", SAID(303, " (redirect)")},
    {304, "Not Modified", NULL},
    {307, "Temporary Redirect", SAID(307, " (redirect)")},
    {308, "Permanent Redirect", SAID(308, " (redirect)")},
    {400, "Bad Request", SAID(400, "")},
    {401, "Unauthorized", SAID(401, " (authentication required)")},
    {403, "Forbidden", SAID(403, "")},
    {404, "Not Found", SAID(404, "")},
    {405, "Method Not Allowed", SAID(405, "")},
    {408, "Request Timeout", NULL},
    {413, "Content Too Large", NULL},
    {426, "Upgrade Required", SAID(426, " (unsupported WebSocket version)")},
    {429, "Too Many Requests", SAID(429, "")},
    {431, "Request Header Fields Too Large", NULL},
    {500, "Internal Server Error", SAID(500, "")},
    {501, "Not Implemented", NULL},
    {502, "Bad Gateway", SAID(502, "")},
    {503, "Service Unavailable", SAID(503, "")},
    {504, "Gateway Timeout", SAID(504, "")},
};
#undef SAID

static const struct status_row *status_row(int status) {
  for (size_t i = 0; i < sizeof status_rows / sizeof *status_rows; i++)
    if (status_rows[i].status == status) return &status_rows[i];
  return NULL;
}

const char *hs_reason_phrase(int status) {
  const struct status_row *r = status_row(status);
  return r ? r->reason : "Unknown";
}

static const char *status_why(int status) {
  const struct status_row *r = status_row(status);
  return r && r->why ? r->why : "server did not answer 101 Switching Protocols";
}

/* no CR, LF or other control character (HTAB aside) can split a line */
static int value_ok(const char *s) {
  if (!s) return 0;
  for (; *s; s++)
    if (!lex_text((unsigned char)*s)) return 0;
  return 1;
}

static int headers_ok(const char *const *names, const char *const *values, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!lex_is_token(names[i]) || !value_ok(values[i])) return 0;
  return 1;
}

static int given(const char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (lex_is(names[i], strlen(names[i]), name)) return 1;
  return 0;
}

static int status_line(buf *out, int status) {
  char line[64];
  snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, hs_reason_phrase(status));
  return buf_appends(out, line);
}

static int header(buf *out, const char *name, const char *value) {
  return buf_appends(out, name) || buf_append(out, ": ", 2) || buf_appends(out, value) ||
         buf_append(out, "\r\n", 2);
}

static int headers(buf *out, const char *const *names, const char *const *values, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (header(out, names[i], values[i])) return -1;
  return 0;
}

/* undoes a partial append so that a failed build leaves out as it was */
static int undo(buf *out, size_t len) {
  out->len = len;
  return -1;
}

int hs_build_accept(buf *out, const char *key, size_t key_len, const char *protocol,
                    const char *extensions) {
  char accept[HS_ACCEPT_LEN + 1];
  size_t len = out->len;
  if ((protocol && !lex_is_token(protocol)) || (extensions && !value_ok(extensions))) return -1;
  hs_accept_key(key, key_len, accept);
  if (!accept[0]) return -1;
  if (status_line(out, 101) || header(out, "Upgrade", "websocket") ||
      header(out, "Connection", "Upgrade") || header(out, "Sec-WebSocket-Accept", accept) ||
      (protocol && header(out, "Sec-WebSocket-Protocol", protocol)) ||
      (extensions && header(out, "Sec-WebSocket-Extensions", extensions)) ||
      buf_append(out, "\r\n", 2))
    return undo(out, len);
  return 0;
}

int hs_build_error(buf *out, int status, const char *body) {
  char n[32];
  size_t len = out->len, blen = body ? strlen(body) : 0;
  if (status < 100 || status > 999) return -1;
  snprintf(n, sizeof n, "%zu", blen);
  if (status_line(out, status) || header(out, "Connection", "close") ||
      header(out, "Content-Type", "text/plain; charset=utf-8") ||
      header(out, "Content-Length", n) ||
      (status == 426 &&
       (header(out, "Upgrade", "websocket") || header(out, "Sec-WebSocket-Version", "13"))) ||
      buf_append(out, "\r\n", 2) || buf_append(out, body, blen))
    return undo(out, len);
  return 0;
}

int hs_build_response(buf *out, int status, const char *const *names, const char *const *values,
                      size_t nheaders, size_t body_len) {
  char n[32];
  size_t len = out->len;
  /* RFC 9110 8.6: no Content-Length in 1xx and 204, none needed in 304 */
  int no_body = status < 200 || status == 204 || status == 304 || body_len == HS_UNTIL_CLOSE;
  if (status < 100 || status > 999 || !headers_ok(names, values, nheaders)) return -1;
  snprintf(n, sizeof n, "%zu", body_len);
  if (status_line(out, status) || headers(out, names, values, nheaders) ||
      (!no_body && !given(names, nheaders, "Content-Length") &&
       !given(names, nheaders, "Transfer-Encoding") && header(out, "Content-Length", n)) ||
      (!given(names, nheaders, "Connection") && header(out, "Connection", "close")) ||
      buf_append(out, "\r\n", 2))
    return undo(out, len);
  return 0;
}

/* ---- client side -------------------------------------------------------- */

int hs_build_request(buf *out, const char *target, const char *host, const char *key,
                     const char *protocols, const char *const *names, const char *const *values,
                     size_t nheaders) {
  char k[HS_KEY_LEN + 1];
  size_t len = out->len;
  if (!target || !*target || !host || !*host || !value_ok(host) || !key ||
      (protocols && !value_ok(protocols)) || !headers_ok(names, values, nheaders))
    return -1;
  for (const char *t = target; *t; t++)
    if ((unsigned char)*t <= ' ' || *t == 0x7F) return -1;
  memcpy(k, key, HS_KEY_LEN);
  k[HS_KEY_LEN] = '\0';
  if (!key_ok(k, strlen(k))) return -1;
  if (buf_append(out, "GET ", 4) || buf_appends(out, target) ||
      buf_append(out, " HTTP/1.1\r\n", 11) || header(out, "Host", host) ||
      header(out, "Upgrade", "websocket") || header(out, "Connection", "Upgrade") ||
      header(out, "Sec-WebSocket-Key", k) || header(out, "Sec-WebSocket-Version", "13") ||
      (protocols && *protocols && header(out, "Sec-WebSocket-Protocol", protocols)) ||
      headers(out, names, values, nheaders) || buf_append(out, "\r\n", 2))
    return undo(out, len);
  return 0;
}

int hs_check_response(const hs_head *h, const char *key, const char *const *offered,
                      size_t noffered, int ext_offered, const char **protocol, size_t *protocol_len,
                      const char **why) {
  char want[HS_ACCEPT_LEN + 1];
  const hs_header *f;
  *protocol = NULL;
  *protocol_len = 0;
  *why = NULL;
  if (h->status != 101) return *why = status_why(h->status), -1;
  if (!has_token(h, "Upgrade", "websocket", 1)) return *why = "missing Upgrade: websocket", -1;
  if (!has_token(h, "Connection", "upgrade", 1)) return *why = "missing Connection: upgrade", -1;
  if (!(f = hs_find(h, "Sec-WebSocket-Accept"))) return *why = "missing Sec-WebSocket-Accept", -1;
  hs_accept_key(key, HS_KEY_LEN, want);
  if (count(h, "Sec-WebSocket-Accept") != 1 || f->value_len != HS_ACCEPT_LEN ||
      memcmp(f->value, want, HS_ACCEPT_LEN) != 0)
    return *why = "wrong Sec-WebSocket-Accept", -1;
  for (size_t i = 0; i < h->nheaders && !ext_offered; i++)
    if (lex_is(h->headers[i].name, h->headers[i].name_len, "Sec-WebSocket-Extensions") &&
        h->headers[i].value_len)
      return *why = "server chose an extension we did not offer", -1;
  if (!(f = hs_find(h, "Sec-WebSocket-Protocol"))) return 0;
  if (count(h, "Sec-WebSocket-Protocol") != 1)
    return *why = "server chose more than one subprotocol", -1;
  for (size_t i = 0; i < noffered; i++)
    if (offered[i] && strlen(offered[i]) == f->value_len &&
        memcmp(offered[i], f->value, f->value_len) == 0) {
      *protocol = f->value;
      *protocol_len = f->value_len;
      return 0;
    }
  return *why = "server chose a subprotocol we did not offer", -1;
}
