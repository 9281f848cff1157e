/*
 * nn_activation.c: leaky ReLU, GELU, softmax, log-softmax and dropout, with gradients.
 * Each forward is one pass over contiguous data; softmax and log-softmax see the input as
 * (outer, n, inner) with n the normalised dim and subtract the maximum first for stability.
 */
#include "internal.h"

#include <math.h>

#define SQRT_HALF 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794
#define SQRT_2_OVER_PI 0.79788456080286535588
#define GELU_CUBIC 0.044715

/* ---- elementwise activations ------------------------------------------------------------------ */

typedef enum { ACT_LEAKY_RELU, ACT_GELU, ACT_GELU_TANH } activation_kind;

/* y = f(x) (backward = false), or dx = f'(x) dy into y with dy given (backward = true). */
#define ACTIVATION_KERNEL(T)                                                               \
    static void activation_##T(T *y, const T *x, const T *dy, int64_t n, activation_kind kind, double slope) { \
        for (int64_t i = 0; i < n; i++) {                                                  \
            double v = x[i], out, d;                                                       \
            switch (kind) {                                                                \
            case ACT_LEAKY_RELU:                                                           \
                out = v > 0 ? v : slope * v;                                               \
                d = v > 0 ? 1 : slope;                                                     \
                break;                                                                     \
            case ACT_GELU: {                                                               \
                double cdf = 0.5 * (1 + erf(v * SQRT_HALF));                               \
                out = v * cdf;                                                             \
                d = cdf + v * INV_SQRT_2PI * exp(-0.5 * v * v);                            \
                break;                                                                     \
            }                                                                              \
            default: {                                                                     \
                double u = SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v), t = tanh(u);     \
                out = 0.5 * v * (1 + t);                                                   \
                d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * v * v); \
                break;                                                                     \
            }                                                                              \
            }                                                                              \
            y[i] = dy ? (T)(d * dy[i]) : (T)out;                                           \
        }                                                                                  \
    }
ACTIVATION_KERNEL(float)
ACTIVATION_KERNEL(double)

static void run_activation(lunet_tensor *y, const lunet_tensor *x, const lunet_tensor *dy, activation_kind kind,
                           double slope) {
    if (x->dtype == LUNET_DTYPE_F32)
        activation_float(lunet_tensor_data(y), lunet_tensor_data(x), dy ? lunet_tensor_data(dy) : NULL, x->numel, kind, slope);
    else
        activation_double(lunet_tensor_data(y), lunet_tensor_data(x), dy ? lunet_tensor_data(dy) : NULL, x->numel, kind, slope);
}

/* saved[0]: contiguous input; iarg[0]: kind; farg[0]: slope. */
static lunet_status activation_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->saved[0];
    lunet_tensor *dy;
    LUNET_TRY(lunet__contiguous_nograd(&dy, grad));
    lunet_status s = lunet__tensor_new(&grad_in[0], x->dtype, x->ndim, x->shape, "backward");
    if (s == LUNET_OK) run_activation(grad_in[0], x, dy, (activation_kind)node->iarg[0], node->farg[0]);
    lunet_tensor_release(dy);
    return s;
}

