/*
 * tensor_object.c: the lunet.Tensor userdata: life cycle, fields, indexing, metatable.
 *
 * The userdata holds one pointer, created NULL before the tensor is attached, and reset to
 * NULL on release, so __gc, __close and t:release() are one idempotent function and any later
 * use raises "use of a released tensor" (the liolib pattern).
 */
#include "binding.h"

#include <string.h>

typedef struct tensor_box {
    lunet_tensor *tensor;
    size_t counted_bytes; /* what push_new added to bytes_since_collect for it */
} tensor_box;

/* The least amount of tensor memory handed to Lua between two forced full collections. */
#define MIN_COLLECT_BYTES ((size_t)4 << 20)

/* The registry key: the address of this variable, unique in the process. */
static const char context_key = 'c';

void binding_context_open(lua_State *L) {
    binding_context *ctx = lua_newuserdatauv(L, sizeof *ctx, 0);
    memset(ctx, 0, sizeof *ctx);
    ctx->collect_threshold = MIN_COLLECT_BYTES;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &context_key);
}

binding_context *binding_context_get(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &context_key);
    binding_context *ctx = (binding_context *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ctx;
}

int raise_status(lua_State *L) { return luaL_error(L, "%s", lunet_last_error()); }

static tensor_box *box_test(lua_State *L, int idx) {
    return (tensor_box *)luaL_testudata(L, idx, LUNET_TENSOR_MT);
}

lunet_tensor *tensor_test(lua_State *L, int idx) {
    tensor_box *box = box_test(L, idx);
    if (!box) return NULL;
    if (!box->tensor) luaL_error(L, "use of a released tensor");
    return box->tensor;
}

lunet_tensor *tensor_opt(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NULL : tensor_check(L, idx); }

lunet_tensor *tensor_check(lua_State *L, int idx) {
    tensor_box *box = box_test(L, idx);
    if (!box) luaL_typeerror(L, idx, "lunet.Tensor");
    if (!box->tensor) luaL_error(L, "use of a released tensor");
    return box->tensor;
}

static tensor_box *push_box(lua_State *L, lunet_tensor *t) {
    tensor_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->tensor = NULL; /* "closed" until the metatable is attached */
    box->counted_bytes = 0;
    luaL_setmetatable(L, LUNET_TENSOR_MT);
    box->tensor = t;
    return box;
}

void tensor_push_view(lua_State *L, lunet_tensor *t) { push_box(L, t); }

/* Lua's collector sees only the small userdata of a tensor, not its storage, so two things
 * keep memory in step with allocation without the user calling collectgarbage():
 *  - every 16 KB of tensor bytes is reported as a step of allocation debt, which paces the
 *    incremental collector;
 *  - and once the tensor bytes handed to Lua since the last full collection exceed the size of
 *    Lua's own heap (4 MB at least), a full collection runs.  The generational mode that the
 *    lua5.4 interpreter starts in needs this: its minor collections promote tensors that live
 *    across a training step to the old generation, and its major collections are paced by
 *    Lua's heap, which tensors barely touch.  Tying the period to the heap's size keeps the
 *    collector's work per tensor byte bounded, and unreachable tensor memory stays under
 *    4 MB or the heap's size, whatever the size of the datasets held live; the allocator's
 *    cache recycles what is freed. */
static void account_tensor_bytes(lua_State *L, size_t nbytes) {
    binding_context *ctx = binding_context_get(L);
    ctx->bytes_since_collect += nbytes;
    if (ctx->bytes_since_collect > ctx->collect_threshold) {
        lua_gc(L, LUA_GCCOLLECT);
        size_t heap = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024;
        ctx->collect_threshold = heap > MIN_COLLECT_BYTES ? heap : MIN_COLLECT_BYTES;
        ctx->bytes_since_collect = ctx->unreported_bytes = 0;
        return;
    }
    ctx->unreported_bytes += nbytes;
    if (ctx->unreported_bytes >= 16384) {
        int kb = (int)(ctx->unreported_bytes / 1024);
        ctx->unreported_bytes %= 1024;
        lua_gc(L, LUA_GCSTEP, kb);
    }
}

void tensor_push_new(lua_State *L, lunet_tensor *t) {
    tensor_box *box = push_box(L, t);
    box->counted_bytes = lunet_tensor_storage_nbytes(t);
    account_tensor_bytes(L, box->counted_bytes);
}

/* __gc, __close and release(): safe to call twice. */
static int tensor_release(lua_State *L) {
    tensor_box *box = box_test(L, 1);
    if (box && box->tensor) {
        lunet_tensor_release(box->tensor);
        box->tensor = NULL;
        /* Released before the collector found it (t:release(), a to-be-closed variable, or
         * Sequential between layers): no collection is needed to get these bytes back. */
        if (box->counted_bytes) {
            binding_context *ctx = binding_context_get(L);
            ctx->bytes_since_collect -= box->counted_bytes < ctx->bytes_since_collect ? box->counted_bytes
                                                                                      : ctx->bytes_since_collect;
            box->counted_bytes = 0;
        }
    }
    return 0;
}

static int tensor_is_released(lua_State *L) {
    tensor_box *box = box_test(L, 1);
    luaL_argexpected(L, box != NULL, 1, LUNET_TENSOR_MT);
    lua_pushboolean(L, box->tensor == NULL);
    return 1;
}

/* ---- fields ------------------------------------------------------------------------------------- */

