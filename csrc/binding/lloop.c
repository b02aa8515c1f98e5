/* The loop functions of duplex.core: step, timeout, alive, pollfd, new_id,
 * sleep, alarm, now. One loop per Lua state, a userdata finalized last. */
#include <signal.h>

#include "binding/binding.h"

static int l_step(lua_State *L) {
  loop *l = binding_loop(L);
  lua_Number t = luaL_optnumber(L, 1, -1);
  if (t != t) t = 0; /* NaN: step never raises (DESIGN.md), so do not wait */
  int ms = t < 0 ? -1 : t > 1e6 ? 1000000000 : (int)(t * 1000 + 0.5);
  luaL_checktype(L, 2, LUA_TTABLE);
  loop_step(l, ms);
  size_t n;
  int all;
  const int64_t *ready = loop_ready(l, &n, &all);
  for (size_t i = 0; i < n; i++) {
    lua_pushnumber(L, (lua_Number)ready[i]);
    lua_rawseti(L, 2, (int)i + 1);
  }
  loop_take_ready(l);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushboolean(L, all);
  return 2;
}

static int l_timeout(lua_State *L) {
  int ms = loop_timeout(binding_loop(L));
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, ms / 1000.0);
  return 1;
}

static int l_alive(lua_State *L) {
  lua_pushboolean(L, loop_alive(binding_loop(L)));
  return 1;
}

static int l_pollfd(lua_State *L) {
  int fd = loop_pollfd(binding_loop(L));
  if (fd < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, fd);
  return 1;
}

static int l_new_id(lua_State *L) {
  lua_pushnumber(L, (lua_Number)loop_new_id(binding_loop(L)));
  return 1;
}

static int l_sleep(lua_State *L) {
  loop *l = binding_loop(L);
  int64_t id = (int64_t)luaL_checknumber(L, 1);
  lua_Number s = luaL_checknumber(L, 2);
  if (s != s) return luaL_argerror(L, 2, "seconds is not a number (NaN)");
  uint64_t ms = s <= 0 ? 0 : s > 1e9 ? (uint64_t)1e12 : (uint64_t)(s * 1000 + 0.5);
  if (loop_sleep(l, id, ms)) return luaL_error(L, "out of memory");
  return 0;
}

/* alarm(id, seconds) arms the loop's one alarm; alarm() calls it off. */
static int l_alarm(lua_State *L) {
  loop *l = binding_loop(L);
  if (lua_isnoneornil(L, 1)) {
    loop_alarm_stop(l);
    return 0;
  }
  int64_t id = (int64_t)luaL_checknumber(L, 1);
  lua_Number s = luaL_checknumber(L, 2);
  if (s != s) return luaL_argerror(L, 2, "seconds is not a number (NaN)");
  loop_alarm(l, id, s <= 0 ? 0 : s > 1e9 ? (uint64_t)1e12 : (uint64_t)(s * 1000 + 0.999));
  return 0;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)loop_now(binding_loop(L)) / 1000.0);
  return 1;
}

static const char *const signal_names[] = {"SIGINT",  "SIGTERM", "SIGHUP",
                                           "SIGUSR1", "SIGUSR2", NULL};
static const int signal_nums[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};

/* signal(name, id) watches a signal, waking id; signal(name) stops. */
static int l_signal(lua_State *L) {
  int signum = signal_nums[luaL_checkoption(L, 1, NULL, signal_names)];
  int64_t id = lua_isnoneornil(L, 2) ? 0 : (int64_t)luaL_checknumber(L, 2);
  int rc = loop_signal(binding_loop(L), signum, id);
  if (rc) return binding_error(L, uv_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

/* signal_take(name): deliveries since the last call. */
static int l_signal_take(lua_State *L) {
  int signum = signal_nums[luaL_checkoption(L, 1, NULL, signal_names)];
  lua_pushinteger(L, (lua_Integer)loop_signal_take(binding_loop(L), signum));
  return 1;
}

static int l_loop_gc(lua_State *L) {
  loop_close(lua_touserdata(L, 1));
  return 0;
}

const luaL_Reg lloop_functions[] = {{"step", l_step},     {"timeout", l_timeout},
                                    {"alive", l_alive},   {"pollfd", l_pollfd},
                                    {"new_id", l_new_id}, {"sleep", l_sleep},
                                    {"alarm", l_alarm},   {"now", l_now},
                                    {"signal", l_signal}, {"signal_take", l_signal_take},
                                    {NULL, NULL}};

loop *lloop_new(lua_State *L) {
  loop *l = lua_newuserdata(L, loop_size());
  if (loop_init(l)) {
    luaL_error(L, "cannot initialise the libuv loop");
    return NULL;
  }
  lua_newtable(L);
  lua_pushcfunction(L, l_loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  return l;
}
