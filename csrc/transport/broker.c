#include "transport/broker.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "transport/topic.h"

enum { B_CONNECTING, B_CONNECTED, B_FAILED, B_CLOSED };

typedef struct link link;

/* A poll handle lives as long as one hiredis context's descriptor. */
typedef struct link_poll {
  uv_poll_t h; /* first: h.data is the broker's loop_obj, for loop_close */
  link *k;
} link_poll;

/* One Redis connection (the publishing or the subscribing one). */
struct link {
  broker *b;
  redisAsyncContext *ac; /* NULL while down */
  link_poll *poll;
  uv_timer_t timer; /* connect timeout while connecting, backoff while down */
  int sub, up, events;
  unsigned pending;  /* handshake replies still awaited */
  unsigned attempts; /* failures in a row: the backoff grows with them */
  char err[192];
};

typedef struct pending_name {
  char *name;
  size_t len;
} pending_name;

struct broker {
  loop_obj obj; /* first: every handle's data points here */
  loop *l;
  broker_config cfg; /* strings owned */
  link pub, sub;
  int64_t id;
  uint64_t gen;
  int state, ever_up;
  unsigned handles; /* open libuv handles: freed after the last closes */
  uint8_t node[BROKER_NODE_ID];
  buf out; /* one formatted command */
  pending_name *pend;
  size_t npend, pend_cap;
  uint64_t published, received, dropped, invalid;
  char error[256];
};

static void link_connect(link *k);
static void on_timer(uv_timer_t *t);

static void free_broker(broker *b) {
  free((char *)b->cfg.host);
  free((char *)b->cfg.path);
  free((char *)b->cfg.password);
  free((char *)b->cfg.prefix);
  buf_free(&b->out);
  free(b);
}

static void on_handle_closed(uv_handle_t *h) {
  broker *b = (broker *)h->data;
  if (h->type == UV_POLL) free(h);
  if (--b->handles == 0 && b->state == B_CLOSED) free_broker(b);
}

/* Until the first connection is up the handles keep the loop running (the
 * caller waits for it); afterwards a broker alone keeps nothing alive. */
static void set_ref(broker *b, uv_handle_t *h) {
  if (b->ever_up)
    uv_unref(h);
  else
    uv_ref(h);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  link *k = ((link_poll *)h)->k;
  redisAsyncContext *ac = k->ac;
  if (!ac) return;
  if (status < 0) events = UV_READABLE | UV_WRITABLE; /* hiredis reads the error */
  if (events & UV_WRITABLE) redisAsyncHandleWrite(ac);
  if (k->ac == ac && (events & UV_READABLE)) redisAsyncHandleRead(ac);
}

static void poll_update(link *k) {
  if (!k->poll) return;
  if (k->events)
    uv_poll_start(&k->poll->h, k->events, on_poll);
  else
    uv_poll_stop(&k->poll->h);
}

static void ev_add_read(void *p) {
  link *k = p;
  k->events |= UV_READABLE;
  poll_update(k);
}
static void ev_del_read(void *p) {
  link *k = p;
  k->events &= ~UV_READABLE;
  poll_update(k);
}
static void ev_add_write(void *p) {
  link *k = p;
  k->events |= UV_WRITABLE;
  poll_update(k);
}
static void ev_del_write(void *p) {
  link *k = p;
  k->events &= ~UV_WRITABLE;
  poll_update(k);
}

static void set_error(broker *b, const char *why) {
  char first =
      why[0] && !isupper((unsigned char)why[1]) ? (char)tolower((unsigned char)why[0]) : why[0];
  if (b->cfg.path)
    snprintf(b->error, sizeof b->error, "redis %s: %c%s", b->cfg.path, first,
             why[0] ? why + 1 : "");
  else
    snprintf(b->error, sizeof b->error, "redis %s:%d: %c%s", b->cfg.host, b->cfg.port, first,
             why[0] ? why + 1 : "");
}

