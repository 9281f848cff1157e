/*
 * data.c: the data-file readers, exposed to lua/lunet/data/.
 *
 * A missing, unreadable or malformed file is an environmental failure, so both readers
 * return nil, message, code (code is the status name, "LUNET_ERR_IO" or "LUNET_ERR_FORMAT")
 * instead of raising; wrong argument types and bad options still raise.
 */
#include "binding.h"

#include <string.h>

/* Pushes the result of a reader: the tensor, or nil, message, code. */
static int push_read(lua_State *L, lunet_tensor *t, lunet_status s) {
    if (s == LUNET_OK) {
        tensor_push_new(L, t);
        return 1;
    }
    if (s != LUNET_ERR_IO && s != LUNET_ERR_FORMAT) return raise_status(L);
    lua_pushnil(L);
    lua_pushstring(L, lunet_last_error());
    lua_pushstring(L, lunet_status_name(s));
    return 3;
}

/* core.idx_read(path) */
static int f_idx_read(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lunet_tensor *t = NULL;
    lunet_status s = lunet_idx_read(&t, path); /* before push_read reads t */
    return push_read(L, t, s);
}

/* core.csv_read(path, [{delimiter = ",", skip_rows = 0, dtype = "f32"}]) */
static int f_csv_read(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lunet_csv_options o = {',', 0, LUNET_DTYPE_F32};
    if (opt_field(L, 2, "delimiter") != LUA_TNIL) {
        size_t len;
        const char *d = lua_tolstring(L, -1, &len);
        if (!d || len != 1) return luaL_error(L, "csv_read: delimiter must be a one-character string");
        o.delimiter = d[0];
    }
    if (opt_field(L, 2, "skip_rows") != LUA_TNIL) {
        int ok;
        o.skip_rows = lua_tointegerx(L, -1, &ok);
        if (!ok) return luaL_error(L, "csv_read: skip_rows must be an integer, got %s", luaL_typename(L, -1));
    }
    opt_field(L, 2, "dtype");
    o.dtype = dtype_arg(L, -1, LUNET_DTYPE_F32, "csv_read");
    lua_pop(L, 3);
    lunet_tensor *t = NULL;
    lunet_status s = lunet_csv_read(&t, path, &o);
    return push_read(L, t, s);
}

void data_functions_register(lua_State *L) {
    static const luaL_Reg funcs[] = {{"idx_read", f_idx_read}, {"csv_read", f_csv_read}, {NULL, NULL}};
    register_functions(L, funcs);
}
