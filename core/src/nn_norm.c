/*
 * nn_norm.c: batch normalisation over dim 1, with running statistics and a fused backward.
 * The input is seen as (N, C, S) with S the product of the spatial dims (1 for (N, C)).
 * Statistics are accumulated in double: a channel of a 64-image batch of 28x28 maps sums
 * 50,176 values, too many for float accumulation to keep the variance accurate.
 */
#include "internal.h"

#include <math.h>

typedef struct norm_geometry {
    int64_t n, c, s;
} norm_geometry;

/* Per-channel mean and inverse standard deviation (f64 tensors of C) and the biased and
 * unbiased variances. */
#define NORM_KERNELS(T)                                                                    \
    static void channel_stats_##T(double *mean, double *var, const T *x, norm_geometry g) { \
        for (int64_t c = 0; c < g.c; c++) {                                                \
            double sum = 0, sq = 0;                                                        \
            for (int64_t i = 0; i < g.n; i++) {                                            \
                const T *p = x + (i * g.c + c) * g.s;                                      \
                for (int64_t j = 0; j < g.s; j++) sum += p[j];                             \
            }                                                                              \
            double m = sum / (double)(g.n * g.s);                                          \
            for (int64_t i = 0; i < g.n; i++) {                                            \
                const T *p = x + (i * g.c + c) * g.s;                                      \
                for (int64_t j = 0; j < g.s; j++) sq += ((double)p[j] - m) * ((double)p[j] - m); \
            }                                                                              \
            mean[c] = m;                                                                   \
            var[c] = sq / (double)(g.n * g.s);                                             \
        }                                                                                  \
    }                                                                                      \
    /* y = (x - mean) * invstd * gamma + beta, gamma/beta optional. */                     \
    static void normalize_##T(T *y, const T *x, const double *mean, const double *invstd, const T *gamma, \
                              const T *beta, norm_geometry g) {                            \
        for (int64_t c = 0; c < g.c; c++) {                                                \
            T scale = (T)(invstd[c] * (gamma ? (double)gamma[c] : 1.0));                   \
            T shift = (T)((beta ? (double)beta[c] : 0.0) - mean[c] * (double)scale);       \
            for (int64_t i = 0; i < g.n; i++) {                                            \
                const T *p = x + (i * g.c + c) * g.s;                                      \
                T *q = y + (i * g.c + c) * g.s;                                            \
                for (int64_t j = 0; j < g.s; j++) q[j] = p[j] * scale + shift;             \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* dgamma, dbeta (may be NULL) and dx (may be NULL) from dy. */                        \
    static void norm_backward_##T(T *dx, T *dgamma, T *dbeta, const T *dy, const T *x, const double *mean, \
                                  const double *invstd, const T *gamma, bool training, norm_geometry g) { \
        double m = (double)(g.n * g.s);                                                    \
        for (int64_t c = 0; c < g.c; c++) {                                                \
            double sum_dy = 0, sum_dy_xhat = 0;                                            \
            for (int64_t i = 0; i < g.n; i++) {                                            \
                const T *pd = dy + (i * g.c + c) * g.s, *px = x + (i * g.c + c) * g.s;     \
                for (int64_t j = 0; j < g.s; j++) {                                        \
                    sum_dy += pd[j];                                                       \
                    sum_dy_xhat += (double)pd[j] * (((double)px[j] - mean[c]) * invstd[c]); \
                }                                                                          \
            }                                                                              \
            if (dgamma) dgamma[c] = (T)sum_dy_xhat;                                        \
            if (dbeta) dbeta[c] = (T)sum_dy;                                               \
            if (!dx) continue;                                                             \
            double k = (gamma ? (double)gamma[c] : 1.0) * invstd[c];                       \
            for (int64_t i = 0; i < g.n; i++) {                                            \
                const T *pd = dy + (i * g.c + c) * g.s, *px = x + (i * g.c + c) * g.s;     \
                T *q = dx + (i * g.c + c) * g.s;                                           \
                for (int64_t j = 0; j < g.s; j++) {                                        \
                    double xhat = ((double)px[j] - mean[c]) * invstd[c];                   \
                    q[j] = training ? (T)(k * ((double)pd[j] - sum_dy / m - xhat * sum_dy_xhat / m)) \
                                    : (T)(k * (double)pd[j]);                              \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
NORM_KERNELS(float)
NORM_KERNELS(double)

static norm_geometry geometry(const lunet_tensor *x) {
    return (norm_geometry){x->shape[0], x->shape[1], lunet__numel(x->ndim - 2, x->shape + 2)};
}

/* saved: 0 contiguous input, 1 mean (f64, C), 2 invstd (f64, C), 3 contiguous weight or
 * nothing; iarg[0] training.  The weight is saved, not taken from inputs[1]: a frozen weight
 * (no grad) still scales the input's gradient. */
static lunet_status batch_norm_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->saved[0], *gamma_c = node->saved[3];
    norm_geometry g = geometry(x);
    lunet_tensor *dy;
    LUNET_TRY(lunet__contiguous_nograd(&dy, grad));
    lunet_status s = LUNET_OK;
    if (s == LUNET_OK && node->inputs[0]) s = lunet__tensor_new(&grad_in[0], x->dtype, x->ndim, x->shape, "batch_norm");
    if (s == LUNET_OK && node->inputs[1]) s = lunet__tensor_new(&grad_in[1], x->dtype, 1, &g.c, "batch_norm");
    if (s == LUNET_OK && node->inputs[2]) s = lunet__tensor_new(&grad_in[2], x->dtype, 1, &g.c, "batch_norm");
    if (s == LUNET_OK) {
        const double *mean = lunet_tensor_data(node->saved[1]), *invstd = lunet_tensor_data(node->saved[2]);
        void *dx = grad_in[0] ? lunet_tensor_data(grad_in[0]) : NULL;
        void *dgamma = grad_in[1] ? lunet_tensor_data(grad_in[1]) : NULL;
        void *dbeta = grad_in[2] ? lunet_tensor_data(grad_in[2]) : NULL;
        const void *gp = gamma_c ? lunet_tensor_data(gamma_c) : NULL;
        if (x->dtype == LUNET_DTYPE_F32)
            norm_backward_float(dx, dgamma, dbeta, lunet_tensor_data(dy), lunet_tensor_data(x), mean, invstd, gp,
                                node->iarg[0], g);
        else
            norm_backward_double(dx, dgamma, dbeta, lunet_tensor_data(dy), lunet_tensor_data(x), mean, invstd, gp,
                                 node->iarg[0], g);
    }
    lunet_tensor_release(dy);
    return s;
}

static lunet_status check_channel_vector(const lunet_tensor *t, int64_t c, lunet_dtype dtype, const char *name) {
    if (!t) return LUNET_OK;
    char st[LUNET__SHAPE_BUF];
    if (t->ndim != 1 || t->shape[0] != c)
        return lunet__fail(LUNET_ERR_SHAPE, "batch_norm: %s must have %lld entries (one per channel), got %s", name,
                           (long long)c, lunet__shape_str(st, sizeof st, t));
    if (t->dtype != dtype)
        return lunet__fail(LUNET_ERR_DTYPE, "batch_norm: %s is %s but the input is %s", name,
                           lunet_dtype_name(t->dtype), lunet_dtype_name(dtype));
    return LUNET_OK;
}

/* r = (1 - momentum) r + momentum v, element by element (r contiguous). */
static void blend(lunet_tensor *r, const double *v, double momentum, double scale) {
    char *p = lunet__data(r);
    size_t z = lunet_dtype_size(r->dtype);
    for (int64_t c = 0; c < r->numel; c++) {
        double old = lunet__load_f64(p + (size_t)c * z, r->dtype);
        lunet__store_f64(p + (size_t)c * z, r->dtype, (1 - momentum) * old + momentum * v[c] * scale);
    }
    lunet_tensor_mark_modified(r);
}

lunet_status lunet_batch_norm(lunet_tensor **out, const lunet_tensor *x, lunet_tensor *running_mean,
                              lunet_tensor *running_var, const lunet_tensor *weight, const lunet_tensor *bias,
                              bool training, double momentum, double eps) {
    *out = NULL;
    char sx[LUNET__SHAPE_BUF];
    if (x->ndim < 2)
        return lunet__fail(LUNET_ERR_SHAPE, "batch_norm: input must be (N, C, ...), got %s", lunet__shape_str(sx, sizeof sx, x));
    if (!lunet_dtype_is_float(x->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "batch_norm: input must be f32 or f64, not %s", lunet_dtype_name(x->dtype));
    norm_geometry g = geometry(x);
    LUNET_TRY(check_channel_vector(weight, g.c, x->dtype, "weight"));
    LUNET_TRY(check_channel_vector(bias, g.c, x->dtype, "bias"));
    LUNET_TRY(check_channel_vector(running_mean, g.c, x->dtype, "running_mean"));
    LUNET_TRY(check_channel_vector(running_var, g.c, x->dtype, "running_var"));
    if ((running_mean && !lunet_tensor_is_contiguous(running_mean)) || (running_var && !lunet_tensor_is_contiguous(running_var)))
        return lunet__fail(LUNET_ERR_ARG, "batch_norm: running statistics must be contiguous");
    if (!training && (!running_mean || !running_var))
        return lunet__fail(LUNET_ERR_ARG, "batch_norm: evaluation needs running_mean and running_var");
    if (training && g.n * g.s < 2)
        return lunet__fail(LUNET_ERR_SHAPE, "batch_norm: training needs more than one value per channel, input is %s",
                           lunet__shape_str(sx, sizeof sx, x));
    lunet_tensor *xc = NULL, *mean = NULL, *invstd = NULL, *y = NULL, *wc = NULL, *bc = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&mean, LUNET_DTYPE_F64, 1, &g.c, "batch_norm");
    if (s == LUNET_OK) s = lunet__tensor_new(&invstd, LUNET_DTYPE_F64, 1, &g.c, "batch_norm");
    if (s == LUNET_OK && weight) s = lunet__contiguous_nograd(&wc, weight);
    if (s == LUNET_OK && bias) s = lunet__contiguous_nograd(&bc, bias);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, x->ndim, x->shape, "batch_norm");
    if (s == LUNET_OK) {
        double *m = lunet_tensor_data(mean), *is = lunet_tensor_data(invstd);
        if (training) {
            if (x->dtype == LUNET_DTYPE_F32) channel_stats_float(m, is, lunet_tensor_data(xc), g);
            else channel_stats_double(m, is, lunet_tensor_data(xc), g);
            double count = (double)(g.n * g.s);
            if (running_mean) blend(running_mean, m, momentum, 1.0);
            if (running_var) blend(running_var, is, momentum, count / (count - 1)); /* is holds the variance */
        } else {
            for (int64_t c = 0; c < g.c; c++) {
                m[c] = lunet__load_f64(lunet__data(running_mean) + (size_t)c * lunet_dtype_size(x->dtype), x->dtype);
                is[c] = lunet__load_f64(lunet__data(running_var) + (size_t)c * lunet_dtype_size(x->dtype), x->dtype);
            }
        }
        for (int64_t c = 0; c < g.c; c++) is[c] = 1.0 / sqrt(is[c] + eps);
        const void *gp = wc ? lunet_tensor_data(wc) : NULL, *bp = bc ? lunet_tensor_data(bc) : NULL;
        if (x->dtype == LUNET_DTYPE_F32) normalize_float(lunet_tensor_data(y), lunet_tensor_data(xc), m, is, gp, bp, g);
        else normalize_double(lunet_tensor_data(y), lunet_tensor_data(xc), m, is, gp, bp, g);
    }
    lunet_tensor_release(bc);
    lunet__node *node = NULL;
    if (s == LUNET_OK) {
        const lunet_tensor *inputs[3] = {x, weight, bias};
        s = lunet__record_or_release(&node, &y, "BatchNormBackward", batch_norm_backward, 3, inputs);
    }
    if (s == LUNET_OK && node) {
        node->iarg[0] = training;
        s = lunet__save_all(node, 4, (const lunet_tensor *[]){xc, mean, invstd, wc});
    }
    lunet_tensor_release(wc);
    lunet_tensor_release(xc);
    lunet_tensor_release(mean);
    lunet_tensor_release(invstd);
    return lunet__hand_over(out, y, s);
}
