/* shape.c: broadcasting rules, contiguous strides and shape formatting for messages. */
#include "internal.h"

#include <string.h>

char *lunet_shape_format(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = 0;
    if (size == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

const char *lunet__shape_str(char *buf, size_t size, const lunet_tensor *t) {
    return lunet_shape_format(buf, size, t->ndim, t->shape);
}

bool lunet__same_shape(int ndim_a, const int64_t *a, int ndim_b, const int64_t *b) {
    return ndim_a == ndim_b && (ndim_a == 0 || memcmp(a, b, (size_t)ndim_a * sizeof *a) == 0);
}

void lunet__contiguous_strides(int64_t *out_strides, int ndim, const int64_t *shape) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        out_strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

lunet_status lunet__broadcast_shape(int *out_ndim, int64_t *out_shape, const char *op,
                                    int ndim_a, const int64_t *shape_a, int ndim_b,
                                    const int64_t *shape_b) {
    int n = ndim_a > ndim_b ? ndim_a : ndim_b;
    for (int i = 0; i < n; i++) {
        /* Align from the right, as NumPy does. */
        int ia = ndim_a - n + i, ib = ndim_b - n + i;
        int64_t da = ia >= 0 ? shape_a[ia] : 1, db = ib >= 0 ? shape_b[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
            return lunet__fail(LUNET_ERR_SHAPE, "%s: %s and %s: shapes cannot be broadcast together",
                               op, lunet_shape_format(sa, sizeof sa, ndim_a, shape_a),
                               lunet_shape_format(sb, sizeof sb, ndim_b, shape_b));
        }
        out_shape[i] = da == 1 ? db : da;
    }
    *out_ndim = n;
    return LUNET_OK;
}

void lunet__broadcast_strides(int64_t *out_strides, int src_ndim, const int64_t *src_shape,
                              const int64_t *src_strides, int ndim, const int64_t *shape) {
    for (int i = 0; i < ndim; i++) {
        int is = src_ndim - ndim + i;
        out_strides[i] = (is < 0 || (src_shape[is] == 1 && shape[i] != 1)) ? 0 : src_strides[is];
    }
}
