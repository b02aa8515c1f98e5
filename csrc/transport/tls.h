/* TLS over the transport's own buffers: OpenSSL never touches a socket. The
 * transport shows the ciphertext it read with tls_feed (OpenSSL reads it in
 * place, no copy), gets plaintext from tls_read, and hands plaintext to
 * tls_write, whose records (like the handshake's) land straight in the
 * queue given to tls_new. So TLS and plain connections share one path for
 * framing, backpressure and close. */
#ifndef DUPLEX_TLS_H
#define DUPLEX_TLS_H

#include <stddef.h>

#include "protocol/buf.h"

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

typedef struct tls_ctx tls_ctx;
typedef struct tls tls;

typedef struct tls_config {
  const char *cert; /* PEM file: certificate (a chain works) */
  const char *key;  /* PEM file: private key */
  const char *ca;   /* PEM file of trusted CAs; NULL: the system store (client) */
  int verify;       /* client: verify the server (default 1); server: require client certs */
} tls_config;

/* A configuration shared by many connections (an SSL_CTX). NULL and *err
 * (static or from OpenSSL's error queue, copied into errbuf) on failure. */
tls_ctx *tls_ctx_new(int is_server, const tls_config *cfg, char *errbuf, size_t errlen);

/* Adds a certificate for SNI host name host (server). 0 or -1 with errbuf. */
int tls_ctx_add_sni(tls_ctx *ctx, const char *host, const tls_config *cfg, char *errbuf,
                    size_t errlen);

/* Contexts are reference counted: each tls session holds one reference. */
void tls_ctx_ref(tls_ctx *ctx);
void tls_ctx_unref(tls_ctx *ctx);

/* A session on ctx. host (client) is sent as SNI and checked against the
 * certificate; NULL skips both. Every record the session makes is appended
 * to *out (owned and drained by the caller; it must outlive the session). */
tls *tls_new(tls_ctx *ctx, const char *host, buf *out);
void tls_free(tls *t);

enum {
  TLS_OK = 0,
  TLS_WANT = 1,   /* needs more input from the peer */
  TLS_CLOSED = 2, /* the peer sent close_notify */
  TLS_ERROR = -1  /* tls_error tells why */
};

/* Shows the session n bytes of ciphertext read from the network, which
 * tls_handshake and tls_read then consume in place: data must stay valid
 * until tls_end_input. Once either returns TLS_WANT all of it was read
 * (OpenSSL keeps a partial record itself). */
void tls_feed(tls *t, const void *data, size_t n);

/* Ends the span of tls_feed. What is still unread (only when the caller
 * stopped early, e.g. to put a handshake off) is copied aside and read
 * first next time. 0, or -1 out of memory. */
int tls_end_input(tls *t);

/* Ciphertext given and not yet read by OpenSSL. */
size_t tls_input_left(const tls *t);

/* Advances the handshake: TLS_OK once complete, TLS_WANT, or TLS_ERROR. */
int tls_handshake(tls *t);

/* Decrypts into out: the number of bytes with *status TLS_OK, or 0 with
 * *status TLS_WANT (nothing yet), TLS_CLOSED or TLS_ERROR. */
size_t tls_read(tls *t, void *out, size_t cap, int *status);

/* Encrypts plaintext into records; *done tells how many of the n bytes
 * were taken. TLS_OK (all of them), TLS_WANT (the handshake must progress
 * first: the caller keeps data[*done..n) and retries, with the same bytes,
 * after more input) or TLS_ERROR. */
int tls_write(tls *t, const void *data, size_t n, size_t *done);

/* Queues a close_notify alert. */
void tls_shutdown(tls *t);

/* Why the last call failed, in words ("certificate verify failed: hostname
 * mismatch"). */
const char *tls_error(const tls *t);

/* The peer's certificate subject, "" when none. */
void tls_peer_subject(const tls *t, char *out, size_t size);

#pragma GCC visibility pop

#endif
