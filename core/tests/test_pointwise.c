/* test_pointwise.c: elementwise ops, broadcasting, dtype promotion and integer edge cases. */
#include "check.h"

static lunet_tensor *scalar(lunet_dtype dtype, double v) {
    return tensor_of(dtype, 0, NULL, &v);
}

static void test_broadcasting(void) {
    int64_t col_shape[2] = {3, 1}, row_shape[1] = {4};
    double cv[3] = {0, 10, 20}, rv[4] = {1, 2, 3, 4};
    lunet_tensor *col = tensor_of(LUNET_DTYPE_F32, 2, col_shape, cv), *row = tensor_of(LUNET_DTYPE_F32, 1, row_shape, rv);
    lunet_tensor *sum, *diff, *bad;
    CHECK_OK(lunet_tensor_add(&sum, col, row));
    CHECK(lunet_tensor_ndim(sum) == 2 && lunet_tensor_shape(sum)[0] == 3 && lunet_tensor_shape(sum)[1] == 4);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) CHECK(element(sum, i * 4 + j) == cv[i] + rv[j]);
    CHECK_OK(lunet_tensor_sub(&diff, row, col));
    CHECK(element(diff, 4 + 2) == 3 - 10);
    int64_t three[1] = {3};
    lunet_tensor *t3;
    CHECK_OK(lunet_tensor_zeros(&t3, LUNET_DTYPE_F32, 1, three));
    CHECK_FAILS(lunet_tensor_mul(&bad, row, t3), LUNET_ERR_SHAPE, "mul: [4] and [3]: shapes cannot be broadcast");
    /* strided (transposed) operands give the same values as contiguous ones */
    lunet_tensor *tr, *trc, *p1, *p2;
    CHECK_OK(lunet_tensor_transpose(&tr, sum, 0, 1));
    CHECK_OK(lunet_tensor_contiguous(&trc, tr));
    CHECK_OK(lunet_tensor_mul(&p1, tr, tr));
    CHECK_OK(lunet_tensor_mul(&p2, trc, trc));
    CHECK(max_abs_diff(p1, p2) == 0);
    lunet_tensor *items[] = {col, row, sum, diff, t3, tr, trc, p1, p2};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_promotion(void) {
    int64_t two[1] = {2};
    double v[2] = {1, 2};
    lunet_tensor *i32 = tensor_of(LUNET_DTYPE_I32, 1, two, v), *u8 = tensor_of(LUNET_DTYPE_U8, 1, two, v);
    lunet_tensor *i8 = tensor_of(LUNET_DTYPE_I8, 1, two, v), *f64 = tensor_of(LUNET_DTYPE_F64, 1, two, v);
    lunet_tensor *f32s = scalar(LUNET_DTYPE_F64, 0.5), *i64s = scalar(LUNET_DTYPE_I64, 3);
    lunet_tensor *r;
    CHECK_OK(lunet_tensor_add(&r, i32, f64));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_F64);
    lunet_tensor_release(r);
    CHECK_OK(lunet_tensor_add(&r, u8, i8));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_I32);
    lunet_tensor_release(r);
    /* a 0-d operand does not widen a tensor of its kind... */
    CHECK_OK(lunet_tensor_mul(&r, u8, i64s));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_U8 && element(r, 1) == 6);
    lunet_tensor_release(r);
    /* ...but a float scalar turns an integer tensor into the default float */
    CHECK_OK(lunet_tensor_mul(&r, i32, f32s));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_F32 && element(r, 0) == 0.5);
    lunet_tensor_release(r);
    /* true division of integers gives floats */
    CHECK_OK(lunet_tensor_div(&r, i32, i64s));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_F32);
    CHECK_NEAR(element(r, 0), 1.0 / 3, 1e-7);
    lunet_tensor_release(r);
    lunet_tensor *items[] = {i32, u8, i8, f64, f32s, i64s};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_integer_edges(void) {
    int64_t two[1] = {2};
    double big[2] = {2147483647, -2147483647.0 - 1};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_I32, 1, two, big), *one = scalar(LUNET_DTYPE_I32, 1), *r;
    CHECK_OK(lunet_tensor_add(&r, t, one)); /* wraps, like C unsigned arithmetic */
    CHECK(element(r, 0) == -2147483647.0 - 1);
    lunet_tensor_release(r);
    CHECK_OK(lunet_tensor_neg(&r, t));
    CHECK(element(r, 1) == -2147483647.0 - 1);
    lunet_tensor_release(r);
    double base[2] = {3, -2}, ex[2] = {4, 3}, neg[2] = {1, -1};
    lunet_tensor *b = tensor_of(LUNET_DTYPE_I64, 1, two, base), *e = tensor_of(LUNET_DTYPE_I64, 1, two, ex);
    lunet_tensor *n = tensor_of(LUNET_DTYPE_I64, 1, two, neg);
    CHECK_OK(lunet_tensor_pow(&r, b, e));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_I64 && element(r, 0) == 81 && element(r, 1) == -8);
    lunet_tensor_release(r);
    CHECK_FAILS(lunet_tensor_pow(&r, b, n), LUNET_ERR_ARG, "negative integer powers");
    double u[2] = {0, 255};
    lunet_tensor *u8 = tensor_of(LUNET_DTYPE_U8, 1, two, u);
    CHECK_OK(lunet_tensor_abs(&r, u8));
    CHECK(element(r, 1) == 255);
    lunet_tensor_release(r);
    lunet_tensor *items[] = {t, one, b, e, n, u8};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_unary_and_compare(void) {
    int64_t shape[1] = {5};
    double v[5] = {-2, -0.5, 0, 0.5, 2};
    lunet_tensor *x = tensor_of(LUNET_DTYPE_F64, 1, shape, v), *r, *zero = scalar(LUNET_DTYPE_F64, 0);
    struct {
        lunet_status (*op)(lunet_tensor **, const lunet_tensor *);
        double (*ref)(double);
    } cases[] = {{lunet_tensor_exp, exp}, {lunet_tensor_tanh, tanh}, {lunet_tensor_abs, fabs}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        CHECK_OK(cases[c].op(&r, x));
        for (int i = 0; i < 5; i++) CHECK_NEAR(element(r, i), cases[c].ref(v[i]), 1e-15);
        lunet_tensor_release(r);
    }
    CHECK_OK(lunet_tensor_sigmoid(&r, x));
    for (int i = 0; i < 5; i++) CHECK_NEAR(element(r, i), 1 / (1 + exp(-v[i])), 1e-15);
    lunet_tensor_release(r);
    CHECK_OK(lunet_tensor_relu(&r, x));
    CHECK(element(r, 0) == 0 && element(r, 4) == 2);
    lunet_tensor_release(r);
    CHECK_OK(lunet_tensor_clamp(&r, x, -1, NAN));
    CHECK(element(r, 0) == -1 && element(r, 4) == 2);
    lunet_tensor_release(r);
    CHECK_FAILS(lunet_tensor_clamp(&r, x, 1, -1), LUNET_ERR_ARG, "min 1 is greater than max -1");
    CHECK_OK(lunet_tensor_gt(&r, x, zero));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_U8 && element(r, 3) == 1 && element(r, 2) == 0);
    lunet_tensor_release(r);
    CHECK_OK(lunet_tensor_le(&r, x, zero));
    CHECK(element(r, 2) == 1 && element(r, 3) == 0);
    lunet_tensor_release(r);
    /* integers go through f32 for the float functions */
    lunet_tensor *ints;
    CHECK_OK(lunet_tensor_to(&ints, x, LUNET_DTYPE_I32));
    CHECK_OK(lunet_tensor_sqrt(&r, ints));
    CHECK(lunet_tensor_dtype(r) == LUNET_DTYPE_F32 && element(r, 4) == (double)sqrtf(2.0f));
    lunet_tensor_release(r);
    lunet_tensor_release(ints);
    lunet_tensor_release(x);
    lunet_tensor_release(zero);
}

int main(void) {
    RUN(test_broadcasting);
    RUN(test_promotion);
    RUN(test_integer_edges);
    RUN(test_unary_and_compare);
    return check_report("test_pointwise");
}
