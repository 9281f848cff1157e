/* index.c: index_select (gathering slices by position) and bincount, with index_select's
 * gradient. */
#include "internal.h"

#include <string.h>

/* indices as a contiguous 1-d i64 tensor (new reference), each checked against size. */
static lunet_status checked_indices(lunet_tensor **out, const lunet_tensor *indices, int64_t size, int dim,
                                    const char *op) {
    *out = NULL;
    if (indices->ndim != 1 || lunet_dtype_is_float(indices->dtype)) {
        char s[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_ARG, "%s: indices must be a 1-d integer tensor, got %s %s", op,
                           lunet_dtype_name(indices->dtype), lunet__shape_str(s, sizeof s, indices));
    }
    lunet_tensor *i64 = NULL, *c = NULL;
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false);
    lunet_status s = lunet_tensor_to(&i64, indices, LUNET_DTYPE_I64);
    if (s == LUNET_OK) s = lunet_tensor_contiguous(&c, i64);
    lunet_grad_set_enabled(was);
    lunet_tensor_release(i64);
    LUNET_TRY(s);
    const int64_t *p = lunet_tensor_data(c);
    for (int64_t i = 0; i < c->numel; i++) {
        if (p[i] < 0 || p[i] >= size) {
            lunet_tensor_release(c);
            if (size == INT64_MAX) /* bincount: no upper bound */
                return lunet__fail(LUNET_ERR_INDEX, "%s: value %lld at position %lld is negative", op,
                                   (long long)p[i], (long long)i);
            return lunet__fail(LUNET_ERR_INDEX, "%s: index %lld out of range for dim %d of size %lld", op,
                               (long long)p[i], dim, (long long)size);
        }
    }
    *out = c;
    return LUNET_OK;
}

/* grad_in = zeros of the input's shape with grad's slices added back at their indices. */
static lunet_status index_select_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *in = node->inputs[0], *idx = node->saved[0];
    int dim = (int)node->iarg[0];
    lunet_tensor *gc, *z;
    LUNET_TRY(lunet_tensor_contiguous(&gc, g));
    lunet_status s = lunet_tensor_zeros(&z, g->dtype, in->ndim, in->shape);
    if (s == LUNET_OK) {
        int64_t outer = lunet__numel(dim, in->shape), n = in->shape[dim];
        int64_t inner = lunet__numel(in->ndim - dim - 1, in->shape + dim + 1), k = idx->numel;
        const int64_t *at = lunet_tensor_data(idx);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < k; j++) {
                int64_t dst = (o * n + at[j]) * inner, src = (o * k + j) * inner;
                if (g->dtype == LUNET_DTYPE_F32) {
                    float *d = lunet_tensor_data(z);
                    const float *q = lunet_tensor_data(gc);
                    for (int64_t i = 0; i < inner; i++) d[dst + i] += q[src + i];
                } else {
                    double *d = lunet_tensor_data(z);
                    const double *q = lunet_tensor_data(gc);
                    for (int64_t i = 0; i < inner; i++) d[dst + i] += q[src + i];
                }
            }
        grad_in[0] = z;
    }
    lunet_tensor_release(gc);
    return s;
}

/* index_select copies on one thread below this many bytes per worker. */
#define MIN_GATHER_BYTES_PER_WORKER ((int64_t)1 << 16)

lunet_status lunet_tensor_index_select(lunet_tensor **out, const lunet_tensor *t, int dim,
                                       const lunet_tensor *indices) {
    *out = NULL;
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, t->ndim, 0, "index_select"));
    lunet_tensor *idx, *c = NULL, *o = NULL;
    LUNET_TRY(checked_indices(&idx, indices, t->shape[d], d, "index_select"));
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false);
    lunet_status s = lunet_tensor_contiguous(&c, t);
    lunet_grad_set_enabled(was);
    int64_t shape[LUNET_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[d] = idx->numel;
    if (s == LUNET_OK) s = lunet__tensor_new(&o, t->dtype, t->ndim, shape, "index_select");
    if (s == LUNET_OK && o->numel > 0) {
        int64_t outer = lunet__numel(d, t->shape), n = t->shape[d], k = idx->numel;
        size_t row = (size_t)lunet__numel(t->ndim - d - 1, t->shape + d + 1) * lunet_dtype_size(t->dtype);
        const int64_t *at = lunet_tensor_data(idx);
        const char *src = lunet__data(c);
        char *dst = lunet__data(o);
        /* A batch gathered from a large dataset waits on memory row by row: two threads
         * waiting at once halve that wait. */
        int workers = lunet__workers_for(outer * k * (int64_t)row, MIN_GATHER_BYTES_PER_WORKER);
#pragma omp parallel for num_threads(workers) schedule(static, 1) if (workers > 1)
        for (int w = 0; w < workers; w++) {
            int64_t first, last;
            lunet__block(&first, &last, outer * k, w, workers, 1);
            for (int64_t r = first; r < last; r++) /* output row r = q * k + j */
                memcpy(dst + (size_t)r * row, src + (size_t)(r / k * n + at[r % k]) * row, row);
        }
    }
    lunet_tensor_release(c);
    lunet__node *node = NULL;
    if (s == LUNET_OK) {
        const lunet_tensor *inputs[1] = {t};
        s = lunet__record(&node, o, "IndexSelectBackward", index_select_backward, 1, inputs);
    }
    if (s == LUNET_OK && node) {
        node->iarg[0] = d;
        s = lunet__save(node, 0, idx);
    }
    lunet_tensor_release(idx);
    return lunet__hand_over(out, o, s);
}

lunet_status lunet_tensor_bincount(lunet_tensor **out, const lunet_tensor *t, int64_t minlength) {
    *out = NULL;
    if (minlength < 0) return lunet__fail(LUNET_ERR_ARG, "bincount: minlength must be >= 0");
    lunet_tensor *idx;
    LUNET_TRY(checked_indices(&idx, t, INT64_MAX, 0, "bincount"));
    const int64_t *p = lunet_tensor_data(idx);
    int64_t length = minlength;
    for (int64_t i = 0; i < idx->numel; i++)
        if (p[i] + 1 > length) length = p[i] + 1;
    lunet_status s = lunet_tensor_zeros(out, LUNET_DTYPE_I64, 1, &length);
    if (s == LUNET_OK) {
        int64_t *counts = lunet_tensor_data(*out);
        for (int64_t i = 0; i < idx->numel; i++) counts[p[i]]++;
    }
    lunet_tensor_release(idx);
    return s;
}
