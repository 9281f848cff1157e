# lunet: a deep-learning library for Lua 5.4 with a C core.
#
#   make            build lunet/core.so (and link lua/lunet/* beside it), ready for
#                   `lua5.4 examples/<x>.lua` from the repository root
#   make test       install missing Debian packages, build, run the C tests, the same tests
#                   under AddressSanitizer + UndefinedBehaviorSanitizer, a valgrind leak check,
#                   and the busted specs
#   make demo       install missing Debian packages, build, run the demo into build/demo/: train,
#                   evaluate, quantize to int8 and export to ONNX a Fashion-MNIST MLP and write both
#                   models into a model repository (examples/demo.lua), then serve them, ask each
#                   about a test image over HTTP and stop the server (examples/demo_serve.lua)
#   make fuzz       libFuzzer with ASan + UBSan on the safetensors loader, the server's
#                   inference bodies and its HTTP request handling, FUZZ_SECONDS (600) each;
#                   FUZZ_TARGETS picks some (see "fuzzing" below)
#   make install    install the module under $(PREFIX) (luarocks uses install-rock)
#   make clean      remove build products

LUA            ?= lua5.4
LUA_VERSION    := 5.4
PREFIX         ?= /usr/local
INST_LIBDIR    ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INST_LUADIR    ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INST_INCDIR    ?= $(PREFIX)/include
LUA_INCDIR     ?= /usr/include/lua5.4
BLAS_CFLAGS    ?= $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
BLAS_LIBS      ?= $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
CC             ?= cc
OPT            ?= -O3 -g

WARNINGS   := -Wall -Wextra -Werror
CFLAGS_ALL := -std=c11 $(WARNINGS) -fPIC -fno-math-errno -fopenmp -Icore/include $(BLAS_CFLAGS) $(CFLAGS)
# f32 GEMMs run on oneDNN, f64 ones on OpenBLAS (core/src/blas.c says why).
LIBS       := $(BLAS_LIBS) -ldnnl -luv -lhttp_parser -lgomp -lz -lm -lpthread
SANITIZE   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -DLUNET_ALLOC_NO_CACHE

