#include "transport/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum { MAX_SNI = 32 };

typedef struct sni_entry {
  char *host;
  SSL_CTX *ctx;
} sni_entry;

struct tls_ctx {
  SSL_CTX *ctx;
  BIO_METHOD *bio; /* the sessions' BIO (see bio_read), one per context: no global state */
  int refs;
  int is_server;
  sni_entry sni[MAX_SNI];
  size_t nsni;
};

struct tls {
  tls_ctx *ctx;
  SSL *ssl;
  buf *out;        /* the caller's queue: OpenSSL writes records straight into it */
  const char *in;  /* the span tls_feed gave, read by OpenSSL in place */
  size_t in_len;   /* bytes of it not read yet */
  buf kept;        /* input set aside by tls_end_input (rare), read before in */
  size_t kept_off; /* bytes of kept already read */
  char error[256];
};

static void take_error(char *out, size_t len, const char *what) {
  unsigned long e = ERR_get_error();
  char reason[200] = "";
  if (e) ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(out, len, "%s%s%s", what, r || e ? ": " : "", r ? r : reason);
}

/* A file OpenSSL is to load, named in the error: one that cannot be opened
 * with the system's reason ("No such file or directory"), else OpenSSL's. */
static void take_file_error(char *out, size_t len, const char *what, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(out, len, "%s \"%s\": %s", what, path, strerror(errno));
    ERR_clear_error();
    return;
  }
  fclose(f);
  char prefix[512];
  snprintf(prefix, sizeof prefix, "%s \"%s\"", what, path);
  take_error(out, len, prefix);
}

/* The session's BIO: OpenSSL reads the ciphertext where the transport read
 * it (kept input first, then the span of tls_feed) and appends its records
 * to the caller's queue, so neither direction copies through a memory BIO.
 * Without read-ahead OpenSSL asks for one record header, then its body:
 * partial records wait in OpenSSL's own buffer, never here. */
static int bio_read(BIO *b, char *out, size_t cap, size_t *got) {
  tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  size_t n = 0;
  if (t->kept_off < t->kept.len) {
    n = t->kept.len - t->kept_off;
    if (n > cap) n = cap;
    memcpy(out, t->kept.data + t->kept_off, n);
    t->kept_off += n;
    if (t->kept_off == t->kept.len) { /* an idle session holds none */
      buf_free(&t->kept);
      t->kept_off = 0;
    }
  } else if (t->in_len) {
    n = t->in_len < cap ? t->in_len : cap;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
  }
  if (!n) {
    BIO_set_retry_read(b); /* empty means "wait for the next read", not EOF */
    return 0;
  }
  *got = n;
  return 1;
}

static int bio_write(BIO *b, const char *data, size_t n, size_t *put) {
  tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (buf_append(t->out, data, n)) return 0; /* out of memory: a fatal write error */
  *put = n;
  return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num, (void)ptr;
  const tls *t = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1; /* records are queued already; the transport sends them */
  case BIO_CTRL_PENDING:
    return (long)(t->kept.len - t->kept_off + t->in_len);
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *make_bio_method(void) {
  /* a fixed type: BIO_get_new_index hands out only ~128 per process, and
   * contexts come and go (reload_tls) */
  BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | 0xff, "duplex");
  if (!m || !BIO_meth_set_read_ex(m, bio_read) || !BIO_meth_set_write_ex(m, bio_write) ||
      !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
    BIO_meth_free(m);
    return NULL;
  }
  return m;
}

static const unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl, (void)arg;
  unsigned char *o;
  if (SSL_select_next_proto(&o, outlen, alpn_http11, sizeof alpn_http11, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* a client without http/1.1 may still go on */
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

/* The host_name of a ClientHello's server_name extension (RFC 6066 3), or
 * 0 when there is none or it is malformed (then the default context
 * serves, and OpenSSL's own parsing rejects what is malformed). */
static size_t client_hello_name(SSL *ssl, const unsigned char **name) {
  const unsigned char *p;
  size_t n;
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &n) || n < 2) return 0;
  size_t list = (size_t)p[0] << 8 | p[1];
  if (list != n - 2) return 0;
  p += 2, n -= 2;
  while (n >= 3) {
    size_t len = (size_t)p[1] << 8 | p[2];
    if (len > n - 3) return 0;
    if (p[0] == TLSEXT_NAMETYPE_host_name) {
      *name = p + 3;
      return len;
    }
    p += 3 + len, n -= 3 + len;
  }
  return 0;
}

