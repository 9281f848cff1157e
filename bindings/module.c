/*
 * module.c: luaopen_lunet_core and the module-level functions: tensor creation, random
 * numbers, threads, grad mode and memory statistics.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno */
#include "binding.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void register_functions(lua_State *L, const luaL_Reg *funcs) { luaL_setfuncs(L, funcs, 0); }

/* ---- creation ------------------------------------------------------------------------------------- */

static int f_tensor(lua_State *L) {
    create_options o = create_options_arg(L, 2, "tensor");
    lunet_tensor *t, *src = tensor_test(L, 1);
    lunet_status s;
    if (src) { /* a copy, detached from any graph, in the asked dtype (else the source's) */
        lunet_tensor *d = NULL;
        s = lunet_tensor_detach(&d, src);
        lunet_dtype dtype = lua_isnoneornil(L, 2) ? lunet_tensor_dtype(src) : o.dtype;
        /* to() copies only when the dtype changes; clone() covers the other case */
        if (s == LUNET_OK)
            s = dtype == lunet_tensor_dtype(src) ? lunet_tensor_clone(&t, d) : lunet_tensor_to(&t, d, dtype);
        lunet_tensor_release(d);
    } else {
        s = tensor_from_lua(L, 1, o.dtype, &t);
    }
    return push_created(L, &t, s, o);
}

typedef lunet_status (*shape_ctor)(lunet_tensor **, lunet_dtype, int, const int64_t *);

static int shaped(lua_State *L, shape_ctor ctor, const char *name) {
    int64_t shape[LUNET_MAX_DIMS];
    int next, ndim = shape_arg(L, 1, shape, &next, name);
    create_options o = create_options_arg(L, next, name);
    lunet_tensor *t = NULL;
    return push_created(L, &t, ctor(&t, o.dtype, ndim, shape), o);
}

static int f_zeros(lua_State *L) { return shaped(L, lunet_tensor_zeros, "zeros"); }
static int f_ones(lua_State *L) { return shaped(L, lunet_tensor_ones, "ones"); }
static int f_empty(lua_State *L) { return shaped(L, lunet_tensor_empty, "empty"); }
static int f_rand(lua_State *L) { return shaped(L, lunet_tensor_rand, "rand"); }
static int f_randn(lua_State *L) { return shaped(L, lunet_tensor_randn, "randn"); }

static int f_full(lua_State *L) {
    int64_t shape[LUNET_MAX_DIMS];
    int next, ndim = shape_arg(L, 1, shape, &next, "full");
    double value = luaL_checknumber(L, next);
    create_options o = create_options_arg(L, next + 1, "full");
    lunet_tensor *t = NULL;
    return push_created(L, &t, lunet_tensor_full(&t, o.dtype, ndim, shape, value), o);
}

/* zeros_like(t, [options]) and friends: t's shape, and t's dtype unless options say otherwise. */
static int like(lua_State *L, shape_ctor ctor, const char *name) {
    lunet_tensor *src = tensor_check(L, 1);
    create_options o = create_options_arg(L, 2, name);
    if (lua_isnoneornil(L, 2) || (lua_istable(L, 2) && opt_field(L, 2, "dtype") == LUA_TNIL))
        o.dtype = lunet_tensor_dtype(src);
    lunet_tensor *t = NULL;
    return push_created(L, &t, ctor(&t, o.dtype, lunet_tensor_ndim(src), lunet_tensor_shape(src)), o);
}

static int f_zeros_like(lua_State *L) { return like(L, lunet_tensor_zeros, "zeros_like"); }
static int f_ones_like(lua_State *L) { return like(L, lunet_tensor_ones, "ones_like"); }
static int f_rand_like(lua_State *L) { return like(L, lunet_tensor_rand, "rand_like"); }
static int f_randn_like(lua_State *L) { return like(L, lunet_tensor_randn, "randn_like"); }

