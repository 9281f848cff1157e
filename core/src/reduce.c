/*
 * reduce.c: sum, mean, max, min, argmax, argmin over one dim or all elements, with gradients.
 *
 * The input is made contiguous and seen as (outer, n, inner) where n is the reduced dim (all
 * elements: outer = inner = 1).  Float sums over a contiguous run accumulate in double;
 * integer sums give i64 and wrap like unsigned arithmetic.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

typedef struct reduce_shape {
    int64_t outer, n, inner;
} reduce_shape;

/* ---- kernels ---------------------------------------------------------------------------------- */

/* out (outer, inner) = sum over n of in (outer, n, inner). */
#define SUM_KERNEL(N, T, ACC, TO)                                                          \
    static void sum_##N(TO *out, const T *in, reduce_shape r) {                            \
        for (int64_t o = 0; o < r.outer; o++) {                                            \
            const T *base = in + o * r.n * r.inner;                                        \
            TO *dst = out + o * r.inner;                                                   \
            if (r.inner == 1) {                                                            \
                ACC acc = 0;                                                               \
                for (int64_t k = 0; k < r.n; k++) acc = (ACC)(acc + (ACC)base[k]);         \
                dst[0] = (TO)acc;                                                          \
                continue;                                                                  \
            }                                                                              \
            for (int64_t i = 0; i < r.inner; i++) dst[i] = 0;                              \
            for (int64_t k = 0; k < r.n; k++) {                                            \
                const T *row = base + k * r.inner;                                         \
                for (int64_t i = 0; i < r.inner; i++) dst[i] = (TO)((ACC)dst[i] + (ACC)row[i]); \
            }                                                                              \
        }                                                                                  \
    }
SUM_KERNEL(F32, float, double, float)
SUM_KERNEL(F64, double, double, double)
SUM_KERNEL(I64, int64_t, uint64_t, int64_t)
SUM_KERNEL(I32, int32_t, uint64_t, int64_t)
SUM_KERNEL(I8, int8_t, uint64_t, int64_t)
SUM_KERNEL(U8, uint8_t, uint64_t, int64_t)
#undef SUM_KERNEL

/* values (outer, inner) and indices (outer, inner) of the max (want_max) or min over n.
 * Ties keep the first index; a NaN wins over numbers, as in PyTorch. */
#define EXTREME_KERNEL(N, T, U)                                                            \
    static void extreme_##N(T *values, int64_t *indices, const T *in, reduce_shape r, bool want_max) { \
        for (int64_t o = 0; o < r.outer; o++)                                              \
            for (int64_t i = 0; i < r.inner; i++) {                                        \
                const T *p = in + o * r.n * r.inner + i;                                   \
                T best = p[0];                                                             \
                int64_t at = 0;                                                            \
                for (int64_t k = 1; k < r.n && best == best; k++) {                        \
                    T v = p[k * r.inner];                                                  \
                    if (v != v || (want_max ? v > best : v < best)) {                      \
                        best = v;                                                          \
                        at = k;                                                            \
                    }                                                                      \
                }                                                                          \
                if (values) values[o * r.inner + i] = best;                                \
                if (indices) indices[o * r.inner + i] = at;                                \
            }                                                                              \
    }
LUNET__FOR_EACH_DTYPE(EXTREME_KERNEL)
#undef EXTREME_KERNEL

/* ---- shared plumbing ---------------------------------------------------------------------------- */

/* Contiguous t (new reference) and the (outer, n, inner) split for dim (-1 after
 * normalisation means all elements). */
static lunet_status prepare(lunet_tensor **c, reduce_shape *r, const lunet_tensor *t, int dim) {
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false);
    lunet_status s = lunet_tensor_contiguous(c, t);
    lunet_grad_set_enabled(was);
    LUNET_TRY(s);
    if (dim < 0) {
        *r = (reduce_shape){1, t->numel, 1};
        return LUNET_OK;
    }
    r->outer = lunet__numel(dim, t->shape);
    r->n = t->shape[dim];
    r->inner = lunet__numel(t->ndim - dim - 1, t->shape + dim + 1);
    return LUNET_OK;
}

