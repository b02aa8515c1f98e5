/* luaopen_duplex_core: one loop per Lua state, kept as upvalue 1 of every
 * function and method, and the two classes (duplex.conn in lconn.c,
 * duplex.server in lserver.c). */
#include "binding/binding.h"

#if LUA_VERSION_NUM == 501
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

loop *binding_loop(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

int binding_error(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* Pushes a method's upvalues (binding.h: BINDING_UP_*) for the class whose
 * metatable is at mt, with the loop below it. */
static void push_method_upvalues(lua_State *L, int mt) {
  lua_pushvalue(L, mt - 1); /* the loop */
  lua_pushliteral(L, "text");
  lua_pushliteral(L, "binary");
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *more,
                      lua_CFunction gc) {
  luaL_newmetatable(L, name);
  int mt = lua_gettop(L);
  lua_newtable(L);
  push_method_upvalues(L, mt);
  setfuncs(L, methods, BINDING_UPVALUES);
  if (more) {
    push_method_upvalues(L, mt);
    setfuncs(L, more, BINDING_UPVALUES);
  }
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

static const luaL_Reg openers[] = {{"listen", lserver_listen}, {"dial", lconn_dial}, {NULL, NULL}};

#define LOOP_KEY "duplex.loop"

int luaopen_duplex_core(lua_State *L) {
  /* One loop per Lua state, kept in the registry: it must outlive every
   * connection and server, even when package.loaded is cleared and the
   * module is opened again (busted does that for each spec file). Being
   * made first, it is also finalized last when the state closes. */
  lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
  if (!lua_isuserdata(L, -1)) {
    lua_pop(L, 1);
    lloop_new(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    new_class(L, CONN_MT, lconn_methods, ltopic_conn_methods, lconn_gc);
    new_class(L, SERVER_MT, lserver_methods, NULL, lserver_gc);
    new_class(L, STDIN_MT, lstdio_in_methods, NULL, lstdio_in_gc);
    new_class(L, STDOUT_MT, lstdio_out_methods, NULL, lstdio_out_gc);
  }
  lua_newtable(L);
  lua_pushvalue(L, -2);
  setfuncs(L, lloop_functions, 1);
  lua_pushvalue(L, -2);
  setfuncs(L, openers, 1);
  lua_pushvalue(L, -2);
  setfuncs(L, ltopic_functions, 1);
  lua_pushvalue(L, -2);
  setfuncs(L, lstdio_functions, 1);
  lua_pushvalue(L, -2);
  setfuncs(L, lbroker_functions, 1);
  return 1;
}
