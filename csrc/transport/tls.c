#include "transport/tls.h"

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
  int refs;
  int is_server;
  sni_entry sni[MAX_SNI];
  size_t nsni;
};

struct tls {
  tls_ctx *ctx;
  SSL *ssl;
  BIO *net_in;  /* ciphertext from the peer, read by OpenSSL */
  BIO *net_out; /* ciphertext OpenSSL wrote for the peer */
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
    take_error(err, errlen, "cannot load the certificate");
    goto fail;
  }
  if (cfg->key && SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
    take_error(err, errlen, "cannot load the private key");
    goto fail;
  }
  if (cfg->cert && cfg->key && SSL_CTX_check_private_key(ctx) != 1) {
    take_error(err, errlen, "the private key does not match the certificate");
    goto fail;
  }
  if (cfg->ca) {
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
      take_error(err, errlen, "cannot load the CA file");
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
  free(c);
}

tls *tls_new(tls_ctx *ctx, const char *host) {
  tls *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->ssl = SSL_new(ctx->ctx);
  t->net_in = BIO_new(BIO_s_mem());
  t->net_out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->net_in || !t->net_out) goto fail;
  BIO_set_mem_eof_return(t->net_in, -1);      /* empty means "wait", not EOF */
  SSL_set_bio(t->ssl, t->net_in, t->net_out); /* the SSL owns both now */
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
fail:
  if (t->ssl) {
    SSL_free(t->ssl);
  } else {
    BIO_free(t->net_in);
    BIO_free(t->net_out);
  }
  free(t);
  return NULL;
}

void tls_free(tls *t) {
  if (!t) return;
  SSL_free(t->ssl);
  tls_ctx_unref(t->ctx);
  free(t);
}

int tls_feed(tls *t, const void *data, size_t n) {
  while (n) {
    int w = BIO_write(t->net_in, data, n > 0x40000000 ? 0x40000000 : (int)n);
    if (w <= 0) return TLS_ERROR;
    data = (const char *)data + w;
    n -= (size_t)w;
  }
  return TLS_OK;
}

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
  int rc = SSL_read(t->ssl, out, cap > 0x40000000 ? 0x40000000 : (int)cap);
  if (rc > 0) {
    *status = TLS_OK;
    return (size_t)rc;
  }
  *status = status_of(t, rc, "TLS error");
  return 0;
}

int tls_write(tls *t, const void *data, size_t n) {
  while (n) {
    int rc = SSL_write(t->ssl, data, n > 0x40000000 ? 0x40000000 : (int)n);
    if (rc <= 0) return status_of(t, rc, "TLS write failed") == TLS_ERROR ? TLS_ERROR : TLS_OK;
    data = (const char *)data + rc;
    n -= (size_t)rc;
  }
  return TLS_OK;
}

void tls_shutdown(tls *t) {
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

int tls_take_out(tls *t, buf *out) {
  size_t n;
  while ((n = (size_t)BIO_ctrl_pending(t->net_out)) > 0) {
    if (n > 0x40000000) n = 0x40000000; /* BIO_read takes an int */
    if (buf_reserve(out, n)) return -1;
    int r = BIO_read(t->net_out, out->data + out->len, (int)n);
    if (r <= 0) break;
    out->len += (size_t)r;
  }
  return 0;
}

const char *tls_error(const tls *t) { return t->error[0] ? t->error : "TLS error"; }

void tls_peer_subject(const tls *t, char *out, size_t size) {
  out[0] = 0;
  X509 *cert = SSL_get_peer_certificate(t->ssl);
  if (!cert) return;
  X509_NAME_oneline(X509_get_subject_name(cert), out, (int)size);
  X509_free(cert);
}
