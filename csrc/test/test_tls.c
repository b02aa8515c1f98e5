/* Two TLS sessions (tls.c) wired to each other in memory: the handshake,
 * reads and close through the session BIOs, with records cut at every
 * byte, and tls_write never dropping output (before the handshake, while a
 * record is pending, in large amounts). The certificate is made here with
 * OpenSSL and written to a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "test/check.h"
#include "transport/tls.h"

static char dir[64], cert_path[96], key_path[96];

/* A self-signed EC P-256 certificate for localhost (CA:TRUE, so it also
 * serves as the client's trust anchor). 0 or -1. */
static int make_cert(void) {
  snprintf(dir, sizeof dir, "/tmp/duplex-test-tls-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
  snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  if (!key || !x) return -1;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                             0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  const char *exts[][2] = {{"subjectAltName", "DNS:localhost,IP:127.0.0.1"},
                           {"basicConstraints", "critical,CA:TRUE"}};
  for (size_t i = 0; i < 2; i++) {
    X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
    if (!e || !X509_add_ext(x, e, -1)) return -1;
    X509_EXTENSION_free(e);
  }
  int ok = X509_sign(x, key, EVP_sha256()) > 0;
  FILE *f = fopen(cert_path, "w");
  ok = ok && f && PEM_write_X509(f, x);
  if (f) fclose(f);
  f = fopen(key_path, "w");
  ok = ok && f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  if (f) fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
  return ok ? 0 : -1;
}

typedef struct peer {
  tls *t;
  buf out; /* records for the other side, written by the session */
  buf got; /* plaintext received */
  int ready, closed, failed;
} peer;

static tls_ctx *server_ctx, *client_ctx;

static void peer_init(peer *p, int server, const char *host) {
  memset(p, 0, sizeof *p);
  p->t = tls_new(server ? server_ctx : client_ctx, host, &p->out);
  CHECK(p->t != NULL);
}

static void peer_free(peer *p) {
  tls_free(p->t);
  buf_free(&p->out);
  buf_free(&p->got);
}

/* What the transport does with a read: feed it, advance the handshake,
 * decrypt everything; the span must be consumed by the end. */
static void input(peer *p, const char *data, size_t n) {
  tls_feed(p->t, data, n);
  if (!p->ready && !p->failed) {
    int rc = tls_handshake(p->t);
    if (rc == TLS_OK) p->ready = 1;
    if (rc == TLS_ERROR) p->failed = 1;
  }
  while (p->ready && !p->closed && !p->failed) {
    char plain[20000];
    int status;
    size_t got = tls_read(p->t, plain, sizeof plain, &status);
    if (got) buf_append(&p->got, plain, got);
    if (status == TLS_CLOSED) p->closed = 1;
    if (status == TLS_ERROR) p->failed = 1;
    if (status == TLS_WANT) break;
  }
  if (!p->failed && !p->closed) CHECK_EQ(tls_input_left(p->t), 0);
  CHECK_EQ(tls_end_input(p->t), 0);
}

/* Moves what from wrote to to, in pieces of at most chunk bytes. */
static void deliver(peer *from, peer *to, size_t chunk) {
  buf b = from->out;
  from->out = (buf){0};
  for (size_t i = 0; i < b.len; i += chunk)
    input(to, b.data + i, b.len - i < chunk ? b.len - i : chunk);
  buf_free(&b);
}

static void handshake(peer *c, peer *s, size_t chunk) {
  CHECK_EQ(tls_handshake(c->t), TLS_WANT); /* the ClientHello */
  for (int round = 0; round < 6 && (c->out.len || s->out.len); round++) {
    deliver(c, s, chunk);
    deliver(s, c, chunk);
  }
  CHECK(c->ready && s->ready);
  CHECK(!c->failed && !s->failed);
}

static void test_handshake_and_close(size_t chunk) {
  peer c, s;
  peer_init(&c, 0, "localhost");
  peer_init(&s, 1, NULL);
  handshake(&c, &s, chunk);
  size_t done;
  CHECK_EQ(tls_write(c.t, "ping", 4, &done), TLS_OK);
  CHECK_EQ(done, 4);
  deliver(&c, &s, chunk);
  CHECK_MEMSTR(s.got.data, s.got.len, "ping");
  CHECK_EQ(tls_write(s.t, "pong", 4, &done), TLS_OK);
  deliver(&s, &c, chunk);
  CHECK_MEMSTR(c.got.data, c.got.len, "pong");
  char subject[256];
  tls_peer_subject(c.t, subject, sizeof subject);
  CHECK(strstr(subject, "CN=localhost") != NULL);
  tls_shutdown(c.t); /* close_notify reaches the server as TLS_CLOSED */
  CHECK(c.out.len > 0);
  deliver(&c, &s, chunk);
  CHECK(s.closed && !s.failed);
  tls_shutdown(s.t);
  deliver(&s, &c, chunk);
  CHECK(c.closed && !c.failed);
  peer_free(&c);
  peer_free(&s);
}

/* The caller's side of tls_write: a queue that keeps what was not taken. */
static void queue_write(peer *p, buf *q) {
  size_t done = 1234567;
  int rc = tls_write(p->t, q->data, q->len, &done);
  CHECK(rc == TLS_OK || rc == TLS_WANT);
  CHECK(done <= q->len);
  CHECK(rc != TLS_OK || done == q->len);
  memmove(q->data, q->data + done, q->len - done);
  q->len -= done;
}

static void test_write_before_handshake(void) {
  peer c, s;
  peer_init(&c, 0, "localhost");
  peer_init(&s, 1, NULL);
  buf q = {0};
  buf_appends(&q, "GET / HTTP/1.1\r\n\r\n");
  queue_write(&c, &q); /* starts the handshake, takes nothing yet */
  CHECK_EQ(q.len, 18);
  CHECK(c.out.len > 0); /* the ClientHello */
  int added = 0;
  for (int round = 0; round < 6 && (c.out.len || s.out.len || q.len); round++) {
    deliver(&c, &s, 100);
    deliver(&s, &c, 100);
    if (c.ready && !added) added = !buf_appends(&q, "second"); /* behind the unsent rest */
    queue_write(&c, &q); /* retried after each input, as tls_pump is */
  }
  CHECK(added);
  CHECK(c.ready && s.ready);
  CHECK_EQ(q.len, 0);
  deliver(&c, &s, 100);
  CHECK_MEMSTR(s.got.data, s.got.len, "GET / HTTP/1.1\r\n\r\nsecond");
  buf_free(&q);
  peer_free(&c);
  peer_free(&s);
}

/* Writes while a record is pending both ways: our own records not yet
 * sent, and half of a record from the peer inside the session. */
static void test_write_while_pending(void) {
  peer c, s;
  peer_init(&c, 0, "localhost");
  peer_init(&s, 1, NULL);
  handshake(&c, &s, 1 << 20);
  size_t done;
  CHECK_EQ(tls_write(c.t, "one,", 4, &done), TLS_OK);
  size_t half = c.out.len / 2;
  input(&s, c.out.data, half); /* the server holds a partial record */
  CHECK_EQ(s.got.len, 0);
  CHECK_EQ(tls_write(s.t, "reply,", 6, &done), TLS_OK);
  CHECK_EQ(done, 6);
  CHECK_EQ(tls_write(c.t, "two,", 4, &done), TLS_OK); /* behind one unsent record */
  CHECK_EQ(tls_write(c.t, "three", 5, &done), TLS_OK);
  input(&s, c.out.data + half, c.out.len - half);
  c.out.len = 0;
  CHECK_MEMSTR(s.got.data, s.got.len, "one,two,three");
  CHECK_EQ(tls_write(s.t, "again", 5, &done), TLS_OK);
  deliver(&s, &c, 7);
  CHECK_MEMSTR(c.got.data, c.got.len, "reply,again");
  peer_free(&c);
  peer_free(&s);
}

/* 8 MiB in writes of many sizes, delivered in odd pieces, both ways. */
static void test_large(void) {
  peer c, s;
  peer_init(&c, 0, "localhost");
  peer_init(&s, 1, NULL);
  handshake(&c, &s, 1 << 20);
  const size_t total = 8u << 20;
  unsigned char *data = malloc(total);
  uint32_t x = 12345;
  for (size_t i = 0; i < total; i++) data[i] = (unsigned char)((x = x * 1103515245 + 12345) >> 16);
  size_t sent = 0, piece = 1;
  while (sent < total) {
    size_t n = piece < total - sent ? piece : total - sent;
    size_t done;
    CHECK_EQ(tls_write(c.t, data + sent, n, &done), TLS_OK);
    CHECK_EQ(tls_write(s.t, data + sent, n, &done), TLS_OK);
    sent += done;
    piece = piece * 3 + 1;
    if (piece > 300000) piece = 7;
    if (c.out.len > 1000000) deliver(&c, &s, 65521), deliver(&s, &c, 16411);
  }
  deliver(&c, &s, 65521);
  deliver(&s, &c, 16411);
  CHECK_EQ(s.got.len, total);
  CHECK_EQ(c.got.len, total);
  CHECK(s.got.len == total && memcmp(s.got.data, data, total) == 0);
  CHECK(c.got.len == total && memcmp(c.got.data, data, total) == 0);
  free(data);
  peer_free(&c);
  peer_free(&s);
}

/* Input set aside unread (a handshake put off) is copied: the caller may
 * reuse its buffer, and the next call reads it first, then the new span. */
static void test_kept_input(void) {
  peer c, s;
  peer_init(&c, 0, "localhost");
  peer_init(&s, 1, NULL);
  CHECK_EQ(tls_handshake(c.t), TLS_WANT);
  buf hello = c.out;
  c.out = (buf){0};
  size_t first = hello.len / 3;
  tls_feed(s.t, hello.data, first);
  CHECK_EQ(tls_end_input(s.t), 0); /* deferred, read nothing */
  CHECK_EQ(tls_input_left(s.t), first);
  char *rest = malloc(hello.len - first);
  memcpy(rest, hello.data + first, hello.len - first);
  memset(hello.data, 0, hello.len); /* the read buffer is reused */
  input(&s, rest, hello.len - first);
  CHECK_EQ(tls_input_left(s.t), 0);
  CHECK(s.out.len > 0 && !s.failed); /* the ServerHello: the whole hello was read in order */
  for (int round = 0; round < 4 && (c.out.len || s.out.len); round++) {
    deliver(&s, &c, 1000);
    deliver(&c, &s, 1000);
  }
  CHECK(c.ready && s.ready);
  free(rest);
  buf_free(&hello);
  peer_free(&c);
  peer_free(&s);
}

static void test_verify_failure(void) {
  peer c, s;
  peer_init(&c, 0, "example.com");
  peer_init(&s, 1, NULL);
  CHECK_EQ(tls_handshake(c.t), TLS_WANT);
  deliver(&c, &s, 1 << 20);
  deliver(&s, &c, 1 << 20);
  CHECK(c.failed);
  CHECK(strstr(tls_error(c.t), "certificate verify failed") != NULL);
  CHECK(c.out.len > 0); /* the alert that tells the server why */
  deliver(&c, &s, 1 << 20);
  CHECK(s.failed);
  peer_free(&c);
  peer_free(&s);
}

int main(void) {
  if (make_cert()) {
    printf("cannot make a test certificate\n");
    return 1;
  }
  char err[256] = "";
  tls_config scfg = {cert_path, key_path, NULL, 0}, ccfg = {NULL, NULL, cert_path, 1};
  server_ctx = tls_ctx_new(1, &scfg, err, sizeof err);
  client_ctx = tls_ctx_new(0, &ccfg, err, sizeof err);
  CHECK(server_ctx && client_ctx);
  if (!server_ctx || !client_ctx) {
    printf("%s\n", err);
    return check_done();
  }
  test_handshake_and_close(1 << 20);
  test_handshake_and_close(1); /* every record cut at every byte */
  test_handshake_and_close(5);
  test_write_before_handshake();
  test_write_while_pending();
  test_large();
  test_kept_input();
  test_verify_failure();
  tls_ctx_unref(server_ctx);
  tls_ctx_unref(client_ctx);
  unlink(cert_path);
  unlink(key_path);
  rmdir(dir);
  return check_done();
}
