/* The connection userdata (duplex.conn), dialed or accepted: recv, send,
 * ping, close, abort, respond and what they report. */
#include <string.h>

#include "binding/binding.h"

/* tag: &conn_tag in every duplex.conn, so that a method tells its self
 * from any other value in two API calls (lua_touserdata, lua_rawlen) and
 * no stack traffic: a light userdata has no length, and another full
 * userdata of this size would have to hold the address of this module's
 * own constant. Anything else goes to luaL_checkudata for its error. */
static const char conn_tag;

typedef struct lconn {
  conn *c;
  const char *tag;
  int dialed; /* from dial_open (dial_proxy_head may be asked) */
} lconn;

conn *lconn_check(lua_State *L, int i) {
  lconn *u = lua_touserdata(L, i);
  if (!u || lua_rawlen(L, i) != sizeof *u || u->tag != &conn_tag)
    u = luaL_checkudata(L, i, CONN_MT);
  if (!u->c) luaL_error(L, "connection already released");
  return u->c;
}

static conn *check_conn(lua_State *L) { return lconn_check(L, 1); }

static conn_info *describe(lua_State *L, unsigned what, conn_info *i) {
  conn_describe(check_conn(L), what, i);
  return i;
}

static lconn *push_lconn(lua_State *L, conn *c) {
  lconn *u = lua_newuserdata(L, sizeof *u);
  u->c = c;
  u->tag = &conn_tag;
  u->dialed = 0;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  return u;
}

void lconn_push(lua_State *L, conn *c) { push_lconn(L, c); }

/* The TLS options of a wss:// dial from opts (at 5). */
static void read_dial_tls(lua_State *L, dial_request *r) {
  tls_config cfg = {NULL, NULL, NULL, 1};
  r->tls = cfg;
  if (!r->secure) return;
  lua_getfield(L, 5, "tls");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1)) luaL_error(L, "option 'tls' must be a table");
  if (lua_istable(L, -1)) opts_tls(L, lua_gettop(L), &r->tls, 1);
}

/* dial(host, port, target, host_header, opts, secure [, proxy_host, proxy_port
 * [, proxy_auth]]) */
int lconn_dial(lua_State *L) {
  dial_request r = {0};
  r.host = luaL_checkstring(L, 1);
  r.port = luaL_checkstring(L, 2);
  r.target = luaL_checkstring(L, 3);
  r.host_header = luaL_checkstring(L, 4);
  luaL_checktype(L, 5, LUA_TTABLE); /* options */
  r.secure = lua_toboolean(L, 6);
  conn_opts o;
  opts_conn(L, 5, &o, "timeout", 1); /* clients: on, as browsers do */
  const char *protocols[MAX_LIST];
  r.nprotocols = opts_strings(L, 5, "protocols", protocols, MAX_LIST);
  r.protocols = protocols;
  opts_headers h;
  lua_getfield(L, 5, "headers");
  opts_header_table(L, -1, &h, 0);
  r.names = h.names;
  r.values = h.values;
  r.nheaders = h.n;
  lua_getfield(L, 5, "origin");
  if (!lua_isnil(L, -1)) r.origin = luaL_checkstring(L, -1);
  read_dial_tls(L, &r);
  r.proxy_host = luaL_optstring(L, 7, NULL);
  if (r.proxy_host) r.proxy_port = luaL_checkstring(L, 8);
  r.proxy_auth = luaL_optstring(L, 9, NULL);
  lconn *u = push_lconn(L, NULL); /* first: raising later would leak the conn */
  u->dialed = 1;
  char err[1024];
  u->c = dial_open(binding_loop(L), &r, &o, err, sizeof err);
  if (!u->c) return binding_error(L, err);
  return 1;
}

static int l_conn_info(lua_State *L) {
  conn_info i;
  describe(L, 0, &i);
  lua_pushnumber(L, (lua_Number)i.id);
  lua_pushstring(L, i.state);
  lua_pushboolean(L, i.opened);
  return 3;
}

static int push_closed(lua_State *L, conn *c) {
  conn_info i;
  conn_describe(c, 0, &i);
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  lua_pushinteger(L, i.close_code);
  lua_pushstring(L, i.close_reason);
  return 4;
}