/* The result shape of reducing dim of t.  Inside this file dim -1 means "all elements":
 * public entry points normalise negative dims before they get here. */
static int reduced_shape(int64_t *shape, const lunet_tensor *t, int dim, bool keepdim) {
    if (dim < 0) return 0;
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (d != dim) shape[n++] = t->shape[d];
        else if (keepdim) shape[n++] = 1;
    }
    return n;
}

static lunet_status resolve_dim(int *out, const lunet_tensor *t, int dim, const char *op) {
    return lunet__normalize_dim(out, dim, t->ndim, 0, op);
}

/* A node for a reduction of t (dim -1: all) with iarg[0] = dim, iarg[1] = keepdim. */
static lunet_status record_reduction(lunet__node **node, lunet_tensor *out, const lunet_tensor *t,
                                     const char *name, lunet__backward_fn backward, int dim, bool keepdim) {
    const lunet_tensor *inputs[1] = {t};
    LUNET_TRY(lunet__record(node, out, name, backward, 1, inputs));
    if (*node) {
        (*node)->iarg[0] = dim;
        (*node)->iarg[1] = keepdim;
    }
    return LUNET_OK;
}

/* The incoming gradient of a reduction, reshaped with the reduced dim kept and expanded back
 * to the input's shape, as a contiguous tensor. */
static lunet_status broadcast_back(lunet_tensor **out, const lunet__node *node, const lunet_tensor *g) {
    const lunet_tensor *in = node->inputs[0];
    int dim = (int)node->iarg[0];
    int64_t kept[LUNET_MAX_DIMS];
    for (int d = 0; d < in->ndim; d++) kept[d] = (dim < 0 || d == dim) ? 1 : in->shape[d];
    lunet_tensor *r = NULL, *e = NULL;
    lunet_status s = lunet_tensor_reshape(&r, g, in->ndim, kept);
    if (s == LUNET_OK) s = lunet_tensor_expand(&e, r, in->ndim, in->shape);
    if (s == LUNET_OK) s = lunet_tensor_contiguous(out, e);
    lunet_tensor_release(r);
    lunet_tensor_release(e);
    return s;
}

/* ---- sum and mean ------------------------------------------------------------------------------- */

static lunet_status sum_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    return broadcast_back(&grad_in[0], node, g);
}

static lunet_status mean_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    lunet_tensor *b, *scale;
    LUNET_TRY(broadcast_back(&b, node, g));
    int64_t none = 0;
    lunet_status s = lunet_tensor_full(&scale, g->dtype, 0, &none, 1.0 / node->farg[0]);
    if (s == LUNET_OK) s = lunet_tensor_mul(&grad_in[0], b, scale);
    lunet_tensor_release(scale);
    lunet_tensor_release(b);
    return s;
}

static lunet_status sum_impl(lunet_tensor **out, const lunet_tensor *t, int dim, bool keepdim, const char *op) {
    *out = NULL;
    lunet_tensor *c;
    reduce_shape r;
    LUNET_TRY(prepare(&c, &r, t, dim));
    int64_t shape[LUNET_MAX_DIMS];
    int ndim = reduced_shape(shape, t, dim, keepdim);
    lunet_dtype out_dtype = lunet_dtype_is_float(t->dtype) ? t->dtype : LUNET_DTYPE_I64;
    lunet_tensor *o;
    lunet_status s = lunet__tensor_new(&o, out_dtype, ndim, shape, op);
    if (s == LUNET_OK) {
        void *dst = lunet__data(o);
        const void *src = lunet__data(c);
        switch (t->dtype) {
#define CASE(N, T, U)                                                                      \
    case LUNET_DTYPE_##N: sum_##N(dst, src, r); break;
            LUNET__FOR_EACH_DTYPE(CASE)
#undef CASE
        default: break;
        }
    }
    lunet_tensor_release(c);
    LUNET_TRY(s);
    lunet__node *node;
    s = record_reduction(&node, o, t, "SumBackward", sum_backward, dim, keepdim);
    return lunet__hand_over(out, o, s);
}

