/* args.c: reading shapes, dims, indices, dtypes and options from Lua arguments. */
#include "binding.h"

int shape_arg(lua_State *L, int idx, int64_t *shape, int *next, const char *op) {
    int ndim = 0;
    if (lua_istable(L, idx)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n > LUNET_MAX_DIMS) luaL_error(L, "%s: %d dims given, at most %d are supported", op, (int)n, LUNET_MAX_DIMS);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok) luaL_error(L, "%s: shape entry %d is %s, not an integer", op, (int)i, luaL_typename(L, -1));
            shape[ndim++] = v;
            lua_pop(L, 1);
        }
        *next = idx + 1;
        return ndim;
    }
    int i = idx;
    for (; lua_type(L, i) == LUA_TNUMBER; i++) {
        if (ndim == LUNET_MAX_DIMS) luaL_error(L, "%s: more than %d dims given", op, LUNET_MAX_DIMS);
        int ok;
        lua_Integer v = lua_tointegerx(L, i, &ok);
        if (!ok) luaL_error(L, "%s: size %s is not an integer", op, lua_tostring(L, i));
        shape[ndim++] = v;
    }
    if (i == idx && !lua_isnoneornil(L, idx))
        luaL_error(L, "%s: expected a shape (a table like {2, 3}), got %s", op, luaL_typename(L, idx));
    *next = i;
    return ndim;
}

lunet_dtype dtype_arg(lua_State *L, int idx, lunet_dtype dflt, const char *op) {
    if (lua_isnoneornil(L, idx)) return dflt;
    const char *name = lua_tostring(L, idx);
    lunet_dtype d;
    if (lua_type(L, idx) != LUA_TSTRING || lunet_dtype_from_name(&d, name) != LUNET_OK)
        luaL_error(L, "%s: unknown dtype %s (expected \"f32\", \"f64\", \"i64\", \"i32\", \"i8\" or \"u8\")", op,
                   lua_type(L, idx) == LUA_TSTRING ? name : luaL_typename(L, idx));
    return d;
}

int dim_arg(lua_State *L, int idx, int ndim, int extra, const char *op) {
    int ok;
    lua_Integer d = lua_tointegerx(L, idx, &ok);
    int n = ndim + extra;
    if (!ok) luaL_error(L, "%s: dim must be an integer, got %s", op, luaL_typename(L, idx));
    if (d >= 1 && d <= n) return (int)(d - 1);
    if (d <= -1 && d >= -n) return (int)(n + d);
    if (n == 0) luaL_error(L, "%s: a 0-d tensor has no dim %d", op, (int)d);
    luaL_error(L, "%s: dim %d out of range for a %d-d tensor (use 1..%d or -%d..-1)", op, (int)d, ndim, n, n);
    return 0;
}

int64_t index_arg(lua_State *L, int idx, int64_t size, int lua_dim, const char *op) {
    int ok;
    lua_Integer i = lua_tointegerx(L, idx, &ok);
    if (!ok) luaL_error(L, "%s: index must be an integer, got %s", op, luaL_typename(L, idx));
    if (i == 0) luaL_error(L, "%s: index 0 is invalid in dim %d (indices start at 1)", op, lua_dim);
    int64_t at = i > 0 ? i - 1 : size + i;
    if (at < 0 || at >= size)
        luaL_error(L, "%s: index %I out of range for dim %d of size %I", op, i, lua_dim, (lua_Integer)size);
    return at;
}

int opt_field(lua_State *L, int idx, const char *name) {
    if (!lua_istable(L, idx)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, idx, name);
}

create_options create_options_arg(lua_State *L, int idx, const char *op) {
    create_options o = {LUNET_DTYPE_F32, false};
    if (lua_istable(L, idx)) {
        opt_field(L, idx, "dtype");
        o.dtype = dtype_arg(L, -1, LUNET_DTYPE_F32, op);
        opt_field(L, idx, "requires_grad");
        o.requires_grad = lua_toboolean(L, -1);
        lua_pop(L, 2);
    } else {
        o.dtype = dtype_arg(L, idx, LUNET_DTYPE_F32, op);
    }
    return o;
}

int push_created(lua_State *L, lunet_tensor **t, lunet_status s, create_options o) {
    if (s == LUNET_OK && o.requires_grad) {
        s = lunet_tensor_set_requires_grad(*t, true);
        if (s != LUNET_OK) lunet_tensor_release(*t);
    }
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_new(L, *t);
    return 1;
}
