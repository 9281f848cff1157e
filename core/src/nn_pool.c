/*
 * nn_pool.c: max, average and adaptive average pooling over (N, C, H, W), with gradients.
 * Every (n, c) plane is pooled on its own.  Max pooling keeps, for each output, the index of
 * its maximum within the plane (i32), which is all its backward needs.
 */
#include "internal.h"
#include "quant.h"

#include <math.h>
#include <string.h>

/* Output size along one dim, PyTorch's rule: with ceil_mode, the last window must still start
 * inside the input or the left padding. */
static int64_t pooled_size(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
    int64_t span = size + 2 * p - d * (k - 1) - 1;
    int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (out - 1) * s >= size + p) out--;
    return out;
}

lunet_status lunet__pool_geometry_of(lunet__pool_geometry *g, int64_t h, int64_t w, const lunet_pool2d_params *p,
                                     const char *op) {
    *g = (lunet__pool_geometry){.planes = 1, .h = h, .w = w, .kh = p->kernel[0], .kw = p->kernel[1],
                                .sh = p->stride[0], .sw = p->stride[1], .ph = p->padding[0], .pw = p->padding[1],
                                .dh = p->dilation[0], .dw = p->dilation[1], .count_include_pad = p->count_include_pad};
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || g->ph < 0 || g->pw < 0)
        return lunet__fail(LUNET_ERR_ARG, "%s: kernel, stride and dilation must be >= 1 and padding >= 0", op);
    if (2 * g->ph > g->dh * (g->kh - 1) + 1 || 2 * g->pw > g->dw * (g->kw - 1) + 1)
        return lunet__fail(LUNET_ERR_ARG, "%s: padding %lldx%lld is more than half the %lldx%lld window", op,
                           (long long)g->ph, (long long)g->pw, (long long)g->kh, (long long)g->kw);
    g->oh = pooled_size(g->h, g->kh, g->sh, g->ph, g->dh, p->ceil_mode);
    g->ow = pooled_size(g->w, g->kw, g->sw, g->pw, g->dw, p->ceil_mode);
    if (g->oh < 1 || g->ow < 1)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: the %lldx%lld window does not fit the %lldx%lld input", op,
                           (long long)g->kh, (long long)g->kw, (long long)h, (long long)w);
    return LUNET_OK;
}

lunet_status lunet__adaptive_pool_geometry_of(lunet__pool_geometry *g, int64_t h, int64_t w, int64_t out_h,
                                              int64_t out_w) {
    if (out_h < 1 || out_w < 1 || h < 1 || w < 1)
        return lunet__fail(LUNET_ERR_ARG, "adaptive_avg_pool2d: output size %lldx%lld is invalid for a %lldx%lld input",
                           (long long)out_h, (long long)out_w, (long long)h, (long long)w);
    *g = (lunet__pool_geometry){.planes = 1, .h = h, .w = w, .oh = out_h, .ow = out_w};
    return LUNET_OK;
}

/* The checks on a tensor input, then its geometry with every (N, C) plane.  takes_u8: the
 * op also pools quantized (u8) activations. */
static lunet_status pool_geometry_of_tensor(lunet__pool_geometry *g, const lunet_tensor *x, const lunet_pool2d_params *p,
                                            bool takes_u8, const char *op) {
    char sx[LUNET__SHAPE_BUF];
    if (x->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: input must be (N, C, H, W), got %s", op, lunet__shape_str(sx, sizeof sx, x));
    if (!lunet_dtype_is_float(x->dtype) && !(takes_u8 && x->dtype == LUNET_DTYPE_U8))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: input must be f32 or f64%s, not %s", op, takes_u8 ? " (or u8)" : "",
                           lunet_dtype_name(x->dtype));
    LUNET_TRY(lunet__pool_geometry_of(g, x->shape[2], x->shape[3], p, op));
    g->planes = x->shape[0] * x->shape[1];
    return LUNET_OK;
}

/* ---- kernels ------------------------------------------------------------------------------------- */

