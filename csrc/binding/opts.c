/* Option tables: numbers, sizes, durations, compression, string lists,
 * header tables and TLS configuration, each checked with an error that
 * names the option. */
#include <stdio.h>

#include <string.h>

#include "binding/binding.h"

#define SIZE_LIMIT ((uint64_t)1 << 53) /* every integer below is exact in a double */

/* Reads an optional number of seconds from opts into milliseconds. */
/* The number at the top of the stack, or an error naming the option. */
static lua_Number opt_number(lua_State *L, const char *name) {
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "option '%s' must be a number (got %s)", name, luaL_typename(L, -1));
  return lua_tonumber(L, -1);
}

static uint64_t opt_ms(lua_State *L, int t, const char *name, uint64_t dflt) {
  lua_getfield(L, t, name);
  uint64_t v = dflt;
  if (!lua_isnil(L, -1)) {
    lua_Number n = opt_number(L, name);
    if (!(n >= 0 && n <= 1e9)) /* NaN too */
      luaL_error(L, "option '%s' must be between 0 and 1e9 seconds", name);
    v = (uint64_t)(n * 1000 + 0.5);
  }
  lua_pop(L, 1);
  return v;
}

/* An optional whole number from min to max in opts[name]; what names the
 * option and its unit in the error ("option 'level' must be ..."). */
static uint64_t opt_num(lua_State *L, int t, const char *name, uint64_t dflt, uint64_t min,
                        uint64_t max, const char *what) {
  lua_getfield(L, t, name);
  uint64_t v = dflt;
  if (!lua_isnil(L, -1)) {
    lua_Number n = opt_number(L, name);
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

static uint64_t opt_size(lua_State *L, int t, const char *name, uint64_t dflt, uint64_t min,
                         uint64_t max) {
  return opt_num(L, t, name, dflt, min, max, "a size in bytes");
}

/* compression = true | false | { level, window_bits, mem_level,
 * context_takeover, threshold } */
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

void opts_conn(lua_State *L, int t, conn_opts *o, const char *timeout_name, int compress) {
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
  o->max_backlog = (size_t)opt_size(L, t, "max_backlog", o->max_backlog, 0, SIZE_LIMIT);
  lua_getfield(L, t, "on_backlog");
  const char *policy = lua_isnil(L, -1) ? "drop" : lua_tostring(L, -1);
  if (!policy || (strcmp(policy, "drop") != 0 && strcmp(policy, "close") != 0))
    luaL_error(L, "option 'on_backlog' must be \"drop\" or \"close\"");
  o->backlog_close = strcmp(policy, "close") == 0;
  lua_pop(L, 1);
}

/* A Lua array of strings as a C array kept alive on the Lua stack (the
 * strings are anchored by the table at index t). */
size_t opts_strings(lua_State *L, int t, const char *name, const char **out, size_t max) {
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

/* One entry of a header table (key at -2, value at -1). The option and the
 * method argument check in different orders with different words, and a
 * method argument may be a number turned into a string in place. */
static void header_entry(lua_State *L, opts_headers *h, int arg) {
  if (arg) {
    if (h->n == MAX_LIST) luaL_argerror(L, arg, "too many headers");
    if (lua_type(L, -2) != LUA_TSTRING) luaL_argerror(L, arg, "header names must be strings");
    h->names[h->n] = lua_tostring(L, -2);
    h->values[h->n++] = luaL_checkstring(L, -1);
    return;
  }
  if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "option 'headers' must map names to strings");
  if (h->n == MAX_LIST) luaL_error(L, "option 'headers' holds too many headers");
  h->names[h->n] = lua_tostring(L, -2);
  h->values[h->n++] = lua_tostring(L, -1);
}

void opts_header_table(lua_State *L, int t, opts_headers *h, int arg) {
  h->n = 0;
  t = lua_absindex(L, t);
  if (lua_istable(L, t)) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      header_entry(L, h, arg);
      lua_pop(L, 1);
    }
  } else if (!arg && !lua_isnil(L, t)) {
    luaL_error(L, "option 'headers' must be a table");
  }
}

/* TLS configuration from an options table at index t (strings stay
 * anchored by it). */
void opts_tls(lua_State *L, int t, tls_config *cfg, int dflt_verify) {
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

/* Checks every entry of the tls.sni table at sni before anything exists
 * that a raised error would leak. */
static void check_sni(lua_State *L, int sni) {
  if (lua_isnil(L, sni)) return;
  if (!lua_istable(L, sni)) luaL_error(L, "option 'tls.sni' must be a table");
  lua_pushnil(L);
  while (lua_next(L, sni)) {
    tls_config host;
    if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
      luaL_error(L, "option 'tls.sni' must map host names to {cert=, key=}");
    opts_tls(L, lua_gettop(L), &host, 0);
    lua_pop(L, 1);
  }
}

/* Adds each tls.sni name's own certificate; its client checks are as for
 * the others unless it says otherwise (tls.c applies them when the name is
 * chosen). 0, or -1 with the error pushed. */
static int add_sni(lua_State *L, int sni, tls_ctx *ctx, const tls_config *cfg) {
  char err[256];
  lua_pushnil(L);
  while (lua_next(L, sni)) {
    tls_config host;
    opts_tls(L, lua_gettop(L), &host, cfg->verify);
    if (!host.ca) host.ca = cfg->ca;
    if (tls_ctx_add_sni(ctx, lua_tostring(L, -2), &host, err, sizeof err)) {
      lua_pushfstring(L, "TLS (sni %s): %s", lua_tostring(L, -2), err);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* A server TLS context from the table at t, or NULL with the error pushed.
 * Everything that can raise runs before the context exists, so a bad table
 * leaks nothing. */
tls_ctx *opts_server_tls(lua_State *L, int t) {
  char err[256];
  tls_config cfg;
  t = lua_absindex(L, t);
  opts_tls(L, t, &cfg, 0);
  lua_getfield(L, t, "sni");
  int sni = lua_gettop(L);
  check_sni(L, sni);
  tls_ctx *ctx = tls_ctx_new(1, &cfg, err, sizeof err);
  if (!ctx) {
    lua_pushfstring(L, "TLS: %s", err);
    return NULL;
  }
  if (lua_istable(L, sni) && add_sni(L, sni, ctx, &cfg)) {
    tls_ctx_unref(ctx);
    return NULL;
  }
  lua_pop(L, 1);
  return ctx;
}
