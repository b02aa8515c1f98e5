/* The Lua binding: the only C file that includes lua.h. One loop per Lua
 * state, kept as an upvalue of every function; userdata for servers and
 * connections. Functions here never yield and never call back into Lua: a
 * call that would block returns false, and the Lua scheduler waits on the
 * object's id before trying again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "transport/conn.h"
#include "transport/dial.h"
#include "transport/loop.h"
#include "transport/server.h"
#include "transport/tls.h"

#if LUA_VERSION_NUM == 501
#define lua_rawlen lua_objlen
static void setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  for (; l->name; l++) {
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#else
#define setfuncs luaL_setfuncs
#endif

#if LUA_VERSION_NUM == 501
static int lua_absindex(lua_State *L, int i) {
  return i > 0 || i <= LUA_REGISTRYINDEX ? i : lua_gettop(L) + i + 1;
}
#endif

#define CONN_MT "duplex.conn"
#define SERVER_MT "duplex.server"

typedef struct lconn {
  conn *c;
} lconn;

typedef struct lserver {
  server *s;
} lserver;

static loop *get_loop(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static conn *check_conn(lua_State *L) {
  lconn *u = luaL_checkudata(L, 1, CONN_MT);
  if (!u->c) luaL_error(L, "connection already released");
  return u->c;
}

static server *check_server(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (!u->s) luaL_error(L, "server already closed");
  return u->s;
}

static int push_error(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* Reads an optional number of seconds from opts into milliseconds. */
static uint64_t opt_ms(lua_State *L, int t, const char *name, uint64_t dflt) {
  lua_getfield(L, t, name);
  uint64_t v = dflt;
  if (!lua_isnil(L, -1)) {
    lua_Number n = luaL_checknumber(L, -1);
    if (!(n >= 0 && n <= 1e9)) /* NaN too */
      luaL_error(L, "option '%s' must be between 0 and 1e9 seconds", name);
    v = (uint64_t)(n * 1000 + 0.5);
  }
  lua_pop(L, 1);
  return v;
}

#define SIZE_LIMIT ((uint64_t)1 << 53) /* every integer below is exact in a double */

/* An optional whole number from min to max in opts[name]; what names the
 * option and its unit in the error ("option 'level' must be ..."). */
static uint64_t opt_num(lua_State *L, int t, const char *name, uint64_t dflt, uint64_t min,
                        uint64_t max, const char *what) {
  lua_getfield(L, t, name);
  uint64_t v = dflt;
  if (!lua_isnil(L, -1)) {
    lua_Number n = luaL_checknumber(L, -1);
    if (!(n >= (lua_Number)min && n <= (lua_Number)max)) { /* NaN too */
      char range[64]; /* lua_pushfstring knows no 64-bit integers in Lua 5.1 */
      snprintf(range, sizeof range, "%llu to %llu", (unsigned long long)min,
               (unsigned long long)max);
      luaL_error(L, "option '%s' must be %s from %s", name, what, range);
    }
    v = (uint64_t)n;
  }
  lua_pop(L, 1);
  return v;
}

/* compression = true | false | { level, window_bits, context_takeover,
 * threshold } */
static uint64_t opt_size(lua_State *L, int t, const char *name, uint64_t dflt, uint64_t min,
                         uint64_t max) {
  return opt_num(L, t, name, dflt, min, max, "a size in bytes");
}

static void read_compression(lua_State *L, int t, pmd_config *c, int dflt) {
  c->enabled = dflt;
  lua_getfield(L, t, "compression");
  int v = lua_gettop(L);
  if (lua_isboolean(L, v)) {
    c->enabled = lua_toboolean(L, v);
  } else if (lua_istable(L, v)) {
    c->enabled = 1;
    c->level = (int)opt_num(L, v, "level", (uint64_t)c->level, 0, 9, "a zlib level");
    c->window_bits =
        (int)opt_num(L, v, "window_bits", (uint64_t)c->window_bits, 9, 15, "a window size in bits");
    c->mem_level = (int)opt_num(L, v, "mem_level", (uint64_t)c->mem_level, 1, 9, "a zlib memLevel");
    c->threshold = (size_t)opt_size(L, v, "threshold", c->threshold, 0, SIZE_LIMIT);
    lua_getfield(L, v, "context_takeover");
    if (!lua_isnil(L, -1)) c->context_takeover = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnil(L, v)) {
    luaL_error(L, "option 'compression' must be a boolean or a table");
  }
  lua_pop(L, 1);
}

