/*
 * tensor_methods.c: the methods of lunet.Tensor.  Each checks its arguments, calls one C API
 * function, and pushes the result; dims and indices are converted from Lua's 1-based form.
 * The binary ops also serve as metamethods (__add, ...) and as lunet.add(a, b), so either
 * operand may be a Lua number.
 */
#include "binding.h"

#include <math.h>
#include <string.h>

typedef lunet_status (*unary_op)(lunet_tensor **, const lunet_tensor *);
typedef lunet_status (*binary_op)(lunet_tensor **, const lunet_tensor *, const lunet_tensor *);

/* Pushes out as a view when it shares t's storage, else as new memory. */
static int push_result(lua_State *L, lunet_tensor *out, const lunet_tensor *t) {
    if (lunet_tensor_shares_storage(out, t)) tensor_push_view(L, out);
    else tensor_push_new(L, out);
    return 1;
}

static int unary(lua_State *L, unary_op op) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    if (op(&out, t) != LUNET_OK) return raise_status(L);
    return push_result(L, out, t);
}

static int binary(lua_State *L, binary_op op, const char *name) {
    lunet_tensor *ta = tensor_test(L, 1), *tb = tensor_test(L, 2);
    if (!ta && !tb) return luaL_error(L, "%s: expected at least one tensor operand", name);
    lunet_tensor *a = operand_arg(L, 1, tb ? tb : ta, name);
    lunet_tensor *b = operand_arg(L, 2, ta ? ta : tb, name);
    lunet_tensor *out;
    if (op(&out, a, b) != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

#define UNARY_METHOD(name)                                                                 \
    static int m_##name(lua_State *L) { return unary(L, lunet_tensor_##name); }
#define BINARY_METHOD(name)                                                                \
    static int m_##name(lua_State *L) { return binary(L, lunet_tensor_##name, #name); }

UNARY_METHOD(neg)
UNARY_METHOD(abs)
UNARY_METHOD(relu)
UNARY_METHOD(exp)
UNARY_METHOD(log)
UNARY_METHOD(sqrt)
UNARY_METHOD(sigmoid)
UNARY_METHOD(tanh)
UNARY_METHOD(clone)
UNARY_METHOD(contiguous)
UNARY_METHOD(detach)
BINARY_METHOD(add)
BINARY_METHOD(sub)
BINARY_METHOD(mul)
BINARY_METHOD(div)
BINARY_METHOD(pow)
BINARY_METHOD(eq)
BINARY_METHOD(ne)
BINARY_METHOD(lt)
BINARY_METHOD(le)
BINARY_METHOD(gt)
BINARY_METHOD(ge)
BINARY_METHOD(matmul)

/* __unm receives the operand twice. */
static int m_unm(lua_State *L) {
    lua_settop(L, 1);
    return unary(L, lunet_tensor_neg);
}

static int m_clamp(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    double lo = lua_isnoneornil(L, 2) ? NAN : luaL_checknumber(L, 2);
    double hi = lua_isnoneornil(L, 3) ? NAN : luaL_checknumber(L, 3);
    if (lunet_tensor_clamp(&out, t, lo, hi) != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

static int m_to(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    if (lunet_tensor_to(&out, t, dtype_arg(L, 2, lunet_tensor_dtype(t), "to")) != LUNET_OK) return raise_status(L);
    return push_result(L, out, t);
}

/* ---- views ------------------------------------------------------------------------------------- */

static int reshape_like(lua_State *L, lunet_status (*op)(lunet_tensor **, const lunet_tensor *, int, const int64_t *),
                        const char *name) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int64_t shape[LUNET_MAX_DIMS];
    int next, ndim = shape_arg(L, 2, shape, &next, name);
    if (op(&out, t, ndim, shape) != LUNET_OK) return raise_status(L);
    return push_result(L, out, t);
}

static int m_view(lua_State *L) { return reshape_like(L, lunet_tensor_view, "view"); }
static int m_reshape(lua_State *L) { return reshape_like(L, lunet_tensor_reshape, "reshape"); }
static int m_expand(lua_State *L) { return reshape_like(L, lunet_tensor_expand, "expand"); }

static int m_expand_as(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *other = tensor_check(L, 2), *out;
    if (lunet_tensor_expand(&out, t, lunet_tensor_ndim(other), lunet_tensor_shape(other)) != LUNET_OK)
        return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

static int m_transpose(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int n = lunet_tensor_ndim(t);
    int d0 = lua_isnoneornil(L, 2) ? 0 : dim_arg(L, 2, n, 0, "transpose");
    int d1 = lua_isnoneornil(L, 3) ? 1 : dim_arg(L, 3, n, 0, "transpose");
    if (lua_isnoneornil(L, 2) && n != 2)
        return luaL_error(L, "transpose: give the two dims to swap for a %d-d tensor", n);
    if (lunet_tensor_transpose(&out, t, d0, d1) != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

static int m_permute(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int n = lunet_tensor_ndim(t), dims[LUNET_MAX_DIMS];
    int64_t given[LUNET_MAX_DIMS];
    int next, count = shape_arg(L, 2, given, &next, "permute");
    if (count != n) return luaL_error(L, "permute: %d dims given for a %d-d tensor", count, n);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, given[i]);
        dims[i] = dim_arg(L, -1, n, 0, "permute");
        lua_pop(L, 1);
    }
    if (lunet_tensor_permute(&out, t, dims) != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

/* narrow(dim, start, length) with a 1-based start. */
static int m_narrow(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int d = dim_arg(L, 2, lunet_tensor_ndim(t), 0, "narrow");
    int64_t size = lunet_tensor_shape(t)[d];
    lua_Integer start = luaL_checkinteger(L, 3), length = luaL_checkinteger(L, 4);
    int64_t s = start > 0 ? start - 1 : size + start;
    if (start == 0 || s < 0 || length < 0 || s + length > size)
        return luaL_error(L, "narrow: start %I and length %I do not fit dim %d of size %I (start counts from 1)",
                          start, length, d + 1, (lua_Integer)size);
    if (lunet_tensor_narrow(&out, t, d, s, length) != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

/* slice(dim, start, stop, step): 1-based and inclusive like string.sub; negatives count from
 * the end (-1 is the last); positions past either end are clamped. */
static int m_slice(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int d = dim_arg(L, 2, lunet_tensor_ndim(t), 0, "slice");
    int64_t size = lunet_tensor_shape(t)[d];
    lua_Integer first = luaL_optinteger(L, 3, 1), last = luaL_optinteger(L, 4, -1), step = luaL_optinteger(L, 5, 1);
    if (step <= 0) return luaL_error(L, "slice: step must be positive, got %I", step);
    int64_t start = first > 0 ? first - 1 : size + first;
    int64_t stop = last >= 0 ? last : size + last + 1;
    if (start < 0) start = 0;
    if (stop < start) stop = start;
    if (lunet_tensor_slice(&out, t, d, start, stop, step) != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

static int m_select(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int d = dim_arg(L, 2, lunet_tensor_ndim(t), 0, "select");
    int64_t i = index_arg(L, 3, lunet_tensor_shape(t)[d], d + 1, "select");
    if (lunet_tensor_select(&out, t, d, i) != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

static int m_squeeze(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    lunet_status s = lua_isnoneornil(L, 2)
                         ? lunet_tensor_squeeze_all(&out, t)
                         : lunet_tensor_squeeze(&out, t, dim_arg(L, 2, lunet_tensor_ndim(t), 0, "squeeze"));
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

static int m_unsqueeze(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    if (lunet_tensor_unsqueeze(&out, t, dim_arg(L, 2, lunet_tensor_ndim(t), 1, "unsqueeze")) != LUNET_OK)
        return raise_status(L);
    tensor_push_view(L, out);
    return 1;
}

static int m_flatten(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int n = lunet_tensor_ndim(t);
    int s = n == 0 || lua_isnoneornil(L, 2) ? 0 : dim_arg(L, 2, n, 0, "flatten");
    int e = n == 0 || lua_isnoneornil(L, 3) ? n - 1 : dim_arg(L, 3, n, 0, "flatten");
    if (lunet_tensor_flatten(&out, t, s, e) != LUNET_OK) return raise_status(L);
    return push_result(L, out, t);
}

/* ---- reductions ---------------------------------------------------------------------------------- */

/* Replaces *indices (0-based, i64) by a new tensor of Lua's 1-based indices.  A new tensor,
 * not an in-place +1: autograd may have saved the original (max and min do). */
static lunet_status indices_to_lua(lunet_tensor **indices) {
    int64_t one = 1;
    lunet_tensor *base, *shifted = NULL;
    lunet_status s = lunet_tensor_from_data(&base, LUNET_DTYPE_I64, 0, NULL, &one);
    if (s == LUNET_OK) s = lunet_tensor_add(&shifted, *indices, base);
    lunet_tensor_release(base);
    lunet_tensor_release(*indices);
    *indices = shifted;
    return s;
}

typedef lunet_status (*reduce_all_op)(lunet_tensor **, const lunet_tensor *);
typedef lunet_status (*reduce_dim_op)(lunet_tensor **, const lunet_tensor *, int, bool);

static int reduce(lua_State *L, reduce_all_op all, reduce_dim_op one, const char *name, bool indices) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    lunet_status s = lua_isnoneornil(L, 2)
                         ? all(&out, t)
                         : one(&out, t, dim_arg(L, 2, lunet_tensor_ndim(t), 0, name), lua_toboolean(L, 3));
    if (s == LUNET_OK && indices) s = indices_to_lua(&out);
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

static int m_sum(lua_State *L) { return reduce(L, lunet_tensor_sum_all, lunet_tensor_sum_dim, "sum", false); }
static int m_mean(lua_State *L) { return reduce(L, lunet_tensor_mean_all, lunet_tensor_mean_dim, "mean", false); }
static int m_argmax(lua_State *L) { return reduce(L, lunet_tensor_argmax_all, lunet_tensor_argmax_dim, "argmax", true); }
static int m_argmin(lua_State *L) { return reduce(L, lunet_tensor_argmin_all, lunet_tensor_argmin_dim, "argmin", true); }

/* max() is a 0-d tensor; max(dim) returns values and 1-based indices, like torch.max(dim). */
static int extreme(lua_State *L, bool want_max) {
    const char *name = want_max ? "max" : "min";
    lunet_tensor *t = tensor_check(L, 1), *values, *indices;
    if (lua_isnoneornil(L, 2)) {
        lunet_status s = want_max ? lunet_tensor_max_all(&values, t) : lunet_tensor_min_all(&values, t);
        if (s != LUNET_OK) return raise_status(L);
        tensor_push_new(L, values);
        return 1;
    }
    int d = dim_arg(L, 2, lunet_tensor_ndim(t), 0, name);
    bool keep = lua_toboolean(L, 3);
    lunet_status s = want_max ? lunet_tensor_max_dim(&values, &indices, t, d, keep)
                              : lunet_tensor_min_dim(&values, &indices, t, d, keep);
    if (s == LUNET_OK) s = indices_to_lua(&indices);
    if (s != LUNET_OK) {
        lunet_tensor_release(values);
        return raise_status(L);
    }
    tensor_push_new(L, values);
    tensor_push_new(L, indices);
    return 2;
}

static int m_max(lua_State *L) { return extreme(L, true); }
static int m_min(lua_State *L) { return extreme(L, false); }

/* ---- indexing and counting ------------------------------------------------------------------------- */

/* A new i64 tensor holding the 0-based form of 1-based Lua indices. */
static lunet_tensor *zero_based(lua_State *L, int idx, const char *op) {
    lunet_tensor *lua_indices = tensor_test(L, idx), *one = NULL, *shifted = NULL;
    if (!lua_indices) luaL_error(L, "%s: indices must be a tensor (1-based integers), got %s", op, luaL_typename(L, idx));
    int64_t v = 1;
    lunet_status s = lunet_tensor_from_data(&one, LUNET_DTYPE_I64, 0, NULL, &v);
    if (s == LUNET_OK) s = lunet_tensor_sub(&shifted, lua_indices, one);
    lunet_tensor_release(one);
    if (s != LUNET_OK) raise_status(L);
    tensor_push_new(L, shifted); /* the stack owns it */
    return shifted;
}

/* t:index_select(dim, indices): slices at 1-based positions. */
static int m_index_select(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    int d = dim_arg(L, 2, lunet_tensor_ndim(t), 0, "index_select");
    lunet_tensor *indices = zero_based(L, 3, "index_select");
    lunet_status s = lunet_tensor_index_select(&out, t, d, indices);
    if (s == LUNET_ERR_INDEX) /* restate the C message in Lua's 1-based terms */
        return luaL_error(L, "index_select: an index is out of range 1..%I for dim %d",
                          (lua_Integer)lunet_tensor_shape(t)[d], d + 1);
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

/* t:bincount([minlength]): out[v] counts the elements equal to v, for values 1, 2, ... */
static int m_bincount(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1), *out;
    lua_Integer minlength = luaL_optinteger(L, 2, 0);
    lunet_tensor *shifted = zero_based(L, 1, "bincount");
    if (lunet_tensor_numel(t) > 0) {
        lunet_tensor *lowest;
        if (lunet_tensor_min_all(&lowest, shifted) != LUNET_OK) return raise_status(L);
        int64_t low = 0;
        lunet_tensor_item_i64(&low, lowest);
        lunet_tensor_release(lowest);
        if (low < 0) return luaL_error(L, "bincount: values must be >= 1 (categories count from 1), found %I", (lua_Integer)(low + 1));
    }
    if (lunet_tensor_bincount(&out, shifted, minlength) != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

/* ---- elements and in-place writes ------------------------------------------------------------------ */

static void read_index(lua_State *L, const lunet_tensor *t, int first, int count, int64_t *index, const char *op) {
    int n = lunet_tensor_ndim(t);
    if (count != n) luaL_error(L, "%s: %d indices given for a %d-d tensor", op, count, n);
    for (int d = 0; d < n; d++) index[d] = index_arg(L, first + d, lunet_tensor_shape(t)[d], d + 1, op);
}

static int m_get(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    int64_t index[LUNET_MAX_DIMS];
    read_index(L, t, 2, lua_gettop(L) - 1, index, "get");
    if (lunet_dtype_is_float(lunet_tensor_dtype(t))) {
        double v;
        if (lunet_tensor_get_f64(&v, t, index) != LUNET_OK) return raise_status(L);
        lua_pushnumber(L, v);
    } else {
        int64_t v;
        if (lunet_tensor_get_i64(&v, t, index) != LUNET_OK) return raise_status(L);
        lua_pushinteger(L, v);
    }
    return 1;
}

static int m_set(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    int top = lua_gettop(L);
    int64_t index[LUNET_MAX_DIMS];
    read_index(L, t, 2, top - 2, index, "set");
    lunet_status s;
    if (lua_isinteger(L, top)) s = lunet_tensor_set_i64(t, index, lua_tointeger(L, top));
    else s = lunet_tensor_set_f64(t, index, luaL_checknumber(L, top));
    if (s != LUNET_OK) return raise_status(L);
    lua_settop(L, 1);
    return 1;
}

static int m_item(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lunet_dtype_is_float(lunet_tensor_dtype(t))) {
        double v;
        if (lunet_tensor_item_f64(&v, t) != LUNET_OK) return raise_status(L);
        lua_pushnumber(L, v);
    } else {
        int64_t v;
        if (lunet_tensor_item_i64(&v, t) != LUNET_OK) return raise_status(L);
        lua_pushinteger(L, v);
    }
    return 1;
}

static int m_totable(lua_State *L) {
    push_table(L, tensor_check(L, 1));
    return 1;
}

static int m_fill(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lunet_tensor_fill(t, luaL_checknumber(L, 2)) != LUNET_OK) return raise_status(L);
    lua_settop(L, 1);
    return 1;
}

static int m_zero(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lunet_tensor_fill(t, 0) != LUNET_OK) return raise_status(L);
    lua_settop(L, 1);
    return 1;
}

static int m_copy(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    lunet_tensor *src = operand_arg(L, 2, t, "copy");
    if (lunet_tensor_copy(t, src) != LUNET_OK) return raise_status(L);
    lua_settop(L, 1);
    return 1;
}

/* ---- shape queries ------------------------------------------------------------------------------- */

static int m_shape(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    push_int_list(L, lunet_tensor_ndim(t), lunet_tensor_shape(t));
    return 1;
}

static int m_size(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) return m_shape(L);
    lua_pushinteger(L, lunet_tensor_shape(t)[dim_arg(L, 2, lunet_tensor_ndim(t), 0, "size")]);
    return 1;
}

static int m_stride(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        push_int_list(L, lunet_tensor_ndim(t), lunet_tensor_strides(t));
        return 1;
    }
    lua_pushinteger(L, lunet_tensor_strides(t)[dim_arg(L, 2, lunet_tensor_ndim(t), 0, "stride")]);
    return 1;
}

static int m_dim(lua_State *L) {
    lua_pushinteger(L, lunet_tensor_ndim(tensor_check(L, 1)));
    return 1;
}

static int m_numel(lua_State *L) {
    lua_pushinteger(L, lunet_tensor_numel(tensor_check(L, 1)));
    return 1;
}

static int m_is_contiguous(lua_State *L) {
    lua_pushboolean(L, lunet_tensor_is_contiguous(tensor_check(L, 1)));
    return 1;
}

static int m_version(lua_State *L) {
    lua_pushinteger(L, lunet_tensor_version(tensor_check(L, 1)));
    return 1;
}

static int m_shares_storage(lua_State *L) {
    lua_pushboolean(L, lunet_tensor_shares_storage(tensor_check(L, 1), tensor_check(L, 2)));
    return 1;
}

/* ---- autograd --------------------------------------------------------------------------------------- */

/* backward([grad], [{retain_graph = bool}]) */
static int m_backward(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    int opts = 2;
    lunet_tensor *grad = NULL;
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) {
        grad = operand_arg(L, 2, t, "backward");
        opts = 3;
    } else if (lua_isnil(L, 2)) {
        opts = 3;
    }
    opt_field(L, opts, "retain_graph");
    bool retain = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lunet_tensor_backward(t, grad, retain) != LUNET_OK) return raise_status(L);
    return 0;
}

static int m_requires_grad_(lua_State *L) {
    lunet_tensor *t = tensor_check(L, 1);
    bool flag = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    if (lunet_tensor_set_requires_grad(t, flag) != LUNET_OK) return raise_status(L);
    lua_settop(L, 1);
    return 1;
}

/* Zeroes the gradient in place (it stays allocated for the next backward). */
static int m_zero_grad(lua_State *L) {
    lunet_tensor *g = lunet_tensor_grad(tensor_check(L, 1));
    if (g && lunet_tensor_fill(g, 0) != LUNET_OK) return raise_status(L);
    return 0;
}

void tensor_methods_register(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"neg", m_neg}, {"abs", m_abs}, {"relu", m_relu}, {"exp", m_exp}, {"log", m_log}, {"sqrt", m_sqrt},
        {"sigmoid", m_sigmoid}, {"tanh", m_tanh}, {"clamp", m_clamp},
        {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow},
        {"eq", m_eq}, {"ne", m_ne}, {"lt", m_lt}, {"le", m_le}, {"gt", m_gt}, {"ge", m_ge},
        {"matmul", m_matmul},
        {"clone", m_clone}, {"contiguous", m_contiguous}, {"detach", m_detach}, {"to", m_to},
        {"view", m_view}, {"reshape", m_reshape}, {"expand", m_expand}, {"expand_as", m_expand_as},
        {"transpose", m_transpose}, {"permute", m_permute}, {"narrow", m_narrow}, {"slice", m_slice},
        {"select", m_select}, {"squeeze", m_squeeze}, {"unsqueeze", m_unsqueeze}, {"flatten", m_flatten},
        {"sum", m_sum}, {"mean", m_mean}, {"max", m_max}, {"min", m_min}, {"argmax", m_argmax},
        {"argmin", m_argmin},
        {"get", m_get}, {"set", m_set}, {"item", m_item}, {"totable", m_totable},
        {"fill", m_fill}, {"zero", m_zero}, {"copy", m_copy},
        {"shape", m_shape}, {"size", m_size}, {"stride", m_stride}, {"dim", m_dim}, {"numel", m_numel},
        {"is_contiguous", m_is_contiguous}, {"shares_storage", m_shares_storage}, {"version", m_version},
        {"index_select", m_index_select}, {"bincount", m_bincount},
        {"backward", m_backward}, {"requires_grad_", m_requires_grad_}, {"zero_grad", m_zero_grad},
        {NULL, NULL}};
    register_functions(L, methods);
}

/* The arithmetic metamethods, set on the metatable by luaopen_lunet_core. */
void tensor_metamethods_register(lua_State *L) {
    static const luaL_Reg meta[] = {{"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul}, {"__div", m_div},
                                    {"__pow", m_pow}, {"__unm", m_unm}, {NULL, NULL}};
    register_functions(L, meta);
}