#define POOL_KERNELS(T)                                                                    \
    /* y (planes, oh, ow) and argmax (planes, oh, ow) from x (planes, h, w). NaN wins. */  \
    static void max_pool_##T(T *y, int32_t *at, const T *x, const lunet__pool_geometry *g) {      \
        for (int64_t p = 0; p < g->planes; p++) {                                          \
            const T *plane = x + p * g->h * g->w;                                          \
            for (int64_t oy = 0; oy < g->oh; oy++)                                         \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                    int64_t y0 = oy * g->sh - g->ph, x0 = ox * g->sw - g->pw;              \
                    T best = -INFINITY;                                                    \
                    int64_t best_at = -1;                                                  \
                    for (int64_t ki = 0; ki < g->kh; ki++) {                               \
                        int64_t iy = y0 + ki * g->dh;                                      \
                        if (iy < 0 || iy >= g->h) continue;                                \
                        for (int64_t kj = 0; kj < g->kw; kj++) {                           \
                            int64_t ix = x0 + kj * g->dw;                                  \
                            if (ix < 0 || ix >= g->w) continue;                            \
                            T v = plane[iy * g->w + ix];                                   \
                            if (best_at < 0 || v > best || (v != v && best == best)) {     \
                                best = v;                                                  \
                                best_at = iy * g->w + ix;                                  \
                            }                                                              \
                        }                                                                  \
                    }                                                                      \
                    int64_t o = (p * g->oh + oy) * g->ow + ox;                             \
                    y[o] = best;                                                           \
                    if (at) at[o] = (int32_t)best_at;                                      \
                }                                                                          \
        }                                                                                  \
    }                                                                                      \
    static void max_pool_backward_##T(T *dx, const T *dy, const int32_t *at, const lunet__pool_geometry *g) { \
        for (int64_t p = 0; p < g->planes; p++)                                            \
            for (int64_t i = 0; i < g->oh * g->ow; i++) {                                  \
                int32_t k = at[p * g->oh * g->ow + i];                                     \
                if (k >= 0) dx[p * g->h * g->w + k] += dy[p * g->oh * g->ow + i];          \
            }                                                                              \
    }                                                                                      \
    /* One window [y0, y1) x [x0, x1) of a plane of width w: *out = its sum / count, or     \
     * (backward) *out / count added to each of its elements. */                           \
    static inline void average_window_##T(T *out, T *plane, int64_t w, int64_t y0, int64_t y1, int64_t x0, \
                                          int64_t x1, T count, bool backward) {            \
        if (backward) {                                                                    \
            T share = *out / count;                                                        \
            for (int64_t iy = y0; iy < y1; iy++)                                           \
                for (int64_t ix = x0; ix < x1; ix++) plane[iy * w + ix] += share;          \
            return;                                                                        \
        }                                                                                  \
        T acc = 0;                                                                         \
        for (int64_t iy = y0; iy < y1; iy++)                                               \
            for (int64_t ix = x0; ix < x1; ix++) acc += plane[iy * w + ix];                \
        *out = acc / count;                                                                \
    }                                                                                      \
    /* Average pooling forward (backward = 0) or backward (backward = 1): the window of     \
     * each output and its divisor follow torch's avg_pool2d. */                           \
    static void avg_pool_##T(T *y, T *x, const lunet__pool_geometry *g, bool backward) {          \
        for (int64_t p = 0; p < g->planes; p++) {                                          \
            T *plane = x + p * g->h * g->w;                                                \
            for (int64_t oy = 0; oy < g->oh; oy++)                                         \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                    int64_t y0 = oy * g->sh - g->ph, x0 = ox * g->sw - g->pw;              \
                    int64_t y1 = y0 + g->kh < g->h + g->ph ? y0 + g->kh : g->h + g->ph;    \
                    int64_t x1 = x0 + g->kw < g->w + g->pw ? x0 + g->kw : g->w + g->pw;    \
                    int64_t padded_count = (y1 - y0) * (x1 - x0);                          \
                    y0 = y0 < 0 ? 0 : y0;                                                  \
                    x0 = x0 < 0 ? 0 : x0;                                                  \
                    y1 = y1 > g->h ? g->h : y1;                                            \
                    x1 = x1 > g->w ? g->w : x1;                                            \
                    int64_t count = g->count_include_pad ? padded_count : (y1 - y0) * (x1 - x0); \
                    T *out = y + (p * g->oh + oy) * g->ow + ox;                            \
                    if (count <= 0) {                                                      \
                        if (!backward) *out = 0;                                           \
                        continue;                                                          \
                    }                                                                      \
                    average_window_##T(out, plane, g->w, y0, y1, x0, x1, (T)count, backward); \
                }                                                                          \
        }                                                                                  \
    }                                                                                      \
    /* Adaptive average pooling: window [floor(i h / oh), ceil((i + 1) h / oh)). */        \
    static void adaptive_avg_pool_##T(T *y, T *x, const lunet__pool_geometry *g, bool backward) { \
        for (int64_t p = 0; p < g->planes; p++) {                                          \
            T *plane = x + p * g->h * g->w;                                                \
            for (int64_t oy = 0; oy < g->oh; oy++) {                                       \
                int64_t y0 = oy * g->h / g->oh, y1 = ((oy + 1) * g->h + g->oh - 1) / g->oh; \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                    int64_t x0 = ox * g->w / g->ow, x1 = ((ox + 1) * g->w + g->ow - 1) / g->ow; \
                    T *out = y + (p * g->oh + oy) * g->ow + ox;                            \
                    average_window_##T(out, plane, g->w, y0, y1, x0, x1, (T)((y1 - y0) * (x1 - x0)), backward); \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
POOL_KERNELS(float)
POOL_KERNELS(double)

/* The most common pooling, 2x2 windows with stride 2 and nothing else, without bounds
 * checks: the same comparisons in the same order as max_pool_T, so the same answers. */
#define MAX_POOL_2X2(T)                                                                    \
    LUNET_VECTORIZED static void max_pool_2x2_##T(T *y, int32_t *at, const T *x, const lunet__pool_geometry *g) { \
        for (int64_t p = 0; p < g->planes; p++) {                                          \
            const T *plane = x + p * g->h * g->w;                                          \
            for (int64_t oy = 0; oy < g->oh; oy++) {                                       \
                const T *r0 = plane + 2 * oy * g->w, *r1 = r0 + g->w;                      \
                T *out = y + (p * g->oh + oy) * g->ow;                                     \
                int32_t *where = at ? at + (p * g->oh + oy) * g->ow : NULL;                \
                int32_t base = (int32_t)(2 * oy * g->w);                                   \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                    T v[4] = {r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]};     \
                    int32_t k[4] = {base + (int32_t)(2 * ox), base + (int32_t)(2 * ox + 1), \
                                    base + (int32_t)(g->w + 2 * ox), base + (int32_t)(g->w + 2 * ox + 1)}; \
                    T best = v[0];                                                         \
                    int32_t best_at = k[0];                                                \
                    for (int i = 1; i < 4; i++) { /* selects, not branches */              \
                        bool take = v[i] > best || (v[i] != v[i] && best == best);         \
                        best_at = take ? k[i] : best_at;                                   \
                        best = take ? v[i] : best;                                         \
                    }                                                                      \
                    out[ox] = best;                                                        \
                    if (where) where[ox] = best_at;                                        \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
MAX_POOL_2X2(float)
MAX_POOL_2X2(double)


static bool is_plain_2x2(const lunet__pool_geometry *g) {
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 &&
           g->dw == 1 && 2 * g->oh <= g->h && 2 * g->ow <= g->w;
}

void lunet__max_pool2d_forward(const lunet__pool_geometry *g, lunet_dtype dtype, void *y, int32_t *at, const void *x) {
    bool plain = is_plain_2x2(g);
    if (dtype == LUNET_DTYPE_F32) (plain ? max_pool_2x2_float : max_pool_float)(y, at, x, g);
    else (plain ? max_pool_2x2_double : max_pool_double)(y, at, x, g);
}

/* ---- max pooling ---------------------------------------------------------------------------------- */

static void geometry_to_node(lunet__node *node, const lunet__pool_geometry *g) {
    const int64_t v[10] = {g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->oh, g->ow};
    memcpy(node->iarg, v, sizeof v);
    node->farg[0] = g->count_include_pad;
}

static lunet__pool_geometry geometry_from_node(const lunet__node *node, const lunet_tensor *x) {
    return (lunet__pool_geometry){.planes = x->shape[0] * x->shape[1], .h = x->shape[2], .w = x->shape[3],
                           .kh = node->iarg[0], .kw = node->iarg[1], .sh = node->iarg[2], .sw = node->iarg[3],
                           .ph = node->iarg[4], .pw = node->iarg[5], .dh = node->iarg[6], .dw = node->iarg[7],
                           .oh = node->iarg[8], .ow = node->iarg[9], .count_include_pad = node->farg[0] != 0};
}

static lunet_status max_pool_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->inputs[0], *at = node->saved[0];
    lunet__pool_geometry g = geometry_from_node(node, x);
    lunet_tensor *dy;
    LUNET_TRY(lunet__contiguous_nograd(&dy, grad));
    lunet_status s = lunet_tensor_zeros(&grad_in[0], x->dtype, 4, x->shape);
    if (s == LUNET_OK) {
        if (x->dtype == LUNET_DTYPE_F32) max_pool_backward_float(lunet_tensor_data(grad_in[0]), lunet_tensor_data(dy), lunet_tensor_data(at), &g);
        else max_pool_backward_double(lunet_tensor_data(grad_in[0]), lunet_tensor_data(dy), lunet_tensor_data(at), &g);
    }
    lunet_tensor_release(dy);
    return s;
}

lunet_status lunet_max_pool2d(lunet_tensor **out, const lunet_tensor *x, const lunet_pool2d_params *params) {
    *out = NULL;
    lunet__pool_geometry g = {0};
    LUNET_TRY(pool_geometry_of_tensor(&g, x, params, true, "max_pool2d"));
    int64_t shape[4] = {x->shape[0], x->shape[1], g.oh, g.ow};
    lunet_tensor *xc = NULL, *y = NULL, *at = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (x->dtype == LUNET_DTYPE_U8) { /* a quantized activation: no gradient */
        if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, 4, shape, "max_pool2d");
        /* each (H, W) plane of the (N, C) ones is a one-channel channels-last image */
        if (s == LUNET_OK) lunet__max_pool2d_u8(&g, g.planes, 1, lunet_tensor_data(y), lunet_tensor_data(xc));
        lunet_tensor_release(xc);
        return lunet__hand_over(out, y, s);
    }
    if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, 4, shape, "max_pool2d");
    if (s == LUNET_OK) s = lunet__tensor_new(&at, LUNET_DTYPE_I32, 4, shape, "max_pool2d");
    if (s == LUNET_OK) lunet__max_pool2d_forward(&g, x->dtype, lunet_tensor_data(y), lunet_tensor_data(at), lunet_tensor_data(xc));
    lunet_tensor_release(xc);
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = lunet__record_or_release(&node, &y, "MaxPool2dBackward", max_pool_backward, 1, &x);
    if (s == LUNET_OK && node) {
        geometry_to_node(node, &g);
        s = lunet__save(node, 0, at);
    }
    lunet_tensor_release(at);
    return lunet__hand_over(out, y, s);
}

