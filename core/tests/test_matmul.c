/* test_matmul.c: the BLAS path held to the plain-loop reference, shapes and errors. */
#include "check.h"

/* Random sizes, plain and transposed operands, batch broadcasting: BLAS vs reference. */
static void test_blas_matches_reference(void) {
    const int64_t sizes[] = {1, 2, 3, 7, 16, 33};
    int n = (int)(sizeof sizes / sizeof *sizes);
    for (int dt = 0; dt < 2; dt++) {
        lunet_dtype dtype = dt ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
        double tol = dt ? 1e-12 : 1e-4;
        double worst = 0;
        for (int trial = 0; trial < 60; trial++) {
            int64_t m = sizes[trial % n], k = sizes[(trial / 2) % n], p = sizes[(trial / 3) % n];
            bool transpose_a = trial % 2, transpose_b = (trial / 5) % 2, batched = trial % 3 == 0;
            int64_t sa[3] = {2, transpose_a ? k : m, transpose_a ? m : k};
            int64_t sb[3] = {2, transpose_b ? p : k, transpose_b ? k : p};
            lunet_tensor *a0 = randn(dtype, batched ? 3 : 2, batched ? sa : sa + 1);
            lunet_tensor *b0 = randn(dtype, 2, sb + 1); /* b broadcasts over a's batch */
            lunet_tensor *a = a0, *b = b0, *fast, *ref;
            if (transpose_a) CHECK_OK(lunet_tensor_transpose(&a, a0, -1, -2));
            if (transpose_b) CHECK_OK(lunet_tensor_transpose(&b, b0, -1, -2));
            CHECK_OK(lunet_tensor_matmul(&fast, a, b));
            CHECK_OK(lunet__matmul_reference(&ref, a, b));
            double d = max_abs_diff(fast, ref);
            worst = d > worst ? d : worst;
            lunet_tensor_release(fast);
            lunet_tensor_release(ref);
            if (a != a0) lunet_tensor_release(a);
            if (b != b0) lunet_tensor_release(b);
            lunet_tensor_release(a0);
            lunet_tensor_release(b0);
        }
        CHECK(worst <= tol);
        printf("  matmul %s: largest difference from the reference %.3g\n", lunet_dtype_name(dtype), worst);
    }
}

