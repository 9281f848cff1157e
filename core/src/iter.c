/* iter.c: walks several equally shaped strided operands row by row (see internal.h). */
#include "internal.h"

void lunet__iter_init(lunet__iter *it, int ndim, const int64_t *shape, int nops,
                      char *const *base, const int64_t *const *elem_strides,
                      const size_t *elem_sizes) {
    LUNET_ASSERT(nops <= LUNET__ITER_MAX_OPS);
    it->nops = nops;
    for (int k = 0; k < nops; k++) it->base[k] = base[k];

    /* Drop size-1 dims, then merge neighbours that are contiguous with each other for every
     * operand, so a contiguous tensor becomes a single row. */
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < nops && merge; k++)
                merge = it->strides[k][n - 1] == elem_strides[k][d] * (int64_t)elem_sizes[k] * shape[d];
            if (merge) {
                it->shape[n - 1] *= shape[d];
                for (int k = 0; k < nops; k++)
                    it->strides[k][n - 1] = elem_strides[k][d] * (int64_t)elem_sizes[k];
                continue;
            }
        }
        it->shape[n] = shape[d];
        for (int k = 0; k < nops; k++) it->strides[k][n] = elem_strides[k][d] * (int64_t)elem_sizes[k];
        n++;
    }
    if (n == 0) { /* a single element */
        it->shape[0] = 1;
        for (int k = 0; k < nops; k++) it->strides[k][0] = (int64_t)elem_sizes[k];
        n = 1;
    }
    it->ndim = n;
}

void lunet__iter_run(const lunet__iter *it, lunet__row_fn row, const void *ctx) {
    const int last = it->ndim - 1, nops = it->nops;
    for (int d = 0; d < it->ndim; d++)
        if (it->shape[d] == 0) return;
    int64_t row_strides[LUNET__ITER_MAX_OPS];
    char *ptrs[LUNET__ITER_MAX_OPS];
    for (int k = 0; k < nops; k++) {
        row_strides[k] = it->strides[k][last];
        ptrs[k] = it->base[k];
    }
    if (last == 0) {
        row(ptrs, row_strides, it->shape[0], ctx);
        return;
    }
    int64_t index[LUNET_MAX_DIMS] = {0};
    for (;;) {
        row(ptrs, row_strides, it->shape[last], ctx);
        /* Advance the outer index like an odometer, moving every operand's pointer along. */
        int d = last - 1;
        for (; d >= 0; d--) {
            for (int k = 0; k < nops; k++) ptrs[k] += it->strides[k][d];
            if (++index[d] < it->shape[d]) break;
            for (int k = 0; k < nops; k++) ptrs[k] -= it->strides[k][d] * it->shape[d];
            index[d] = 0;
        }
        if (d < 0) return;
    }
}
