/* The server userdata (duplex.server): listen, accept, reload_tls, close,
 * info. */
#include "binding/binding.h"

typedef struct lserver {
  server *s;
} lserver;

static server *check_server(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (!u->s) luaL_error(L, "server already closed");
  return u->s;
}

/* Server options other than the connection ones; the strings stay
 * anchored by the table at 1. Returns host and *port. */
static const char *read_listen(lua_State *L, server_opts *o, lua_Integer *port) {
  lua_getfield(L, 1, "http");
  o->has_http = lua_toboolean(L, -1);
  lua_getfield(L, 1, "sse"); /* event streams start as plain requests */
  o->has_http |= lua_toboolean(L, -1);
  lua_getfield(L, 1, "accept");
  o->has_accept = lua_toboolean(L, -1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  *port = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "backlog");
  o->backlog = (int)luaL_optinteger(L, -1, 511);
  lua_getfield(L, 1, "reuseport");
  o->reuseport = lua_toboolean(L, -1);
  if (*port < 0 || *port > 65535) luaL_error(L, "option 'port' must be 0..65535");
  return host;
}

int lserver_listen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  loop *l = binding_loop(L);
  server_opts o = {0};
  opts_conn(L, 1, &o.conn, "handshake_timeout", 0); /* servers: off unless asked */
  const char *protocols[MAX_LIST], *origins[MAX_LIST];
  o.nprotocols = opts_strings(L, 1, "protocols", protocols, MAX_LIST);
  o.norigins = opts_strings(L, 1, "origins", origins, MAX_LIST);
  o.protocols = protocols;
  o.origins = origins;
  lua_Integer port;
  const char *host = read_listen(L, &o, &port);
  lua_getfield(L, 1, "tls");
  if (lua_istable(L, -1)) {
    o.tls = opts_server_tls(L, -1);
    if (!o.tls) return binding_error(L, lua_tostring(L, -1));
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "option 'tls' must be a table");
  }
  lserver *u = lua_newuserdata(L, sizeof *u);
  u->s = NULL;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  char err[1024];
  u->s = server_start(l, host, (int)port, &o, err, sizeof err);
  if (!u->s) return binding_error(L, err);
  return 1;
}

static int l_server_accept(lua_State *L) {
  conn *c = server_accept(check_server(L));
  if (!c) return 0;
  lconn_push(L, c);
  conn_info i;
  conn_describe(c, 0, &i);
  lua_pushstring(L, i.state); /* "http" and "pending" want an answer */
  return 2;
}

static int l_server_reload_tls(lua_State *L) {
  server *s = check_server(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  tls_ctx *ctx = opts_server_tls(L, 2);
  if (!ctx) return binding_error(L, lua_tostring(L, -1));
  server_set_tls(s, ctx);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_server_close(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->s) server_close(u->s);
  return 0;
}

/* shutdown(status): stop listening, refuse handshakes in progress. */
static int l_server_shutdown(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  int status = (int)luaL_optinteger(L, 2, 503);
  if (u->s) server_shutdown(u->s, status);
  return 0;
}

int lserver_gc(lua_State *L) {
  lserver *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->s) server_release(u->s);
  u->s = NULL;
  return 0;
}

static int l_server_info(lua_State *L) {
  server_info i;
  server_describe(check_server(L), &i);
  lua_pushnumber(L, (lua_Number)i.id);
  lua_pushinteger(L, i.port);
  lua_pushboolean(L, i.closing);
  return 3;
}

const luaL_Reg lserver_methods[] = {
    {"accept", l_server_accept}, {"reload_tls", l_server_reload_tls},
    {"close", l_server_close},   {"shutdown", l_server_shutdown},
    {"info", l_server_info},     {NULL, NULL}};
