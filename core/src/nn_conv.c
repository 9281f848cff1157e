/*
 * nn_conv.c: 2-d convolution (stride, padding, dilation, groups) as im2col + GEMM.
 *
 * Each image and group is unfolded into a column matrix cols (C/g * KH * KW, OH * OW), and
 * one GEMM W (O/g, C/g * KH * KW) x cols gives that image's output in NCHW order directly.
 * Images are independent, so with several threads each takes a share of the batch (see
 * "work split over images").
 * When the weight's gradient will be needed the whole batch's columns are kept for the
 * backward (a few MB for these models: cheaper than unfolding twice); otherwise one image's
 * buffer is reused and stays in cache.  The backward computes dW = sum of dY cols^T and
 * dX = col2im(W^T dY).  1x1 convolutions with stride 1 and no padding skip the unfolding:
 * the image already is its column matrix.
 */
#include "internal.h"

#include <string.h>


/* ---- unfolding -------------------------------------------------------------------------------- */

/* The output columns [lo, hi) of a row whose input column for output column 0 is x0 read
 * inside the image (stride 1): the rest fall on the padding. */
static inline void valid_columns(int64_t *lo, int64_t *hi, int64_t x0, int64_t w, int64_t ow) {
    *lo = x0 < 0 ? -x0 : 0;
    *hi = w - x0 < ow ? w - x0 : ow;
    if (*hi < *lo) *hi = *lo;
}

#define IM2COL(T)                                                                          \
    /* cols (cg*kh*kw, oh*ow) from one image's group x (cg, h, w). */                      \
    LUNET_VECTORIZED static void im2col_##T(T *cols, const T *x, const lunet__conv_geometry *g) {  \
        for (int64_t c = 0; c < g->cg; c++)                                                \
            for (int64_t ki = 0; ki < g->kh; ki++)                                         \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                   \
                    T *row = cols + ((c * g->kh + ki) * g->kw + kj) * g->col_cols;         \
                    int64_t x0 = kj * g->dw - g->pw; /* input column of output column 0 */ \
                    int64_t lo, hi;                                                        \
                    valid_columns(&lo, &hi, x0, g->w, g->ow);                              \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                               \
                        T *dst = row + oy * g->ow;                                         \
                        int64_t iy = oy * g->sh - g->ph + ki * g->dh;                      \
                        if (iy < 0 || iy >= g->h) {                                        \
                            for (int64_t ox = 0; ox < g->ow; ox++) dst[ox] = 0;            \
                            continue;                                                      \
                        }                                                                  \
                        const T *src = x + (c * g->h + iy) * g->w + x0;                    \
                        if (g->sw == 1) {                                                  \
                            for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0;               \
                            for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox];        \
                            for (int64_t ox = hi; ox < g->ow; ox++) dst[ox] = 0;           \
                        } else {                                                           \
                            for (int64_t ox = 0; ox < g->ow; ox++) {                       \
                                int64_t ix = x0 + ox * g->sw;                              \
                                dst[ox] = (ix >= 0 && ix < g->w) ? src[ox * g->sw] : (T)0; \
                            }                                                              \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
    }                                                                                      \
    /* dx (cg, h, w) += the columns folded back onto the image. */                         \
    LUNET_VECTORIZED static void col2im_##T(T *dx, const T *cols, const lunet__conv_geometry *g) { \
        for (int64_t c = 0; c < g->cg; c++)                                                \
            for (int64_t ki = 0; ki < g->kh; ki++)                                         \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                   \
                    const T *row = cols + ((c * g->kh + ki) * g->kw + kj) * g->col_cols;   \
                    int64_t x0 = kj * g->dw - g->pw;                                       \
                    int64_t lo, hi;                                                        \
                    valid_columns(&lo, &hi, x0, g->w, g->ow);                              \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                               \
                        int64_t iy = oy * g->sh - g->ph + ki * g->dh;                      \
                        if (iy < 0 || iy >= g->h) continue;                                \
                        const T *src = row + oy * g->ow;                                   \
                        T *dst = dx + (c * g->h + iy) * g->w + x0;                         \
                        if (g->sw == 1) {                                                  \
                            for (int64_t ox = lo; ox < hi; ox++) dst[ox] += src[ox];       \
                        } else {                                                           \
                            for (int64_t ox = 0; ox < g->ow; ox++) {                       \
                                int64_t ix = x0 + ox * g->sw;                              \
                                if (ix >= 0 && ix < g->w) dst[ox * g->sw] += src[ox];      \
                            }                                                              \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
    }
