/*
 * optim.c: the optimizer steps and clip_grad_norm, exposed to lua/lunet/optim/.
 *
 *     core.sgd_step(params, momentum_buffers_or_nil, step, options)
 *     core.adam_step(params, exp_avg, exp_avg_sq, max_exp_avg_sq_or_nil, step, options)
 *     core.rmsprop_step(params, square_avg, momentum_buffers_or_nil, grad_avg_or_nil, options)
 *     core.clip_grad_norm(params, max_norm, [norm_type = 2]) -> total norm
 *
 * params and the state arguments are Lua lists of lunet.Tensor of one length; options tables
 * use torch.optim's names (lr, momentum, betas = {beta1, beta2}, ...).  The C arrays handed to
 * the core live in userdata, so an error raised halfway leaves nothing to free; the tensors
 * in them are borrowed from the lists, which stay on the stack for the whole call.
 */
#include "binding.h"

#include <math.h>
#include <string.h>

/* The tensors of the list at idx as a C array (NULL for an optional argument that is nil).
 * expected is the length the list must have, or -1 to accept any; *count receives it. */
static lunet_tensor **tensor_list(lua_State *L, int idx, lua_Integer expected, bool optional, const char *op,
                                  const char *name, size_t *count) {
    if (optional && lua_isnoneornil(L, idx)) return NULL;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: %s must be a list of lunet.Tensor, got %s", op, name, luaL_typename(L, idx));
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (expected >= 0 && n != expected)
        luaL_error(L, "%s: %s has %I entries but params has %I", op, name, n, expected);
    lunet_tensor **list = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *list, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        list[i - 1] = tensor_test(L, -1);
        if (!list[i - 1])
            luaL_error(L, "%s: %s[%I] is %s, not a lunet.Tensor", op, name, i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    *count = (size_t)n;
    return list;
}

static void check_options(lua_State *L, int idx, const char *op) {
    if (!lua_istable(L, idx)) luaL_error(L, "%s: options must be a table, got %s", op, luaL_typename(L, idx));
}

/* Field name of the options table at idx: a number, dflt when absent (NaN: required). */
static double number_option(lua_State *L, int idx, const char *op, const char *name, double dflt) {
    int type = lua_getfield(L, idx, name);
    double v = dflt;
    if (type == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (type != LUA_TNIL)
        luaL_error(L, "%s: option %s must be a number, got %s", op, name, lua_typename(L, type));
    else if (isnan(dflt))
        luaL_error(L, "%s: option %s is required", op, name);
    lua_pop(L, 1);
    return v;
}

static bool bool_option(lua_State *L, int idx, const char *op, const char *name) {
    int type = lua_getfield(L, idx, name);
    if (type != LUA_TNIL && type != LUA_TBOOLEAN)
        luaL_error(L, "%s: option %s must be a boolean, got %s", op, name, lua_typename(L, type));
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int64_t step_arg(lua_State *L, int idx, const char *op) {
    int ok;
    lua_Integer step = lua_tointegerx(L, idx, &ok);
    if (!ok) luaL_error(L, "%s: step must be an integer, got %s", op, luaL_typename(L, idx));
    return (int64_t)step;
}

/* sgd_step(params, momentum_buffers_or_nil, step, {lr, momentum, dampening, weight_decay,
 * nesterov, maximize}) */
static int f_sgd_step(lua_State *L) {
    const char *op = "sgd_step";
    size_t n, nb;
    lunet_tensor **params = tensor_list(L, 1, -1, false, op, "params", &n);
    lunet_tensor **buffers = tensor_list(L, 2, (lua_Integer)n, true, op, "momentum_buffers", &nb);
    int64_t step = step_arg(L, 3, op);
    check_options(L, 4, op);
    lunet_sgd_options o = {
        .lr = number_option(L, 4, op, "lr", NAN),
        .momentum = number_option(L, 4, op, "momentum", 0),
        .dampening = number_option(L, 4, op, "dampening", 0),
        .weight_decay = number_option(L, 4, op, "weight_decay", 0),
        .nesterov = bool_option(L, 4, op, "nesterov"),
        .maximize = bool_option(L, 4, op, "maximize"),
    };
    if (lunet_sgd_step(params, buffers, n, step, &o) != LUNET_OK) return raise_status(L);
    return 0;
}

/* adam_step(params, exp_avg, exp_avg_sq, max_exp_avg_sq_or_nil, step, {lr, betas, eps,
 * weight_decay, amsgrad, maximize, decoupled_weight_decay}) */
static int f_adam_step(lua_State *L) {
    const char *op = "adam_step";
    size_t n, nm, nv, nmax;
    lunet_tensor **params = tensor_list(L, 1, -1, false, op, "params", &n);
    lunet_tensor **exp_avg = tensor_list(L, 2, (lua_Integer)n, false, op, "exp_avg", &nm);
    lunet_tensor **exp_avg_sq = tensor_list(L, 3, (lua_Integer)n, false, op, "exp_avg_sq", &nv);
    lunet_tensor **max_exp_avg_sq = tensor_list(L, 4, (lua_Integer)n, true, op, "max_exp_avg_sq", &nmax);
    int64_t step = step_arg(L, 5, op);
    check_options(L, 6, op);
    double betas[2] = {0.9, 0.999};
    if (lua_getfield(L, 6, "betas") != LUA_TNIL) {
        if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
            return luaL_error(L, "%s: option betas must be a list of two numbers {beta1, beta2}", op);
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (lua_type(L, -1) != LUA_TNUMBER)
                return luaL_error(L, "%s: option betas[%d] must be a number, got %s", op, i + 1,
                                  luaL_typename(L, -1));
            betas[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lunet_adam_options o = {
        .lr = number_option(L, 6, op, "lr", NAN),
        .beta1 = betas[0],
        .beta2 = betas[1],
        .eps = number_option(L, 6, op, "eps", 1e-8),
        .weight_decay = number_option(L, 6, op, "weight_decay", 0),
        .amsgrad = bool_option(L, 6, op, "amsgrad"),
        .decoupled_weight_decay = bool_option(L, 6, op, "decoupled_weight_decay"),
        .maximize = bool_option(L, 6, op, "maximize"),
    };
    if (lunet_adam_step(params, exp_avg, exp_avg_sq, max_exp_avg_sq, n, step, &o) != LUNET_OK)
        return raise_status(L);
    return 0;
}

/* rmsprop_step(params, square_avg, momentum_buffers_or_nil, grad_avg_or_nil, {lr, alpha, eps,
 * weight_decay, momentum, centered, maximize}) */
static int f_rmsprop_step(lua_State *L) {
    const char *op = "rmsprop_step";
    size_t n, ns, nb, ng;
    lunet_tensor **params = tensor_list(L, 1, -1, false, op, "params", &n);
    lunet_tensor **square_avg = tensor_list(L, 2, (lua_Integer)n, false, op, "square_avg", &ns);
    lunet_tensor **buffers = tensor_list(L, 3, (lua_Integer)n, true, op, "momentum_buffers", &nb);
    lunet_tensor **grad_avg = tensor_list(L, 4, (lua_Integer)n, true, op, "grad_avg", &ng);
    check_options(L, 5, op);
    lunet_rmsprop_options o = {
        .lr = number_option(L, 5, op, "lr", NAN),
        .alpha = number_option(L, 5, op, "alpha", 0.99),
        .eps = number_option(L, 5, op, "eps", 1e-8),
        .weight_decay = number_option(L, 5, op, "weight_decay", 0),
        .momentum = number_option(L, 5, op, "momentum", 0),
        .centered = bool_option(L, 5, op, "centered"),
        .maximize = bool_option(L, 5, op, "maximize"),
    };
    if (lunet_rmsprop_step(params, square_avg, buffers, grad_avg, n, &o) != LUNET_OK) return raise_status(L);
    return 0;
}

/* clip_grad_norm(params, max_norm, [norm_type = 2]) -> the norm before clipping.  norm_type
 * may be math.huge or "inf", as torch.nn.utils.clip_grad_norm_ accepts. */
static int f_clip_grad_norm(lua_State *L) {
    const char *op = "clip_grad_norm";
    size_t n;
    lunet_tensor **params = tensor_list(L, 1, -1, false, op, "params", &n);
    if (lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "%s: max_norm must be a number, got %s", op, luaL_typename(L, 2));
    double max_norm = lua_tonumber(L, 2), norm_type = 2;
    if (lua_type(L, 3) == LUA_TSTRING && strcmp(lua_tostring(L, 3), "inf") == 0)
        norm_type = INFINITY;
    else if (lua_type(L, 3) == LUA_TNUMBER)
        norm_type = lua_tonumber(L, 3);
    else if (!lua_isnoneornil(L, 3))
        return luaL_error(L, "%s: norm_type must be a number or \"inf\", got %s", op, luaL_typename(L, 3));
    double total;
    if (lunet_clip_grad_norm(&total, params, n, max_norm, norm_type) != LUNET_OK) return raise_status(L);
    lua_pushnumber(L, total);
    return 1;
}

void optim_functions_register(lua_State *L) {
    static const luaL_Reg funcs[] = {{"sgd_step", f_sgd_step},
                                     {"adam_step", f_adam_step},
                                     {"rmsprop_step", f_rmsprop_step},
                                     {"clip_grad_norm", f_clip_grad_norm},
                                     {NULL, NULL}};
    register_functions(L, funcs);
}