static lunet_status activation(lunet_tensor **out, const lunet_tensor *x, activation_kind kind, double slope,
                               const char *op, const char *grad_name) {
    *out = NULL;
    if (!lunet_dtype_is_float(x->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: input must be f32 or f64, not %s", op, lunet_dtype_name(x->dtype));
    lunet_tensor *xc = NULL, *y = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, x->ndim, x->shape, op);
    if (s == LUNET_OK) run_activation(y, xc, NULL, kind, slope);
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = lunet__record_or_release(&node, &y, grad_name, activation_backward, 1, &x);
    if (s == LUNET_OK && node) {
        node->iarg[0] = kind;
        node->farg[0] = slope;
        s = lunet__save(node, 0, xc);
    }
    lunet_tensor_release(xc);
    return lunet__hand_over(out, y, s);
}

lunet_status lunet_leaky_relu(lunet_tensor **out, const lunet_tensor *x, double negative_slope) {
    return activation(out, x, ACT_LEAKY_RELU, negative_slope, "leaky_relu", "LeakyReluBackward");
}

lunet_status lunet_gelu(lunet_tensor **out, const lunet_tensor *x, bool tanh_approximation) {
    return activation(out, x, tanh_approximation ? ACT_GELU_TANH : ACT_GELU, 0, "gelu", "GeluBackward");
}

/* ---- softmax and log-softmax --------------------------------------------------------------------- */

typedef struct split3 {
    int64_t outer, n, inner;
} split3;

#define SOFTMAX_KERNELS(T)                                                                 \
    /* y = softmax, or log_softmax when want_log, of x over the middle dim. */       \
    static void softmax_##T(T *y, const T *x, split3 d, bool want_log) {                        \
        for (int64_t o = 0; o < d.outer; o++)                                              \
            for (int64_t i = 0; i < d.inner; i++) {                                        \
                const T *p = x + o * d.n * d.inner + i;                                    \
                T *q = y + o * d.n * d.inner + i;                                          \
                double mx = -INFINITY, sum = 0;                                            \
                for (int64_t k = 0; k < d.n; k++) mx = p[k * d.inner] > mx ? p[k * d.inner] : mx; \
                for (int64_t k = 0; k < d.n; k++) sum += exp((double)p[k * d.inner] - mx); \
                double lse = mx + log(sum);                                                \
                for (int64_t k = 0; k < d.n; k++)                                          \
                    q[k * d.inner] = (T)(want_log ? (double)p[k * d.inner] - lse : exp((double)p[k * d.inner] - lse)); \
            }                                                                              \
    }                                                                                      \
    /* dx from dy and the saved output y: softmax dx = y (dy - sum(dy y)),                 \
     * log_softmax dx = dy - exp(y) sum(dy). */                                            \
    static void softmax_backward_##T(T *dx, const T *dy, const T *y, split3 d, bool want_log) { \
        for (int64_t o = 0; o < d.outer; o++)                                              \
            for (int64_t i = 0; i < d.inner; i++) {                                        \
                int64_t base = o * d.n * d.inner + i;                                      \
                double acc = 0;                                                            \
                for (int64_t k = 0; k < d.n; k++)                                          \
                    acc += want_log ? (double)dy[base + k * d.inner]                            \
                               : (double)dy[base + k * d.inner] * y[base + k * d.inner];   \
                for (int64_t k = 0; k < d.n; k++) {                                        \
                    int64_t j = base + k * d.inner;                                        \
                    dx[j] = want_log ? (T)(dy[j] - exp((double)y[j]) * acc) : (T)(y[j] * (dy[j] - acc)); \
                }                                                                          \
            }                                                                              \
    }
SOFTMAX_KERNELS(float)
SOFTMAX_KERNELS(double)

static split3 split_at(const lunet_tensor *t, int dim) {
    return (split3){lunet__numel(dim, t->shape), t->shape[dim], lunet__numel(t->ndim - dim - 1, t->shape + dim + 1)};
}

/* saved[0]: the output; iarg[0]: dim; iarg[1]: log. */
static lunet_status softmax_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *y = node->saved[0];
    lunet_tensor *dy;
    LUNET_TRY(lunet__contiguous_nograd(&dy, grad));
    lunet_status s = lunet__tensor_new(&grad_in[0], y->dtype, y->ndim, y->shape, "backward");
    if (s == LUNET_OK) {
        split3 d = split_at(y, (int)node->iarg[0]);
        if (y->dtype == LUNET_DTYPE_F32)
            softmax_backward_float(lunet_tensor_data(grad_in[0]), lunet_tensor_data(dy), lunet_tensor_data(y), d, node->iarg[1]);
        else
            softmax_backward_double(lunet_tensor_data(grad_in[0]), lunet_tensor_data(dy), lunet_tensor_data(y), d, node->iarg[1]);
    }
    lunet_tensor_release(dy);
    return s;
}

static lunet_status softmax_common(lunet_tensor **out, const lunet_tensor *x, int dim, bool log) {
    *out = NULL;
    const char *op = log ? "log_softmax" : "softmax";
    if (!lunet_dtype_is_float(x->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: input must be f32 or f64, not %s", op, lunet_dtype_name(x->dtype));
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, x->ndim, 0, op));
    lunet_tensor *xc = NULL, *y = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, x->ndim, x->shape, op);
    if (s == LUNET_OK) {
        if (x->dtype == LUNET_DTYPE_F32) softmax_float(lunet_tensor_data(y), lunet_tensor_data(xc), split_at(x, d), log);
        else softmax_double(lunet_tensor_data(y), lunet_tensor_data(xc), split_at(x, d), log);
    }
    lunet_tensor_release(xc);
    lunet__node *node = NULL;
    if (s == LUNET_OK)
        s = lunet__record_or_release(&node, &y, log ? "LogSoftmaxBackward" : "SoftmaxBackward", softmax_backward, 1, &x);
    if (s == LUNET_OK && node) {
        node->iarg[0] = d;
        node->iarg[1] = log;
        s = lunet__save(node, 0, y);
    }
    return lunet__hand_over(out, y, s);
}

lunet_status lunet_softmax(lunet_tensor **out, const lunet_tensor *x, int dim) { return softmax_common(out, x, dim, false); }
lunet_status lunet_log_softmax(lunet_tensor **out, const lunet_tensor *x, int dim) { return softmax_common(out, x, dim, true); }

/* ---- the same kernels on raw memory (the model graph) ----------------------------------------------- */

