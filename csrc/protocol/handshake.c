/* The parser works on whole lines only (up to each LF) and re-parses from the
 * start when called again with more input: heads are small (max_head), and
 * this keeps no state between calls. A complete but malformed line fails at
 * once, without waiting for the end of the head. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "protocol/handshake.h"

static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value and reason-phrase characters: HTAB, SP, VCHAR, obs-text */
static int is_text(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

static int same_ci(const char *a, size_t n, const char *b, size_t m) {
  if (n != m) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

/* ---- parsing ---------------------------------------------------------- */

/* The line at *pos without its line end (LF or CRLF); 0 when incomplete. */
static int next_line(const char *b, size_t len, size_t *pos, const char **s, size_t *n) {
  if (*pos >= len) return 0;
  const char *lf = memchr(b + *pos, '\n', len - *pos);
  if (!lf) return 0;
  *s = b + *pos;
  *n = (size_t)(lf - *s);
  if (*n && (*s)[*n - 1] == '\r') (*n)--;
  *pos = (size_t)(lf - b) + 1;
  return 1;
}

/* "HTTP/1.x" exactly; returns x or -1 */
static int version(const char *s, size_t n) {
  if (n != 8 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9') return -1;
  return s[7] - '0';
}

static int parse_headers(const char *b, size_t len, size_t pos, hs_head *h) {
  const char *s;
  size_t n;
  while (next_line(b, len, &pos, &s, &n)) {
    if (n == 0) return pos > INT_MAX ? -1 : (int)pos;
    if (is_ows(s[0])) return -1; /* obsolete line folding */
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ':') return -1;
    if (h->nheaders == HS_MAX_HEADERS) return -2; /* well formed, but too large */
    size_t a = i + 1, z = n;
    for (size_t k = a; k < z; k++)
      if (!is_text((unsigned char)s[k])) return -1;
    while (a < z && is_ows(s[a])) a++;
    while (z > a && is_ows(s[z - 1])) z--;
    hs_header *f = &h->headers[h->nheaders++];
    f->name = s, f->name_len = i;
    f->value = s + a, f->value_len = z - a;
  }
  return 0;
}

static void clear(hs_head *h) {
  h->method = h->target = h->reason = NULL;
  h->method_len = h->target_len = h->reason_len = 0;
  h->status = 0;
  h->minor_version = 0;
  h->nheaders = 0;
}

int hs_parse_request(const char *b, size_t len, hs_head *h) {
  const char *s;
  size_t n, pos = 0, i = 0, t;
  clear(h);
  if (!next_line(b, len, &pos, &s, &n)) {
    /* no line yet: refuse at once what can never start a request (a TLS
     * hello on a plain port), rather than wait for a line feed */
    while (i < len && is_tchar((unsigned char)b[i])) i++;
    return i < len && (i == 0 || b[i] != ' ') ? -1 : 0;
  }
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i == n || s[i] != ' ') return -1;
  h->method = s, h->method_len = i;
  t = ++i;
  while (i < n && (unsigned char)s[i] > ' ' && s[i] != 0x7F) i++;
  if (i == t || i == n || s[i] != ' ') return -1;
  h->target = s + t, h->target_len = i - t;
  if ((h->minor_version = version(s + i + 1, n - i - 1)) < 0) return -1;
  return parse_headers(b, len, pos, h);
}

int hs_parse_response(const char *b, size_t len, hs_head *h) {
  const char *s;
  size_t n, pos = 0;
  clear(h);
  if (!next_line(b, len, &pos, &s, &n)) return 0;
  if (n < 12 || (h->minor_version = version(s, 8)) < 0 || s[8] != ' ') return -1;
  for (int i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    h->status = h->status * 10 + (s[i] - '0');
  }
  if (h->status < 100) return -1;
  if (n > 12) { /* the reason phrase may be empty, even without its space */
    if (s[12] != ' ') return -1;
    for (size_t i = 13; i < n; i++)
      if (!is_text((unsigned char)s[i])) return -1;
    h->reason = s + 13, h->reason_len = n - 13;
  } else {
    h->reason = s + 12;
  }
  return parse_headers(b, len, pos, h);
}

const hs_header *hs_find(const hs_head *h, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < h->nheaders; i++)
    if (same_ci(h->headers[i].name, h->headers[i].name_len, name, n)) return &h->headers[i];
  return NULL;
}