/* A delay drawn uniformly between min and min * 2^attempts (at most max). */
static uint64_t backoff(link *k) {
  const broker_config *c = &k->b->cfg;
  uint64_t cap = c->backoff_min_ms;
  for (unsigned i = 0; i < k->attempts && cap < c->backoff_max_ms; i++) cap *= 2;
  if (cap > c->backoff_max_ms) cap = c->backoff_max_ms;
  if (k->attempts < 32) k->attempts++;
  uint64_t r = 0;
  if (cap <= c->backoff_min_ms || loop_random(k->b->l, &r, sizeof r)) return cap;
  return c->backoff_min_ms + r % (cap - c->backoff_min_ms + 1);
}

/* hiredis' cleanup hook: the context is about to be freed (an error, a
 * timeout, a refused handshake, or our own close). */
static void ev_cleanup(void *p) {
  link *k = p;
  broker *b = k->b;
  if (k->poll) {
    uv_close((uv_handle_t *)&k->poll->h, on_handle_closed);
    k->poll = NULL;
  }
  const char *why = k->err[0] ? k->err : k->ac->err ? k->ac->errstr : "connection closed";
  k->ac = NULL;
  k->up = 0;
  k->events = 0;
  uv_timer_stop(&k->timer);
  if (b->state == B_CLOSED) return;
  set_error(b, why);
  k->err[0] = 0;
  loop_wake(b->l, b->id);
  if (!b->ever_up) {
    b->state = B_FAILED; /* reported to the caller, who closes it */
    return;
  }
  b->state = B_CONNECTING;
  uv_timer_start(&k->timer, on_timer, backoff(k), 0);
}

/* Frees the context (at once, or after the hiredis callback we are in);
 * ev_cleanup follows. */
static void link_kill(link *k, const char *why) {
  if (!k->ac) return;
  if (why && !k->err[0]) snprintf(k->err, sizeof k->err, "%s", why);
  redisAsyncFree(k->ac);
}

/* Connect timeout while connecting, the end of the backoff while down. */
static void on_timer(uv_timer_t *t) {
  broker *b = (broker *)t->data;
  link *k = t == &b->pub.timer ? &b->pub : &b->sub;
  if (k->ac)
    link_kill(k, "connection timed out");
  else
    link_connect(k);
}

static void update_state(broker *b) {
  if (b->state != B_CONNECTING || !b->pub.up || !b->sub.up) return;
  b->state = B_CONNECTED;
  b->error[0] = 0;
  if (!b->ever_up) {
    b->ever_up = 1;
    set_ref(b, (uv_handle_t *)&b->pub.timer);
    set_ref(b, (uv_handle_t *)&b->sub.timer);
    set_ref(b, (uv_handle_t *)&b->pub.poll->h);
    set_ref(b, (uv_handle_t *)&b->sub.poll->h);
  }
  loop_wake(b->l, b->id);
}

static int channel(broker *b, const char *name, size_t len) {
  b->out.len = 0;
  return buf_append(&b->out, b->cfg.prefix, b->cfg.prefix_len) || buf_append(&b->out, name, len);
}

static void on_message(redisAsyncContext *ac, void *r, void *priv);

static void subscribe_one(void *ud, const char *name, size_t len) {
  link *k = ud;
  if (!k->ac || channel(k->b, name, len)) return;
  redisAsyncCommand(k->ac, on_message, k, "SUBSCRIBE %b", k->b->out.data, k->b->out.len);
}

static void link_up(link *k) {
  broker *b = k->b;
  k->up = 1;
  k->attempts = 0;
  uv_timer_stop(&k->timer);
  if (k->sub) topic_names(b->l, subscribe_one, k); /* again, after a reconnect */
  update_state(b);
  loop_mark_dirty(b->l, &b->obj);
}

static void handshake_failed(link *k, const char *what, const redisReply *r) {
  const char *s = r->str ? r->str : "";
  if (strncmp(s, "WRONGPASS", 9) == 0 || strstr(s, "invalid password"))
    link_kill(k, "wrong password");
  else if (strncmp(s, "NOAUTH", 6) == 0)
    link_kill(k, "a password is required");
  else {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", what, s);
    link_kill(k, msg);
  }
}

