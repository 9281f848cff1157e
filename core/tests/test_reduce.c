/* test_reduce.c: reductions against straightforward loops, over each dim and all. */
#include "check.h"

static lunet_tensor *random_tensor(int ndim, const int64_t *shape) {
    lunet_tensor *t = NULL;
    lunet_tensor_randn(&t, LUNET_DTYPE_F64, ndim, shape);
    return t;
}

static void test_sum_mean_each_dim(void) {
    int64_t shape[3] = {2, 3, 4};
    lunet_tensor *t = random_tensor(3, shape);
    for (int dim = 0; dim < 3; dim++) {
        lunet_tensor *s, *m, *k;
        CHECK_OK(lunet_tensor_sum_dim(&s, t, dim, false));
        CHECK_OK(lunet_tensor_mean_dim(&m, t, dim, false));
        CHECK_OK(lunet_tensor_sum_dim(&k, t, dim - 3, true)); /* negative dim, keepdim */
        CHECK(lunet_tensor_ndim(s) == 2 && lunet_tensor_ndim(k) == 3 && lunet_tensor_shape(k)[dim] == 1);
        /* reference: loop over every element and add it to its output slot */
        double ref[24] = {0};
        for (int64_t i = 0; i < 24; i++) {
            int64_t idx[3] = {i / 12, (i / 4) % 3, i % 4}, kept_shape[2], kept[2], n = 0;
            for (int d = 0; d < 3; d++)
                if (d != dim) {
                    kept_shape[n] = shape[d];
                    kept[n++] = idx[d];
                }
            ref[kept[0] * kept_shape[1] + kept[1]] += element(t, i);
        }
        for (int64_t o = 0; o < lunet_tensor_numel(s); o++) {
            CHECK_NEAR(element(s, o), ref[o], 1e-12);
            CHECK_NEAR(element(k, o), ref[o], 1e-12);
            CHECK_NEAR(element(m, o), ref[o] / (double)shape[dim], 1e-12);
        }
        lunet_tensor_release(s);
        lunet_tensor_release(m);
        lunet_tensor_release(k);
    }
    lunet_tensor *all;
    CHECK_OK(lunet_tensor_sum_all(&all, t));
    double total = 0;
    for (int i = 0; i < 24; i++) total += element(t, i);
    CHECK(lunet_tensor_ndim(all) == 0);
    CHECK_NEAR(element(all, 0), total, 1e-12);
    lunet_tensor_release(all);
    lunet_tensor_release(t);
}

static void test_max_min_argmax(void) {
    int64_t shape[2] = {3, 4};
    double v[12] = {1, 5, 5, 0, -1, -3, -3, -2, 7, 7, 7, 7};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_F32, 2, shape, v), *vals, *idx, *a;
    CHECK_OK(lunet_tensor_max_dim(&vals, &idx, t, 1, false));
    CHECK(element(vals, 0) == 5 && element(idx, 0) == 1); /* ties go to the first index */
    CHECK(element(vals, 1) == -1 && element(idx, 1) == 0);
    CHECK(element(idx, 2) == 0);
    lunet_tensor_release(vals);
    lunet_tensor_release(idx);
    CHECK_OK(lunet_tensor_min_dim(&vals, &idx, t, 0, true));
    CHECK(lunet_tensor_ndim(vals) == 2 && element(vals, 1) == -3 && element(idx, 1) == 1);
    lunet_tensor_release(vals);
    lunet_tensor_release(idx);
    CHECK_OK(lunet_tensor_argmax_all(&a, t));
    CHECK(lunet_tensor_dtype(a) == LUNET_DTYPE_I64 && element(a, 0) == 8);
    lunet_tensor_release(a);
    CHECK_OK(lunet_tensor_argmin_dim(&a, t, -1, false));
    CHECK(element(a, 1) == 1);
    lunet_tensor_release(a);
    double nan_v[3] = {1, NAN, 3};
    int64_t three[1] = {3};
    lunet_tensor *n = tensor_of(LUNET_DTYPE_F64, 1, three, nan_v);
    CHECK_OK(lunet_tensor_max_all(&a, n));
    CHECK(isnan(element(a, 0)));
    lunet_tensor_release(a);
    int64_t empty[2] = {0, 2};
    lunet_tensor *e;
    CHECK_OK(lunet_tensor_zeros(&e, LUNET_DTYPE_F32, 2, empty));
    CHECK_FAILS(lunet_tensor_max_all(&a, e), LUNET_ERR_SHAPE, "max: cannot reduce an empty tensor");
    CHECK_OK(lunet_tensor_sum_all(&a, e));
    CHECK(element(a, 0) == 0);
    lunet_tensor_release(a);
    CHECK_FAILS(lunet_tensor_sum_dim(&a, t, 2, false), LUNET_ERR_INDEX, "sum: dim 2 out of range for a 2-d tensor");
    lunet_tensor_release(e);
    lunet_tensor_release(n);
    lunet_tensor_release(t);
}

static void test_integer_sums(void) {
    int64_t shape[1] = {300};
    lunet_tensor *t, *s, *m;
    CHECK_OK(lunet_tensor_full(&t, LUNET_DTYPE_U8, 1, shape, 200));
    CHECK_OK(lunet_tensor_sum_all(&s, t));
    CHECK(lunet_tensor_dtype(s) == LUNET_DTYPE_I64 && element(s, 0) == 60000);
    CHECK_OK(lunet_tensor_mean_all(&m, t));
    CHECK(lunet_tensor_dtype(m) == LUNET_DTYPE_F32 && element(m, 0) == 200);
    lunet_tensor_release(t);
    lunet_tensor_release(s);
    lunet_tensor_release(m);
}

static void test_strided_input(void) {
    int64_t shape[2] = {5, 7};
    lunet_tensor *t = random_tensor(2, shape), *tr, *c, *a, *b;
    CHECK_OK(lunet_tensor_transpose(&tr, t, 0, 1));
    CHECK_OK(lunet_tensor_contiguous(&c, tr));
    CHECK_OK(lunet_tensor_sum_dim(&a, tr, 1, false));
    CHECK_OK(lunet_tensor_sum_dim(&b, c, 1, false));
    CHECK(max_abs_diff(a, b) < 1e-12);
    lunet_tensor *items[] = {t, tr, c, a, b};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

int main(void) {
    lunet_manual_seed(3);
    RUN(test_sum_mean_each_dim);
    RUN(test_max_min_argmax);
    RUN(test_integer_sums);
    RUN(test_strided_input);
    return check_report("test_reduce");
}