static size_t count(const hs_head *h, const char *name) {
  size_t n = strlen(name), c = 0;
  for (size_t i = 0; i < h->nheaders; i++)
    c += (size_t)same_ci(h->headers[i].name, h->headers[i].name_len, name, n);
  return c;
}

/* 1 when the comma-separated list v[0..n) holds token (ci: case-insensitive) */
static int list_has(const char *v, size_t n, const char *token, size_t tlen, int ci) {
  size_t i = 0;
  while (i <= n) {
    size_t a = i, z;
    while (i < n && v[i] != ',') i++;
    z = i++;
    while (a < z && is_ows(v[a])) a++;
    while (z > a && is_ows(v[z - 1])) z--;
    if (ci ? same_ci(v + a, z - a, token, tlen)
           : (z - a == tlen && memcmp(v + a, token, tlen) == 0))
      return 1;
  }
  return 0;
}

static int has_token(const hs_head *h, const char *name, const char *token, int ci) {
  size_t n = strlen(name), tlen = strlen(token);
  for (size_t i = 0; i < h->nheaders; i++) {
    const hs_header *f = &h->headers[i];
    if (same_ci(f->name, f->name_len, name, n) && list_has(f->value, f->value_len, token, tlen, ci))
      return 1;
  }
  return 0;
}

int hs_has_token(const hs_head *h, const char *name, const char *token) {
  return has_token(h, name, token, 1);
}

/* ---- keys --------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes the base64 of p[0..n) and a NUL into out (4 * ((n + 2) / 3) + 1). */
static void b64_encode(const unsigned char *p, size_t n, char *out) {
  for (; n >= 3; p += 3, n -= 3) {
    *out++ = b64[p[0] >> 2];
    *out++ = b64[(p[0] & 3) << 4 | p[1] >> 4];
    *out++ = b64[(p[1] & 15) << 2 | p[2] >> 6];
    *out++ = b64[p[2] & 63];
  }
  if (n) {
    *out++ = b64[p[0] >> 2];
    *out++ = b64[(p[0] & 3) << 4 | (n == 2 ? p[1] >> 4 : 0)];
    *out++ = n == 2 ? b64[(p[1] & 15) << 2] : '=';
    *out++ = '=';
  }
  *out = '\0';
}

static int b64_value(char c) {
  const char *p = c ? strchr(b64, c) : NULL;
  return p ? (int)(p - b64) : -1;
}

/* Decodes padded base64 s[0..n) into out (room for cap bytes); returns the
 * decoded length, or -1 when s is not padded base64 or does not fit. */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t cap) {
  size_t len = 0;
  if (n % 4) return -1;
  for (size_t i = 0; i < n; i += 4) {
    int v[4], pad = 0;
    for (size_t j = 0; j < 4; j++) {
      if (s[i + j] == '=' && i + 4 == n && j >= 2) {
        pad++;
        v[j] = 0;
      } else if (pad || (v[j] = b64_value(s[i + j])) < 0) {
        return -1;
      }
    }
    unsigned long w = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                      (unsigned long)v[2] << 6 | (unsigned long)v[3];
    if (len + 3 - (size_t)pad > cap) return -1;
    out[len++] = (unsigned char)(w >> 16);
    if (pad < 2) out[len++] = (unsigned char)(w >> 8);
    if (pad < 1) out[len++] = (unsigned char)w;
  }
  return (long)len;
}

static int key_ok(const char *key, size_t n) {
  unsigned char raw[18];
  return n == HS_KEY_LEN && b64_decode(key, n, raw, sizeof raw) == 16;
}