/* arange(end) or arange(start, end, [step]), then options; end is exclusive as in PyTorch. */
static int f_arange(lua_State *L) {
    int count = 0;
    while (count < 3 && lua_type(L, count + 1) == LUA_TNUMBER) count++;
    if (count == 0) return luaL_error(L, "arange: expected arange(end) or arange(start, end, [step])");
    double start = count == 1 ? 0 : lua_tonumber(L, 1), end = count == 1 ? lua_tonumber(L, 1) : lua_tonumber(L, 2);
    double step = count == 3 ? lua_tonumber(L, 3) : 1;
    /* f32 unless asked otherwise: lunet has one default dtype, where torch.arange infers. */
    create_options o = create_options_arg(L, count + 1, "arange");
    lunet_tensor *t = NULL;
    return push_created(L, &t, lunet_tensor_arange(&t, o.dtype, start, end, step), o);
}

static int f_linspace(lua_State *L) {
    double start = luaL_checknumber(L, 1), end = luaL_checknumber(L, 2);
    lua_Integer steps = luaL_checkinteger(L, 3);
    create_options o = create_options_arg(L, 4, "linspace");
    lunet_tensor *t = NULL;
    return push_created(L, &t, lunet_tensor_linspace(&t, o.dtype, start, end, steps), o);
}

static int f_eye(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    int opts = 2;
    lua_Integer m = n;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        m = luaL_checkinteger(L, 2);
        opts = 3;
    }
    create_options o = create_options_arg(L, opts, "eye");
    lunet_tensor *t = NULL;
    return push_created(L, &t, lunet_tensor_eye(&t, o.dtype, n, m), o);
}

static int f_is_tensor(lua_State *L) {
    lua_pushboolean(L, luaL_testudata(L, 1, LUNET_TENSOR_MT) != NULL);
    return 1;
}

