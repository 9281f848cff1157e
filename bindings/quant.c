/*
 * quant.c: the int8 ops of lunet.h ("int8") for Lua.  Quantization parameters travel as plain
 * numbers (scale, zero_point); a quantized layer as a table of its tensors and output
 * parameters, the form lunet.nn's quantized modules and the model graph both pass:
 *
 *     {weight = i8, scale = f32, bias = i32 or nil, output_scale = s, output_zero_point = z, relu = bool}
 */
#include "binding.h"

/* (scale, zero_point) at idx, idx + 1. */
static lunet_qparams qparams_arg(lua_State *L, int idx) {
    return (lunet_qparams){(float)luaL_checknumber(L, idx), (int32_t)luaL_checkinteger(L, idx + 1)};
}

/* The layer table at idx; its tensors stay referenced by the table while the call runs. */
lunet_qlayer_params qlayer_arg(lua_State *L, int idx) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lunet_qlayer_params p = {0};
    lua_getfield(L, idx, "weight");
    p.weight = tensor_check(L, -1);
    lua_getfield(L, idx, "scale");
    p.scale = tensor_check(L, -1);
    lua_getfield(L, idx, "bias");
    p.bias = tensor_opt(L, -1);
    lua_getfield(L, idx, "output_scale");
    p.output.scale = (float)luaL_optnumber(L, -1, 1.0);
    lua_getfield(L, idx, "output_zero_point");
    p.output.zero_point = (int32_t)luaL_optinteger(L, -1, 0);
    lua_getfield(L, idx, "relu");
    p.relu = lua_toboolean(L, -1);
    lua_pop(L, 6);
    return p;
}

/* qparams_for_range(lo, hi) -> scale, zero_point */
static int f_qparams_for_range(lua_State *L) {
    lunet_qparams p = lunet_qparams_for_range(luaL_checknumber(L, 1), luaL_checknumber(L, 2));
    lua_pushnumber(L, p.scale);
    lua_pushinteger(L, p.zero_point);
    return 2;
}

/* quantize(x, scale, zero_point) -> u8 */
static int f_quantize(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_quantize(&out, tensor_check(L, 1), qparams_arg(L, 2)));
}

/* dequantize(q, scale, zero_point) -> f32 */
static int f_dequantize(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_dequantize(&out, tensor_check(L, 1), qparams_arg(L, 2)));
}

/* quantize_weight(w, bits) -> q (i8), scale (f32) */
static int f_quantize_weight(lua_State *L) {
    lunet_tensor *q = NULL, *scale = NULL;
    if (lunet_quantize_weight(&q, &scale, tensor_check(L, 1), (int)luaL_optinteger(L, 2, 8)) != LUNET_OK)
        return raise_status(L);
    tensor_push_new(L, q);
    tensor_push_new(L, scale);
    return 2;
}

/* quantize_bias(bias, x_scale, w_scale) -> i32 */
static int f_quantize_bias(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out,
                       lunet_quantize_bias(&out, tensor_check(L, 1), (float)luaL_checknumber(L, 2), tensor_check(L, 3)));
}

/* qlinear(x, x_scale, x_zero_point, layer) */
static int f_qlinear(lua_State *L) {
    lunet_tensor *out = NULL;
    lunet_qlayer_params p = qlayer_arg(L, 4);
    return push_op_result(L, &out, lunet_qlinear(&out, tensor_check(L, 1), qparams_arg(L, 2), &p));
}

/* qconv2d(x, x_scale, x_zero_point, layer, [{stride, padding, dilation}]) */
static int f_qconv2d(lua_State *L) {
    lunet_tensor *out = NULL;
    lunet_qlayer_params p = qlayer_arg(L, 4);
    lunet_conv2d_params c = conv2d_params_arg(L, 5, "qconv2d");
    return push_op_result(L, &out, lunet_qconv2d(&out, tensor_check(L, 1), qparams_arg(L, 2), &p, &c));
}

/* linear_dynamic(x, weight, scale, [bias], [relu]) */
static int f_linear_dynamic(lua_State *L) {
    lunet_tensor *out = NULL;
    return push_op_result(L, &out, lunet_linear_dynamic(&out, tensor_check(L, 1), tensor_check(L, 2), tensor_check(L, 3),
                                                     tensor_opt(L, 4), lua_toboolean(L, 5)));
}

void quant_functions_register(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"qparams_for_range", f_qparams_for_range}, {"quantize", f_quantize}, {"dequantize", f_dequantize},
        {"quantize_weight", f_quantize_weight},     {"quantize_bias", f_quantize_bias}, {"qlinear", f_qlinear},
        {"qconv2d", f_qconv2d},                     {"linear_dynamic", f_linear_dynamic}, {NULL, NULL}};
    register_functions(L, funcs);
}