IM2COL(float)
IM2COL(double)

/* Bias rows: y (o, positions) = b[o] everywhere; and its gradient db (o) += sum of dy rows. */
#define BIAS_ROWS(T)                                                                       \
    LUNET_VECTORIZED static void fill_bias_##T(T *y, const T *b, int64_t o, int64_t positions) { \
        for (int64_t i = 0; i < o; i++)                                                    \
            for (int64_t j = 0; j < positions; j++) y[i * positions + j] = b[i];           \
    }                                                                                      \
    /* Eight running sums per row, so the additions do not wait on each other (one chain  \
     * of scalar additions made this the slowest part of the backward). */                \
    LUNET_VECTORIZED static void add_row_sums_##T(T *db, const T *dy, int64_t o, int64_t positions) { \
        for (int64_t i = 0; i < o; i++) {                                                  \
            const T *row = dy + i * positions;                                             \
            T part[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                          \
            int64_t j = 0;                                                                 \
            for (; j + 8 <= positions; j += 8)                                             \
                for (int k = 0; k < 8; k++) part[k] += row[j + k];                         \
            T acc = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7])); \
            for (; j < positions; j++) acc += row[j];                                      \
            db[i] += acc;                                                                  \
        }                                                                                  \
    }
BIAS_ROWS(float)
BIAS_ROWS(double)

static void fill_bias(lunet_dtype dtype, void *y, const void *b, int64_t o, int64_t positions) {
    if (dtype == LUNET_DTYPE_F32) fill_bias_float(y, b, o, positions);
    else fill_bias_double(y, b, o, positions);
}

static void add_row_sums(lunet_dtype dtype, void *db, const void *dy, int64_t o, int64_t positions) {
    if (dtype == LUNET_DTYPE_F32) add_row_sums_float(db, dy, o, positions);
    else add_row_sums_double(db, dy, o, positions);
}

static void im2col(lunet_dtype dtype, void *cols, const void *x, const lunet__conv_geometry *g) {
    if (dtype == LUNET_DTYPE_F32) im2col_float(cols, x, g);
    else im2col_double(cols, x, g);
}

static void col2im(lunet_dtype dtype, void *dx, const void *cols, const lunet__conv_geometry *g) {
    if (dtype == LUNET_DTYPE_F32) col2im_float(dx, cols, g);
    else col2im_double(dx, cols, g);
}

/* ---- geometry ---------------------------------------------------------------------------------- */