static int l_conn_recv(lua_State *L) {
  conn *c = check_conn(L);
  conn_message m;
  switch (conn_receive(c, &m)) {
  case CONN_OK:
    lua_pushlstring(L, (const char *)m.data, m.len);
    lua_pushvalue(L, lua_upvalueindex(m.binary ? BINDING_UP_BINARY : BINDING_UP_TEXT));
    conn_message_done(c, &m);
    return 2;
  case CONN_WAIT: /* false, and the id to wait on */
    lua_pushboolean(L, 0);
    lua_pushnumber(L, (lua_Number)conn_id(c));
    return 2;
  default:
    return push_closed(L, c);
  }
}

static int push_send_result(lua_State *L, conn *c, int rc) {
  switch (rc) {
  case CONN_OK:
    lua_pushboolean(L, 1);
    return 1;
  case CONN_WAIT: /* false, and the id to wait on */
    lua_pushboolean(L, 0);
    lua_pushnumber(L, (lua_Number)conn_id(c));
    return 2;
  case CONN_NOMEM:
    return binding_error(L, "out of memory");
  case CONN_TOOBIG:
    return binding_error(L, "message too large to send");
  case CONN_BAD_UTF8:
    return binding_error(L, "text message is not valid UTF-8");
  case CONN_BAD_LENGTH: /* only a ping's payload has a length limit */
    return luaL_argerror(L, 2, "ping payload longer than 125 bytes");
  default:
    return binding_error(L, "closed");
  }
}

/* send(data, kind): data a string (no number), kind nil, "text" or
 * "binary". Bad arguments return nothing: the Lua caller raises for them at
 * its own caller's line. */
static int l_conn_send(lua_State *L) {
  conn *c = check_conn(L);
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  int binary = 0;
  /* the kind strings are short, so interned: an equal one is the upvalue */
  if (lua_rawequal(L, 3, lua_upvalueindex(BINDING_UP_TEXT)) || lua_isnoneornil(L, 3))
    binary = 0;
  else if (lua_rawequal(L, 3, lua_upvalueindex(BINDING_UP_BINARY)))
    binary = 1;
  else
    return 0;
  return push_send_result(L, c, conn_send_message(c, data, len, binary));
}

static int l_conn_ping(lua_State *L) {
  conn *c = check_conn(L);
  size_t len;
  const char *data = luaL_optlstring(L, 2, "", &len);
  return push_send_result(L, c, conn_send_ping(c, data, len));
}

static int l_conn_close(lua_State *L) {
  conn *c = check_conn(L);
  lua_Integer code = luaL_optinteger(L, 2, FRAME_CLOSE_NORMAL);
  size_t len;
  const char *reason = luaL_optlstring(L, 3, "", &len);
  switch (conn_start_close(c, (unsigned)code, reason, len)) {
  case CONN_BAD_CODE:
    return luaL_argerror(L, 2, "close code must be 1000-1003, 1007-1014 or 3000-4999");
  case CONN_BAD_LENGTH: /* only a ping's payload has a length limit */
    return luaL_argerror(L, 3, "close reason longer than 123 bytes");
  case CONN_BAD_UTF8:
    return luaL_argerror(L, 3, "close reason is not valid UTF-8");
  case CONN_OK:
    lua_pushboolean(L, 1);
    return 1;
  default:
    lua_pushboolean(L, 0);
    return 1;
  }
}

static int l_conn_abort(lua_State *L) {
  conn_abort(check_conn(L), luaL_optstring(L, 2, "aborted"));
  return 0;
}

static int l_conn_close_info(lua_State *L) {
  conn_info i;
  if (!describe(L, 0, &i)->closed) return 0;
  lua_pushinteger(L, i.close_code);
  lua_pushstring(L, i.close_reason);
  lua_pushboolean(L, i.clean);
  lua_pushstring(L, i.error); /* NULL pushes nil (every Lua we build for) */
  return 4;
}

static int l_conn_error(lua_State *L) {
  conn_info i;
  describe(L, 0, &i);
  lua_pushstring(L, i.error ? i.error : "connection closed");
  lua_pushinteger(L, i.http_status);
  return 2;
}

static int l_conn_protocol(lua_State *L) {
  conn_info i;
  lua_pushstring(L, describe(L, 0, &i)->protocol); /* NULL pushes nil */
  return 1;
}

static int l_conn_compressed(lua_State *L) {
  conn_info i;
  lua_pushboolean(L, describe(L, 0, &i)->compressed);
  return 1;
}

