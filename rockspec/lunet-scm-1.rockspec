-- Build and install from a checkout with:
--   luarocks --lua-version 5.4 make --deps-mode=none rockspec/lunet-scm-1.rockspec
-- `luarocks make` builds the working tree; the source URL below is only read by `luarocks install`.
rockspec_format = "3.0"
package = "lunet"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lunet.git",
}
description = {
  summary = "Deep learning for Lua 5.4 with a C core: tensors, autograd, training, int8, ONNX, serving",
  detailed = [[
lunet trains, evaluates, quantizes, exports and serves neural networks from Lua 5.4 scripts.
Tensors, autograd and kernels are C (BLAS for matrix products); Lua composes them.
]],
  license = "MIT",
  labels = { "deep-learning", "tensor", "autograd" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "lua-cjson >= 2.1", -- model files' metadata (Debian: lua-cjson)
  "luafilesystem >= 1.8", -- the server's model repository (Debian: lua-filesystem)
}
-- f32 GEMMs run on oneDNN (Debian's libdnnl-dev), f64 ones on OpenBLAS.
-- OpenBLAS's headers sit in a multiarch directory on Debian
-- (/usr/include/x86_64-linux-gnu/openblas-pthread); the Makefile asks pkg-config for them,
-- so only the library is looked up here.
external_dependencies = {
  OPENBLAS = { library = "openblas" },
  DNNL = { library = "dnnl" },
  UV = { library = "uv" }, -- the HTTP server's event loop (Debian: libuv1-dev)
  HTTP_PARSER = { library = "http_parser" }, -- and its request parser (Debian: libhttp-parser-dev)
}
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
  },
  install_target = "install-rock",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    LUA = "$(LUA)",
  },
  -- The lunet command (info, export, convert): luarocks wraps it with the rock tree's paths.
  install = {
    bin = { lunet = "lua/lunet/cli.lua" },
  },
}
