/* Topics for Lua: the subscribe methods of duplex.conn and the module's
 * publish and subscribers. */
#include <string.h>

#include "binding/binding.h"
#include "transport/history.h"
#include "transport/topic.h"

static const char *check_topic(lua_State *L, int i, size_t *len) {
  const char *name = luaL_checklstring(L, i, len);
  luaL_argcheck(L, *len > 0 && *len <= TOPIC_MAX_NAME, i,
                "topic must be a non-empty string of at most 1024 bytes");
  return name;
}

static int l_subscribe(lua_State *L) {
  conn *c = lconn_check(L, 1);
  size_t len;
  const char *name = check_topic(L, 2, &len);
  conn_info i;
  conn_describe(c, 0, &i);
  int stream = strcmp(i.state, "sse") == 0;
  if (!stream && strcmp(i.state, "open") != 0) return binding_error(L, "closed");
  /* an event stream names the topic in each event's "event:" line */
  luaL_argcheck(L, !stream || (!memchr(name, '\n', len) && !memchr(name, '\r', len)), 2,
                "an event stream's topic may not hold CR or LF");
  if (lua_isnoneornil(L, 3)) {
    if (topic_subscribe(c, name, len) < 0) return binding_error(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
  }
  size_t slen;
  const char *since = luaL_checklstring(L, 3, &slen);
  int recovered;
  if (topic_subscribe_since(c, name, len, since, slen, &recovered) < 0)
    return binding_error(L, "out of memory");
  lua_pushboolean(L, 1);
  lua_pushboolean(L, recovered);
  return 2;
}

static int l_unsubscribe(lua_State *L) {
  conn *c = lconn_check(L, 1);
  size_t len;
  const char *name = check_topic(L, 2, &len);
  lua_pushboolean(L, topic_unsubscribe(c, name, len));
  return 1;
}

static int l_subscribed(lua_State *L) {
  conn *c = lconn_check(L, 1);
  size_t len;
  const char *name = check_topic(L, 2, &len);
  lua_pushboolean(L, topic_subscribed(c, name, len));
  return 1;
}

typedef struct names {
  lua_State *L;
  int n;
} names;

static void add_name(void *ud, const char *name, size_t len) {
  names *t = ud;
  lua_pushlstring(t->L, name, len);
  lua_rawseti(t->L, -2, ++t->n);
}

/* A fresh table: the caller may change its subscriptions while walking it. */
static int l_topics(lua_State *L) {
  conn *c = lconn_check(L, 1);
  names t = {L, 0};
  lua_newtable(L);
  topic_each(c, add_name, &t);
  return 1;
}

/* Publishes dropped over max_backlog, and binary ones an event stream
 * skipped. */
static int l_dropped(lua_State *L) {
  conn_info i;
  conn_describe(lconn_check(L, 1), 0, &i);
  lua_pushnumber(L, (lua_Number)i.dropped);
  lua_pushnumber(L, (lua_Number)i.skipped);
  return 2;
}

/* publish(topic, data, kind) from arguments at base; except: the sender. */
static int publish(lua_State *L, int base, conn *except) {
  size_t len, n;
  const char *name = check_topic(L, base, &len);
  const char *data = luaL_checklstring(L, base + 1, &n);
  const char *kind = luaL_optstring(L, base + 2, "text");
  int binary = strcmp(kind, "binary") == 0;
  if (!binary && strcmp(kind, "text") != 0)
    return luaL_argerror(L, base + 2, "expected \"text\" or \"binary\"");
  size_t queued, dropped, idlen;
  char id[HISTORY_ID_MAX];
  switch (topic_publish_id(binding_loop(L), name, len, data, n, binary, except, &queued, &dropped,
                           id, &idlen)) {
  case CONN_OK:
    broker_publish(binding_loop(L), name, len, data, n, binary); /* the other processes */
    lua_pushinteger(L, (lua_Integer)queued);
    lua_pushinteger(L, (lua_Integer)dropped);
    if (!idlen) return 2;
    lua_pushlstring(L, id, idlen);
    return 3;
  case CONN_BAD_UTF8:
    return binding_error(L, "text message is not valid UTF-8");
  case CONN_TOOBIG:
    return binding_error(L, "message too large to send");
  default:
    return binding_error(L, "out of memory");
  }
}

static int l_conn_publish(lua_State *L) { return publish(L, 2, lconn_check(L, 1)); }
static int l_publish(lua_State *L) { return publish(L, 1, NULL); }

static int l_subscribers(lua_State *L) {
  size_t len;
  const char *name = check_topic(L, 1, &len);
  lua_pushinteger(L, (lua_Integer)topic_count(binding_loop(L), name, len));
  return 1;
}

/* Whole number in [1, max] at i, or 0 when nil. */
static size_t opt_count(lua_State *L, int i, double max, const char *what) {
  if (lua_isnoneornil(L, i)) return 0;
  double v = luaL_checknumber(L, i);
  if (!(v >= 1 && v <= max) || v != (double)(size_t)v) luaL_argerror(L, i, what);
  return (size_t)v;
}

/* history(topic, false) or history(topic, size, ttl seconds or nil, bytes or nil). */
static int l_history(lua_State *L) {
  size_t len;
  const char *name = check_topic(L, 1, &len);
  size_t size = 0, bytes = 0;
  int64_t ttl_ms = 0;
  if (!(lua_isboolean(L, 2) && !lua_toboolean(L, 2))) {
    size = opt_count(L, 2, 1e6, "size must be a whole number from 1 to 1000000");
    luaL_argcheck(L, size > 0, 2, "size must be a whole number from 1 to 1000000");
    if (!lua_isnoneornil(L, 3)) {
      double t = luaL_checknumber(L, 3);
      luaL_argcheck(L, t > 0 && t <= 1e9, 3, "ttl must be a number of seconds > 0");
      ttl_ms = (int64_t)(t * 1000.0);
      if (ttl_ms < 1) ttl_ms = 1;
    }
    bytes = opt_count(L, 4, 9007199254740992.0, "bytes must be a whole number >= 1");
  }
  if (topic_history(binding_loop(L), name, len, size, ttl_ms, bytes) < 0)
    return binding_error(L, "out of memory");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_last_id(lua_State *L) {
  size_t len;
  const char *name = check_topic(L, 1, &len);
  char id[HISTORY_ID_MAX];
  size_t n = topic_last_id(binding_loop(L), name, len, id);
  if (!n) return 0;
  lua_pushlstring(L, id, n);
  return 1;
}

const luaL_Reg ltopic_conn_methods[] = {{"subscribe", l_subscribe},
                                        {"unsubscribe", l_unsubscribe},
                                        {"subscribed", l_subscribed},
                                        {"topics", l_topics},
                                        {"publish", l_conn_publish},
                                        {"dropped", l_dropped},
                                        {NULL, NULL}};

const luaL_Reg ltopic_functions[] = {{"publish", l_publish},
                                     {"subscribers", l_subscribers},
                                     {"history", l_history},
                                     {"last_id", l_last_id},
                                     {NULL, NULL}};
