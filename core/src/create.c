/* create.c: tensors made from sizes, values, ranges and caller data. */
#include "internal.h"

#include <math.h>
#include <string.h>

lunet_status lunet_tensor_empty(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape) {
    return lunet__tensor_new(out, dtype, ndim, shape, "empty");
}

lunet_status lunet_tensor_full(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape, double value) {
    LUNET_TRY(lunet__tensor_new(out, dtype, ndim, shape, "full"));
    lunet__fill_contiguous(*out, value);
    return LUNET_OK;
}

lunet_status lunet_tensor_zeros(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape) {
    LUNET_TRY(lunet__tensor_new(out, dtype, ndim, shape, "zeros"));
    memset(lunet__data(*out), 0, (size_t)(*out)->numel * lunet_dtype_size(dtype));
    return LUNET_OK;
}

lunet_status lunet_tensor_ones(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape) {
    return lunet_tensor_full(out, dtype, ndim, shape, 1.0);
}

lunet_status lunet_tensor_from_data(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data) {
    LUNET_TRY(lunet__tensor_new(out, dtype, ndim, shape, "from_data"));
    size_t n = (size_t)(*out)->numel * lunet_dtype_size(dtype);
    if (n) memcpy(lunet__data(*out), data, n);
    return LUNET_OK;
}

/* Fills a fresh 1-d tensor with start + i * step. */
static void fill_affine(lunet_tensor *t, double start, double step) {
    char *p = lunet__data(t);
    size_t size = lunet_dtype_size(t->dtype);
    for (int64_t i = 0; i < t->numel; i++) lunet__store_f64(p + (size_t)i * size, t->dtype, start + (double)i * step);
}

lunet_status lunet_tensor_arange(lunet_tensor **out, lunet_dtype dtype, double start, double end,
                                 double step) {
    *out = NULL;
    if (!isfinite(start) || !isfinite(end) || !isfinite(step) || step == 0)
        return lunet__fail(LUNET_ERR_ARG, "arange: start, end and step must be finite and step non-zero");
    if ((step > 0 && end < start) || (step < 0 && end > start))
        return lunet__fail(LUNET_ERR_ARG, "arange: step %g does not lead from %g to %g", step, start, end);
    double count = ceil((end - start) / step);
    if (count > 9.0e15)
        return lunet__fail(LUNET_ERR_ARG, "arange: %g elements are too many", count);
    int64_t n = (int64_t)count;
    LUNET_TRY(lunet__tensor_new(out, dtype, 1, &n, "arange"));
    fill_affine(*out, start, step);
    return LUNET_OK;
}

lunet_status lunet_tensor_linspace(lunet_tensor **out, lunet_dtype dtype, double start,
                                   double end, int64_t steps) {
    *out = NULL;
    if (steps < 0) return lunet__fail(LUNET_ERR_ARG, "linspace: steps must be >= 0, got %lld", (long long)steps);
    LUNET_TRY(lunet__tensor_new(out, dtype, 1, &steps, "linspace"));
    fill_affine(*out, start, steps > 1 ? (end - start) / (double)(steps - 1) : 0.0);
    /* Land exactly on end, which start + (n-1) * step may miss by an ulp. */
    if (steps > 1) lunet__store_f64(lunet__data(*out) + (size_t)(steps - 1) * lunet_dtype_size(dtype), dtype, end);
    return LUNET_OK;
}

lunet_status lunet_tensor_eye(lunet_tensor **out, lunet_dtype dtype, int64_t n, int64_t m) {
    int64_t shape[2] = {n, m};
    LUNET_TRY(lunet_tensor_zeros(out, dtype, 2, shape));
    char *p = lunet__data(*out);
    size_t size = lunet_dtype_size(dtype);
    for (int64_t i = 0; i < n && i < m; i++) lunet__store_f64(p + (size_t)(i * m + i) * size, dtype, 1.0);
    return LUNET_OK;
}
