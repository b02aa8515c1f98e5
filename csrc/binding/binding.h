/* What the files of the binding share: the Lua version shims, the class
 * names, the option readers (opts.c) and each class's entry points. The
 * binding is the only Lua-aware C; it reaches the transport through
 * transport/api.h alone. Its functions never yield and never call back into
 * Lua: a call that would block returns false, and the Lua scheduler waits
 * on the object's id before trying again. */
#ifndef DUPLEX_BINDING_H
#define DUPLEX_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "transport/api.h"

/* core.so exports luaopen_duplex_core only */
#pragma GCC visibility push(hidden)

#if LUA_VERSION_NUM == 501
#define lua_rawlen lua_objlen
static inline int lua_absindex(lua_State *L, int i) {
  return i > 0 || i <= LUA_REGISTRYINDEX ? i : lua_gettop(L) + i + 1;
}
#endif

#define CONN_MT "duplex.conn"
#define SERVER_MT "duplex.server"
#define STDIN_MT "duplex.stdin"
#define STDOUT_MT "duplex.stdout"

/* The most strings a list option and the most entries a header table hold. */
enum { MAX_LIST = DIAL_MAX_LIST };

/* module.c: the loop is upvalue 1 of every function and method. A method
 * also has the kind strings, pushed and compared without hashing them
 * again. */
enum {
  BINDING_UP_LOOP = 1,
  BINDING_UP_TEXT,
  BINDING_UP_BINARY,
  BINDING_UPVALUES = BINDING_UP_BINARY
};
loop *binding_loop(lua_State *L);
/* Pushes nil, msg: 2 results. */
int binding_error(lua_State *L, const char *msg);

/* opts.c: option tables. Errors in a table raise with the option named. */
void opts_conn(lua_State *L, int t, conn_opts *o, const char *timeout_name, int compress);
size_t opts_strings(lua_State *L, int t, const char *name, const char **out, size_t max);
void opts_tls(lua_State *L, int t, tls_config *cfg, int dflt_verify);
tls_ctx *opts_server_tls(lua_State *L, int t);

/* A header table name -> value, its strings anchored by the table. */
typedef struct opts_headers {
  const char *names[MAX_LIST], *values[MAX_LIST];
  size_t n;
} opts_headers;

/* Reads the header table at t. arg 0: the 'headers' option of an options
 * table (nil allowed); else argument arg of a method (anything but a table
 * means no headers, and numbers become strings). */
void opts_header_table(lua_State *L, int t, opts_headers *h, int arg);

/* lloop.c */
extern const luaL_Reg lloop_functions[];
loop *lloop_new(lua_State *L);

/* lserver.c */
extern const luaL_Reg lserver_methods[];
int lserver_gc(lua_State *L);
int lserver_listen(lua_State *L);

/* lconn.c */
extern const luaL_Reg lconn_methods[];
int lconn_gc(lua_State *L);
int lconn_dial(lua_State *L);
/* Pushes a userdata holding c (already held for the binding). */
void lconn_push(lua_State *L, conn *c);
/* The conn of the duplex.conn at i; raises when it was released. */
conn *lconn_check(lua_State *L, int i);

/* ltopic.c: methods of duplex.conn and functions of the module */
extern const luaL_Reg ltopic_conn_methods[];
extern const luaL_Reg ltopic_functions[];

/* lbroker.c: functions of the module */
extern const luaL_Reg lbroker_functions[];

/* lstdio.c: the process's stdin and stdout */
extern const luaL_Reg lstdio_in_methods[], lstdio_out_methods[], lstdio_functions[];
int lstdio_in_gc(lua_State *L);
int lstdio_out_gc(lua_State *L);

#pragma GCC visibility pop

#endif
