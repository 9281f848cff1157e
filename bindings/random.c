/*
 * random.c: lunet.Generator, an independent random stream (a data loader's shuffling, say),
 * and the module's randperm.  Permutations come back 1-based, as Lua indices.
 */
#include "binding.h"

#define GENERATOR_MT "lunet.Generator"

lunet_generator *generator_check(lua_State *L, int idx) {
    return (lunet_generator *)luaL_checkudata(L, idx, GENERATOR_MT);
}

/* Pushes a permutation of 1..n drawn from g. */
static int push_randperm(lua_State *L, lua_Integer n, lunet_generator *g) {
    lunet_tensor *perm, *one = NULL, *shifted = NULL;
    int64_t v = 1;
    lunet_status s = lunet_tensor_randperm(&perm, n, g);
    if (s == LUNET_OK) s = lunet_tensor_from_data(&one, LUNET_DTYPE_I64, 0, NULL, &v);
    if (s == LUNET_OK) s = lunet_tensor_add(&shifted, perm, one);
    lunet_tensor_release(perm);
    lunet_tensor_release(one);
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_new(L, shifted);
    return 1;
}

/* lunet.Generator([seed]) */
static int f_generator(lua_State *L) {
    lua_Integer seed = luaL_optinteger(L, 1, 0);
    lunet_generator *g = lua_newuserdatauv(L, sizeof *g, 0);
    lunet_generator_seed(g, (uint64_t)seed);
    luaL_setmetatable(L, GENERATOR_MT);
    return 1;
}

/* lunet.randperm(n, [generator]) */
static int f_randperm(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0) return luaL_error(L, "randperm: n must be >= 0, got %I", n);
    return push_randperm(L, n, lua_isnoneornil(L, 2) ? NULL : generator_check(L, 2));
}

static int g_seed(lua_State *L) {
    lunet_generator_seed(generator_check(L, 1), (uint64_t)luaL_checkinteger(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int g_randperm(lua_State *L) {
    lunet_generator *g = generator_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n < 0) return luaL_error(L, "randperm: n must be >= 0, got %I", n);
    return push_randperm(L, n, g);
}

static int g_uniform(lua_State *L) {
    lua_pushnumber(L, lunet_generator_uniform(generator_check(L, 1)));
    return 1;
}

static int g_normal(lua_State *L) {
    lua_pushnumber(L, lunet_generator_normal(generator_check(L, 1)));
    return 1;
}

/* g:random(n): an integer in 1..n, like math.random(n). */
static int g_random(lua_State *L) {
    lunet_generator *g = generator_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n < 1) return luaL_error(L, "random: n must be >= 1, got %I", n);
    lua_pushinteger(L, (lua_Integer)lunet_generator_below(g, (uint64_t)n) + 1);
    return 1;
}

static int g_state(lua_State *L) {
    lunet_generator *g = generator_check(L, 1);
    lua_createtable(L, 4, 0);
    for (int i = 0; i < 4; i++) {
        lua_pushinteger(L, (lua_Integer)g->s[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int g_set_state(lua_State *L) {
    lunet_generator *g = generator_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lunet_generator next;
    for (int i = 0; i < 4; i++) {
        lua_rawgeti(L, 2, i + 1);
        int ok;
        next.s[i] = (uint64_t)lua_tointegerx(L, -1, &ok);
        if (!ok) return luaL_error(L, "set_state: expected a table of 4 integers from state()");
        lua_pop(L, 1);
    }
    if (!(next.s[0] | next.s[1] | next.s[2] | next.s[3])) return luaL_error(L, "set_state: the all-zero state is invalid");
    *g = next;
    lua_settop(L, 1);
    return 1;
}

static int g_tostring(lua_State *L) {
    lua_pushfstring(L, "lunet.Generator (%p)", (void *)generator_check(L, 1));
    return 1;
}

void random_functions_register(lua_State *L) {
    static const luaL_Reg methods[] = {{"seed", g_seed},   {"randperm", g_randperm}, {"uniform", g_uniform},
                                       {"normal", g_normal}, {"random", g_random},   {"state", g_state},
                                       {"set_state", g_set_state}, {NULL, NULL}};
    if (luaL_newmetatable(L, GENERATOR_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, g_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {{"Generator", f_generator}, {"randperm", f_randperm}, {NULL, NULL}};
    register_functions(L, funcs);
}