/* ---- average pooling --------------------------------------------------------------------------------- */

typedef void (*avg_kernel_float)(float *, float *, const lunet__pool_geometry *, bool);
typedef void (*avg_kernel_double)(double *, double *, const lunet__pool_geometry *, bool);

/* Forward (y from x) or backward (x += the share of y) of average pooling. */
static void run_avg_kernel(const lunet__pool_geometry *g, lunet_dtype dtype, void *y, void *x, bool adaptive, bool backward) {
    if (dtype == LUNET_DTYPE_F32) {
        avg_kernel_float k = adaptive ? adaptive_avg_pool_float : avg_pool_float;
        k(y, x, g, backward);
    } else {
        avg_kernel_double k = adaptive ? adaptive_avg_pool_double : avg_pool_double;
        k(y, x, g, backward);
    }
}

void lunet__avg_pool2d_forward(const lunet__pool_geometry *g, lunet_dtype dtype, void *y, const void *x, bool adaptive) {
    run_avg_kernel(g, dtype, y, (void *)x, adaptive, false); /* the forward only reads x */
}

static lunet_status avg_backward_common(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in,
                                        bool adaptive) {
    const lunet_tensor *x = node->inputs[0];
    lunet__pool_geometry g = geometry_from_node(node, x);
    lunet_tensor *dy;
    LUNET_TRY(lunet__contiguous_nograd(&dy, grad));
    lunet_status s = lunet_tensor_zeros(&grad_in[0], x->dtype, 4, x->shape);
    if (s == LUNET_OK) run_avg_kernel(&g, x->dtype, lunet_tensor_data(dy), lunet_tensor_data(grad_in[0]), adaptive, true);
    lunet_tensor_release(dy);
    return s;
}

