-- examples/host.c: a C program with its own libuv loop driving duplex in a
-- Lua 5.4 state. Built by `make build/host`; it runs an echo exchange and
-- must exit 0, and under valgrind (.ci/valgrind's options and
-- suppressions) leak nothing and leave no descriptor of its own open.
-- Independent of the Lua running busted: the host embeds lua5.4.
local function sh(cmd)
  -- the sanitized spec run preloads ASan into every child: not into these
  local p = assert(io.popen("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u SANITIZE " .. cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

describe("examples/host.c", function()
  local built, build_out

  setup(function()
    built, build_out = sh("timeout 300 make --no-print-directory build/host")
  end)

  it("builds, echoes through duplex from its own libuv loop and exits 0", function()
    assert.are.equal(0, built, build_out)
    local rc, out = sh("timeout 20 build/host")
    assert.are.equal(0, rc, out)
    assert.matches("echoed: hello 1\necho[^\n]*\necho[^\n]*hello 3\ndone", out)
  end)

  it("leaks nothing under valgrind", function()
    assert.are.equal(0, built, build_out)
    local log = os.tmpname()
    local rc, out = sh("timeout 120 valgrind --quiet --log-file=" .. log ..
      " --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect" ..
      " --error-exitcode=1 --track-fds=yes --num-callers=30 --suppressions=spec/hostile/valgrind.supp build/host")
    local f = assert(io.open(log))
    local vlog = f:read("*a")
    f:close()
    os.remove(log)
    assert.are.equal(0, rc, out .. vlog)
    assert.matches("done", out)
    assert.is_nil(vlog:match("definitely lost"), vlog)
    assert.is_nil(vlog:match("indirectly lost"), vlog)
    -- every descriptor open at exit besides 0-2 must be inherited
    local listed = select(2, vlog:gsub("Open file descriptor", ""))
    local inherited = select(2, vlog:gsub("<inherited from parent>", ""))
    assert.are.equal(inherited, listed, vlog)
  end)
end)
