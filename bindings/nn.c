/*
 * nn.c: the neural-network ops (lunet.nn.functional in Lua).  Options come as tables with
 * PyTorch's names; sizes may be a number or a {height, width} pair.  Class targets arrive
 * 1-based and are shifted to the C API's 0-based indices here.
 */
#include "binding.h"

#include <math.h>
#include <string.h>

/* A size option: a number n gives (n, n), a table {h, w} gives (h, w); absent gives dflt. */
static void pair_option(lua_State *L, int opts, const char *name, int64_t out[2], int64_t dflt0, int64_t dflt1,
                        const char *op) {
    out[0] = dflt0;
    out[1] = dflt1;
    int type = opt_field(L, opts, name);
    if (type == LUA_TNUMBER) {
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "%s: %s must be an integer or a {height, width} pair", op, name);
        out[0] = out[1] = v;
    } else if (type == LUA_TTABLE) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, -1, i + 1);
            int ok;
            out[i] = lua_tointegerx(L, -1, &ok);
            if (!ok) luaL_error(L, "%s: %s must be an integer or a {height, width} pair", op, name);
            lua_pop(L, 1);
        }
    } else if (type != LUA_TNIL) {
        luaL_error(L, "%s: %s must be an integer or a {height, width} pair, not %s", op, name, lua_typename(L, type));
    }
    lua_pop(L, 1);
}

static double number_option(lua_State *L, int opts, const char *name, double dflt) {
    int type = opt_field(L, opts, name);
    double v = type == LUA_TNIL ? dflt : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static bool boolean_option(lua_State *L, int opts, const char *name, bool dflt) {
    int type = opt_field(L, opts, name);
    bool v = type == LUA_TNIL ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static lunet_reduction reduction_option(lua_State *L, int opts, const char *op) {
    int type = opt_field(L, opts, "reduction");
    const char *name = type == LUA_TNIL ? "mean" : lua_tostring(L, -1);
    lunet_reduction r;
    if (name && strcmp(name, "mean") == 0) r = LUNET_REDUCTION_MEAN;
    else if (name && strcmp(name, "sum") == 0) r = LUNET_REDUCTION_SUM;
    else if (name && strcmp(name, "none") == 0) r = LUNET_REDUCTION_NONE;
    else {
        luaL_error(L, "%s: reduction must be \"mean\", \"sum\" or \"none\", not %s", op, name ? name : "?");
        return LUNET_REDUCTION_MEAN; /* not reached: luaL_error does not return */
    }
    lua_pop(L, 1);
    return r;
}

int push_op_result(lua_State *L, lunet_tensor **out, lunet_status s) {
    if (s != LUNET_OK) return raise_status(L);
    tensor_push_new(L, *out);
    return 1;
}

/* linear(x, weight, [bias]) */
static int f_linear(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_linear(&out, tensor_check(L, 1), tensor_check(L, 2), tensor_opt(L, 3)));
}

lunet_conv2d_params conv2d_params_arg(lua_State *L, int idx, const char *op) {
    lunet_conv2d_params p;
    pair_option(L, idx, "stride", p.stride, 1, 1, op);
    pair_option(L, idx, "padding", p.padding, 0, 0, op);
    pair_option(L, idx, "dilation", p.dilation, 1, 1, op);
    p.groups = (int64_t)number_option(L, idx, "groups", 1);
    return p;
}

/* conv2d(x, weight, [bias], [{stride, padding, dilation, groups}]) */
static int f_conv2d(lua_State *L) {
    lunet_tensor *x = tensor_check(L, 1), *w = tensor_check(L, 2), *b = tensor_opt(L, 3), *out = NULL;
    lunet_conv2d_params p = conv2d_params_arg(L, 4, "conv2d");
    return push_op_result(L, &out, lunet_conv2d(&out, x, w, b, &p));
}

/* max_pool2d / avg_pool2d (x, {kernel_size, stride = kernel_size, padding, dilation, ceil_mode, count_include_pad}) */
lunet_pool2d_params pool2d_params_arg(lua_State *L, int idx, const char *op) {
    lunet_pool2d_params p;
    if (opt_field(L, idx, "kernel_size") == LUA_TNIL) luaL_error(L, "%s: kernel_size is required", op);
    lua_pop(L, 1);
    pair_option(L, idx, "kernel_size", p.kernel, 1, 1, op);
    pair_option(L, idx, "stride", p.stride, p.kernel[0], p.kernel[1], op);
    pair_option(L, idx, "padding", p.padding, 0, 0, op);
    pair_option(L, idx, "dilation", p.dilation, 1, 1, op);
    p.ceil_mode = boolean_option(L, idx, "ceil_mode", false);
    p.count_include_pad = boolean_option(L, idx, "count_include_pad", true);
    return p;
}

static int f_max_pool2d(lua_State *L) {
    lunet_tensor *x = tensor_check(L, 1), *out = NULL;
    lunet_pool2d_params p = pool2d_params_arg(L, 2, "max_pool2d");
    return push_op_result(L, &out, lunet_max_pool2d(&out, x, &p));
}

static int f_avg_pool2d(lua_State *L) {
    lunet_tensor *x = tensor_check(L, 1), *out = NULL;
    lunet_pool2d_params p = pool2d_params_arg(L, 2, "avg_pool2d");
    return push_op_result(L, &out, lunet_avg_pool2d(&out, x, &p));
}

/* adaptive_avg_pool2d(x, size or {h, w}) */
static int f_adaptive_avg_pool2d(lua_State *L) {
    lunet_tensor *x = tensor_check(L, 1), *out = NULL;
    int64_t size[2];
    lua_newtable(L);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "output_size");
    pair_option(L, lua_gettop(L), "output_size", size, 1, 1, "adaptive_avg_pool2d");
    return push_op_result(L, &out, lunet_adaptive_avg_pool2d(&out, x, size[0], size[1]));
}

/* batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps) */
static int f_batch_norm(lua_State *L) {
    lunet_tensor *x = tensor_check(L, 1), *out = NULL;
    lunet_tensor *rm = tensor_opt(L, 2), *rv = tensor_opt(L, 3), *w = tensor_opt(L, 4), *b = tensor_opt(L, 5);
    bool training = lua_toboolean(L, 6);
    double momentum = luaL_optnumber(L, 7, 0.1), eps = luaL_optnumber(L, 8, 1e-5);
    return push_op_result(L, &out, lunet_batch_norm(&out, x, rm, rv, w, b, training, momentum, eps));
}

static int f_leaky_relu(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_leaky_relu(&out, tensor_check(L, 1), luaL_optnumber(L, 2, 0.01)));
}

/* gelu(x, [approximate = "none" | "tanh"]) */
static int f_gelu(lua_State *L) {
    const char *approximate = luaL_optstring(L, 2, "none");
    if (strcmp(approximate, "none") != 0 && strcmp(approximate, "tanh") != 0)
        return luaL_error(L, "gelu: approximate must be \"none\" or \"tanh\", not %s", approximate);
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_gelu(&out, tensor_check(L, 1), strcmp(approximate, "tanh") == 0));
}

static int softmax_like(lua_State *L, lunet_status (*fn)(lunet_tensor **, const lunet_tensor *, int), const char *op) {
    lunet_tensor *x = tensor_check(L, 1), *out = NULL;
    int dim = lua_isnoneornil(L, 2) ? lunet_tensor_ndim(x) - 1 : dim_arg(L, 2, lunet_tensor_ndim(x), 0, op);
    return push_op_result(L, &out, fn(&out, x, dim));
}

static int f_softmax(lua_State *L) { return softmax_like(L, lunet_softmax, "softmax"); }
static int f_log_softmax(lua_State *L) { return softmax_like(L, lunet_log_softmax, "log_softmax"); }

/* dropout(x, p, [mask]) */
static int f_dropout(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_dropout(&out, tensor_check(L, 1), luaL_checknumber(L, 2), tensor_opt(L, 3)));
}

/* ---- losses ------------------------------------------------------------------------------------- */

/* Checks 1-based targets against num_classes (ignore_index excepted) and returns them 0-based
 * (a new tensor, owned by the stack). */
