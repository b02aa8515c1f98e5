rockspec_format = "3.0"
package = "duplex"
version = "scm-1"
-- a release rockspec (duplex-X.Y.Z-1) names its tag instead: tag = "vX.Y.Z"
source = {
  url = "git+https://github.com/duplex-lua/duplex.git",
  branch = "main",
}
description = {
  summary = "WebSockets (RFC 6455) for Lua with a C core on libuv",
  detailed = [[
A WebSocket server and client for Lua 5.1-5.4 and LuaJIT: a C core on libuv
and OpenSSL implements the handshake, framing and event loop; a small Lua
layer gives a coroutine API.]],
  homepage = "https://github.com/duplex-lua/duplex",
  license = "MIT",
  labels = { "websocket", "networking", "libuv" },
}
dependencies = { "lua >= 5.1, < 5.5" }
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  ZLIB = { header = "zlib.h", library = "z" },
  HIREDIS = { header = "hiredis/async.h", library = "hiredis" },
}
-- The Makefile holds the one source list (every .c file under csrc/protocol,
-- csrc/transport and csrc/binding); LuaRocks passes its flags and folders.
-- Objects and the module go to build/rock/ (ignored by git), so a build
-- leaves the checkout as it was; rock-install copies bin/* (the duplex
-- command) into the rock's bin folder, which LuaRocks wraps for the tree.
build = {
  type = "make",
  build_target = "rock-build",
  build_variables = {
    ROCK_LUA_INCDIR = "$(LUA_INCDIR)",
    ROCK_CFLAGS = "$(CFLAGS) -I$(LIBUV_INCDIR) -I$(OPENSSL_INCDIR) -I$(ZLIB_INCDIR) -I$(HIREDIS_INCDIR)",
    ROCK_LDFLAGS = "-L$(LIBUV_LIBDIR) -L$(OPENSSL_LIBDIR) -L$(ZLIB_LIBDIR) -L$(HIREDIS_LIBDIR)",
  },
  install_target = "rock-install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