/* ReLU, sigmoid and tanh with the formulas of their pointwise ops (pointwise.c). */
#define SIMPLE_ACTIVATIONS(T, SIGMOID, TANH)                                               \
    LUNET_VECTORIZED static void relu_raw_##T(T *y, const T *x, int64_t n) {               \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0 ? (T)0 : x[i];                     \
    }                                                                                      \
    static void sigmoid_raw_##T(T *y, const T *x, int64_t n) {                             \
        for (int64_t i = 0; i < n; i++) y[i] = SIGMOID(x[i]);                              \
    }                                                                                      \
    static void tanh_raw_##T(T *y, const T *x, int64_t n) {                                \
        for (int64_t i = 0; i < n; i++) y[i] = TANH(x[i]);                                 \
    }
SIMPLE_ACTIVATIONS(float, lunet__sigmoid_f32, tanhf)
SIMPLE_ACTIVATIONS(double, lunet__sigmoid_f64, tanh)

void lunet__activation_forward(lunet__activation kind, lunet_dtype dtype, void *y, const void *x, int64_t n,
                               double slope) {
    bool f32 = dtype == LUNET_DTYPE_F32;
    switch (kind) {
    case LUNET__ACT_NONE:
        break;
    case LUNET__ACT_RELU:
        f32 ? relu_raw_float(y, x, n) : relu_raw_double(y, x, n);
        break;
    case LUNET__ACT_SIGMOID:
        f32 ? sigmoid_raw_float(y, x, n) : sigmoid_raw_double(y, x, n);
        break;
    case LUNET__ACT_TANH:
        f32 ? tanh_raw_float(y, x, n) : tanh_raw_double(y, x, n);
        break;
    default: {
        activation_kind k = kind == LUNET__ACT_LEAKY_RELU ? ACT_LEAKY_RELU : kind == LUNET__ACT_GELU ? ACT_GELU : ACT_GELU_TANH;
        f32 ? activation_float(y, x, NULL, n, k, slope) : activation_double(y, x, NULL, n, k, slope);
        break;
    }
    }
}

void lunet__softmax_forward(lunet_dtype dtype, void *y, const void *x, int64_t outer, int64_t n, int64_t inner,
                            bool log) {
    split3 d = {outer, n, inner};
    if (dtype == LUNET_DTYPE_F32) softmax_float(y, x, d, log);
    else softmax_double(y, x, d, log);
}

/* ---- dropout --------------------------------------------------------------------------------------- */

/* The gradient is the incoming one times the saved scaled mask (0 or 1 / (1 - p)). */
static lunet_status dropout_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    return lunet_tensor_mul(&grad_in[0], grad, node->saved[0]);
}

lunet_status lunet_dropout(lunet_tensor **out, const lunet_tensor *x, double p, const lunet_tensor *mask) {
    *out = NULL;
    if (!lunet_dtype_is_float(x->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "dropout: input must be f32 or f64, not %s", lunet_dtype_name(x->dtype));
    if (!(p >= 0 && p <= 1)) return lunet__fail(LUNET_ERR_ARG, "dropout: p must be in [0, 1], got %g", p);
    if (mask && !lunet__same_shape(mask->ndim, mask->shape, x->ndim, x->shape)) {
        char sm[LUNET__SHAPE_BUF], sx[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_SHAPE, "dropout: mask %s does not match the input %s",
                           lunet__shape_str(sm, sizeof sm, mask), lunet__shape_str(sx, sizeof sx, x));
    }
    /* The scaled mask: 1 / (1 - p) where kept, 0 where dropped (everything dropped at p = 1). */
    lunet_tensor *scaled = NULL, *mc = NULL, *y = NULL;
    lunet_status s = lunet__tensor_new(&scaled, x->dtype, x->ndim, x->shape, "dropout");
    if (s == LUNET_OK && mask) s = lunet__contiguous_nograd(&mc, mask);
    if (s == LUNET_OK) {
        double keep = p < 1 ? 1.0 / (1.0 - p) : 0.0;
        lunet_generator *gen = lunet_default_generator();
        char *q = lunet__data(scaled);
        size_t z = lunet_dtype_size(x->dtype), zm = mc ? lunet_dtype_size(mc->dtype) : 0;
        for (int64_t i = 0; i < x->numel; i++) {
            bool kept = mc ? lunet__load_f64(lunet__data(mc) + (size_t)i * zm, mc->dtype) != 0
                           : lunet_generator_uniform(gen) >= p;
            lunet__store_f64(q + (size_t)i * z, x->dtype, kept ? keep : 0.0);
        }
    }
    lunet_tensor_release(mc);
    if (s == LUNET_OK) {
        bool was = lunet_grad_is_enabled();
        lunet_grad_set_enabled(false);
        s = lunet_tensor_mul(&y, x, scaled);
        lunet_grad_set_enabled(was);
    }
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = lunet__record_or_release(&node, &y, "DropoutBackward", dropout_backward, 1, &x);
    if (s == LUNET_OK && node) s = lunet__save(node, 0, scaled);
    lunet_tensor_release(scaled);
    return lunet__hand_over(out, y, s);
}
