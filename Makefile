# duplex: build, test, run. `make help` lists the targets.
LUA ?= lua5.4
LUAS ?= lua5.1 lua5.2 lua5.3 lua5.4 luajit
CC ?= cc
PKG_CONFIG ?= pkg-config

BUILD := build/$(LUA)
LUA_PC := $(LUA)
LUA_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null)
DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags libuv libssl libcrypto zlib hiredis 2>/dev/null)
DEP_LIBS = $(or $(shell $(PKG_CONFIG) --libs libuv libssl libcrypto zlib hiredis 2>/dev/null),-luv -lssl -lcrypto -lz -lhiredis)

WARN := -Wall -Wextra -Werror
CSTD := -std=c11 -D_DEFAULT_SOURCE
OPT ?= -O2 -g
ifeq ($(SANITIZE),1)
OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BUILD := build/$(LUA)-san
endif
CFLAGS_ALL = $(CSTD) $(OPT) $(WARN) -fPIC $(DEP_CFLAGS) $(CFLAGS)

# The one source list: each layer is a folder, and every .c file in it is
# part of the module. The fuzzers and C tests link the protocol layer alone
# (`make -s sources LAYER=protocol` prints it for .ci/fuzz); the rockspec
# builds through this Makefile (rock-build, rock-install).
PROTO_SRC := $(sort $(wildcard csrc/protocol/*.c))
TRANSPORT_SRC := $(sort $(wildcard csrc/transport/*.c))
BINDING_SRC := $(sort $(wildcard csrc/binding/*.c))
CORE_SRC := $(PROTO_SRC) $(TRANSPORT_SRC) $(BINDING_SRC)
CORE_OBJ := $(CORE_SRC:csrc/%.c=$(BUILD)/obj/%.o)
CORE_HDR := $(wildcard csrc/*/*.h)
CTESTS := $(patsubst csrc/test/%.c,build/ctest/%,$(wildcard csrc/test/test_*.c))
FUZZ_SECONDS ?= 30
PORT ?= 8080
PREFIX ?= /usr/local
DESTDIR ?=
# the Lua version folder: luajit loads 5.1 modules
LUA_VERSION = $(if $(filter luajit%,$(LUA)),5.1,$(patsubst lua%,%,$(LUA)))

.PHONY: all deps test ctest spec run rock fuzz clean help format bench sources rock-build rock-install install

all: duplex/core.so

help:
	@echo "make            build duplex/core.so for LUA=$(LUA) (lua5.1 lua5.2 lua5.3 lua5.4 luajit)"
	@echo "make test       install what is missing, build, run every suite for LUAS=\"$(LUAS)\""
	@echo "make run        build and start the chat example on http://127.0.0.1:$(PORT)/ (PORT=0: any free port)"
	@echo "make fuzz       run each libFuzzer target for FUZZ_SECONDS=$(FUZZ_SECONDS)"
	@echo "make install    install for LUA=$(LUA) under DESTDIR=$(DESTDIR) PREFIX=$(PREFIX)"

deps:
	@sh .ci/deps

$(BINDING_SRC:csrc/%.c=$(BUILD)/obj/%.o): CFLAGS_ALL += $(LUA_CFLAGS)

$(BUILD)/obj/%.o: csrc/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icsrc -c $< -o $@

$(BUILD)/duplex/core.so: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -shared -o $@ $(CORE_OBJ) $(DEP_LIBS) $(LDFLAGS)

duplex/core.so: $(BUILD)/duplex/core.so
	@mkdir -p duplex
	cp $< $@

build/ctest/%: csrc/test/%.c $(PROTO_SRC) $(CORE_HDR) csrc/test/*.h
	@mkdir -p build/ctest
	$(CC) $(CSTD) -O1 -g $(WARN) -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -Icsrc $(filter %.c,$^) $(DEP_CFLAGS) $(DEP_LIBS) $(CTEST_LDFLAGS) -o $@

# C tests of a transport file link it besides the protocol layer
build/ctest/test_tls: csrc/transport/tls.c
build/ctest/test_history: csrc/transport/history.c
# test_topic runs the whole transport and counts allocations
build/ctest/test_topic: $(TRANSPORT_SRC)
build/ctest/test_topic: CTEST_LDFLAGS = -Wl,--wrap=malloc
# test_stdstream runs the loop (which links the rest of the transport)
build/ctest/test_stdstream: $(TRANSPORT_SRC)
# test_loop runs the loop itself
build/ctest/test_loop: $(TRANSPORT_SRC)

# examples/host.c: a C program with its own libuv loop driving duplex
# (for lua5.4, whose core.so it loads from build/lua5.4)
build/host: examples/host.c $(CORE_SRC) $(CORE_HDR)
	@$(MAKE) --no-print-directory SANITIZE= LUA=lua5.4 build/lua5.4/duplex/core.so
	$(CC) $(CSTD) -O2 -g $(WARN) $(shell $(PKG_CONFIG) --cflags lua5.4) $(DEP_CFLAGS) $< -o $@ \
	  $(shell $(PKG_CONFIG) --libs lua5.4) $(DEP_LIBS) -lm

ctest: $(CTESTS)
	@sh .ci/ctest $(CTESTS)

test: deps
	@bash .ci/test "$(LUAS)"

spec: $(BUILD)/duplex/core.so
	@LUA=$(LUA) bash .ci/spec $(LUA)

run:
	@sh .ci/deps run $(LUA)
	@$(MAKE) --no-print-directory LUA=$(LUA) $(BUILD)/duplex/core.so
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/chat.lua $(PORT)

rock: deps
	@bash .ci/rock

fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash .ci/fuzz

LAYER ?= protocol
sources:
	@echo $(sort $(wildcard csrc/$(LAYER)/*.c))

# LuaRocks (build.type = "make") passes its own flags and directories.
rock-build:
	@$(MAKE) --no-print-directory BUILD=build/rock LUA_CFLAGS="-I$(ROCK_LUA_INCDIR)" \
	  CFLAGS="$(ROCK_CFLAGS)" LDFLAGS="$(ROCK_LDFLAGS)" build/rock/duplex/core.so

rock-install:
	mkdir -p "$(INST_LIBDIR)/duplex" "$(INST_LUADIR)/duplex"
	cp build/rock/duplex/core.so "$(INST_LIBDIR)/duplex/core.so"
	cp lua/duplex/*.lua "$(INST_LUADIR)/duplex/"
	$(if $(wildcard bin/*),mkdir -p "$(INST_BINDIR)" && cp $(wildcard bin/*) "$(INST_BINDIR)/")

# Lua modules in share/lua/V/duplex, the core in lib/lua/V/duplex, and the
# commands in bin/ (when the checkout has any)
install: $(BUILD)/duplex/core.so
	install -d "$(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/duplex" "$(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/duplex"
	install -m 644 lua/duplex/*.lua "$(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/duplex/"
	install -m 755 $(BUILD)/duplex/core.so "$(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/duplex/core.so"
	@# the commands run with the Lua they were installed for
	$(if $(wildcard bin/*),install -d "$(DESTDIR)$(PREFIX)/bin" && for f in $(wildcard bin/*); do \
	  sed '1s|^#!/usr/bin/env lua.*|#!/usr/bin/env $(LUA)|' "$$f" >"$(DESTDIR)$(PREFIX)/bin/$${f##*/}" && \
	  chmod 755 "$(DESTDIR)$(PREFIX)/bin/$${f##*/}" || exit 1; done)

format:
	clang-format -i csrc/*/*.c csrc/*/*.h

clean:
	rm -rf build duplex