static lunet_tensor *class_targets(lua_State *L, lunet_tensor *targets, int64_t classes, bool has_ignore,
                                   int64_t ignore, const char *op) {
    if (lunet_dtype_is_float(lunet_tensor_dtype(targets)) || lunet_tensor_ndim(targets) != 1)
        luaL_error(L, "%s: targets must be a 1-d integer tensor of class indices (1..%I)", op, (lua_Integer)classes);
    lunet_tensor *i64 = NULL;
    if (lunet_tensor_to(&i64, targets, LUNET_DTYPE_I64) != LUNET_OK) raise_status(L);
    lunet_tensor *c = NULL;
    lunet_status s = lunet_tensor_contiguous(&c, i64);
    lunet_tensor_release(i64);
    if (s != LUNET_OK) raise_status(L);
    lunet_tensor *shifted = NULL;
    s = lunet_tensor_clone(&shifted, c);
    lunet_tensor_release(c);
    if (s != LUNET_OK) raise_status(L);
    tensor_push_new(L, shifted);
    int64_t *p = lunet_tensor_data(shifted);
    for (int64_t i = 0, n = lunet_tensor_numel(shifted); i < n; i++) {
        if (!(has_ignore && p[i] == ignore) && (p[i] < 1 || p[i] > classes))
            luaL_error(L, "%s: target %I at position %I is out of range 1..%I", op, (lua_Integer)p[i], (lua_Integer)(i + 1),
                       (lua_Integer)classes);
        p[i] -= 1; /* ignored targets too: the C call gets ignore_index - 1 */
    }
    return shifted;
}

/* cross_entropy / nll_loss (input, targets, [{weight, label_smoothing, reduction, ignore_index}]) */
static int class_loss(lua_State *L, bool log_probs) {
    const char *op = log_probs ? "nll_loss" : "cross_entropy";
    lunet_tensor *x = tensor_check(L, 1), *targets = tensor_check(L, 2), *out = NULL;
    if (lunet_tensor_ndim(x) != 2) luaL_error(L, "%s: input must be (N, C)", op);
    lunet_class_loss_options o = {0};
    o.reduction = reduction_option(L, 3, op);
    o.label_smoothing = number_option(L, 3, "label_smoothing", 0);
    if (opt_field(L, 3, "weight") != LUA_TNIL) o.weight = tensor_check(L, -1);
    lua_pop(L, 1);
    int64_t lua_ignore = 0;
    if (opt_field(L, 3, "ignore_index") != LUA_TNIL) {
        o.has_ignore_index = true;
        lua_ignore = luaL_checkinteger(L, -1);
        o.ignore_index = lua_ignore - 1; /* the targets are shifted by one below */
    }
    lua_pop(L, 1);
    lunet_tensor *t = class_targets(L, targets, lunet_tensor_shape(x)[1], o.has_ignore_index, lua_ignore, op);
    lunet_status s = log_probs ? lunet_nll_loss(&out, x, t, &o) : lunet_cross_entropy(&out, x, t, &o);
    return push_op_result(L, &out, s);
}

static int f_cross_entropy(lua_State *L) { return class_loss(L, false); }
static int f_nll_loss(lua_State *L) { return class_loss(L, true); }

/* mse_loss / l1_loss (input, target, [{reduction}]) */
static int f_mse_loss(lua_State *L) {
    lunet_tensor *out = NULL;
    lunet_reduction r = reduction_option(L, 3, "mse_loss");
    return push_op_result(L, &out, lunet_mse_loss(&out, tensor_check(L, 1), tensor_check(L, 2), r));
}

static int f_l1_loss(lua_State *L) {
    lunet_tensor *out = NULL;
    lunet_reduction r = reduction_option(L, 3, "l1_loss");
    return push_op_result(L, &out, lunet_l1_loss(&out, tensor_check(L, 1), tensor_check(L, 2), r));
}

/* bce_with_logits(input, target, [{pos_weight, reduction}]) */
static int f_bce_with_logits(lua_State *L) {
    lunet_tensor *out = NULL, *pw = NULL;
    lunet_reduction r = reduction_option(L, 3, "bce_with_logits");
    if (opt_field(L, 3, "pos_weight") != LUA_TNIL) pw = tensor_check(L, -1);
    lua_pop(L, 1);
    return push_op_result(L, &out, lunet_bce_with_logits(&out, tensor_check(L, 1), tensor_check(L, 2), pw, r));
}

void nn_functions_register(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"linear", f_linear},         {"conv2d", f_conv2d},           {"max_pool2d", f_max_pool2d},
        {"avg_pool2d", f_avg_pool2d}, {"adaptive_avg_pool2d", f_adaptive_avg_pool2d},
        {"batch_norm", f_batch_norm}, {"leaky_relu", f_leaky_relu},   {"gelu", f_gelu},
        {"softmax", f_softmax},       {"log_softmax", f_log_softmax}, {"dropout", f_dropout},
        {"cross_entropy", f_cross_entropy}, {"nll_loss", f_nll_loss}, {"mse_loss", f_mse_loss},
        {"l1_loss", f_l1_loss},       {"bce_with_logits", f_bce_with_logits}, {NULL, NULL}};
    register_functions(L, funcs);
}