lunet_status lunet_tensor_sum_all(lunet_tensor **out, const lunet_tensor *t) {
    return sum_impl(out, t, -1, false, "sum");
}

lunet_status lunet_tensor_sum_dim(lunet_tensor **out, const lunet_tensor *t, int dim, bool keepdim) {
    int d;
    *out = NULL;
    LUNET_TRY(resolve_dim(&d, t, dim, "sum"));
    return sum_impl(out, t, d, keepdim, "sum");
}

static lunet_status mean_impl(lunet_tensor **out, const lunet_tensor *t, int dim, bool keepdim) {
    *out = NULL;
    lunet_tensor *f = NULL, *sum = NULL, *scale = NULL, *o = NULL;
    lunet_status s = lunet_tensor_to(&f, t, lunet_dtype_is_float(t->dtype) ? t->dtype : LUNET_DTYPE_F32);
    int64_t count = dim < 0 ? t->numel : t->shape[dim];
    /* Computed without recording, then given one MeanBackward node. */
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false);
    if (s == LUNET_OK) s = sum_impl(&sum, f, dim, keepdim, "mean");
    int64_t none = 0;
    /* Divide rather than multiply by 1/count: exact whenever the mean is representable. */
    if (s == LUNET_OK) s = lunet_tensor_full(&scale, f->dtype, 0, &none, (double)count);
    if (s == LUNET_OK) s = lunet_tensor_div(&o, sum, scale);
    lunet_grad_set_enabled(was);
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = record_reduction(&node, o, f, "MeanBackward", mean_backward, dim, keepdim);
    if (node) node->farg[0] = (double)count;
    lunet_tensor_release(f);
    lunet_tensor_release(sum);
    lunet_tensor_release(scale);
    return lunet__hand_over(out, o, s);
}

lunet_status lunet_tensor_mean_all(lunet_tensor **out, const lunet_tensor *t) {
    return mean_impl(out, t, -1, false);
}

lunet_status lunet_tensor_mean_dim(lunet_tensor **out, const lunet_tensor *t, int dim, bool keepdim) {
    int d;
    *out = NULL;
    LUNET_TRY(resolve_dim(&d, t, dim, "mean"));
    return mean_impl(out, t, d, keepdim);
}

/* ---- max, min, argmax, argmin ------------------------------------------------------------------- */

/* The gradient goes to the chosen element of each reduced run (saved[0] holds the indices as
 * (outer, inner) i64). */
static lunet_status extreme_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *in = node->inputs[0], *idx = node->saved[0];
    int dim = (int)node->iarg[0];
    reduce_shape r;
    if (dim < 0) r = (reduce_shape){1, in->numel, 1};
    else r = (reduce_shape){lunet__numel(dim, in->shape), in->shape[dim],
                            lunet__numel(in->ndim - dim - 1, in->shape + dim + 1)};
    lunet_tensor *gc, *z;
    LUNET_TRY(lunet_tensor_contiguous(&gc, g));
    lunet_status s = lunet_tensor_zeros(&z, g->dtype, in->ndim, in->shape);
    if (s == LUNET_OK) {
        const int64_t *at = lunet_tensor_data(idx);
        size_t esize = lunet_dtype_size(g->dtype);
        char *dst = lunet__data(z);
        const char *src = lunet__data(gc);
        for (int64_t o = 0; o < r.outer; o++)
            for (int64_t i = 0; i < r.inner; i++) {
                int64_t j = o * r.inner + i;
                memcpy(dst + (size_t)((o * r.n + at[j]) * r.inner + i) * esize, src + (size_t)j * esize, esize);
            }
        grad_in[0] = z;
    }
    lunet_tensor_release(gc);
    return s;
}