static int l_conn_peer_cert(lua_State *L) {
  conn_info i;
  if (!describe(L, CONN_INFO_PEER, &i)->peer_subject[0]) return 0;
  lua_pushstring(L, i.peer_subject);
  return 1;
}

static int l_conn_remote(lua_State *L) {
  conn_info i;
  lua_pushstring(L, describe(L, CONN_INFO_REMOTE, &i)->remote);
  return 1;
}

static int l_conn_buffered(lua_State *L) {
  conn_info i;
  lua_pushinteger(L, (lua_Integer)describe(L, 0, &i)->buffered);
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
  size_t len;
  int request;
  const char *bytes = conn_head(c, &len, &request);
  if (!bytes) return 0;
  hs_head h;
  int ok = request ? hs_parse_request(bytes, len, &h) : hs_parse_response(bytes, len, &h);
  if (ok <= 0) return 0;
  if (request) {
    lua_pushlstring(L, h.method, h.method_len);
    lua_pushlstring(L, h.target, h.target_len);
  } else {
    lua_pushinteger(L, h.status);
    lua_pushlstring(L, h.reason, h.reason_len);
  }
  push_headers(L, &h);
  conn_drop_head(c);
  return 3;
}

/* A proxy's refusal of a dial: status, reason, headers; nothing otherwise. */
static int l_conn_proxy_head(lua_State *L) {
  lconn *u = luaL_checkudata(L, 1, CONN_MT);
  size_t len;
  const char *bytes = u->dialed ? dial_proxy_head(check_conn(L), &len) : NULL;
  hs_head h;
  if (!bytes || hs_parse_response(bytes, len, &h) <= 0) return 0;
  lua_pushinteger(L, h.status);
  lua_pushlstring(L, h.reason, h.reason_len);
  push_headers(L, &h);
  return 3;
}

/* respond(status, headers, body): answers a plain HTTP request. */
static int l_conn_respond(lua_State *L) {
  conn *c = check_conn(L);
  int status = (int)luaL_checkinteger(L, 2);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 4, "", &blen);
  if (status < 100 || status > 999) return luaL_argerror(L, 2, "HTTP status must be 100..999");
  opts_headers h;
  opts_header_table(L, 3, &h, 3);
  if (conn_respond_http(c, status, h.names, h.values, h.n, body, blen))
    return luaL_argerror(L, 3, "invalid header name or value");
  lua_pushboolean(L, 1);
  return 1;
}

/* sse(headers, retry_ms, heartbeat_ms): answers a plain HTTP request with
 * an event stream. true, or nil, err when the request is gone. */
static int l_conn_sse(lua_State *L) {
  conn *c = check_conn(L);
  opts_headers h;
  opts_header_table(L, 2, &h, 2);
  lua_Integer retry = luaL_checkinteger(L, 3), beat = luaL_checkinteger(L, 4);
  luaL_argcheck(L, retry >= 0, 3, "retry must be >= 0");
  luaL_argcheck(L, beat >= 0, 4, "heartbeat must be >= 0");
  conn_info i;
  conn_describe(c, 0, &i);
  if (strcmp(i.state, "http") != 0) return binding_error(L, i.error ? i.error : "closed");
  if (conn_respond_sse(c, h.names, h.values, h.n, (uint64_t)retry, (uint64_t)beat))
    return luaL_argerror(L, 2, "invalid header name or value");
  lua_pushboolean(L, 1);
  return 1;
}

/* accept(): a pending upgrade goes ahead. true, or nil, err. */
static int l_conn_accept(lua_State *L) {
  conn *c = check_conn(L);
  if (conn_accept_upgrade(c)) {
    conn_info i;
    conn_describe(c, 0, &i);
    return binding_error(L, i.error ? i.error : "the upgrade is not pending");
  }
  lua_pushboolean(L, 1);
  return 1;
}

int lconn_gc(lua_State *L) {
  lconn *u = luaL_checkudata(L, 1, CONN_MT);
  if (u->c) conn_release(u->c);
  u->c = NULL;
  return 0;
}

const luaL_Reg lconn_methods[] = {{"info", l_conn_info},
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
                                  {"proxy_head", l_conn_proxy_head},
                                  {"respond", l_conn_respond},
                                  {"sse", l_conn_sse},
                                  {"accept", l_conn_accept},
                                  {"buffered", l_conn_buffered},
                                  {"peer_cert", l_conn_peer_cert},
                                  {"compressed", l_conn_compressed},
                                  {NULL, NULL}};
