/* A C program with its own libuv loop that embeds a Lua state running
 * duplex, and drives duplex from that loop: a uv_poll_t on duplex.pollfd()
 * and a uv_timer_t re-armed from duplex.timeout() after every
 * duplex.step(0). The Lua side runs an echo server and a client that
 * exchange a few messages; the program exits 0 once they are done, every
 * handle closed and the Lua state closed.
 *
 *   make build/host && build/host      (from the checkout: it loads
 *                                      lua/ and build/lua5.4/duplex/core.so)
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <uv.h>

typedef struct host {
  uv_loop_t loop;
  uv_poll_t poll;
  uv_timer_t timer;
  lua_State *L;
  int step_ref; /* duplex.step and duplex.timeout in the registry */
  int timeout_ref;
  int alive_ref;
  int failed;
  int started; /* the handles exist */
  int closed;
} host;

static const char *script =
    "package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path\n"
    "package.cpath = 'build/lua5.4/?.so;' .. package.cpath\n"
    "local duplex = require 'duplex'\n"
    "local server = assert(duplex.serve({ host = '127.0.0.1', port = 0 }, function(ws)\n"
    "  while true do\n"
    "    local msg, kind = ws:receive()\n"
    "    if not msg then break end\n"
    "    ws:send(msg, kind)\n"
    "  end\n"
    "end))\n"
    "duplex.spawn(function()\n"
    "  local ws = assert(duplex.connect('ws://127.0.0.1:' .. server.port .. '/'))\n"
    "  for i = 1, 3 do\n"
    "    ws:send('hello ' .. i)\n"
    "    local msg = assert(ws:receive())\n"
    "    assert(msg == 'hello ' .. i, msg)\n"
    "    print('echoed: ' .. msg)\n"
    "  end\n"
    "  ws:close()\n"
    "  server:close()\n"
    "  print('done')\n"
    "end)\n"
    "return duplex\n";

/* The Lua error on top of the stack, with what failed. */
static void report(host *h, const char *what) {
  fprintf(stderr, "host: %s: %s\n", what, lua_tostring(h->L, -1));
  lua_pop(h->L, 1);
  h->failed = 1;
}

static void on_timer(uv_timer_t *t);

/* Re-arms the timer from duplex.timeout(): nil stops it (nothing is due,
 * the poll handle wakes us for I/O); with nothing left at all the handles
 * close and uv_run returns. */
static void rearm(host *h) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->timeout_ref);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    report(h, "duplex.timeout");
    lua_pushnil(L);
  }
  uv_timer_stop(&h->timer);
  if (lua_isnumber(L, -1)) {
    double s = lua_tonumber(L, -1);
    uv_timer_start(&h->timer, on_timer, s <= 0 ? 0 : (uint64_t)ceil(s * 1000), 0);
  }
  lua_pop(L, 1);
}

/* duplex.core.alive(): anything (a server, a connection, a timer) left */
static int duplex_alive(host *h) {
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->alive_ref);
  if (lua_pcall(h->L, 0, 1, 0) != LUA_OK) {
    report(h, "duplex.core.alive");
    return 0;
  }
  int alive = lua_toboolean(h->L, -1);
  lua_pop(h->L, 1);
  return alive;
}

static void close_handles(host *h) {
  if (h->closed) return;
  h->closed = 1;
  uv_close((uv_handle_t *)&h->poll, NULL);
  uv_close((uv_handle_t *)&h->timer, NULL);
}

static void step(host *h) {
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->step_ref);
  lua_pushnumber(h->L, 0);
  if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) report(h, "duplex.step");
  rearm(h);
  /* nothing due and nothing left in duplex: done, uv_run returns */
  if (!uv_is_active((uv_handle_t *)&h->timer) && !duplex_alive(h)) close_handles(h);
}

static void on_timer(uv_timer_t *t) { step(t->data); }

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)events;
  host *h = p->data;
  if (status < 0) fprintf(stderr, "host: poll: %s\n", uv_strerror(status));
  step(h);
}

static int start(host *h) {
  lua_State *L = h->L;
  if (luaL_loadstring(L, script) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    report(h, "the Lua script");
    return -1;
  }
  lua_getfield(L, -1, "step");
  h->step_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "timeout");
  h->timeout_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getglobal(L, "require");
  lua_pushstring(L, "duplex.core");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    report(h, "require duplex.core");
    return -1;
  }
  lua_getfield(L, -1, "alive");
  h->alive_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  lua_getfield(L, -1, "pollfd");
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    report(h, "duplex.pollfd");
    return -1;
  }
  int fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  uv_poll_init(&h->loop, &h->poll, fd);
  h->poll.data = h;
  uv_timer_init(&h->loop, &h->timer);
  h->timer.data = h;
  h->started = 1;
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
  rearm(h);
  return 0;
}

int main(void) {
  host h = {0};
  if (uv_loop_init(&h.loop)) return 1;
  h.L = luaL_newstate();
  luaL_openlibs(h.L);
  if (start(&h) == 0) uv_run(&h.loop, UV_RUN_DEFAULT);
  if (h.started && !h.closed) { /* a failure stopped it early */
    close_handles(&h);
    uv_run(&h.loop, UV_RUN_DEFAULT);
  }
  lua_close(h.L);
  int rc = uv_loop_close(&h.loop);
  if (rc) fprintf(stderr, "host: the loop still has handles: %s\n", uv_strerror(rc));
  return h.failed || rc ? 1 : 0;
}