static int push_field(lua_State *L, lunet_tensor *t, const char *key) {
    if (strcmp(key, "requires_grad") == 0) {
        lua_pushboolean(L, lunet_tensor_requires_grad(t));
    } else if (strcmp(key, "grad") == 0) {
        lunet_tensor *g = lunet_tensor_grad(t);
        if (g) tensor_push_view(L, lunet_tensor_retain(g));
        else lua_pushnil(L);
    } else if (strcmp(key, "dtype") == 0) {
        lua_pushstring(L, lunet_dtype_name(lunet_tensor_dtype(t)));
    } else if (strcmp(key, "is_leaf") == 0) {
        lua_pushboolean(L, lunet_tensor_is_leaf(t));
    } else if (strcmp(key, "grad_fn") == 0) {
        const char *name = lunet_tensor_grad_fn_name(t);
        if (name) lua_pushstring(L, name);
        else lua_pushnil(L);
    } else if (strcmp(key, "ndim") == 0) {
        lua_pushinteger(L, lunet_tensor_ndim(t));
    } else {
        lua_pushnil(L);
    }
    return 1;
}

/* t[i] on a 1-d tensor is the number; on more dims it is the i-th slice (a view), as Torch7. */
static int index_integer(lua_State *L, lunet_tensor *t) {
    if (lunet_tensor_ndim(t) == 0) return luaL_error(L, "index: a 0-d tensor cannot be indexed (use item())");
    int64_t at = index_arg(L, 2, lunet_tensor_shape(t)[0], 1, "index");
    if (lunet_tensor_ndim(t) == 1) {
        const char *p = (const char *)lunet_tensor_data(t) +
                        at * lunet_tensor_strides(t)[0] * (int64_t)lunet_dtype_size(lunet_tensor_dtype(t));
        push_element(L, p, lunet_tensor_dtype(t));
        return 1;
    }
    lunet_tensor *out;
    if (lunet_tensor_select(&out, t, 0, at) != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

/* __index: methods first (the upvalue), then fields, then integer indexing. */
static int tensor_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        /* Methods resolve even on a released tensor, so t:release() can be called twice; the
         * methods themselves refuse released tensors. */
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        lua_pop(L, 1);
        return push_field(L, tensor_check(L, 1), lua_tostring(L, 2));
    }
    lunet_tensor *t = tensor_check(L, 1);
    if (lua_isinteger(L, 2)) return index_integer(L, t);
    return luaL_error(L, "index: a tensor is indexed by integers (1-based) or method names, not %s",
                      luaL_typename(L, 2));
}

static int set_slice(lua_State *L, lunet_tensor *t) {
    if (lunet_tensor_ndim(t) == 0) return luaL_error(L, "index: a 0-d tensor cannot be indexed (use fill())");
    int64_t at = index_arg(L, 2, lunet_tensor_shape(t)[0], 1, "index");
    lunet_tensor *slice;
    if (lunet_tensor_select(&slice, t, 0, at) != LUNET_OK) return raise_status(L);
    lunet_status s;
    if (lua_type(L, 3) == LUA_TNUMBER) {
        s = lunet_tensor_fill(slice, lua_tonumber(L, 3));
    } else {
        lunet_tensor *src = tensor_test(L, 3);
        if (!src) {
            lunet_tensor_release(slice);
            return luaL_error(L, "index: assign a number or a tensor, not %s", luaL_typename(L, 3));
        }
        s = lunet_tensor_copy(slice, src);
    }
    lunet_tensor_release(slice);
    return s == LUNET_OK ? 0 : raise_status(L);
}

static int tensor_newindex(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lua_isinteger(L, 2)) return set_slice(L, t);
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
    if (strcmp(key, "requires_grad") == 0) {
        luaL_checktype(L, 3, LUA_TBOOLEAN);
        if (lunet_tensor_set_requires_grad(t, lua_toboolean(L, 3)) != LUNET_OK) return raise_status(L);
        return 0;
    }
    if (strcmp(key, "grad") == 0) {
        lunet_tensor *g = lua_isnil(L, 3) ? NULL : tensor_check(L, 3);
        if (lunet_tensor_set_grad(t, g) != LUNET_OK) return raise_status(L);
        return 0;
    }
    return luaL_error(L, "cannot set field '%s' of a lunet.Tensor (settable: requires_grad, grad, [index])", key);
}

static int tensor_len(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lunet_tensor_ndim(t) == 0) return luaL_error(L, "#: a 0-d tensor has no length (use numel())");
    lua_pushinteger(L, lunet_tensor_shape(t)[0]);
    return 1;
}

/* Plain text until lunet (the Lua side) installs its PyTorch-style formatter. */
static int tensor_tostring_plain(lua_State *L) {
    tensor_box *box = box_test(L, 1);
    if (!box || !box->tensor) {
        lua_pushstring(L, "lunet.Tensor (released)");
        return 1;
    }
    char shape[128];
    lunet_shape_format(shape, sizeof shape, lunet_tensor_ndim(box->tensor), lunet_tensor_shape(box->tensor));
    lua_pushfstring(L, "lunet.Tensor(dtype=%s, shape=%s)", lunet_dtype_name(lunet_tensor_dtype(box->tensor)), shape);
    return 1;
}

void tensor_object_open(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", tensor_release},       {"__close", tensor_release}, {"__newindex", tensor_newindex},
        {"__len", tensor_len},          {"__tostring", tensor_tostring_plain}, {NULL, NULL}};
    luaL_newmetatable(L, LUNET_TENSOR_MT); /* mt */
    register_functions(L, meta);
    tensor_metamethods_register(L);
    lua_newtable(L); /* mt methods */
    lua_pushcfunction(L, tensor_release);
    lua_setfield(L, -2, "release");
    lua_pushcfunction(L, tensor_is_released);
    lua_setfield(L, -2, "is_released");
    tensor_methods_register(L);
    /* __index is a closure over the methods table. */
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, tensor_index, 1);
    lua_setfield(L, -3, "__index");
    lua_remove(L, -2); /* methods */
}
