/*
 * nn_linear.c: the fully connected layer, y = x W^T + b, as one GEMM.
 * The bias is written into y first and the GEMM accumulates onto it (beta = 1), so the
 * forward is a single pass over y; the backward is two GEMMs and a column sum.
 */
#include "internal.h"

#include <string.h>

/* db (O) = column sums of g (M, O). */
#define COLUMN_SUMS(T)                                                                     \
    static void column_sums_##T(T *db, const T *g, int64_t m, int64_t o) {                \
        memset(db, 0, (size_t)o * sizeof(T));                                              \
        for (int64_t i = 0; i < m; i++)                                                    \
            for (int64_t j = 0; j < o; j++) db[j] += g[i * o + j];                         \
    }
COLUMN_SUMS(float)
COLUMN_SUMS(double)

static lunet_status linear_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->saved[0], *w = node->saved[1];
    int64_t o = w->shape[0], in = w->shape[1], m = x->numel / (in ? in : 1);
    lunet_tensor *g;
    LUNET_TRY(lunet__contiguous_nograd(&g, grad));
    lunet_status s = LUNET_OK;
    if (node->inputs[0]) { /* dx = g W */
        s = lunet__tensor_new(&grad_in[0], x->dtype, x->ndim, x->shape, "linear backward");
        if (s == LUNET_OK)
            lunet__gemm(LUNET__SPLIT_ANY, x->dtype, false, false, m, in, o, 1, lunet__data(g), o, lunet__data(w), in, 0,
                        lunet__data(grad_in[0]), in);
    }
    if (s == LUNET_OK && node->inputs[1]) { /* dW = g^T x */
        s = lunet__tensor_new(&grad_in[1], w->dtype, 2, w->shape, "linear backward");
        if (s == LUNET_OK)
            lunet__gemm(LUNET__SPLIT_ROWS, w->dtype, true, false, o, in, m, 1, lunet__data(g), o, lunet__data(x), in, 0,
                        lunet__data(grad_in[1]), in);
    }
    if (s == LUNET_OK && node->inputs[2]) { /* db = sum of g over rows */
        s = lunet__tensor_new(&grad_in[2], w->dtype, 1, &o, "linear backward");
        if (s == LUNET_OK) {
            if (w->dtype == LUNET_DTYPE_F32) column_sums_float(lunet_tensor_data(grad_in[2]), lunet_tensor_data(g), m, o);
            else column_sums_double(lunet_tensor_data(grad_in[2]), lunet_tensor_data(g), m, o);
        }
    }
    lunet_tensor_release(g);
    return s;
}

lunet_status lunet_linear(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                          const lunet_tensor *bias) {
    *out = NULL;
    const lunet_tensor *operands[3] = {x, weight, bias};
    static const char *const names[3] = {"input", "weight", "bias"};
    LUNET_TRY(lunet__check_float_operands("linear", 3, operands, names));
    char sx[LUNET__SHAPE_BUF], sw[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
    if (weight->ndim != 2)
        return lunet__fail(LUNET_ERR_SHAPE, "linear: weight must be (out_features, in_features), got %s",
                           lunet__shape_str(sw, sizeof sw, weight));
    int64_t o = weight->shape[0], in = weight->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        return lunet__fail(LUNET_ERR_SHAPE, "linear: input %s does not end in in_features %lld of weight %s",
                           lunet__shape_str(sx, sizeof sx, x), (long long)in, lunet__shape_str(sw, sizeof sw, weight));
    if (bias && (bias->ndim != 1 || bias->shape[0] != o))
        return lunet__fail(LUNET_ERR_SHAPE, "linear: bias %s does not match out_features %lld",
                           lunet__shape_str(sb, sizeof sb, bias), (long long)o);
    int64_t shape[LUNET_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = o;
    int64_t m = in ? x->numel / in : lunet__numel(x->ndim - 1, x->shape);
    lunet_tensor *xc = NULL, *wc = NULL, *y = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&wc, weight);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, x->ndim, shape, "linear");
    if (s == LUNET_OK && y->numel > 0) {
        size_t row = (size_t)o * lunet_dtype_size(x->dtype);
        lunet_tensor *bc = NULL;
        if (bias) s = lunet__contiguous_nograd(&bc, bias);
        for (int64_t i = 0; s == LUNET_OK && bias && i < m; i++) memcpy(lunet__data(y) + (size_t)i * row, lunet__data(bc), row);
        lunet_tensor_release(bc);
        if (s == LUNET_OK && in == 0 && !bias) memset(lunet__data(y), 0, (size_t)m * row);
        if (s == LUNET_OK && in > 0)
            lunet__gemm(LUNET__SPLIT_COLS, x->dtype, false, true, m, o, in, 1, lunet__data(xc), in, lunet__data(wc), in, bias ? 1 : 0,
                        lunet__data(y), o);
    }
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = lunet__record_or_release(&node, &y, "LinearBackward", linear_backward, 3, operands);
    if (s == LUNET_OK && node) s = lunet__save_all(node, 2, (const lunet_tensor *[]){xc, wc});
    lunet_tensor_release(xc);
    lunet_tensor_release(wc);
    return lunet__hand_over(out, y, s);
}