/* values and/or indices of the max or min of t over dim (-1: all). */
static lunet_status extreme_impl(lunet_tensor **values, lunet_tensor **indices, const lunet_tensor *t, int dim,
                                 bool keepdim, bool want_max, const char *op) {
    if (values) *values = NULL;
    if (indices) *indices = NULL;
    if ((dim < 0 && t->numel == 0) || (dim >= 0 && t->shape[dim] == 0))
        return lunet__fail(LUNET_ERR_SHAPE, "%s: cannot reduce an empty %s", op, dim < 0 ? "tensor" : "dim");
    lunet_tensor *c, *v = NULL, *ix = NULL;
    reduce_shape r;
    LUNET_TRY(prepare(&c, &r, t, dim));
    int64_t shape[LUNET_MAX_DIMS];
    int ndim = reduced_shape(shape, t, dim, keepdim);
    bool need_index = indices || (values && lunet__needs_grad(1, &t));
    lunet_status s = LUNET_OK;
    if (values) s = lunet__tensor_new(&v, t->dtype, ndim, shape, op);
    if (s == LUNET_OK && need_index) s = lunet__tensor_new(&ix, LUNET_DTYPE_I64, ndim, shape, op);
    if (s == LUNET_OK) {
        void *vd = v ? lunet__data(v) : NULL;
        int64_t *id = ix ? lunet_tensor_data(ix) : NULL;
        switch (t->dtype) {
#define CASE(N, T, U)                                                                      \
    case LUNET_DTYPE_##N: extreme_##N(vd, id, (const void *)lunet__data(c), r, want_max); break;
            LUNET__FOR_EACH_DTYPE(CASE)
#undef CASE
        default: break;
        }
    }
    lunet_tensor_release(c);
    lunet__node *node = NULL;
    if (s == LUNET_OK && v)
        s = record_reduction(&node, v, t, want_max ? "MaxBackward" : "MinBackward", extreme_backward, dim, keepdim);
    if (s == LUNET_OK && node) s = lunet__save(node, 0, ix);
    if (s != LUNET_OK) {
        lunet_tensor_release(v);
        lunet_tensor_release(ix);
        return s;
    }
    if (values) *values = v;
    if (indices) *indices = ix;
    else lunet_tensor_release(ix);
    return LUNET_OK;
}

lunet_status lunet_tensor_max_all(lunet_tensor **out, const lunet_tensor *t) {
    return extreme_impl(out, NULL, t, -1, false, true, "max");
}
lunet_status lunet_tensor_min_all(lunet_tensor **out, const lunet_tensor *t) {
    return extreme_impl(out, NULL, t, -1, false, false, "min");
}

lunet_status lunet_tensor_max_dim(lunet_tensor **values, lunet_tensor **indices, const lunet_tensor *t, int dim,
                                  bool keepdim) {
    int d;
    *values = NULL;
    if (indices) *indices = NULL;
    LUNET_TRY(resolve_dim(&d, t, dim, "max"));
    return extreme_impl(values, indices, t, d, keepdim, true, "max");
}

lunet_status lunet_tensor_min_dim(lunet_tensor **values, lunet_tensor **indices, const lunet_tensor *t, int dim,
                                  bool keepdim) {
    int d;
    *values = NULL;
    if (indices) *indices = NULL;
    LUNET_TRY(resolve_dim(&d, t, dim, "min"));
    return extreme_impl(values, indices, t, d, keepdim, false, "min");
}

lunet_status lunet_tensor_argmax_all(lunet_tensor **out, const lunet_tensor *t) {
    return extreme_impl(NULL, out, t, -1, false, true, "argmax");
}
lunet_status lunet_tensor_argmin_all(lunet_tensor **out, const lunet_tensor *t) {
    return extreme_impl(NULL, out, t, -1, false, false, "argmin");
}

lunet_status lunet_tensor_argmax_dim(lunet_tensor **out, const lunet_tensor *t, int dim, bool keepdim) {
    int d;
    *out = NULL;
    LUNET_TRY(resolve_dim(&d, t, dim, "argmax"));
    return extreme_impl(NULL, out, t, d, keepdim, true, "argmax");
}

lunet_status lunet_tensor_argmin_dim(lunet_tensor **out, const lunet_tensor *t, int dim, bool keepdim) {
    int d;
    *out = NULL;
    LUNET_TRY(resolve_dim(&d, t, dim, "argmin"));
    return extreme_impl(NULL, out, t, d, keepdim, false, "argmin");
}