static void read_conn_opts(lua_State *L, int t, conn_opts *o, const char *timeout_name,
                           int compress) {
  conn_opts_default(o);
  o->pmd.enabled = compress;
  if (lua_isnil(L, t)) return;
  read_compression(L, t, &o->pmd, compress);
  o->max_message = opt_size(L, t, "max_message", o->max_message, 1, SIZE_LIMIT);
  o->max_head = (size_t)opt_size(L, t, "max_head", o->max_head, 256, 1 << 20);
  o->high_water = (size_t)opt_size(L, t, "high_water", o->high_water, 1, CONN_MAX_HIGH_WATER);
  o->handshake_timeout_ms = opt_ms(L, t, timeout_name, o->handshake_timeout_ms);
  o->close_timeout_ms = opt_ms(L, t, "close_timeout", o->close_timeout_ms);
  o->ping_interval_ms = opt_ms(L, t, "ping_interval", 0);
  o->ping_timeout_ms = opt_ms(L, t, "ping_timeout", o->ping_interval_ms);
  if (o->ping_interval_ms && !o->ping_timeout_ms) o->ping_timeout_ms = o->ping_interval_ms;
}

/* A Lua array of strings as a C array kept alive on the Lua stack (the
 * strings are anchored by the table at index t). */
static size_t string_list(lua_State *L, int t, const char *name, const char **out, size_t max) {
  size_t n = 0;
  lua_getfield(L, t, name);
  if (lua_istable(L, -1)) {
    size_t len = lua_rawlen(L, -1);
    if (len > max) luaL_error(L, "option '%s' holds more than %d items", name, (int)max);
    for (size_t i = 1; i <= len; i++) {
      lua_rawgeti(L, -1, (int)i);
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must hold strings", name);
      out[n++] = lua_tostring(L, -1); /* anchored by the table */
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "option '%s' must be a list of strings", name);
  }
  lua_pop(L, 1);
  return n;
}

/* TLS configuration from an options table at index t (strings stay
 * anchored by it). */