void hs_accept_key(const char *key, size_t key_len, char out[HS_ACCEPT_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  memset(out, 0, HS_ACCEPT_LEN + 1); /* if OpenSSL fails: matches no real key */
  if (c && EVP_DigestInit_ex(c, EVP_sha1(), NULL) && EVP_DigestUpdate(c, key, key_len) &&
      EVP_DigestUpdate(c, guid, sizeof guid - 1) && EVP_DigestFinal_ex(c, md, &mdlen) &&
      mdlen == 20)
    b64_encode(md, 20, out);
  EVP_MD_CTX_free(c);
}

int hs_make_key(char out[HS_KEY_LEN + 1]) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return -1;
  b64_encode(raw, sizeof raw, out);
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

static const char *reason_phrase(int status) {
  switch (status) {
  case 101:
    return "Switching Protocols";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 303:
    return "See Other";
  case 304:
    return "Not Modified";
  case 307:
    return "Temporary Redirect";
  case 308:
    return "Permanent Redirect";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 413:
    return "Content Too Large";
  case 426:
    return "Upgrade Required";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Unknown";
  }
}

static int name_ok(const char *s) {
  if (!s || !*s) return 0;
  for (; *s; s++)
    if (!is_tchar((unsigned char)*s)) return 0;
  return 1;
}

/* no CR, LF or other control character (HTAB aside) can split a line */
static int value_ok(const char *s) {
  if (!s) return 0;
  for (; *s; s++)
    if (!is_text((unsigned char)*s)) return 0;
  return 1;
}

static int headers_ok(const char *const *names, const char *const *values, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!name_ok(names[i]) || !value_ok(values[i])) return 0;
  return 1;
}

static int given(const char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (same_ci(names[i], strlen(names[i]), name, strlen(name))) return 1;
  return 0;
}

static int status_line(buf *out, int status) {
  char line[64];
  snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
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

int hs_build_accept(buf *out, const char *key, size_t key_len, const char *protocol) {
  char accept[HS_ACCEPT_LEN + 1];
  size_t len = out->len;
  if (protocol && !name_ok(protocol)) return -1;
  hs_accept_key(key, key_len, accept);
  if (!accept[0]) return -1;
  if (status_line(out, 101) || header(out, "Upgrade", "websocket") ||
      header(out, "Connection", "Upgrade") || header(out, "Sec-WebSocket-Accept", accept) ||
      (protocol && header(out, "Sec-WebSocket-Protocol", protocol)) || buf_append(out, "\r\n", 2))
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
  int no_body = status < 200 || status == 204 || status == 304;
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

static const char *status_why(int status) {
  switch (status) {
  case 200:
    return "server answered 200 (not a WebSocket endpoint?)";
  case 301:
    return "server answered 301 (redirect)";
  case 302:
    return "server answered 302 (redirect)";
  case 303:
    return "server answered 303 (redirect)";
  case 307:
    return "server answered 307 (redirect)";
  case 308:
    return "server answered 308 (redirect)";
  case 400:
    return "server answered 400";
  case 401:
    return "server answered 401 (authentication required)";
  case 403:
    return "server answered 403";
  case 404:
    return "server answered 404";
  case 405:
    return "server answered 405";
  case 426:
    return "server answered 426 (unsupported WebSocket version)";
  case 429:
    return "server answered 429";
  case 500:
    return "server answered 500";
  case 502:
    return "server answered 502";
  case 503:
    return "server answered 503";
  case 504:
    return "server answered 504";
  default:
    return "server did not answer 101 Switching Protocols";
  }
}

int hs_check_response(const hs_head *h, const char *key, const char *const *offered,
                      size_t noffered, const char **protocol, size_t *protocol_len,
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
  for (size_t i = 0; i < h->nheaders; i++)
    if (same_ci(h->headers[i].name, h->headers[i].name_len, "Sec-WebSocket-Extensions", 24) &&
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
