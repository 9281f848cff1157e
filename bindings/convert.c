/* convert.c: Lua numbers and nested tables to tensors and back. */
#include "binding.h"

#include <math.h>
#include <string.h>

void push_int_list(lua_State *L, int n, const int64_t *v) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

void push_element(lua_State *L, const void *p, lunet_dtype dtype) {
    switch (dtype) {
    case LUNET_DTYPE_F32: { float v; memcpy(&v, p, sizeof v); lua_pushnumber(L, v); break; }
    case LUNET_DTYPE_F64: { double v; memcpy(&v, p, sizeof v); lua_pushnumber(L, v); break; }
    case LUNET_DTYPE_I64: { int64_t v; memcpy(&v, p, sizeof v); lua_pushinteger(L, v); break; }
    case LUNET_DTYPE_I32: { int32_t v; memcpy(&v, p, sizeof v); lua_pushinteger(L, v); break; }
    case LUNET_DTYPE_I8: { int8_t v; memcpy(&v, p, sizeof v); lua_pushinteger(L, v); break; }
    case LUNET_DTYPE_U8: { uint8_t v; memcpy(&v, p, sizeof v); lua_pushinteger(L, v); break; }
    default: lua_pushnil(L);
    }
}

static void push_level(lua_State *L, const char *p, const lunet_tensor *t, int d) {
    const int64_t n = lunet_tensor_shape(t)[d];
    const int64_t step = lunet_tensor_strides(t)[d] * (int64_t)lunet_dtype_size(lunet_tensor_dtype(t));
    lua_createtable(L, n > 0x7fffffff ? 0 : (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        if (d + 1 == lunet_tensor_ndim(t)) push_element(L, p + i * step, lunet_tensor_dtype(t));
        else push_level(L, p + i * step, t, d + 1);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
}

void push_table(lua_State *L, const lunet_tensor *t) {
    luaL_checkstack(L, LUNET_MAX_DIMS + 4, "totable");
    if (lunet_tensor_ndim(t) == 0) push_element(L, lunet_tensor_data(t), lunet_tensor_dtype(t));
    else push_level(L, lunet_tensor_data(t), t, 0);
}

/* ---- from Lua ------------------------------------------------------------------------------------- */

typedef struct fill_state {
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    int64_t path[LUNET_MAX_DIMS]; /* 1-based position, for messages */
    bool as_int;                  /* fill int64 (exact integers) instead of double */
    void *buffer;
    int64_t pos;
} fill_state;

static const char *path_str(lua_State *L, const fill_state *f, int depth) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int d = 0; d < depth; d++) {
        lua_pushfstring(L, "[%I]", (lua_Integer)f->path[d]);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static void store_number(lua_State *L, fill_state *f, int idx, int depth) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "tensor: element %s is %s, not a number", path_str(L, f, depth), luaL_typename(L, idx));
    if (!f->as_int) {
        ((double *)f->buffer)[f->pos++] = lua_tonumber(L, idx);
        return;
    }
    if (lua_isinteger(L, idx)) {
        ((int64_t *)f->buffer)[f->pos++] = lua_tointeger(L, idx);
        return;
    }
    double v = lua_tonumber(L, idx);
    if (!(v >= -0x1p63 && v < 0x1p63))
        luaL_error(L, "tensor: element %s = %f does not fit an integer dtype", path_str(L, f, depth), v);
    ((int64_t *)f->buffer)[f->pos++] = (int64_t)v;
}

/* The table at the top of the stack holds level depth of the data. */
static void fill_level(lua_State *L, fill_state *f, int depth) {
    int64_t n = (int64_t)lua_rawlen(L, -1);
    if (n != f->shape[depth])
        luaL_error(L, "tensor: ragged nested table: %s has %I entries, expected %I (like the first one)",
                   depth ? path_str(L, f, depth) : "the outer table", (lua_Integer)n, (lua_Integer)f->shape[depth]);
    for (int64_t i = 1; i <= n; i++) {
        f->path[depth] = i;
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (depth + 1 == f->ndim) {
            store_number(L, f, -1, depth + 1);
        } else {
            if (!lua_istable(L, -1))
                luaL_error(L, "tensor: ragged nested table: %s is %s, expected a table",
                           path_str(L, f, depth + 1), luaL_typename(L, -1));
            fill_level(L, f, depth + 1);
        }
        lua_pop(L, 1);
    }
}

lunet_status tensor_from_lua(lua_State *L, int idx, lunet_dtype dtype, lunet_tensor **out) {
    idx = lua_absindex(L, idx);
    fill_state f = {0};
    f.as_int = !lunet_dtype_is_float(dtype);
    luaL_checkstack(L, LUNET_MAX_DIMS + 8, "tensor");
    if (lua_type(L, idx) == LUA_TNUMBER) {
        f.ndim = 0;
    } else if (lua_istable(L, idx)) {
        /* The shape follows the first entry at each level; fill_level checks the rest. */
        lua_pushvalue(L, idx);
        int pushed = 1;
        while (lua_istable(L, -1)) {
            if (f.ndim == LUNET_MAX_DIMS) luaL_error(L, "tensor: nested deeper than %d levels", LUNET_MAX_DIMS);
            int64_t n = (int64_t)lua_rawlen(L, -1);
            f.shape[f.ndim++] = n;
            if (n == 0) break;
            lua_rawgeti(L, -1, 1);
            pushed++;
        }
        lua_pop(L, pushed);
    } else {
        luaL_error(L, "tensor: expected a number, a nested table of numbers or a tensor, got %s", luaL_typename(L, idx));
    }
    int64_t numel = 1;
    for (int d = 0; d < f.ndim; d++) numel *= f.shape[d];
    /* A userdata scratch buffer: freed by Lua even when a bad element raises mid-way. */
    f.buffer = lua_newuserdatauv(L, (size_t)(numel > 0 ? numel : 1) * 8, 0);
    if (f.ndim == 0) {
        store_number(L, &f, idx, 0);
    } else {
        lua_pushvalue(L, idx);
        fill_level(L, &f, 0);
        lua_pop(L, 1);
    }
    lunet_tensor *raw;
    lunet_status s = lunet_tensor_from_data(&raw, f.as_int ? LUNET_DTYPE_I64 : LUNET_DTYPE_F64, f.ndim, f.shape, f.buffer);
    lua_pop(L, 1); /* scratch */
    if (s != LUNET_OK) return s;
    s = lunet_tensor_to(out, raw, dtype);
    lunet_tensor_release(raw);
    return s;
}

lunet_tensor *operand_arg(lua_State *L, int idx, const lunet_tensor *like, const char *op) {
    lunet_tensor *t = tensor_test(L, idx);
    if (t) return t;
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "%s: expected a tensor or a number, got %s", op, luaL_typename(L, idx));
    /* A Lua number is weakly typed, as Python scalars are in PyTorch. */
    lunet_dtype dtype = like ? lunet_tensor_dtype(like) : LUNET_DTYPE_F32;
    if (!lunet_dtype_is_float(dtype) && !lua_isinteger(L, idx)) dtype = LUNET_DTYPE_F32;
    lunet_tensor *scalar;
    if (tensor_from_lua(L, idx, dtype, &scalar) != LUNET_OK) raise_status(L);
    tensor_push_view(L, scalar); /* the stack owns it until the caller returns */
    return scalar;
}