lunet_status lunet__conv_geometry_of(lunet__conv_geometry *g, const int64_t x_shape[4], const int64_t w_shape[4],
                                    const lunet_conv2d_params *p) {
    /* shapes are formatted only for an error: this runs on every call */
    char sx[LUNET__SHAPE_BUF], sw[LUNET__SHAPE_BUF];
#define X_SHAPE lunet_shape_format(sx, sizeof sx, 4, x_shape)
#define W_SHAPE lunet_shape_format(sw, sizeof sw, 4, w_shape)
    for (int i = 0; i < 2; i++)
        if (p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
            return lunet__fail(LUNET_ERR_ARG, "conv2d: stride and dilation must be >= 1 and padding >= 0");
    *g = (lunet__conv_geometry){.n = x_shape[0], .c = x_shape[1], .h = x_shape[2], .w = x_shape[3],
                                .o = w_shape[0], .kh = w_shape[2], .kw = w_shape[3], .groups = p->groups,
                                .sh = p->stride[0], .sw = p->stride[1], .ph = p->padding[0], .pw = p->padding[1],
                                .dh = p->dilation[0], .dw = p->dilation[1]};
    if (g->groups < 1 || g->c % g->groups || g->o % g->groups)
        return lunet__fail(LUNET_ERR_ARG, "conv2d: groups %lld must divide the input channels %lld and output channels %lld",
                           (long long)g->groups, (long long)g->c, (long long)g->o);
    g->cg = g->c / g->groups;
    g->og = g->o / g->groups;
    if (w_shape[1] != g->cg)
        return lunet__fail(LUNET_ERR_SHAPE, "conv2d: weight %s expects %lld input channels per group, input %s has %lld",
                           W_SHAPE, (long long)w_shape[1], X_SHAPE, (long long)g->cg);
    int64_t span_h = g->dh * (g->kh - 1) + 1, span_w = g->dw * (g->kw - 1) + 1;
    if (g->h + 2 * g->ph < span_h || g->w + 2 * g->pw < span_w)
        return lunet__fail(LUNET_ERR_SHAPE, "conv2d: the %lldx%lld kernel (dilated to %lldx%lld) does not fit the padded %lldx%lld input %s",
                           (long long)g->kh, (long long)g->kw, (long long)span_h, (long long)span_w,
                           (long long)(g->h + 2 * g->ph), (long long)(g->w + 2 * g->pw), X_SHAPE);
#undef X_SHAPE
#undef W_SHAPE
    g->oh = (g->h + 2 * g->ph - span_h) / g->sh + 1;
    g->ow = (g->w + 2 * g->pw - span_w) / g->sw + 1;
    g->col_rows = g->cg * g->kh * g->kw;
    g->col_cols = g->oh * g->ow;
    g->pointwise = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    return LUNET_OK;
}

/* The checks of lunet__conv_geometry_of on tensors, plus the ranks and the bias. */
static lunet_status conv_geometry_of_tensors(lunet__conv_geometry *g, const lunet_tensor *x, const lunet_tensor *w,
                                             const lunet_tensor *b, const lunet_conv2d_params *p) {
    char sx[LUNET__SHAPE_BUF], sw[LUNET__SHAPE_BUF];
    if (x->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "conv2d: input must be (N, C, H, W), got %s", lunet__shape_str(sx, sizeof sx, x));
    if (w->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "conv2d: weight must be (O, C/groups, KH, KW), got %s",
                           lunet__shape_str(sw, sizeof sw, w));
    LUNET_TRY(lunet__conv_geometry_of(g, x->shape, w->shape, p));
    if (b && (b->ndim != 1 || b->shape[0] != g->o))
        return lunet__fail(LUNET_ERR_SHAPE, "conv2d: bias must have %lld entries", (long long)g->o);
    return LUNET_OK;
}

size_t lunet__conv_cols_bytes(const lunet__conv_geometry *g, lunet_dtype dtype) {
    return g->pointwise ? 0 : (size_t)(g->groups * g->col_rows * g->col_cols) * lunet_dtype_size(dtype);
}

void lunet__conv2d_image(const lunet__conv_geometry *g, lunet_dtype dt, const void *x_img, const void *w, const void *b,
                         void *y_img, void *cols) {
    size_t z = lunet_dtype_size(dt);
    if (b) fill_bias(dt, y_img, b, g->o, g->col_cols); /* the GEMM adds onto it */
    for (int64_t gi = 0; gi < g->groups; gi++) {
        const char *x_g = (const char *)x_img + (size_t)(gi * g->cg * g->h * g->w) * z;
        char *cols_g = g->pointwise ? NULL : (char *)cols + (size_t)(gi * g->col_rows * g->col_cols) * z;
        if (cols_g) im2col(dt, cols_g, x_g, g);
        lunet__gemm(LUNET__SPLIT_ANY, dt, false, false, g->og, g->col_cols, g->col_rows, 1,
                    (const char *)w + (size_t)(gi * g->og * g->col_rows) * z, g->col_rows, cols_g ? cols_g : x_g,
                    g->col_cols, b ? 1 : 0, (char *)y_img + (size_t)(gi * g->og * g->col_cols) * z, g->col_cols);
    }
}

/* The column buffer for one image (all its groups), or NULL when the convolution needs none. */
static lunet_status column_buffer(void **cols, size_t *bytes, const lunet__conv_geometry *g, lunet_dtype dtype) {
    *bytes = lunet__conv_cols_bytes(g, dtype);
    *cols = NULL;
    if (*bytes && !(*cols = lunet__alloc(*bytes))) return lunet__nomem("conv2d");
    return LUNET_OK;
}

/* ---- work split over images ------------------------------------------------------------------
 *
 * With n threads, the images of a batch are split into n contiguous ranges, one per thread:
 * each thread unfolds its images and calls GEMM on them itself (lunet__block).  Inside a
 * worker lunet__gemm runs on that worker's thread alone (lunet__workers_for is 1 in a parallel
 * region), so nothing is oversubscribed.  Each
 * worker sums its own partial weight and bias gradients, which are then added in worker order,
 * so results do not depend on timing. */

typedef struct conv_job {
    const lunet__conv_geometry *g;
    lunet_dtype dt;
    const lunet_tensor *x, *w, *b, *kept, *dy;
    lunet_tensor *y, *dx;
    char *dw, *db; /* this worker's gradient sums (dw written by its first image, db zeroed) */
} conv_job;

static lunet_status forward_images(const conv_job *j, int64_t first, int64_t last) {
    const lunet__conv_geometry *g = j->g;
    size_t z = lunet_dtype_size(j->dt);
    void *cols = NULL;
    size_t cols_bytes = 0;
    if (!j->kept) LUNET_TRY(column_buffer(&cols, &cols_bytes, g, j->dt));
    for (int64_t n = first; n < last; n++) {
        if (j->kept) cols = lunet__data(j->kept) + (size_t)(n * g->groups * g->col_rows * g->col_cols) * z;
        lunet__conv2d_image(g, j->dt, lunet__data(j->x) + (size_t)(n * g->c * g->h * g->w) * z, lunet__data(j->w),
                            j->b ? lunet__data(j->b) : NULL, lunet__data(j->y) + (size_t)(n * g->o * g->col_cols) * z, cols);
    }
    if (!j->kept) lunet__free(cols, cols_bytes);
    return LUNET_OK;
}

static lunet_status backward_images(const conv_job *j, int64_t first, int64_t last) {
    const lunet__conv_geometry *g = j->g;
    size_t z = lunet_dtype_size(j->dt);
    void *cols = NULL;
    size_t cols_bytes = 0;
    LUNET_TRY(column_buffer(&cols, &cols_bytes, g, j->dt));
    for (int64_t n = first; n < last; n++) {
        for (int64_t gi = 0; gi < g->groups; gi++) {
            const char *x_img = lunet__data(j->x) + (size_t)((n * g->c + gi * g->cg) * g->h * g->w) * z;
            const char *dy_img = lunet__data(j->dy) + (size_t)((n * g->o + gi * g->og) * g->col_cols) * z;
            const char *w_g = lunet__data(j->w) + (size_t)(gi * g->og * g->col_rows) * z;
            if (j->dw) { /* dW_g += dY cols^T (the first image writes, the others add) */
                const void *c = x_img;
                if (j->kept) c = lunet__data(j->kept) + (size_t)((n * g->groups + gi) * g->col_rows * g->col_cols) * z;
                else if (cols) c = cols, im2col(j->dt, cols, x_img, g);
                lunet__gemm(LUNET__SPLIT_ANY, j->dt, false, true, g->og, g->col_rows, g->col_cols, 1, dy_img, g->col_cols, c, g->col_cols,
                            n == first ? 0 : 1, j->dw + (size_t)(gi * g->og * g->col_rows) * z, g->col_rows);
            }
            if (j->dx) { /* dX = col2im(W^T dY) */
                char *dx_img = lunet__data(j->dx) + (size_t)((n * g->c + gi * g->cg) * g->h * g->w) * z;
                lunet__gemm(LUNET__SPLIT_ANY, j->dt, true, false, g->col_rows, g->col_cols, g->og, 1, w_g, g->col_rows, dy_img,
                            g->col_cols, cols ? 0 : 1, cols ? cols : (void *)dx_img, g->col_cols);
                if (cols) col2im(j->dt, dx_img, cols, g);
            }
        }
        if (j->db) /* db = sum of dY over the image's positions */
            add_row_sums(j->dt, j->db, lunet__data(j->dy) + (size_t)(n * g->o * g->col_cols) * z, g->o, g->col_cols);
    }
    lunet__free(cols, cols_bytes);
    return LUNET_OK;
}

/* Runs fn over the batch's images on the workers; jobs[k] is worker k's job. */
static lunet_status run_workers(lunet_status (*fn)(const conv_job *, int64_t, int64_t), const conv_job *jobs,
                                int workers, int64_t images) {
    lunet_status status[64] = {LUNET_OK};
    if (workers > 64) workers = 64;
#ifdef _OPENMP
#pragma omp parallel for num_threads(workers) schedule(static, 1) if (workers > 1)
#endif
    for (int k = 0; k < workers; k++) {
        int64_t first, last;
        lunet__block(&first, &last, images, k, workers, 1);
        status[k] = fn(&jobs[k], first, last);
    }
    for (int k = 0; k < workers; k++) LUNET_TRY(status[k]);
    return LUNET_OK;
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* dst += src, element by element, for n elements of dtype. */
static void add_into(lunet_dtype dt, char *dst, const char *src, int64_t n) {
    if (dt == LUNET_DTYPE_F32)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
    else
        for (int64_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
}

/* saved: 0 contiguous input, 1 contiguous weight, 2 the batch's columns (N, groups, rows,
 * cols) when the forward kept them. */
static lunet_status conv2d_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->saved[0], *w = node->saved[1], *kept = node->saved[2];
    lunet_conv2d_params p = {{node->iarg[0], node->iarg[1]}, {node->iarg[2], node->iarg[3]},
                             {node->iarg[4], node->iarg[5]}, node->iarg[6]};
    lunet__conv_geometry g;
    LUNET_TRY(conv_geometry_of_tensors(&g, x, w, NULL, &p));
    lunet_dtype dt = x->dtype;
    size_t z = lunet_dtype_size(dt);
    int workers = lunet__workers_for(g.n, 1);
    if (workers > 64) workers = 64;
    int64_t dw_count = g.o * g.col_rows;
    /* workers after the first sum into their own buffers: (dW, db) each */
    size_t partial_bytes = (size_t)(dw_count + g.o) * z * (size_t)(workers - 1);
    lunet_tensor *dy = NULL;
    char *partials = NULL;
    lunet_status s = lunet__contiguous_nograd(&dy, grad);
    if (s == LUNET_OK && node->inputs[0]) s = lunet_tensor_zeros(&grad_in[0], dt, 4, x->shape);
    if (s == LUNET_OK && node->inputs[1]) s = lunet__tensor_new(&grad_in[1], dt, 4, w->shape, "conv2d backward");
    if (s == LUNET_OK && node->inputs[2]) s = lunet_tensor_zeros(&grad_in[2], dt, 1, &g.o);
    if (s == LUNET_OK && partial_bytes && !(partials = lunet__alloc(partial_bytes))) s = lunet__nomem("conv2d backward");
    if (s == LUNET_OK) {
        if (partials) memset(partials, 0, partial_bytes);
        conv_job jobs[64];
        for (int k = 0; k < workers; k++) {
            char *mine = k == 0 ? NULL : partials + (size_t)(k - 1) * (size_t)(dw_count + g.o) * z;
            jobs[k] = (conv_job){.g = &g, .dt = dt, .x = x, .w = w, .kept = kept, .dy = dy, .dx = grad_in[0]};
            if (grad_in[1]) jobs[k].dw = mine ? mine : lunet__data(grad_in[1]);
            if (grad_in[2]) jobs[k].db = mine ? mine + (size_t)dw_count * z : lunet__data(grad_in[2]);
        }
        s = run_workers(backward_images, jobs, workers, g.n);
        for (int k = 1; s == LUNET_OK && k < workers; k++) { /* in worker order: the same sums every run */
            int64_t first, last;
            lunet__block(&first, &last, g.n, k, workers, 1);
            if (grad_in[1] && last > first) add_into(dt, lunet__data(grad_in[1]), jobs[k].dw, dw_count);
            if (grad_in[2]) add_into(dt, lunet__data(grad_in[2]), jobs[k].db, g.o);
        }
    }
    lunet__free(partials, partial_bytes);
    lunet_tensor_release(dy);
    return s;
}

/* ---- forward --------------------------------------------------------------------------------------- */

lunet_status lunet_conv2d(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                          const lunet_tensor *bias, const lunet_conv2d_params *params) {
    *out = NULL;
    const lunet_tensor *operands[3] = {x, weight, bias};
    static const char *const names[3] = {"input", "weight", "bias"};
    LUNET_TRY(lunet__check_float_operands("conv2d", 3, operands, names));
    lunet__conv_geometry g;
    LUNET_TRY(conv_geometry_of_tensors(&g, x, weight, bias, params));
    lunet_dtype dt = x->dtype;
    int64_t shape[4] = {g.n, g.o, g.oh, g.ow};
    lunet_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *kept = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&wc, weight);
    if (s == LUNET_OK && bias) s = lunet__contiguous_nograd(&bc, bias);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, dt, 4, shape, "conv2d");
    /* Keep every image's columns when the backward will need them for the weight's gradient. */
    bool keep = !g.pointwise && weight->requires_grad && lunet_grad_is_enabled();
    if (s == LUNET_OK && keep) {
        int64_t kept_shape[4] = {g.n, g.groups, g.col_rows, g.col_cols};
        s = lunet__tensor_new(&kept, dt, 4, kept_shape, "conv2d");
    }
    if (s == LUNET_OK && g.n > 0) {
        int workers = lunet__workers_for(g.n, 1);
        if (workers > 64) workers = 64;
        conv_job jobs[64];
        for (int k = 0; k < workers; k++)
            jobs[k] = (conv_job){.g = &g, .dt = dt, .x = xc, .w = wc, .b = bc, .kept = kept, .y = y};
        s = run_workers(forward_images, jobs, workers, g.n);
    }
    lunet_tensor_release(bc);
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = lunet__record_or_release(&node, &y, "Conv2dBackward", conv2d_backward, 3, operands);
    if (s == LUNET_OK && node) {
        const int64_t settings[7] = {params->stride[0],   params->stride[1],   params->padding[0], params->padding[1],
                                     params->dilation[0], params->dilation[1], params->groups};
        memcpy(node->iarg, settings, sizeof settings);
        s = lunet__save_all(node, 3, (const lunet_tensor *[]){xc, wc, kept});
    }
    lunet_tensor_release(kept);
    lunet_tensor_release(xc);
    lunet_tensor_release(wc);
    return lunet__hand_over(out, y, s);
}

