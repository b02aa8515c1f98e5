/* HTTP/1.1 upgrade handshake (RFC 6455 section 4): parsing and building of
 * request and response heads for both sides. No I/O. Parsed heads point into
 * the caller's buffer; nothing is allocated. */
#ifndef DUPLEX_HANDSHAKE_H
#define DUPLEX_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

enum {
  HS_MAX_HEADERS = 64,
  HS_KEY_LEN = 24,   /* base64 of 16 bytes */
  HS_ACCEPT_LEN = 28 /* base64 of a 20-byte SHA-1 */
};

typedef struct hs_header {
  const char *name, *value; /* value has surrounding whitespace trimmed */
  size_t name_len, value_len;
} hs_header;

typedef struct hs_head {
  /* request line (hs_parse_request) */
  const char *method, *target;
  size_t method_len, target_len;
  /* status line (hs_parse_response) */
  int status;
  const char *reason;
  size_t reason_len;
  int minor_version; /* HTTP/1.x */
  hs_header headers[HS_MAX_HEADERS];
  size_t nheaders;
} hs_head;

/* Parse a head ending in CRLF CRLF (bare LF line ends are accepted too).
 * Return the head's length in bytes when complete, 0 when more input is
 * needed, -1 when malformed (bad request/status line, a header line without
 * a colon or with whitespace before it, control characters, obsolete line
 * folding, HTTP version other than 1.x, a first line that cannot begin a
 * request even before it is complete), -2 when well formed but with more
 * than HS_MAX_HEADERS headers (too large). */
int hs_parse_request(const char *buf, size_t len, hs_head *h);
int hs_parse_response(const char *buf, size_t len, hs_head *h);

/* The same parse, resumed as the head arrives: hs_parser_feed is called with
 * the whole head received so far (buf may move between calls, its first
 * bytes may not change) and returns what hs_parse_request/hs_parse_response
 * would for it, examining each byte a bounded number of times however the
 * head is split. Only complete lines are checked and only the line feed of
 * the unfinished line is looked for again, so no offsets into buf are kept
 * and the state stays small. h is filled when the result is > 0 (pointing
 * into buf); a result other than 0 is final and given again. */
typedef struct hs_parser {
  size_t pos;      /* where the first unfinished line starts */
  size_t scan;     /* buf[pos..scan) holds no line feed */
  size_t examined; /* bytes looked at so far: linear in the head's length */
  int result;      /* final result once not 0 */
  unsigned short nheaders;
  unsigned char response; /* a status line comes first, not a request line */
  unsigned char stage;    /* request method, first line, headers */
} hs_parser;

void hs_parser_init(hs_parser *p, int response);
int hs_parser_feed(hs_parser *p, const char *buf, size_t len, hs_head *h);

/* The standard reason phrase of status, or "Unknown". */
const char *hs_reason_phrase(int status);

/* First header with this name (case-insensitive), or NULL. */
const hs_header *hs_find(const hs_head *h, const char *name);

/* 1 when any header named name holds token in its comma-separated list
 * (case-insensitive, whitespace around items ignored): "Connection:
 * keep-alive, Upgrade" holds "upgrade". */
int hs_has_token(const hs_head *h, const char *name, const char *token);

/* Server side. Checks an upgrade request per RFC 6455 4.2.1: method GET,
 * HTTP/1.1 or later, Host present, Upgrade holds "websocket", Connection holds
 * "upgrade", Sec-WebSocket-Key is base64 of exactly 16 bytes, version 13.
 * Returns 0 when valid (and *key points at the key, HS_KEY_LEN bytes), 400
 * for a bad request, 426 for a missing or unsupported Sec-WebSocket-Version
 * (the response must carry "Sec-WebSocket-Version: 13"), and -1 when the
 * request has no "Upgrade: websocket" at all (a plain HTTP request). *why is
 * set to a static explanation when the result is not 0. */
int hs_check_request(const hs_head *h, const char **key, const char **why);

/* out receives the Sec-WebSocket-Accept value: base64(SHA-1(key + GUID)),
 * NUL-terminated (HS_ACCEPT_LEN + 1 bytes). key is key_len bytes. */
void hs_accept_key(const char *key, size_t key_len, char out[HS_ACCEPT_LEN + 1]);

/* Picks the subprotocol: the first of ours (in our order of preference) that
 * the client listed in any Sec-WebSocket-Protocol header. Returns its index
 * in ours, or -1 when none matches or the client offered none. */
int hs_select_protocol(const hs_head *h, const char *const *ours, size_t nours);

/* Appends a "101 Switching Protocols" response for key; protocol (the chosen
 * subprotocol) and extensions (the negotiated Sec-WebSocket-Extensions value)
 * may be NULL. Returns 0, or -1 when out of memory, protocol is not an HTTP
 * token or extensions holds a control character. */
int hs_build_accept(buf *out, const char *key, size_t key_len, const char *protocol,
                    const char *extensions);

/* Appends an error response with status (400, 403, 404, 426, ...), its
 * standard reason phrase, "Connection: close", a text/plain body, and for
 * 426 "Upgrade: websocket" and "Sec-WebSocket-Version: 13". */
int hs_build_error(buf *out, int status, const char *body);

/* Appends a generic response head with "Content-Length: body_len" and
 * "Connection: close" unless headers already hold them; headers is an array
 * of nheaders name/value pairs (names[i], values[i]). Names and values with
 * CR or LF are refused (returns -1). No Content-Length is added for 1xx, 204
 * and 304, nor when headers hold Transfer-Encoding, nor for body_len
 * HS_UNTIL_CLOSE (a stream: the body ends with the connection). */
#define HS_UNTIL_CLOSE SIZE_MAX
int hs_build_response(buf *out, int status, const char *const *names, const char *const *values,
                      size_t nheaders, size_t body_len);

/* Client side. Appends a GET upgrade request for target (path and query)
 * on host (the Host header value, with a port when not the default), with
 * key (HS_KEY_LEN bytes), an optional comma-joined protocol list, and extra
 * headers as in hs_build_response. Returns 0, or -1 (out of memory, CR/LF in
 * a value, or a name that is not an HTTP token). */
int hs_build_request(buf *out, const char *target, const char *host, const char *key,
                     const char *protocols, const char *const *names, const char *const *values,
                     size_t nheaders);

/* Makes a fresh random key (16 bytes from OpenSSL's RAND_bytes, base64) into
 * out, NUL-terminated. Returns 0, or -1 when no randomness is available. */
int hs_make_key(char out[HS_KEY_LEN + 1]);

/* Client side. Checks the server's response per RFC 6455 4.1: status 101,
 * Upgrade websocket, Connection upgrade, the right Sec-WebSocket-Accept for
 * key (HS_KEY_LEN bytes), and a subprotocol that is one of
 * offered[0..noffered) (or none; compared case-sensitively). When the
 * request offered no extension (ext_offered 0), a non-empty
 * Sec-WebSocket-Extensions is an error; when it did, the extensions are the
 * extension's to check (pmd_check) and are not looked at here. Returns 0 and
 * sets *protocol and *protocol_len (NULL/0 when the server chose none), or -1
 * with *why set. */
int hs_check_response(const hs_head *h, const char *key, const char *const *offered,
                      size_t noffered, int ext_offered, const char **protocol, size_t *protocol_len,
                      const char **why);

#pragma GCC visibility pop

#endif