/* Replies to AUTH, SELECT and PING, in order: the link is up after all. */
static void on_handshake(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  link *k = priv;
  redisReply *reply = r;
  if (!reply || !k->ac || k->up) return; /* being freed */
  if (reply->type == REDIS_REPLY_ERROR) {
    handshake_failed(k, k->pending == 1 ? "PING" : "AUTH/SELECT", reply);
    return;
  }
  if (--k->pending == 0) link_up(k);
}

static void on_connect(const redisAsyncContext *cac, int status) {
  link *k = cac->data;
  if (status != REDIS_OK) return; /* ev_cleanup follows with the error */
  redisAsyncContext *ac = k->ac;
  const broker_config *c = &k->b->cfg;
  k->pending = 0;
  if (c->password && redisAsyncCommand(ac, on_handshake, k, "AUTH %s", c->password) == REDIS_OK)
    k->pending++;
  if (c->db >= 0 && redisAsyncCommand(ac, on_handshake, k, "SELECT %d", c->db) == REDIS_OK)
    k->pending++;
  if (redisAsyncCommand(ac, on_handshake, k, "PING") == REDIS_OK) k->pending++;
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  (void)ac, (void)status; /* ev_cleanup has seen it already */
}

static int attach(link *k, redisAsyncContext *ac) {
  broker *b = k->b;
  link_poll *p = malloc(sizeof *p);
  if (!p || uv_poll_init(&b->l->uv, &p->h, ac->c.fd)) {
    free(p);
    return -1;
  }
  p->k = k;
  p->h.data = &b->obj;
  b->handles++;
  set_ref(b, (uv_handle_t *)&p->h);
  k->poll = p;
  k->ac = ac;
  k->events = 0;
  ac->data = k;
  ac->ev.data = k;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  redisAsyncSetConnectCallback(ac, on_connect); /* waits for writable */
  return 0;
}

static void link_connect(link *k) {
  broker *b = k->b;
  const broker_config *c = &b->cfg;
  redisAsyncContext *ac =
      c->path ? redisAsyncConnectUnix(c->path) : redisAsyncConnect(c->host, c->port);
  const char *why = !ac ? "out of memory" : ac->err ? ac->errstr : NULL;
  if (!why && attach(k, ac)) why = "out of memory";
  if (why) {
    set_error(b, why);
    if (ac) redisAsyncFree(ac);
    loop_wake(b->l, b->id);
    if (!b->ever_up) {
      b->state = B_FAILED;
      return;
    }
    uv_timer_start(&k->timer, on_timer, backoff(k), 0);
    return;
  }
  uv_timer_start(&k->timer, on_timer, c->timeout_ms, 0);
}

/* Messages -------------------------------------------------------------- */

int broker_decode(const void *msg, size_t len, const uint8_t *own, const void **data, size_t *n,
                  int *binary) {
  const uint8_t *p = msg;
  if (len < BROKER_HEADER || p[0] != BROKER_MAGIC || p[1 + BROKER_NODE_ID] > 1) return -1;
  if (own && memcmp(p + 1, own, BROKER_NODE_ID) == 0) return 1;
  *binary = p[1 + BROKER_NODE_ID];
  *data = p + BROKER_HEADER;
  *n = len - BROKER_HEADER;
  return 0;
}

static void deliver(broker *b, const redisReply *ch, const redisReply *msg) {
  if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING) goto bad;
  size_t plen = b->cfg.prefix_len, clen = ch->len;
  if (clen <= plen || clen - plen > TOPIC_MAX_NAME || memcmp(ch->str, b->cfg.prefix, plen) != 0)
    goto bad;
  const void *data;
  size_t n, queued, dropped;
  int binary;
  int rc = broker_decode(msg->str, msg->len, b->node, &data, &n, &binary);
  if (rc == 1) return; /* ours, delivered locally already */
  if (rc < 0) goto bad;
  rc = topic_publish(b->l, ch->str + plen, clen - plen, data, n, binary, NULL, &queued, &dropped);
  if (rc == CONN_BAD_UTF8 || rc == CONN_TOOBIG) goto bad;
  b->received++;
  return;
bad:
  b->invalid++;
}

/* Replies on the subscribing connection: subscribe and unsubscribe
 * confirmations, and messages. */
