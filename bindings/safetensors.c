/*
 * safetensors.c: reading and writing safetensors files, exposed to lua/lunet/safetensors.lua.
 *
 * A file that is missing, unreadable or malformed, and a write that the filesystem refuses,
 * are environmental failures: both functions return nil, message, code (code is the status
 * name, "LUNET_ERR_IO" or "LUNET_ERR_FORMAT"), as the data readers do.  Misuse raises: wrong
 * argument types, empty or duplicate names, names with a NUL byte or invalid UTF-8,
 * non-string metadata.
 */
#include "binding.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The metatable of the userdata that owns a lunet_safetensors while its contents become Lua
 * values, so that a memory error raised half-way through still frees it. */
#define FILE_GUARD_MT "lunet.safetensors_file"

typedef struct file_guard {
    lunet_safetensors *file;
} file_guard;

static int file_guard_gc(lua_State *L) {
    file_guard *g = (file_guard *)luaL_checkudata(L, 1, FILE_GUARD_MT);
    lunet_safetensors_free(g->file);
    g->file = NULL;
    return 0;
}

/* nil, message, code for a file's failure; raises for anything else. */
static int push_failure(lua_State *L, lunet_status s) {
    if (s != LUNET_ERR_IO && s != LUNET_ERR_FORMAT) return raise_status(L);
    lua_pushnil(L);
    lua_pushstring(L, lunet_last_error());
    lua_pushstring(L, lunet_status_name(s));
    return 3;
}

/* core.safetensors_read(path) -> tensors (name -> tensor), metadata (key -> value), names (the
 * tensors' names in file order); or nil, message, code. */
static int f_safetensors_read(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    file_guard *g = (file_guard *)lua_newuserdatauv(L, sizeof *g, 0);
    g->file = NULL;
    luaL_setmetatable(L, FILE_GUARD_MT);
    lunet_status s = lunet_safetensors_read(&g->file, path);
    if (s != LUNET_OK) return push_failure(L, s);
    size_t n = lunet_safetensors_count(g->file), m = lunet_safetensors_metadata_count(g->file);
    lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n); /* tensors */
    lua_createtable(L, 0, m > INT_MAX ? INT_MAX : (int)m); /* metadata */
    lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0); /* names */
    for (size_t i = 0; i < n; i++) {
        const char *name = lunet_safetensors_name(g->file, i);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        tensor_push_new(L, lunet_tensor_retain(lunet_safetensors_tensor(g->file, i)));
        lua_setfield(L, -4, name);
    }
    for (size_t i = 0; i < m; i++) {
        lua_pushstring(L, lunet_safetensors_metadata_value(g->file, i));
        lua_setfield(L, -3, lunet_safetensors_metadata_key(g->file, i));
    }
    lunet_safetensors_free(g->file); /* the tensors live on in Lua: each holds its own reference */
    g->file = NULL;
    return 3;
}

/* The type of the value at idx for messages: "lunet.Tensor" rather than "userdata". */
static const char *kind_of(lua_State *L, int idx) {
    return luaL_testudata(L, idx, LUNET_TENSOR_MT) ? LUNET_TENSOR_MT : luaL_typename(L, idx);
}

/* The string at idx as a C string: it must be a Lua string without a NUL byte. */
static const char *c_string_arg(lua_State *L, int idx, const char *what) {
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "safetensors_write: %s must be a string, got %s", what, kind_of(L, idx));
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) luaL_error(L, "safetensors_write: %s contains a NUL byte (after \"%s\")", what, s);
    return s;
}

/* The tensor at idx, the value stored under name. */
static const lunet_tensor *tensor_value(lua_State *L, int idx, const char *name) {
    const lunet_tensor *t = tensor_test(L, idx);
    if (!t)
        luaL_error(L, "safetensors_write: the value of \"%s\" must be a lunet.Tensor, got %s", name,
                   kind_of(L, idx));
    return t;
}

static size_t table_size(lua_State *L, int idx) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        n++;
        lua_pop(L, 1);
    }
    return n;
}

static int compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const lunet_named_tensor *)a)->name, ((const lunet_named_tensor *)b)->name);
}

static int compare_keys(const void *a, const void *b) {
    return strcmp(((const lunet_string_pair *)a)->key, ((const lunet_string_pair *)b)->key);
}