/* ---- the reference --------------------------------------------------------------------------------- */

lunet_status lunet__conv2d_reference(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                                     const lunet_tensor *bias, const lunet_conv2d_params *params) {
    *out = NULL;
    lunet__conv_geometry g;
    LUNET_TRY(conv_geometry_of_tensors(&g, x, weight, bias, params));
    int64_t shape[4] = {g.n, g.o, g.oh, g.ow};
    LUNET_TRY(lunet__tensor_new(out, x->dtype, 4, shape, "conv2d_reference"));
    char *y = lunet__data(*out);
    size_t z = lunet_dtype_size(x->dtype);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t o = 0; o < g.o; o++) {
            int64_t group = o / g.og;
            for (int64_t oy = 0; oy < g.oh; oy++)
                for (int64_t ox = 0; ox < g.ow; ox++) {
                    double acc = 0;
                    if (bias) {
                        int64_t bi[1] = {o};
                        lunet_tensor_get_f64(&acc, bias, bi);
                    }
                    for (int64_t c = 0; c < g.cg; c++)
                        for (int64_t ki = 0; ki < g.kh; ki++)
                            for (int64_t kj = 0; kj < g.kw; kj++) {
                                int64_t iy = oy * g.sh - g.ph + ki * g.dh, ix = ox * g.sw - g.pw + kj * g.dw;
                                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                                int64_t xi[4] = {n, group * g.cg + c, iy, ix}, wi[4] = {o, c, ki, kj};
                                double xv, wv;
                                lunet_tensor_get_f64(&xv, x, xi);
                                lunet_tensor_get_f64(&wv, weight, wi);
                                acc += xv * wv;
                            }
                    lunet__store_f64(y + (size_t)(((n * g.o + o) * g.oh + oy) * g.ow + ox) * z, x->dtype, acc);
                }
        }
    return LUNET_OK;
}