/* Chooses the context for the name the client asks for. This runs before
 * OpenSSL decides whether to resume a session (the server_name callback
 * runs after): a session is then only resumed under the context, and so
 * the client-certificate rule, it was made with (each context has its own
 * session id context). */
static int on_client_hello(SSL *ssl, int *alert, void *arg) {
  (void)alert;
  tls_ctx *c = arg;
  const unsigned char *name;
  size_t len = client_hello_name(ssl, &name);
  for (size_t i = 0; len && i < c->nsni; i++)
    if (strlen(c->sni[i].host) == len &&
        strncasecmp(c->sni[i].host, (const char *)name, len) == 0) {
      SSL_CTX *sni = c->sni[i].ctx;
      if (!SSL_set_SSL_CTX(ssl, sni)) return SSL_CLIENT_HELLO_ERROR;
      /* SSL_new copied the verify settings of the default context and
       * switching contexts does not */
      SSL_set_verify(ssl, SSL_CTX_get_verify_mode(sni), SSL_CTX_get_verify_callback(sni));
      SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(sni));
      break;
    }
  return SSL_CLIENT_HELLO_SUCCESS;
}

/* Acknowledges the name (the context was chosen already). */
static int on_servername(SSL *ssl, int *alert, void *arg) {
  (void)ssl, (void)alert, (void)arg;
  return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(int is_server, const tls_config *cfg, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    take_error(err, errlen, "cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_ENABLE_PARTIAL_WRITE);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  /* Mozilla's "intermediate" TLS 1.2 suites; TLS 1.3 keeps OpenSSL's list */
  SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                               "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                               "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  if (cfg->cert && SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
    take_file_error(err, errlen, "cannot load the certificate", cfg->cert);
    goto fail;
  }
  if (cfg->key && SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
    take_file_error(err, errlen, "cannot load the private key", cfg->key);
    goto fail;
  }
  if (cfg->cert && cfg->key && SSL_CTX_check_private_key(ctx) != 1) {
    take_error(err, errlen, "the private key does not match the certificate");
    goto fail;
  }
  if (cfg->ca) {
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
      take_file_error(err, errlen, "cannot load the CA file", cfg->ca);
      goto fail;
    }
  } else if (!is_server && cfg->verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
    take_error(err, errlen, "cannot load the system CA store");
    goto fail;
  }
  if (is_server) {
    /* Without one OpenSSL refuses every resumption (an internal error
     * alert) once client certificates are verified. A random one per
     * context: a session made under one context (another SNI name, or the
     * configuration before reload_tls) never resumes under another, whose
     * client-certificate rule it would skip. */
    unsigned char sid_ctx[16];
    if (RAND_bytes(sid_ctx, sizeof sid_ctx) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx) != 1) {
      take_error(err, errlen, "cannot make a session id context");
      goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    if (cfg->verify)
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  } else {
    SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11);
    SSL_CTX_set_verify(ctx, cfg->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

tls_ctx *tls_ctx_new(int is_server, const tls_config *cfg, char *errbuf, size_t errlen) {
  if (is_server && (!cfg->cert || !cfg->key)) {
    snprintf(errbuf, errlen, "a TLS server needs both cert and key");
    return NULL;
  }
  tls_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(errbuf, errlen, "out of memory");
    return NULL;
  }
  c->ctx = make_ctx(is_server, cfg, errbuf, errlen);
  if (!c->ctx) {
    free(c);
    return NULL;
  }
  if (!(c->bio = make_bio_method())) {
    take_error(errbuf, errlen, "cannot create a TLS I/O method");
    SSL_CTX_free(c->ctx);
    free(c);
    return NULL;
  }
  c->refs = 1;
  c->is_server = is_server;
  if (is_server) {
    SSL_CTX_set_client_hello_cb(c->ctx, on_client_hello, c);
    SSL_CTX_set_tlsext_servername_callback(c->ctx, on_servername);
  }
  return c;
}

int tls_ctx_add_sni(tls_ctx *c, const char *host, const tls_config *cfg, char *errbuf,
                    size_t errlen) {
  if (c->nsni == MAX_SNI) {
    snprintf(errbuf, errlen, "too many SNI names (at most %d)", MAX_SNI);
    return -1;
  }
  SSL_CTX *ctx = make_ctx(1, cfg, errbuf, errlen);
  if (!ctx) return -1;
  size_t len = strlen(host) + 1;
  char *h = malloc(len);
  if (!h) {
    SSL_CTX_free(ctx);
    snprintf(errbuf, errlen, "out of memory");
    return -1;
  }
  memcpy(h, host, len);
  c->sni[c->nsni++] = (sni_entry){h, ctx};
  return 0;
}

void tls_ctx_ref(tls_ctx *c) { c->refs++; }

void tls_ctx_unref(tls_ctx *c) {
  if (--c->refs > 0) return;
  for (size_t i = 0; i < c->nsni; i++) {
    free(c->sni[i].host);
    SSL_CTX_free(c->sni[i].ctx);
  }
  SSL_CTX_free(c->ctx);
  BIO_meth_free(c->bio);
  free(c);
}

tls *tls_new(tls_ctx *ctx, const char *host, buf *out) {
  tls *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->out = out;
  t->ssl = SSL_new(ctx->ctx);
  BIO *bio = BIO_new(ctx->bio);
  if (!t->ssl || !bio) {
    BIO_free(bio);
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio); /* one BIO both ways; the SSL owns it now */
  if (ctx->is_server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    if (host && (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)) {
      /* SNI carries host names only; an address is checked against IP SANs */
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else if (host) {
      SSL_set_tlsext_host_name(t->ssl, host);
      SSL_set1_host(t->ssl, host);
    }
  }
  t->ctx = ctx;
  tls_ctx_ref(ctx);
  return t;
}

void tls_free(tls *t) {
  if (!t) return;
  SSL_free(t->ssl);
  buf_free(&t->kept);
  tls_ctx_unref(t->ctx);
  free(t);
}

void tls_feed(tls *t, const void *data, size_t n) {
  t->in = data;
  t->in_len = n;
}

int tls_end_input(tls *t) {
  int rc = t->in_len ? buf_append(&t->kept, t->in, t->in_len) : 0;
  t->in = NULL;
  t->in_len = 0;
  return rc;
}

size_t tls_input_left(const tls *t) { return t->kept.len - t->kept_off + t->in_len; }

static int status_of(tls *t, int rc, const char *what) {
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_WANT;
  if (e == SSL_ERROR_ZERO_RETURN) return TLS_CLOSED;
  /* with verify = false the chain is still checked and the result kept:
   * it is not why the handshake failed */
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK && SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
    snprintf(t->error, sizeof t->error, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
    ERR_clear_error();
  } else {
    take_error(t->error, sizeof t->error, what);
  }
  return TLS_ERROR;
}

int tls_handshake(tls *t) {
  if (SSL_is_init_finished(t->ssl)) return TLS_OK;
  int rc = SSL_do_handshake(t->ssl);
  return rc == 1 ? TLS_OK : status_of(t, rc, "TLS handshake failed");
}

size_t tls_read(tls *t, void *out, size_t cap, int *status) {
  size_t got = 0;
  if (SSL_read_ex(t->ssl, out, cap, &got) == 1) {
    *status = TLS_OK;
    return got;
  }
  *status = status_of(t, 0, "TLS error");
  return 0;
}

int tls_write(tls *t, const void *data, size_t n, size_t *done) {
  *done = 0;
  while (*done < n) {
    size_t left = n - *done, put = 0;
    /* partial writes: each record counts as soon as it is queued */
    if (SSL_write_ex(t->ssl, (const char *)data + *done, left, &put) != 1)
      return status_of(t, 0, "TLS write failed");
    *done += put;
  }
  return TLS_OK;
}

void tls_shutdown(tls *t) {
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

const char *tls_error(const tls *t) { return t->error[0] ? t->error : "TLS error"; }

void tls_peer_subject(const tls *t, char *out, size_t size) {
  out[0] = 0;
  X509 *cert = SSL_get_peer_certificate(t->ssl);
  if (!cert) return;
  X509_NAME_oneline(X509_get_subject_name(cert), out, (int)size);
  X509_free(cert);
}