static lunet_status avg_pool_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    return avg_backward_common(node, grad, grad_in, false);
}

static lunet_status adaptive_avg_pool_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    return avg_backward_common(node, grad, grad_in, true);
}

static lunet_status avg_forward(lunet_tensor **out, const lunet_tensor *x, const lunet__pool_geometry *g, bool adaptive,
                                const char *op) {
    int64_t shape[4] = {x->shape[0], x->shape[1], g->oh, g->ow};
    lunet_tensor *xc = NULL, *y = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, x->dtype, 4, shape, op);
    if (s == LUNET_OK) lunet__avg_pool2d_forward(g, x->dtype, lunet_tensor_data(y), lunet_tensor_data(xc), adaptive);
    lunet_tensor_release(xc);
    lunet__node *node = NULL;
    if (s == LUNET_OK)
        s = lunet__record_or_release(&node, &y, adaptive ? "AdaptiveAvgPool2dBackward" : "AvgPool2dBackward",
                                     adaptive ? adaptive_avg_pool_backward : avg_pool_backward, 1, &x);
    if (s == LUNET_OK && node) geometry_to_node(node, g);
    return lunet__hand_over(out, y, s);
}

lunet_status lunet_avg_pool2d(lunet_tensor **out, const lunet_tensor *x, const lunet_pool2d_params *params) {
    *out = NULL;
    lunet__pool_geometry g = {0};
    lunet_pool2d_params p = *params;
    p.dilation[0] = p.dilation[1] = 1; /* average pooling has no dilation */
    LUNET_TRY(pool_geometry_of_tensor(&g, x, &p, false, "avg_pool2d"));
    return avg_forward(out, x, &g, false, "avg_pool2d");
}

lunet_status lunet_adaptive_avg_pool2d(lunet_tensor **out, const lunet_tensor *x, int64_t out_h, int64_t out_w) {
    *out = NULL;
    char sx[LUNET__SHAPE_BUF];
    if (x->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "adaptive_avg_pool2d: input must be (N, C, H, W), got %s", lunet__shape_str(sx, sizeof sx, x));
    if (!lunet_dtype_is_float(x->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "adaptive_avg_pool2d: input must be f32 or f64, not %s", lunet_dtype_name(x->dtype));
    lunet__pool_geometry g;
    LUNET_TRY(lunet__adaptive_pool_geometry_of(&g, x->shape[2], x->shape[3], out_h, out_w));
    g.planes = x->shape[0] * x->shape[1];
    return avg_forward(out, x, &g, true, "adaptive_avg_pool2d");
}
