/* The Redis broker for Lua: duplex.broker (lua/duplex/init.lua) parses the
 * URL and options and calls these; a broker is named by its generation,
 * so an old broker object reads "closed" once another replaced it. */
#include "binding/binding.h"

static uint64_t ms_of(lua_State *L, int i, double dflt) {
  double s = luaL_optnumber(L, i, dflt);
  luaL_argcheck(L, s >= 0 && s <= 86400, i, "seconds out of range");
  return (uint64_t)(s * 1000 + 0.5);
}

/* broker_open(host, port, path, password, db, prefix, timeout, min, max,
 * max_queue): the generation, or nil, err. */
static int l_broker_open(lua_State *L) {
  broker_config c = {0};
  c.host = luaL_optstring(L, 1, NULL);
  c.port = (int)luaL_optinteger(L, 2, 6379);
  c.path = luaL_optstring(L, 3, NULL);
  c.password = luaL_optstring(L, 4, NULL);
  c.db = (int)luaL_optinteger(L, 5, -1);
  c.prefix = luaL_optlstring(L, 6, "duplex:", &c.prefix_len);
  c.timeout_ms = ms_of(L, 7, 5);
  c.backoff_min_ms = ms_of(L, 8, 0.1);
  c.backoff_max_ms = ms_of(L, 9, 5);
  lua_Number q = luaL_optnumber(L, 10, 8 << 20);
  luaL_argcheck(L, q >= 0 && q < 1e15, 10, "max_queue out of range");
  c.max_queue = (size_t)q;
  luaL_argcheck(L, c.host || c.path, 1, "host or path expected");
  const char *err;
  if (broker_open(binding_loop(L), &c, &err)) return binding_error(L, err);
  broker_info i;
  broker_describe(binding_loop(L), 0, &i);
  lua_pushnumber(L, (lua_Number)i.gen);
  lua_pushnumber(L, (lua_Number)i.id);
  return 2;
}

/* broker_info(gen): state, error, published, received, dropped, invalid */
static int l_broker_info(lua_State *L) {
  broker_info i;
  broker_describe(binding_loop(L), (uint64_t)luaL_checknumber(L, 1), &i);
  lua_pushstring(L, i.state);
  if (i.error)
    lua_pushstring(L, i.error);
  else
    lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)i.published);
  lua_pushinteger(L, (lua_Integer)i.received);
  lua_pushinteger(L, (lua_Integer)i.dropped);
  lua_pushinteger(L, (lua_Integer)i.invalid);
  return 6;
}

static int l_broker_close(lua_State *L) {
  broker_close(binding_loop(L), (uint64_t)luaL_checknumber(L, 1));
  return 0;
}

const luaL_Reg lbroker_functions[] = {{"broker_open", l_broker_open},
                                      {"broker_info", l_broker_info},
                                      {"broker_close", l_broker_close},
                                      {NULL, NULL}};