static void read_tls_config(lua_State *L, int t, tls_config *cfg, int dflt_verify) {
  static const char *const names[] = {"cert", "key", "ca"};
  const char **fields[] = {&cfg->cert, &cfg->key, &cfg->ca};
  for (int i = 0; i < 3; i++) {
    lua_getfield(L, t, names[i]);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "option 'tls.%s' must be a file name", names[i]);
    *fields[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_getfield(L, t, "verify");
  cfg->verify = lua_isnil(L, -1) ? dflt_verify : lua_toboolean(L, -1);
  lua_pop(L, 1);
}

/* A server TLS context from the table at t, or NULL with the error pushed.
 * Everything that can raise runs before the context exists, so a bad table
 * leaks nothing. */
static tls_ctx *server_tls(lua_State *L, int t) {
  char err[256];
  tls_config cfg;
  t = lua_absindex(L, t);
  read_tls_config(L, t, &cfg, 0);
  lua_getfield(L, t, "sni");
  int sni = lua_gettop(L);
  if (lua_istable(L, sni)) {
    lua_pushnil(L);
    while (lua_next(L, sni)) {
      tls_config host;
      if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
        luaL_error(L, "option 'tls.sni' must map host names to {cert=, key=}");
      read_tls_config(L, lua_gettop(L), &host, 0);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, sni)) {
    luaL_error(L, "option 'tls.sni' must be a table");
  }
  tls_ctx *ctx = tls_ctx_new(1, &cfg, err, sizeof err);
  if (!ctx) {
    lua_pushfstring(L, "TLS: %s", err);
    return NULL;
  }
  if (lua_istable(L, sni)) {
    lua_pushnil(L);
    while (lua_next(L, sni)) {
      /* a name's own certificate; client checks as for the others unless it
       * says otherwise (tls.c applies them when the name is chosen) */
      tls_config host;
      read_tls_config(L, lua_gettop(L), &host, cfg.verify);
      if (!host.ca) host.ca = cfg.ca;
      if (tls_ctx_add_sni(ctx, lua_tostring(L, -2), &host, err, sizeof err)) {
        tls_ctx_unref(ctx);
        lua_pushfstring(L, "TLS (sni %s): %s", lua_tostring(L, -2), err);
        return NULL;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return ctx;
}

/* The loop */

static int l_step(lua_State *L) {
  loop *l = get_loop(L);
  lua_Number t = luaL_optnumber(L, 1, -1);
  if (t != t) t = 0; /* NaN: step never raises (DESIGN.md), so do not wait */
  int ms = t < 0 ? -1 : t > 1e6 ? 1000000000 : (int)(t * 1000 + 0.5);
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t n = loop_step(l, ms);
  for (size_t i = 0; i < n; i++) {
    lua_pushnumber(L, (lua_Number)l->ready[i]);
    lua_rawseti(L, 2, (int)i + 1);
  }
  int all = l->wake_all;
  loop_take_ready(l);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushboolean(L, all);
  return 2;
}

static int l_timeout(lua_State *L) {
  int ms = loop_timeout(get_loop(L));
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, ms / 1000.0);
  return 1;
}

static int l_alive(lua_State *L) {
  lua_pushboolean(L, loop_alive(get_loop(L)));
  return 1;
}

static int l_pollfd(lua_State *L) {
  int fd = uv_backend_fd(&get_loop(L)->uv);
  if (fd < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, fd);
  return 1;
}

static int l_new_id(lua_State *L) {
  lua_pushnumber(L, (lua_Number)loop_new_id(get_loop(L)));
  return 1;
}

static int l_sleep(lua_State *L) {
  loop *l = get_loop(L);
  int64_t id = (int64_t)luaL_checknumber(L, 1);
  lua_Number s = luaL_checknumber(L, 2);
  if (s != s) return luaL_argerror(L, 2, "seconds is not a number (NaN)");
  uint64_t ms = s <= 0 ? 0 : s > 1e9 ? (uint64_t)1e12 : (uint64_t)(s * 1000 + 0.5);
  if (loop_sleep(l, id, ms)) return luaL_error(L, "out of memory");
  return 0;
}

static int l_now(lua_State *L) {
  loop *l = get_loop(L);
  uv_update_time(&l->uv);
  lua_pushnumber(L, (lua_Number)uv_now(&l->uv) / 1000.0);
  return 1;
}

static int l_loop_gc(lua_State *L) {
  loop_close(lua_touserdata(L, 1));
  return 0;
}

/* Servers */

enum { MAX_LIST = 64 };

static int l_listen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  loop *l = get_loop(L);
  server_opts o;
  memset(&o, 0, sizeof o);
  read_conn_opts(L, 1, &o.conn, "handshake_timeout", 0); /* servers: off unless asked */
  const char *protocols[MAX_LIST], *origins[MAX_LIST];
  o.nprotocols = string_list(L, 1, "protocols", protocols, MAX_LIST);
  o.norigins = string_list(L, 1, "origins", origins, MAX_LIST);
  o.protocols = protocols;
  o.origins = origins;
  lua_getfield(L, 1, "http");
  o.has_http = lua_toboolean(L, -1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  lua_Integer port = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "backlog");
  o.backlog = (int)luaL_optinteger(L, -1, 511);
  if (port < 0 || port > 65535) return luaL_error(L, "option 'port' must be 0..65535");
  lua_getfield(L, 1, "tls");
  if (lua_istable(L, -1)) {
    o.tls = server_tls(L, -1);
    if (!o.tls) return push_error(L, lua_tostring(L, -1));
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "option 'tls' must be a table");
  }
  lserver *u = lua_newuserdata(L, sizeof *u);
  u->s = NULL;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  int err = 0;
  u->s = server_listen(l, host, (int)port, &o, &err);
  if (!u->s) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s:%d: %s", host, (int)port, uv_strerror(err));
    return 2;
  }
  return 1;
}

