/*
 * check.h: the small harness the C tests share.  Each test file is one program: TEST
 * functions run from main() through RUN, failed checks are printed with file and line, and
 * the exit status is non-zero when any check failed.
 */
#ifndef LUNET_CHECK_H
#define LUNET_CHECK_H

#include "internal.h"
#include "lunet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_count, check_failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        check_count++;                                                                     \
        if (!(cond)) {                                                                     \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
        }                                                                                  \
    } while (0)

/* A call that must succeed; on failure prints lunet_last_error(). */
#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        check_count++;                                                                     \
        lunet_status check_s = (expr);                                                     \
        if (check_s != LUNET_OK) {                                                         \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #expr,      \
                    lunet_status_name(check_s), lunet_last_error());                       \
        }                                                                                  \
    } while (0)

/* A call that must fail with status and a message containing text. */
#define CHECK_FAILS(expr, status, text)                                                    \
    do {                                                                                   \
        check_count++;                                                                     \
        lunet_status check_s = (expr);                                                     \
        if (check_s != (status) || !strstr(lunet_last_error(), (text))) {                  \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s gave %s \"%s\", expected %s with \"%s\"\n",         \
                    __FILE__, __LINE__, #expr, lunet_status_name(check_s),                 \
                    lunet_last_error(), lunet_status_name(status), (text));                \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        check_count++;                                                                     \
        double check_a = (a), check_b = (b);                                               \
        if (!(fabs(check_a - check_b) <= (tol))) {                                         \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s = %.10g, expected %.10g (tolerance %g)\n",          \
                    __FILE__, __LINE__, #a, check_a, check_b, (double)(tol));              \
        }                                                                                  \
    } while (0)

#define RUN(test)                                                                          \
    do {                                                                                   \
        int before = check_failures;                                                       \
        test();                                                                            \
        if (check_failures != before) fprintf(stderr, "  in %s\n", #test);                 \
    } while (0)

static inline int check_report(const char *name) {
    printf("%-16s %4d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* The i-th of a stream of decimal numbers for checking number readers against strtod: eight
 * printf formats (short, %.9g, %.17g, exponents, 20 digits) over mantissas in [0, 1) scaled by
 * 10^-30 .. 10^30, either sign.  *x is the stream's state (any start). */
static inline void random_decimal(char *field, size_t size, uint64_t *x, int i) {
    static const char *formats[] = {"%.3f", "%.9g", "%.17g", "%.6e", "%.20g", "%.1f", "%.0f", "%.12e"};
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    double mantissa = (double)(*x >> 11) * 0x1.0p-53, scale = pow(10.0, (double)((int)(*x % 61) - 30));
    snprintf(field, size, formats[i % 8], (*x & 1 ? -1 : 1) * mantissa * scale);
}

static inline lunet_tensor *tensor_of(lunet_dtype dtype, int ndim, const int64_t *shape, const double *values) {
    lunet_tensor *t = NULL;
    if (lunet_tensor_empty(&t, dtype, ndim, shape) != LUNET_OK) return NULL;
    char *p = lunet_tensor_data(t);
    for (int64_t i = 0; i < lunet_tensor_numel(t); i++)
        lunet__store_f64(p + (size_t)i * lunet_dtype_size(dtype), dtype, values[i]);
    return t;
}

/* Standard normal values in dtype, drawn in f64 so that the f32 and f64 tests see the same
 * numbers. */
static inline lunet_tensor *randn(lunet_dtype dtype, int ndim, const int64_t *shape) {
    lunet_tensor *t = NULL, *c = NULL;
    lunet_tensor_randn(&t, LUNET_DTYPE_F64, ndim, shape);
    if (dtype == LUNET_DTYPE_F64) return t;
    lunet_tensor_to(&c, t, dtype);
    lunet_tensor_release(t);
    return c;
}

/* Element i of t in C order (any strides) as double. */
static inline double element(const lunet_tensor *t, int64_t flat) {
    int64_t index[LUNET_MAX_DIMS];
    for (int d = lunet_tensor_ndim(t) - 1; d >= 0; d--) {
        int64_t size = lunet_tensor_shape(t)[d];
        index[d] = flat % size;
        flat /= size;
    }
    double v = NAN;
    lunet_tensor_get_f64(&v, t, index);
    return v;
}

/* Largest |a - b| over all elements (shapes must match; returns INFINITY otherwise). */
static inline double max_abs_diff(const lunet_tensor *a, const lunet_tensor *b) {
    if (lunet_tensor_ndim(a) != lunet_tensor_ndim(b) || lunet_tensor_numel(a) != lunet_tensor_numel(b)) return INFINITY;
    for (int d = 0; d < lunet_tensor_ndim(a); d++)
        if (lunet_tensor_shape(a)[d] != lunet_tensor_shape(b)[d]) return INFINITY;
    double worst = 0;
    for (int64_t i = 0; i < lunet_tensor_numel(a); i++) {
        double d = fabs(element(a, i) - element(b, i));
        if (d != d) return INFINITY;
        if (d > worst) worst = d;
    }
    return worst;
}

/* A model graph against the same network run op by op (by_ops(x, ctx)): on random inputs of
 * the graph's sample shape in dtype, at batch 1, 7 and past one slice of the graph's buffers,
 * on 1 and 2 threads, the two must give the same bits. */
typedef lunet_tensor *(*check_ops_fn)(const lunet_tensor *x, const void *ctx);

static inline void check_graph_equals_ops(lunet_model *m, lunet_dtype dtype, check_ops_fn by_ops, const void *ctx) {
    int ndim;
    const int64_t *sample = lunet_model_input_shape(m, &ndim);
    const int64_t batches[3] = {1, 7, LUNET_MODEL_MAX_BATCH + 45};
    for (int threads = 1; threads <= 2; threads++) {
        lunet_set_num_threads(threads);
        for (int b = 0; b < 3; b++) {
            int64_t xs[LUNET_MAX_DIMS] = {batches[b]};
            memcpy(xs + 1, sample, (size_t)ndim * sizeof *sample);
            lunet_tensor *x = randn(dtype, ndim + 1, xs), *y = NULL, *ref = by_ops(x, ctx);
            CHECK_OK(lunet_model_forward(&y, m, x));
            CHECK(y && max_abs_diff(y, ref) == 0);
            lunet_tensor_release(y);
            lunet_tensor_release(ref);
            lunet_tensor_release(x);
        }
    }
    lunet_set_num_threads(1);
}

#endif /* LUNET_CHECK_H */