/* cat(list, [dim = 1]) and stack(list, [dim = 1]): list is a Lua list of tensors. */
static int join(lua_State *L, bool stacking) {
    const char *op = stacking ? "stack" : "cat";
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n == 0) return luaL_error(L, "%s: needs a non-empty list of tensors", op);
    lua_settop(L, 2);
    lua_rawgeti(L, 1, 1);
    lunet_tensor *first = tensor_test(L, -1);
    if (!first) return luaL_error(L, "%s: entry 1 of the list is %s, not a tensor", op, luaL_typename(L, -1));
    int dim = lua_isnoneornil(L, 2) ? 0 : dim_arg(L, 2, lunet_tensor_ndim(first), stacking ? 1 : 0, op);
    const lunet_tensor **items = lua_newuserdatauv(L, (size_t)n * sizeof *items, 0); /* freed by Lua */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        items[i - 1] = tensor_test(L, -1);
        if (!items[i - 1]) return luaL_error(L, "%s: entry %I of the list is %s, not a tensor", op, i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    lunet_tensor *out = NULL;
    lunet_status s = stacking ? lunet_tensor_stack(&out, items, (size_t)n, dim) : lunet_tensor_cat(&out, items, (size_t)n, dim);
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

static int f_cat(lua_State *L) { return join(L, false); }
static int f_stack(lua_State *L) { return join(L, true); }

/* ---- random numbers ----------------------------------------------------------------------------------- */

static int f_manual_seed(lua_State *L) {
    lunet_manual_seed((uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

static int f_get_rng_state(lua_State *L) {
    uint64_t state[4];
    lunet_rng_get_state(state);
    lua_createtable(L, 4, 0);
    for (int i = 0; i < 4; i++) {
        lua_pushinteger(L, (lua_Integer)state[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int f_set_rng_state(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    uint64_t state[4];
    for (int i = 0; i < 4; i++) {
        lua_rawgeti(L, 1, i + 1);
        int ok;
        state[i] = (uint64_t)lua_tointegerx(L, -1, &ok);
        if (!ok) return luaL_error(L, "set_rng_state: expected a table of 4 integers from get_rng_state()");
        lua_pop(L, 1);
    }
    lunet_rng_set_state(state);
    return 0;
}

/* ---- threads, grad mode, memory ------------------------------------------------------------------------ */

static int f_set_num_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1) return luaL_error(L, "set_num_threads: need at least 1 thread, got %I", n);
    lunet_set_num_threads((int)n);
    return 0;
}

static int f_get_num_threads(lua_State *L) {
    lua_pushinteger(L, lunet_get_num_threads());
    return 1;
}

static int f_blas_name(lua_State *L) {
    lua_pushstring(L, lunet_blas_name());
    return 1;
}

static int f_is_grad_enabled(lua_State *L) {
    lua_pushboolean(L, lunet_grad_is_enabled());
    return 1;
}

static int f_set_grad_enabled(lua_State *L) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    lunet_grad_set_enabled(lua_toboolean(L, 1));
    return 0;
}

static int f_alloc_stats(lua_State *L) {
    lunet_alloc_stats s;
    lunet_alloc_get_stats(&s);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)s.system_allocs);
    lua_setfield(L, -2, "system_allocs");
    lua_pushinteger(L, (lua_Integer)s.system_frees);
    lua_setfield(L, -2, "system_frees");
    lua_pushinteger(L, (lua_Integer)s.cache_hits);
    lua_setfield(L, -2, "cache_hits");
    lua_pushinteger(L, (lua_Integer)s.live_bytes);
    lua_setfield(L, -2, "live_bytes");
    lua_pushinteger(L, (lua_Integer)s.cached_bytes);
    lua_setfield(L, -2, "cached_bytes");
    lua_pushinteger(L, (lua_Integer)s.cache_limit);
    lua_setfield(L, -2, "cache_limit");
    lua_pushboolean(L, s.cache_enabled);
    lua_setfield(L, -2, "cache_enabled");
    return 1;
}

/* clock(): seconds on a monotonic clock, for timing (os.clock counts CPU time of every thread). */
static int f_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* isatty([file]): whether the file (io.stdout by default) is a terminal, for progress bars. */
static int f_isatty(lua_State *L) {
    FILE *f = stdout;
    if (!lua_isnoneornil(L, 1)) f = ((luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE))->f;
    lua_pushboolean(L, f && isatty(fileno(f)));
    return 1;
}

static int f_alloc_trim(lua_State *L) {
    (void)L;
    lunet_alloc_trim();
    return 0;
}

void module_functions_register(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"tensor", f_tensor}, {"zeros", f_zeros}, {"ones", f_ones}, {"empty", f_empty}, {"full", f_full},
        {"rand", f_rand}, {"randn", f_randn}, {"zeros_like", f_zeros_like}, {"ones_like", f_ones_like},
        {"rand_like", f_rand_like}, {"randn_like", f_randn_like}, {"arange", f_arange},
        {"linspace", f_linspace}, {"eye", f_eye}, {"is_tensor", f_is_tensor}, {"cat", f_cat}, {"stack", f_stack},
        {"manual_seed", f_manual_seed}, {"get_rng_state", f_get_rng_state}, {"set_rng_state", f_set_rng_state},
        {"set_num_threads", f_set_num_threads}, {"get_num_threads", f_get_num_threads}, {"blas_name", f_blas_name},
        {"is_grad_enabled", f_is_grad_enabled}, {"set_grad_enabled", f_set_grad_enabled},
        {"alloc_stats", f_alloc_stats}, {"alloc_trim", f_alloc_trim}, {"clock", f_clock}, {"isatty", f_isatty},
        {NULL, NULL}};
    register_functions(L, funcs);
}

int luaopen_lunet_core(lua_State *L) {
    binding_context_open(L);

    lua_newtable(L); /* module */
    module_functions_register(L);
    random_functions_register(L);
    nn_functions_register(L);
    safetensors_functions_register(L);
    data_functions_register(L);
    optim_functions_register(L);
    model_graph_functions_register(L);
    quant_functions_register(L);
    serve_functions_register(L);
    tensor_object_open(L); /* module methods */
    lua_setfield(L, -2, "methods");
    luaL_getmetatable(L, LUNET_TENSOR_MT);
    lua_setfield(L, -2, "Tensor");
    lua_pushliteral(L, LUNET_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