static int l_server_accept(lua_State *L) {
  server *s = check_server(L);
  conn *c = server_accept(s);
  if (!c) return 0;
  lconn *u = lua_newuserdata(L, sizeof *u);
  u->c = c;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  lua_pushboolean(L, c->state == CONN_HTTP);
  return 2;
}

static int l_server_reload_tls(lua_State *L) {
  server *s = check_server(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  tls_ctx *ctx = server_tls(L, 2);
  if (!ctx) return push_error(L, lua_tostring(L, -1));
  server_set_tls(s, ctx);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_server_close(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->s) server_close(u->s);
  return 0;
}

static int l_server_gc(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->s) server_release(u->s);
  u->s = NULL;
  return 0;
}

static int l_server_info(lua_State *L) {
  server *s = check_server(L);
  lua_pushnumber(L, (lua_Number)s->id);
  lua_pushinteger(L, s->port);
  lua_pushboolean(L, s->closing);
  return 3;
}

/* Connections */

static int l_dial(lua_State *L) {
  loop *l = get_loop(L);
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  const char *target = luaL_checkstring(L, 3);
  const char *hosthdr = luaL_checkstring(L, 4);
  luaL_checktype(L, 5, LUA_TTABLE); /* options */
  conn_opts o;
  read_conn_opts(L, 5, &o, "timeout", 1); /* clients: on, as browsers do */
  const char *protocols[MAX_LIST];
  size_t np = string_list(L, 5, "protocols", protocols, MAX_LIST);
  /* extra headers: a table name -> value */
  const char *names[MAX_LIST + 2], *values[MAX_LIST + 2];
  size_t nh = 0;
  lua_getfield(L, 5, "headers");
  int ht = lua_gettop(L);
  if (lua_istable(L, ht)) {
    lua_pushnil(L);
    while (lua_next(L, ht)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "option 'headers' must map names to strings");
      if (nh == MAX_LIST) return luaL_error(L, "option 'headers' holds too many headers");
      names[nh] = lua_tostring(L, -2);
      values[nh++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, ht)) {
    return luaL_error(L, "option 'headers' must be a table");
  }
  lua_getfield(L, 5, "origin");
  if (!lua_isnil(L, -1)) {
    names[nh] = "Origin";
    values[nh++] = luaL_checkstring(L, -1);
  }
  char offer[256];
  if (o.pmd.enabled) {
    pmd_offer(&o.pmd, offer, sizeof offer);
    names[nh] = "Sec-WebSocket-Extensions";
    values[nh++] = offer;
  }
  /* protocols as "a, b" and as the NUL-separated list the check wants */
  luaL_Buffer joined;
  luaL_buffinit(L, &joined);
  for (size_t i = 0; i < np; i++) {
    if (i) luaL_addstring(&joined, ", ");
    luaL_addstring(&joined, protocols[i]);
  }
  luaL_pushresult(&joined);
  const char *protolist = np ? lua_tostring(L, -1) : NULL;

  lconn *u = lua_newuserdata(L, sizeof *u);
  u->c = NULL;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  conn *c = conn_new(l, 0, &o);
  if (!c) return push_error(L, "out of memory");
  u->c = c;
  size_t total = 1;
  for (size_t i = 0; i < np; i++) total += strlen(protocols[i]) + 1;
  c->dial = calloc(1, sizeof *c->dial + total);
  if (!c->dial) return push_error(L, "out of memory");
  char *p = c->dial->offered;
  for (size_t i = 0; i < np; i++) {
    size_t len = strlen(protocols[i]) + 1;
    memcpy(p, protocols[i], len);
    p += len;
  }
  *p = 0;
  if (hs_make_key(c->dial->key)) return push_error(L, "no randomness for the handshake key");
  if (hs_build_request(&c->out, target, hosthdr, c->dial->key, protolist, names, values, nh))
    return push_error(L, "invalid header name or value");
  if (lua_toboolean(L, 6)) {
    lua_getfield(L, 5, "tls");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1))
      return luaL_error(L, "option 'tls' must be a table");
    tls_config cfg = {NULL, NULL, NULL, 1};
    if (lua_istable(L, -1)) read_tls_config(L, lua_gettop(L), &cfg, 1);
    tls_ctx *ctx;
    char err[256];
    if (!cfg.ca && !cfg.cert && cfg.verify) { /* the common case shares one context */
      if (!l->tls_client) l->tls_client = tls_ctx_new(0, &cfg, err, sizeof err);
      if (!l->tls_client) return push_error(L, err);
      ctx = l->tls_client;
      tls_ctx_ref(ctx);
    } else if (!(ctx = tls_ctx_new(0, &cfg, err, sizeof err))) {
      return push_error(L, err);
    }
    int failed = conn_use_tls(c, ctx, host);
    tls_ctx_unref(ctx); /* the session holds its own reference */
    if (failed) return push_error(L, "cannot start TLS");
    lua_pop(L, 1);
  }
  int rc = dial_start(c, host, port);
  if (rc) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot resolve %s: %s", host, uv_strerror(rc));
    return 2;
  }
  return 1;
}

