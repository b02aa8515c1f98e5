/* The process's stdin and stdout for Lua (duplex.stdin, duplex.stdout):
 * core.stdin_open() and core.stdout_open() return one object each per Lua
 * state (kept in the registry: two handles on one descriptor would confuse
 * the poller). Like every binding call these never wait: false means wait
 * for the object's id, then try again. */
#include <stdlib.h>
#include <string.h>

#include "binding/binding.h"
#include "transport/stdstream.h"

enum { DEFAULT_MAX_LINE = 1 << 20, DEFAULT_HIGH_WATER = 1 << 20, MAX_PARTS = 16 };

typedef struct lstdin {
  stdstream_in *s;
  int64_t id;
} lstdin;

typedef struct lstdout {
  stdstream_out *s;
  int64_t id;
} lstdout;

static size_t opt_size(lua_State *L, int i, size_t dflt) {
  lua_Number n = luaL_optnumber(L, i, (lua_Number)dflt);
  luaL_argcheck(L, n >= 1 && n <= 1e12, i, "a size in bytes (>= 1) expected");
  return (size_t)n;
}

/* Pushes the object kept under key, or makes one with make and keeps it. */
static void *singleton(lua_State *L, const char *key, const char *mt, size_t size, int *fresh) {
  lua_getfield(L, LUA_REGISTRYINDEX, key);
  void *u = lua_touserdata(L, -1);
  if (u && *(void **)u) {
    *fresh = 0;
    return u;
  }
  lua_pop(L, 1);
  u = lua_newuserdata(L, size);
  memset(u, 0, size);
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
  *fresh = 1;
  return u;
}

static int l_stdin_open(lua_State *L) {
  loop *l = binding_loop(L);
  size_t max_line = opt_size(L, 1, DEFAULT_MAX_LINE);
  int fresh;
  lstdin *u = singleton(L, "duplex.stdin.object", STDIN_MT, sizeof *u, &fresh);
  if (fresh) {
    u->id = loop_new_id(l);
    u->s = stdstream_in_open(l, 0, u->id, max_line);
    if (!u->s) return luaL_error(L, "out of memory");
  }
  return 1;
}

static int l_stdout_open(lua_State *L) {
  loop *l = binding_loop(L);
  size_t high_water = opt_size(L, 1, DEFAULT_HIGH_WATER);
  int fresh;
  lstdout *u = singleton(L, "duplex.stdout.object", STDOUT_MT, sizeof *u, &fresh);
  if (fresh) {
    u->id = loop_new_id(l);
    u->s = stdstream_out_open(l, 1, u->id, high_water);
    if (!u->s) return luaL_error(L, "out of memory");
  }
  return 1;
}

static lstdin *check_in(lua_State *L) {
  lstdin *u = luaL_checkudata(L, 1, STDIN_MT);
  if (!u->s) luaL_error(L, "stdin was closed");
  return u;
}

static lstdout *check_out(lua_State *L) {
  lstdout *u = luaL_checkudata(L, 1, STDOUT_MT);
  if (!u->s) luaL_error(L, "stdout was closed");
  return u;
}

/* A line; false: wait for the id; nil at the end; nil, err on failure. */
static int l_read_line(lua_State *L) {
  lstdin *u = check_in(L);
  const char *line;
  size_t len;
  switch (stdstream_in_read_line(u->s, &line, &len)) {
  case STDSTREAM_OK:
    lua_pushlstring(L, line, len);
    return 1;
  case STDSTREAM_AGAIN:
    lua_pushboolean(L, 0);
    return 1;
  case STDSTREAM_EOF:
    lua_pushnil(L);
    return 1;
  default:
    return binding_error(L, stdstream_in_error(u->s));
  }
}

static int l_in_info(lua_State *L) {
  lstdin *u = check_in(L);
  lua_pushnumber(L, (lua_Number)u->id);
  lua_pushstring(L, stdstream_in_kind(u->s));
  return 2;
}

static int l_in_close(lua_State *L) {
  lstdin *u = luaL_checkudata(L, 1, STDIN_MT);
  if (u->s) stdstream_in_release(u->s);
  u->s = NULL;
  return 0;
}

/* write(s, ...): the strings as one write. true; false: over high water,
 * nothing written (wait for the id); nil, err. */
static int l_write(lua_State *L) {
  lstdout *u = check_out(L);
  int n = lua_gettop(L) - 1;
  luaL_argcheck(L, n >= 1 && n <= MAX_PARTS, 2, "1 to 16 strings expected");
  uv_buf_t bufs[MAX_PARTS];
  for (int i = 0; i < n; i++) {
    size_t len;
    bufs[i].base = (char *)luaL_checklstring(L, i + 2, &len);
    bufs[i].len = len;
  }
  switch (stdstream_out_write(u->s, bufs, (size_t)n)) {
  case STDSTREAM_OK:
    lua_pushboolean(L, 1);
    return 1;
  case STDSTREAM_AGAIN:
    lua_pushboolean(L, 0);
    return 1;
  default:
    return binding_error(L, stdstream_out_error(u->s));
  }
}

/* Bytes not yet taken by the descriptor, and the error that stopped
 * writing, if any. */
static int l_pending(lua_State *L) {
  lstdout *u = check_out(L);
  lua_pushnumber(L, (lua_Number)stdstream_out_pending(u->s));
  const char *err = stdstream_out_error(u->s);
  if (!err) return 1;
  lua_pushstring(L, err);
  return 2;
}

static int l_out_info(lua_State *L) {
  lstdout *u = check_out(L);
  lua_pushnumber(L, (lua_Number)u->id);
  lua_pushstring(L, stdstream_out_kind(u->s));
  return 2;
}

static int l_out_close(lua_State *L) {
  lstdout *u = luaL_checkudata(L, 1, STDOUT_MT);
  if (u->s) stdstream_out_release(u->s);
  u->s = NULL;
  return 0;
}

/* realpath(path): the canonical path, or nil, err. */
static int l_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int err;
  char *real = stdstream_realpath(binding_loop(L), path, &err);
  if (!real) return binding_error(L, uv_strerror(err));
  lua_pushstring(L, real);
  free(real);
  return 1;
}

int lstdio_in_gc(lua_State *L) { return l_in_close(L); }
int lstdio_out_gc(lua_State *L) { return l_out_close(L); }

const luaL_Reg lstdio_in_methods[] = {
    {"read_line", l_read_line}, {"info", l_in_info}, {"close", l_in_close}, {NULL, NULL}};

const luaL_Reg lstdio_out_methods[] = {{"write", l_write},
                                       {"pending", l_pending},
                                       {"info", l_out_info},
                                       {"close", l_out_close},
                                       {NULL, NULL}};

const luaL_Reg lstdio_functions[] = {{"stdin_open", l_stdin_open},
                                     {"stdout_open", l_stdout_open},
                                     {"realpath", l_realpath},
                                     {NULL, NULL}};