CORE_SRC   := $(sort $(wildcard core/src/*.c core/src/serve/*.c))
BIND_SRC   := $(sort $(wildcard bindings/*.c))
TEST_SRC   := $(sort $(wildcard core/tests/test_*.c))
HEADERS    := core/include/lunet.h core/src/internal.h core/src/json.h core/src/model.h core/src/quant.h core/src/serve/serve.h core/src/serve/infer.h bindings/binding.h
LUA_TOP    := $(sort $(wildcard lua/lunet/*))

CORE_OBJ   := $(CORE_SRC:%.c=build/release/%.o)
BIND_OBJ   := $(BIND_SRC:%.c=build/release/%.o)
ASAN_OBJ   := $(CORE_SRC:%.c=build/asan/%.o)
TEST_BIN   := $(TEST_SRC:core/tests/%.c=build/release/tests/%)
ASAN_BIN   := $(TEST_SRC:core/tests/%.c=build/asan/tests/%)

# System packages the build, the tests and the demo need (Debian 12).
DEB_PACKAGES := gcc make pkg-config lua5.4 liblua5.4-dev libopenblas-dev libdnnl-dev libuv1-dev libhttp-parser-dev \
                zlib1g-dev curl lua-cjson lua-filesystem lua-socket \
                lua-busted lua-check lua-expat luarocks valgrind dataset-fashion-mnist \
                python3-onnx python3-torch nodejs prometheus

.PHONY: all deps onnxruntime test ctest ctest-asan valgrind-check spec spec-asan lint fuzz demo install install-rock uninstall clean check-rock

all: lunet/core.so lunet/.links

# Keep intermediate objects (the sanitizer build makes them through a chain of rules).
.SECONDARY:

# ---- system packages ------------------------------------------------------------------------

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# ONNX Runtime for the ONNX specs (spec/onnx_spec.lua runs ../shared/bench/ort_run.js with
# NODE_PATH=build/npm/node_modules): onnxruntime-node from npm, its install script skipped since
# the package ships its native library.  npm comes from Debian when the machine has none.
ORT_NODE_VERSION := 1.30.0
ORT_NODE_STAMP   := build/npm/.onnxruntime-node-$(ORT_NODE_VERSION)

onnxruntime: deps $(ORT_NODE_STAMP)

$(ORT_NODE_STAMP):
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends npm; }
	@mkdir -p build/npm
	npm install --prefix build/npm --no-audit --no-fund --ignore-scripts onnxruntime-node@$(ORT_NODE_VERSION)
	@touch $@

# ---- the library and the Lua module ----------------------------------------------------------

build/release/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(CFLAGS_ALL) -I$(LUA_INCDIR) -c $< -o $@

build/release/liblunet.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

lunet/core.so: $(CORE_OBJ) $(BIND_OBJ)
	@mkdir -p lunet
	$(CC) -shared -o $@ $^ $(LIBS) $(LDFLAGS)

# lunet/ also links the pure-Lua modules so that require("lunet") works from the repo root.
lunet/.links: $(LUA_TOP)
	@mkdir -p lunet
	@for f in $(LUA_TOP); do ln -sfn ../$$f lunet/$$(basename $$f); done
	@touch $@

# ---- tests ------------------------------------------------------------------------------------

build/release/tests/%: core/tests/%.c core/tests/check.h build/release/liblunet.a
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(CFLAGS_ALL) -Icore/src $< build/release/liblunet.a -o $@ $(LIBS)

# C benchmarks (bench/*.c) against the release library: make build/release/bench/infer_decode
build/release/bench/%: bench/%.c build/release/liblunet.a
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(CFLAGS_ALL) -Icore/src $< build/release/liblunet.a -o $@ $(LIBS)

build/asan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SANITIZE) $(CFLAGS_ALL) -c $< -o $@

build/asan/tests/%: core/tests/%.c core/tests/check.h $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SANITIZE) $(CFLAGS_ALL) -Icore/src $< $(ASAN_OBJ) -o $@ $(LIBS)

ctest: $(TEST_BIN)
	@echo "== C tests"
	@for t in $(TEST_BIN); do $$t || exit 1; done

ctest-asan: $(ASAN_BIN)
	@echo "== C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
	@for t in $(ASAN_BIN); do \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 $$t || exit 1; \
	done

# No definitely-lost bytes from a script that exercises tensors, views, errors and autograd.
valgrind-check: all
	@echo "== valgrind leak check"
	@LUNET_ALLOC_CACHE=0 OPENBLAS_NUM_THREADS=1 valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
	  --error-exitcode=3 $(LUA) spec/scripts/leakcheck.lua

spec: all
	@echo "== busted specs"
	busted --lua=$(LUA) -o utfTerminal

# The same specs against a sanitizer build of lunet/core.so, preloading ASan's runtime into
# the interpreter.  Leak detection stays off here: the interpreter exits without freeing its
# state, and valgrind-check covers leaks.
ASAN_BIND_OBJ := $(BIND_SRC:%.c=build/asan/%.o)

build/asan/lunet/core.so: $(ASAN_OBJ) $(ASAN_BIND_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SANITIZE) -o $@ $^ $(LIBS)

build/asan/bindings/%.o: bindings/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SANITIZE) $(CFLAGS_ALL) -I$(LUA_INCDIR) -c $< -o $@

spec-asan: all build/asan/lunet/core.so
	@echo "== busted specs under AddressSanitizer + UndefinedBehaviorSanitizer"
	@LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	  LUA_CPATH="build/asan/?.so;;" busted --lua=$(LUA) -o utfTerminal --cpath="build/asan/?.so"

lint:
	@echo "== luacheck"
	@luacheck -q lua spec examples bench

test: deps onnxruntime
	@$(MAKE) --no-print-directory all lint ctest ctest-asan valgrind-check spec-asan spec check-rock

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUA) examples/demo.lua build/demo
	$(LUA) examples/demo_serve.lua build/demo

# The rockspec path, exercised in a throwaway tree: installs, then loads the module and runs
# the installed lunet command from another directory.
ROCK_SAVE_MODEL = local l = require("lunet"); l.nn.Sequential(l.nn.Flatten(), l.nn.Linear(784, 10)):save( \
  "$(CURDIR)/build/rocktree/check.safetensors", {input_shape = {1, 28, 28}})
check-rock: all
	@rm -rf build/rocktree
	luarocks --lua-version $(LUA_VERSION) --tree build/rocktree make --deps-mode=none rockspec/lunet-scm-1.rockspec
	cd /tmp && eval "$$(luarocks --lua-version $(LUA_VERSION) --tree $(CURDIR)/build/rocktree path)" && \
	  $(LUA) -e 'print(require("lunet").tensor({1,2,3}))' && \
	  $(LUA) -e '$(ROCK_SAVE_MODEL)' && \
	  $(CURDIR)/build/rocktree/bin/lunet info $(CURDIR)/build/rocktree/check.safetensors

# ---- fuzzing ------------------------------------------------------------------------------------

# libFuzzer (clang; Debian clang and libclang-rt-14-dev) with ASan and UBSan, one target after
# another, each for FUZZ_SECONDS (600 by default) from a seed corpus that
# spec/scripts/fuzz_seeds.lua writes into build/fuzz/corpus/<target>:
#
#   safetensors  the safetensors loader and, through it, the JSON parser (core/tests/fuzz_safetensors.c)
#   infer        the server's inference bodies: infer_read, infer_decode, infer_write (fuzz_infer.c)
#   http         the server's request parsing, through a real lunet_server on 127.0.0.1 (fuzz_http.c)
#
# FUZZ_TARGETS picks some (make fuzz FUZZ_TARGETS=http FUZZ_SECONDS=120); a crash stops the run
# and leaves its input in build/fuzz/artifacts/ (replay: build/fuzz/fuzz_<target> <file>).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= safetensors infer http
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -DLUNET_ALLOC_NO_CACHE -std=c11 \
                -Icore/include -Icore/src $(BLAS_CFLAGS)
FUZZ_ARGS_safetensors := -max_len=4096
FUZZ_ARGS_infer       := -max_len=65536 -dict=build/fuzz/corpus/infer.dict
FUZZ_ARGS_http        := -max_len=65536 -timeout=10 -dict=build/fuzz/corpus/http.dict

build/fuzz/fuzz_%: core/tests/fuzz_%.c $(CORE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $< $(CORE_SRC) -o $@ $(LIBS)

# One recipe line per target, so that the first to fail stops make.
define FUZZ_RUN
	build/fuzz/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS_$(1)) -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/artifacts/ build/fuzz/corpus/$(1)

endef

fuzz: all $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@mkdir -p build/fuzz/artifacts
	$(LUA) spec/scripts/fuzz_seeds.lua build/fuzz/corpus
	$(foreach t,$(FUZZ_TARGETS),$(call FUZZ_RUN,$(t)))

# ---- installation -----------------------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(INST_LIBDIR)/lunet $(DESTDIR)$(INST_LUADIR) $(DESTDIR)$(INST_INCDIR)
	install -m 0755 lunet/core.so $(DESTDIR)$(INST_LIBDIR)/lunet/core.so
	cp -R lua/lunet $(DESTDIR)$(INST_LUADIR)/
	install -m 0644 core/include/lunet.h $(DESTDIR)$(INST_INCDIR)/lunet.h

# luarocks' make backend: the module and the Lua files into the rock's directories.
install-rock: all
	install -d $(INST_LIBDIR)/lunet $(INST_LUADIR)
	install -m 0755 lunet/core.so $(INST_LIBDIR)/lunet/core.so
	cp -R lua/lunet $(INST_LUADIR)/

uninstall:
	rm -rf $(DESTDIR)$(INST_LIBDIR)/lunet $(DESTDIR)$(INST_LUADIR)/lunet $(DESTDIR)$(INST_INCDIR)/lunet.h

clean:
	rm -rf build lunet