static void test_batch_broadcast_and_vectors(void) {
    int64_t sa[3] = {4, 2, 3}, sb[4] = {5, 1, 3, 2}, v3[1] = {3};
    lunet_tensor *a = randn(LUNET_DTYPE_F64, 3, sa), *b = randn(LUNET_DTYPE_F64, 4, sb), *c, *ref;
    CHECK_OK(lunet_tensor_matmul(&c, a, b));
    CHECK(lunet_tensor_ndim(c) == 4 && lunet_tensor_shape(c)[0] == 5 && lunet_tensor_shape(c)[1] == 4);
    lunet_tensor *bb;
    int64_t full[4] = {5, 4, 3, 2};
    CHECK_OK(lunet_tensor_expand(&bb, b, 4, full));
    CHECK_OK(lunet__matmul_reference(&ref, a, bb)); /* the reference broadcasts too */
    CHECK(max_abs_diff(c, ref) < 1e-12);
    lunet_tensor *v = randn(LUNET_DTYPE_F64, 1, v3), *mv, *dot;
    CHECK_OK(lunet_tensor_matmul(&mv, a, v)); /* (4,2,3) x (3) -> (4,2) */
    CHECK(lunet_tensor_ndim(mv) == 2 && lunet_tensor_shape(mv)[1] == 2);
    CHECK_OK(lunet_tensor_matmul(&dot, v, v));
    CHECK(lunet_tensor_ndim(dot) == 0);
    double expect = 0;
    for (int i = 0; i < 3; i++) expect += element(v, i) * element(v, i);
    CHECK_NEAR(element(dot, 0), expect, 1e-12);
    lunet_tensor *items[] = {a, b, c, ref, bb, v, mv, dot};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_integers_and_errors(void) {
    int64_t s[2] = {2, 2};
    double av[4] = {1, 2, 3, 4}, bv[4] = {5, 6, 7, 8};
    lunet_tensor *a = tensor_of(LUNET_DTYPE_I32, 2, s, av), *b = tensor_of(LUNET_DTYPE_I32, 2, s, bv), *c;
    CHECK_OK(lunet_tensor_matmul(&c, a, b));
    CHECK(lunet_tensor_dtype(c) == LUNET_DTYPE_I32 && element(c, 0) == 19 && element(c, 3) == 50);
    lunet_tensor_release(c);
    int64_t s23[2] = {2, 3}, s45[2] = {4, 5}, s4[1] = {4};
    lunet_tensor *x, *y, *v, *z;
    CHECK_OK(lunet_tensor_zeros(&x, LUNET_DTYPE_F32, 2, s23));
    CHECK_OK(lunet_tensor_zeros(&y, LUNET_DTYPE_F32, 2, s45));
    CHECK_OK(lunet_tensor_zeros(&v, LUNET_DTYPE_F32, 1, s4));
    CHECK_FAILS(lunet_tensor_matmul(&z, x, y), LUNET_ERR_SHAPE, "matmul: [2,3] x [4,5]: inner sizes differ");
    CHECK_FAILS(lunet_tensor_matmul(&z, x, v), LUNET_ERR_SHAPE, "matmul: [2,3] x [4]: inner sizes differ");
    CHECK(z == NULL);
    int64_t s30[2] = {3, 0}, s02[2] = {0, 2};
    lunet_tensor *e1, *e2;
    CHECK_OK(lunet_tensor_zeros(&e1, LUNET_DTYPE_F32, 2, s30));
    CHECK_OK(lunet_tensor_zeros(&e2, LUNET_DTYPE_F32, 2, s02));
    CHECK_OK(lunet_tensor_matmul(&z, e1, e2)); /* K = 0: a 3x2 matrix of zeros */
    CHECK(lunet_tensor_numel(z) == 6 && element(z, 5) == 0);
    lunet_tensor *items[] = {a, b, x, y, v, z, e1, e2};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

/* Products large enough to be shared between two threads, split by rows (m >= n) and by
 * columns (n > m, with a block bound rounded to a cache line), each with plain and transposed
 * operands: every element must still be the reference's. */
static void test_split_gemm_matches_reference(void) {
    const int64_t shapes[2][3] = {{150, 60, 70}, {40, 110, 130}}; /* m, k, n: 630k and 572k multiply-adds */
    lunet_set_num_threads(2);
    double worst = 0;
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < 4; t++) {
            int64_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
            bool transpose_a = t & 1, transpose_b = t & 2;
            int64_t sa[2] = {transpose_a ? k : m, transpose_a ? m : k}, sb[2] = {transpose_b ? n : k, transpose_b ? k : n};
            lunet_tensor *a0 = randn(LUNET_DTYPE_F32, 2, sa), *b0 = randn(LUNET_DTYPE_F32, 2, sb);
            lunet_tensor *a = a0, *b = b0, *fast, *ref;
            if (transpose_a) CHECK_OK(lunet_tensor_transpose(&a, a0, 0, 1));
            if (transpose_b) CHECK_OK(lunet_tensor_transpose(&b, b0, 0, 1));
            CHECK_OK(lunet_tensor_matmul(&fast, a, b));
            CHECK_OK(lunet__matmul_reference(&ref, a, b));
            double d = max_abs_diff(fast, ref);
            worst = d > worst ? d : worst;
            lunet_tensor *items[] = {fast, ref, a0, b0};
            for (size_t i = 0; i < 4; i++) lunet_tensor_release(items[i]);
            if (a != a0) lunet_tensor_release(a);
            if (b != b0) lunet_tensor_release(b);
        }
    lunet_set_num_threads(1);
    CHECK(worst <= 2e-4);
    printf("  matmul f32 on two threads: largest difference from the reference %.3g\n", worst);
}

int main(void) {
    lunet_manual_seed(11);
    lunet_set_num_threads(1);
    RUN(test_blas_matches_reference);
    RUN(test_batch_broadcast_and_vectors);
    RUN(test_integers_and_errors);
    RUN(test_split_gemm_matches_reference);
    return check_report("test_matmul");
}
