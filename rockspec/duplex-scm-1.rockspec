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
build = {
  type = "builtin",
  modules = {
    ["duplex"] = "lua/duplex/init.lua",
    ["duplex.scheduler"] = "lua/duplex/scheduler.lua",
    ["duplex.ws"] = "lua/duplex/ws.lua",
    ["duplex.url"] = "lua/duplex/url.lua",
    ["duplex.core"] = {
      sources = {
        "csrc/utf8.c", "csrc/frame.c", "csrc/proto.c", "csrc/handshake.c",
        "csrc/loop.c", "csrc/conn.c", "csrc/server.c", "csrc/dial.c", "csrc/tls.c", "csrc/pmd.c", "csrc/core.c",
      },
      defines = { "_DEFAULT_SOURCE" },
      libraries = { "uv", "ssl", "crypto", "z" },
      incdirs = { "csrc", "$(LIBUV_INCDIR)", "$(OPENSSL_INCDIR)", "$(ZLIB_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(ZLIB_LIBDIR)" },
    },
  },
}