static const char *const state_names[] = {"dialing", "handshake", "http",
                                          "open",    "closing",   "closed"};

static int l_conn_info(lua_State *L) {
  conn *c = check_conn(L);
  lua_pushnumber(L, (lua_Number)c->id);
  lua_pushstring(L, state_names[c->state]);
  lua_pushboolean(L, c->opened);
  return 3;
}

static int l_conn_recv(lua_State *L) {
  conn *c = check_conn(L);
  const conn_msg *m;
  switch (conn_recv(c, &m)) {
  case CONN_OK:
    lua_pushlstring(L, (const char *)m->data, m->len);
    lua_pushstring(L, m->opcode == FRAME_TEXT ? "text" : "binary");
    conn_msg_free(c, m);
    return 2;
  case CONN_WAIT:
    lua_pushboolean(L, 0);
    return 1;
  default:
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushinteger(L, c->close_code);
    lua_pushstring(L, c->close_reason ? c->close_reason : "");
    return 4;
  }
}

static int push_send_result(lua_State *L, int rc) {
  switch (rc) {
  case CONN_OK:
    lua_pushboolean(L, 1);
    return 1;
  case CONN_WAIT:
    lua_pushboolean(L, 0);
    return 1;
  case CONN_NOMEM:
    return push_error(L, "out of memory");
  case CONN_TOOBIG:
    return push_error(L, "message too large to send");
  default:
    return push_error(L, "closed");
  }
}