static void on_message(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  link *k = priv;
  redisReply *reply = r;
  if (!reply || !k->ac || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
  const redisReply *kind = reply->element[0];
  if (kind->type == REDIS_REPLY_STRING && kind->len == 7 && memcmp(kind->str, "message", 7) == 0)
    deliver(k->b, reply->element[1], reply->element[2]);
}

static int append_bulk(buf *o, const void *a, size_t an, const void *b, size_t bn) {
  char head[32];
  int h = snprintf(head, sizeof head, "$%zu\r\n", an + bn);
  return buf_append(o, head, (size_t)h) || buf_append(o, a, an) || buf_append(o, b, bn) ||
         buf_append(o, "\r\n", 2);
}

void broker_publish(loop *l, const char *name, size_t len, const void *data, size_t n, int binary) {
  broker *b = l->broker;
  if (!b || b->state == B_CLOSED) return;
  link *k = &b->pub;
  if (!k->up || sdslen(k->ac->c.obuf) > b->cfg.max_queue) {
    b->dropped++;
    return;
  }
  uint8_t head[BROKER_HEADER];
  head[0] = BROKER_MAGIC;
  memcpy(head + 1, b->node, BROKER_NODE_ID);
  head[1 + BROKER_NODE_ID] = binary ? 1 : 0;
  b->out.len = 0;
  if (buf_append(&b->out, "*3\r\n$7\r\nPUBLISH\r\n", 17) ||
      append_bulk(&b->out, b->cfg.prefix, b->cfg.prefix_len, name, len) ||
      append_bulk(&b->out, head, sizeof head, data, n) ||
      redisAsyncFormattedCommand(k->ac, NULL, NULL, b->out.data, b->out.len) != REDIS_OK) {
    b->dropped++;
    return;
  }
  b->published++;
  loop_mark_dirty(l, &b->obj);
}

/* Subscriptions ----------------------------------------------------------- */

/* topic.c's hook: a topic got its first local subscriber or lost its last. */
static void topic_changed(loop *l, const char *name, size_t len) {
  broker *b = l->broker;
  if (!b->sub.up) return; /* link_up subscribes to everything */
  if (b->npend == b->pend_cap) {
    size_t cap = b->pend_cap ? b->pend_cap * 2 : 16;
    pending_name *p = realloc(b->pend, cap * sizeof *p);
    if (!p) return;
    b->pend = p;
    b->pend_cap = cap;
  }
  char *copy = malloc(len ? len : 1);
  if (!copy) return;
  memcpy(copy, name, len);
  b->pend[b->npend++] = (pending_name){copy, len};
  loop_mark_dirty(l, &b->obj);
}

static int by_name(const void *x, const void *y) {
  const pending_name *a = x, *c = y;
  int d = memcmp(a->name, c->name, a->len < c->len ? a->len : c->len);
  return d ? d : (a->len > c->len) - (a->len < c->len);
}

/* The step's changes, each name once, as its final state. */
static void send_changes(broker *b) {
  link *k = &b->sub;
  qsort(b->pend, b->npend, sizeof *b->pend, by_name);
  for (size_t i = 0; i < b->npend; i++) {
    pending_name *p = &b->pend[i];
    int dup = i > 0 && by_name(p, p - 1) == 0;
    if (!dup && k->up && !channel(b, p->name, p->len)) {
      if (topic_count(b->l, p->name, p->len))
        redisAsyncCommand(k->ac, on_message, k, "SUBSCRIBE %b", b->out.data, b->out.len);
      else
        redisAsyncCommand(k->ac, NULL, NULL, "UNSUBSCRIBE %b", b->out.data, b->out.len);
    }
  }
  for (size_t i = 0; i < b->npend; i++) free(b->pend[i].name);
  b->npend = 0;
}

/* The loop's flush: the step's subscription changes and publishes leave in
 * one write per connection. */
static void obj_flush(loop_obj *o) {
  broker *b = (broker *)o;
  if (b->state == B_CLOSED) return;
  if (b->npend) send_changes(b);
  if (b->pub.up && sdslen(b->pub.ac->c.obuf)) redisAsyncHandleWrite(b->pub.ac);
  if (b->sub.up && sdslen(b->sub.ac->c.obuf)) redisAsyncHandleWrite(b->sub.ac);
}

static void close_broker(broker *b) {
  if (b->state == B_CLOSED) return;
  b->state = B_CLOSED;
  loop *l = b->l;
  if (l->broker == b) {
    l->broker = NULL;
    l->topic_hook = NULL;
  }
  loop_unmark_dirty(l, &b->obj);
  loop_wake(l, b->id);
  if (b->pub.ac) redisAsyncFree(b->pub.ac);
  if (b->sub.ac) redisAsyncFree(b->sub.ac);
  for (size_t i = 0; i < b->npend; i++) free(b->pend[i].name);
  free(b->pend);
  b->pend = NULL;
  b->npend = 0;
  uv_close((uv_handle_t *)&b->pub.timer, on_handle_closed);
  uv_close((uv_handle_t *)&b->sub.timer, on_handle_closed);
}

static void obj_close(loop_obj *o) { close_broker((broker *)o); }
static const loop_obj_ops broker_obj_ops = {obj_close, obj_flush};

static char *dup_str(const char *s, size_t n) {
  char *p = s ? malloc(n + 1) : NULL;
  if (p) memcpy(p, s, n), p[n] = 0;
  return p;
}

static int copy_config(broker *b, const broker_config *cfg) {
  b->cfg = *cfg;
  b->cfg.host = dup_str(cfg->host, cfg->host ? strlen(cfg->host) : 0);
  b->cfg.path = dup_str(cfg->path, cfg->path ? strlen(cfg->path) : 0);
  b->cfg.password = dup_str(cfg->password, cfg->password ? strlen(cfg->password) : 0);
  b->cfg.prefix = dup_str(cfg->prefix ? cfg->prefix : "", cfg->prefix ? cfg->prefix_len : 0);
  if (!b->cfg.backoff_min_ms) b->cfg.backoff_min_ms = 1;
  if (b->cfg.backoff_max_ms < b->cfg.backoff_min_ms) b->cfg.backoff_max_ms = b->cfg.backoff_min_ms;
  return (cfg->host && !b->cfg.host) || (cfg->path && !b->cfg.path) ||
                 (cfg->password && !b->cfg.password) || !b->cfg.prefix
             ? -1
             : 0;
}

static void init_link(broker *b, link *k, int sub) {
  k->b = b;
  k->sub = sub;
  uv_timer_init(&b->l->uv, &k->timer);
  k->timer.data = &b->obj;
}

int broker_open(loop *l, const broker_config *cfg, const char **err) {
  if (l->broker) {
    *err = "a broker is set already (close it first)";
    return -1;
  }
  broker *b = calloc(1, sizeof *b);
  if (!b || copy_config(b, cfg) || loop_random(l, b->node, sizeof b->node)) {
    if (b) free_broker(b);
    *err = "out of memory";
    return -1;
  }
  b->obj.ops = &broker_obj_ops;
  b->l = l;
  b->id = loop_new_id(l);
  b->gen = ++l->broker_gen;
  b->state = B_CONNECTING;
  b->handles = 2;
  init_link(b, &b->pub, 0);
  init_link(b, &b->sub, 1);
  l->broker = b;
  l->topic_hook = topic_changed;
  link_connect(&b->pub);
  if (b->state == B_CONNECTING) link_connect(&b->sub);
  return 0;
}

static broker *of_gen(loop *l, uint64_t gen) {
  broker *b = l->broker;
  return b && (!gen || b->gen == gen) ? b : NULL;
}

void broker_describe(loop *l, uint64_t gen, broker_info *i) {
  static const char *const names[] = {"connecting", "connected", "failed", "closed"};
  broker *b = of_gen(l, gen);
  memset(i, 0, sizeof *i);
  i->state = "closed";
  if (!b) return;
  i->state = names[b->state];
  i->error = b->error[0] ? b->error : NULL;
  i->id = b->id;
  i->gen = b->gen;
  i->published = b->published;
  i->received = b->received;
  i->dropped = b->dropped;
  i->invalid = b->invalid;
}

void broker_close(loop *l, uint64_t gen) {
  broker *b = of_gen(l, gen);
  if (b) close_broker(b);
}
