-- docs/api.md and duplex.meta.lua keep up with the code: every public
-- function, method and option name of the modules is in both.
local duplex = require "duplex"
local options = require "duplex.options"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local api, meta = read("docs/api.md"), read("duplex.meta.lua")

-- The names `function T:name` / `function T.name` declare in a Lua source.
local function declared(src, owner, sep)
  local names = {}
  for name in src:gmatch("\nfunction " .. owner .. "%" .. sep .. "([%w_]+)%(") do names[#names + 1] = name end
  return names
end

describe("the API reference and the annotations", function()
  it("list every function of the module", function()
    local n = 0
    for name, v in pairs(duplex) do
      if type(v) == "function" then
        n = n + 1
        assert.truthy(api:find("duplex." .. name .. "(", 1, true), "docs/api.md lacks duplex." .. name)
        assert.truthy(meta:find("\nfunction duplex." .. name .. "(", 1, true), "duplex.meta.lua lacks duplex." .. name)
      end
    end
    assert.is_true(n >= 15)
  end)

  it("list every method of ws, server and timer", function()
    for _, c in ipairs({
      { "lua/duplex/ws.lua", "methods", "ws" },
      { "lua/duplex/init.lua", "Server", "server" },
      { "lua/duplex/scheduler.lua", "Timer", "timer" },
    }) do
      local names = declared("\n" .. read(c[1]), c[2], ":")
      assert.is_true(#names > 0, c[1])
      for _, name in ipairs(names) do
        assert.truthy(api:find(c[3] .. ":" .. name .. "(", 1, true), "docs/api.md lacks " .. c[3] .. ":" .. name)
        assert.truthy(meta:find("\nfunction " .. c[3] .. ":" .. name .. "(", 1, true),
          "duplex.meta.lua lacks " .. c[3] .. ":" .. name)
      end
    end
  end)

  it("list every option, with the sub-tables' fields", function()
    local function walk(schema, what)
      for name, kind in pairs(schema) do
        assert.truthy(api:find("`" .. name .. "`", 1, true), "docs/api.md lacks option " .. what .. name)
        assert.truthy(meta:find("---@field " .. name .. "?", 1, true) or meta:find("---@field " .. name .. " ", 1, true),
          "duplex.meta.lua lacks option " .. what .. name)
        if type(kind) == "table" then walk(kind, what .. name .. ".") end
      end
    end
    walk(options.serve, "serve ")
    walk(options.connect, "connect ")
  end)

  it("the annotation file is Lua that defines nothing at run time", function()
    local chunk = assert(loadstring and loadstring(meta) or load(meta))
    local t = chunk()
    assert.are.equal("table", type(t))
    assert.is_nil(t.serve()) -- empty stubs
  end)
end)
