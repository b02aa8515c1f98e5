rockspec_format = "3.0"
package = "duplex"
version = "scm-1"
source = { url = "git+https://example.invalid/duplex.git" }
description = {
  summary = "WebSockets (RFC 6455) for Lua with a C core on libuv",
  detailed = [[
A WebSocket server and client for Lua 5.1-5.4 and LuaJIT: a C core on libuv
and OpenSSL implements the handshake, framing and event loop; a small Lua
layer gives a coroutine API.]],
  license = "MIT",
}
dependencies = { "lua >= 5.1, < 5.5" }
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  ZLIB = { header = "zlib.h", library = "z" },
}
-- The Makefile holds the one source list (every .c file under csrc/protocol,
-- csrc/transport and csrc/binding); LuaRocks passes its flags and folders.
build = {
  type = "make",
  build_target = "rock-build",
  build_variables = {
    ROCK_LUA_INCDIR = "$(LUA_INCDIR)",
    ROCK_CFLAGS = "$(CFLAGS) -I$(LIBUV_INCDIR) -I$(OPENSSL_INCDIR) -I$(ZLIB_INCDIR)",
    ROCK_LDFLAGS = "-L$(LIBUV_LIBDIR) -L$(OPENSSL_LIBDIR) -L$(ZLIB_LIBDIR)",
  },
  install_target = "rock-install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
}