static int l_conn_send(lua_State *L) {
  conn *c = check_conn(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *kind = luaL_optstring(L, 3, "text");
  int opcode;
  if (strcmp(kind, "text") == 0)
    opcode = FRAME_TEXT;
  else if (strcmp(kind, "binary") == 0)
    opcode = FRAME_BINARY;
  else
    return luaL_argerror(L, 3, "expected \"text\" or \"binary\"");
  if (opcode == FRAME_TEXT && !utf8_valid((const uint8_t *)data, len))
    return push_error(L, "text message is not valid UTF-8");
  return push_send_result(L, conn_send(c, opcode, (const uint8_t *)data, len));
}

static int l_conn_ping(lua_State *L) {
  conn *c = check_conn(L);
  size_t len;
  const char *data = luaL_optlstring(L, 2, "", &len);
  if (len > FRAME_MAX_CONTROL) return luaL_argerror(L, 2, "ping payload longer than 125 bytes");
  return push_send_result(L, conn_ping(c, (const uint8_t *)data, len));
}

static int l_conn_close(lua_State *L) {
  conn *c = check_conn(L);
  lua_Integer code = luaL_optinteger(L, 2, FRAME_CLOSE_NORMAL);
  size_t len;
  const char *reason = luaL_optlstring(L, 3, "", &len);
  if (!frame_close_code_sendable((unsigned)code))
    return luaL_argerror(L, 2, "close code must be 1000-1003, 1007-1014 or 3000-4999");
  if (len > FRAME_MAX_CONTROL - 2) return luaL_argerror(L, 3, "close reason longer than 123 bytes");
  if (!utf8_valid((const uint8_t *)reason, len))
    return luaL_argerror(L, 3, "close reason is not valid UTF-8");
  lua_pushboolean(L, conn_close(c, (unsigned)code, reason, len) == CONN_OK);
  return 1;
}

static int l_conn_abort(lua_State *L) {
  conn_abort(check_conn(L), luaL_optstring(L, 2, "aborted"));
  return 0;
}

static int l_conn_close_info(lua_State *L) {
  conn *c = check_conn(L);
  if (c->state != CONN_DONE) return 0;
  lua_pushinteger(L, c->close_code);
  lua_pushstring(L, c->close_reason ? c->close_reason : "");
  lua_pushboolean(L, c->clean);
  if (c->error)
    lua_pushstring(L, c->error);
  else
    lua_pushnil(L);
  return 4;
}

static int l_conn_error(lua_State *L) {
  conn *c = check_conn(L);
  lua_pushstring(L, c->error ? c->error : "connection closed");
  lua_pushinteger(L, c->dial_status);
  return 2;
}

static int l_conn_protocol(lua_State *L) {
  conn *c = check_conn(L);
  if (c->protocol)
    lua_pushstring(L, c->protocol);
  else
    lua_pushnil(L);
  return 1;
}

static int l_conn_compressed(lua_State *L) {
  lua_pushboolean(L, check_conn(L)->pmd != NULL);
  return 1;
}

static int l_conn_peer_cert(lua_State *L) {
  conn *c = check_conn(L);
  char subject[512];
  if (!c->tls) return 0;
  tls_peer_subject(c->tls, subject, sizeof subject);
  if (!subject[0]) return 0;
  lua_pushstring(L, subject);
  return 1;
}

static int l_conn_remote(lua_State *L) {
  char addr[96];
  conn_remote(check_conn(L), addr, sizeof addr);
  lua_pushstring(L, addr);
  return 1;
}

static void push_headers(lua_State *L, const hs_head *h) {
  lua_createtable(L, 0, (int)h->nheaders);
  char name[256];
  for (size_t i = 0; i < h->nheaders; i++) {
    const hs_header *e = &h->headers[i];
    size_t n = e->name_len < sizeof name ? e->name_len : sizeof name - 1;
    for (size_t j = 0; j < n; j++) {
      char ch = e->name[j];
      name[j] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    lua_pushlstring(L, name, n);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, e->value, e->value_len);
    } else { /* a repeated header: join with ", " as RFC 9110 5.3 allows */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, e->value, e->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

/* Request (server side) or response (client side) head: the parsed head is
 * handed to Lua once and the buffer released. */
static int l_conn_head(lua_State *L) {
  conn *c = check_conn(L);
  if (!c->head_len) return 0;
  hs_head h;
  int ok = c->is_server ? hs_parse_request(c->head.data, c->head_len, &h)
                        : hs_parse_response(c->head.data, c->head_len, &h);
  if (ok <= 0) return 0;
  if (c->is_server) {
    lua_pushlstring(L, h.method, h.method_len);
    lua_pushlstring(L, h.target, h.target_len);
  } else {
    lua_pushinteger(L, h.status);
    lua_pushlstring(L, h.reason, h.reason_len);
  }
  push_headers(L, &h);
  buf_free(&c->head);
  c->head_len = 0;
  return 3;
}

/* respond(status, headers, body): answers a plain HTTP request. */
static int l_conn_respond(lua_State *L) {
  conn *c = check_conn(L);
  int status = (int)luaL_checkinteger(L, 2);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 4, "", &blen);
  if (status < 100 || status > 999) return luaL_argerror(L, 2, "HTTP status must be 100..999");
  const char *names[MAX_LIST], *values[MAX_LIST];
  size_t nh = 0;
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (nh == MAX_LIST) return luaL_argerror(L, 3, "too many headers");
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_argerror(L, 3, "header names must be strings");
      names[nh] = lua_tostring(L, -2);
      values[nh] = luaL_checkstring(L, -1); /* numbers become strings in place */
      nh++;
      lua_pop(L, 1);
    }
  }
  buf out = {0};
  if (hs_build_response(&out, status, names, values, nh, blen) || buf_append(&out, body, blen)) {
    buf_free(&out);
    return luaL_argerror(L, 3, "invalid header name or value");
  }
  conn_respond(c, out.data, out.len);
  buf_free(&out);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_conn_buffered(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conn_buffered(check_conn(L)));
  return 1;
}