/* A list of {name, tensor} pairs at idx (n entries, all of them 1..n), in its order.  The
 * names and tensors stay anchored in the table, which is on the stack for the whole call. */
static void collect_pairs(lua_State *L, int idx, lunet_named_tensor *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TTABLE)
            luaL_error(L, "safetensors_write: entry %d of the list must be a {name, tensor} pair, got %s",
                       (int)i + 1, kind_of(L, -1));
        lua_rawgeti(L, -1, 1);
        out[i].name = c_string_arg(L, -1, "a tensor name");
        lua_rawgeti(L, -2, 2);
        out[i].tensor = tensor_value(L, -1, out[i].name);
        lua_pop(L, 3);
    }
}

/* A table name -> tensor at idx, sorted by name so that a file's bytes do not depend on Lua's
 * traversal order. */
static void collect_named(lua_State *L, int idx, lunet_named_tensor *out, size_t n) {
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        out[i].name = c_string_arg(L, -2, "a tensor name");
        out[i].tensor = tensor_value(L, -1, out[i].name);
        lua_pop(L, 1);
        i++;
    }
    qsort(out, n, sizeof *out, compare_tensor_names);
}

/* The tensors argument: a list of pairs or a table of names; *n receives the count.  The array
 * is a userdata on the stack, so an error raised while it is filled frees it with the rest. */
static lunet_named_tensor *tensors_arg(lua_State *L, int idx, size_t *n) {
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = table_size(L, idx);
    size_t list = (size_t)lua_rawlen(L, idx);
    lunet_named_tensor *out = (lunet_named_tensor *)lua_newuserdatauv(L, *n * sizeof *out, 0);
    if (list == 0) {
        collect_named(L, idx, out, *n);
    } else if (list == *n) {
        collect_pairs(L, idx, out, *n);
    } else {
        luaL_error(L,
                   "safetensors_write: tensors must be a table of name = tensor or a list of {name, tensor} "
                   "pairs, not a mix of both");
    }
    return out;
}

/* The optional metadata argument: a table of string keys and string values, sorted by key. */
static lunet_string_pair *metadata_arg(lua_State *L, int idx, size_t *n) {
    *n = 0;
    if (lua_isnoneornil(L, idx)) return NULL;
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t count = table_size(L, idx), i = 0;
    lunet_string_pair *out = (lunet_string_pair *)lua_newuserdatauv(L, count * sizeof *out, 0);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        out[i].key = c_string_arg(L, -2, "a metadata key");
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "safetensors_write: metadata value of \"%s\" must be a string, got %s", out[i].key,
                       kind_of(L, -1));
        out[i].value = c_string_arg(L, -1, "a metadata value");
        lua_pop(L, 1);
        i++;
    }
    qsort(out, count, sizeof *out, compare_keys);
    *n = count;
    return out;
}

/* core.safetensors_write(path, tensors, [metadata]) -> true, or nil, message, code.  tensors is
 * a table name -> tensor (written in sorted name order) or a list of {name, tensor} pairs
 * (written in list order). */
static int f_safetensors_write(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n, m;
    lunet_named_tensor *tensors = tensors_arg(L, 2, &n);
    lunet_string_pair *metadata = metadata_arg(L, 3, &m);
    lunet_status s = lunet_safetensors_write(path, tensors, n, metadata, m);
    if (s != LUNET_OK) return push_failure(L, s);
    lua_pushboolean(L, 1);
    return 1;
}

/* write_file_atomic(path, bytes): the bytes as the whole file, durably (lunet_write_file_atomic). */
static int f_write_file_atomic(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *bytes = luaL_checklstring(L, 2, &n);
    if (lunet_write_file_atomic(path, bytes, n) != LUNET_OK) return raise_status(L);
    return 0;
}

void safetensors_functions_register(lua_State *L) {
    if (luaL_newmetatable(L, FILE_GUARD_MT)) {
        lua_pushcfunction(L, file_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {{"safetensors_read", f_safetensors_read},
                                      {"safetensors_write", f_safetensors_write},
                                      {"write_file_atomic", f_write_file_atomic},
                                      {NULL, NULL}};
    register_functions(L, funcs);
}