static int l_conn_gc(lua_State *L) {
  lconn *u = luaL_checkudata(L, 1, CONN_MT);
  if (u->c) conn_release(u->c);
  u->c = NULL;
  return 0;
}

static const luaL_Reg conn_methods[] = {{"info", l_conn_info},
                                        {"recv", l_conn_recv},
                                        {"send", l_conn_send},
                                        {"ping", l_conn_ping},
                                        {"close", l_conn_close},
                                        {"abort", l_conn_abort},
                                        {"close_info", l_conn_close_info},
                                        {"error", l_conn_error},
                                        {"protocol", l_conn_protocol},
                                        {"remote", l_conn_remote},
                                        {"head", l_conn_head},
                                        {"respond", l_conn_respond},
                                        {"buffered", l_conn_buffered},
                                        {"peer_cert", l_conn_peer_cert},
                                        {"compressed", l_conn_compressed},
                                        {NULL, NULL}};

static const luaL_Reg server_methods[] = {{"accept", l_server_accept},
                                          {"reload_tls", l_server_reload_tls},
                                          {"close", l_server_close},
                                          {"info", l_server_info},
                                          {NULL, NULL}};

static const luaL_Reg functions[] = {{"step", l_step},     {"timeout", l_timeout},
                                     {"alive", l_alive},   {"pollfd", l_pollfd},
                                     {"new_id", l_new_id}, {"sleep", l_sleep},
                                     {"now", l_now},       {"listen", l_listen},
                                     {"dial", l_dial},     {NULL, NULL}};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  lua_pushvalue(L, -3); /* the loop */
  setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

#define LOOP_KEY "duplex.loop"

int luaopen_duplex_core(lua_State *L) {
  /* One loop per Lua state, kept in the registry: it must outlive every
   * connection and server, even when package.loaded is cleared and the
   * module is opened again (busted does that for each spec file). Being
   * made first, it is also finalized last when the state closes. */
  lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
  if (!lua_isuserdata(L, -1)) {
    lua_pop(L, 1);
    loop *l = lua_newuserdata(L, sizeof *l);
    if (loop_init(l)) return luaL_error(L, "cannot initialise the libuv loop");
    lua_newtable(L);
    lua_pushcfunction(L, l_loop_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    new_class(L, CONN_MT, conn_methods, l_conn_gc);
    new_class(L, SERVER_MT, server_methods, l_server_gc);
  }
  lua_newtable(L);
  lua_pushvalue(L, -2);
  setfuncs(L, functions, 1);
  return 1;
}
