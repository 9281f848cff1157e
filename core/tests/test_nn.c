/* test_nn.c: the conv2d fast path against its reference, layer shapes, and the nn ops'
 * gradients by central differences in f64. */
#include "check.h"

static lunet_tensor *randn(lunet_dtype dtype, int ndim, const int64_t *shape) {
    lunet_tensor *t = NULL, *c = NULL;
    lunet_tensor_randn(&t, LUNET_DTYPE_F64, ndim, shape);
    if (dtype == LUNET_DTYPE_F64) return t;
    lunet_tensor_to(&c, t, dtype);
    lunet_tensor_release(t);
    return c;
}

/* Every combination of stride, padding, dilation and groups: im2col + GEMM = the definition. */
static void test_conv2d_matches_reference(void) {
    double worst[2] = {0, 0};
    int cases = 0;
    for (int dt = 0; dt < 2; dt++) {
        lunet_dtype dtype = dt ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
        for (int64_t stride = 1; stride <= 2; stride++)
            for (int64_t pad = 0; pad <= 2; pad++)
                for (int64_t dil = 1; dil <= 2; dil++)
                    for (int64_t groups = 1; groups <= 2; groups++)
                        for (int64_t k = 1; k <= 3; k += 2) {
                            int64_t xs[4] = {2, 4, 9, 8}, ws[4] = {6, 4 / groups, k, k + (k > 1)}, bs[1] = {6};
                            lunet_tensor *x = randn(dtype, 4, xs), *w = randn(dtype, 4, ws), *b = randn(dtype, 1, bs);
                            lunet_conv2d_params p = {{stride, 1}, {pad, pad / 2}, {dil, 1}, groups};
                            lunet_tensor *fast = NULL, *ref = NULL;
                            CHECK_OK(lunet_conv2d(&fast, x, w, (k + pad) % 2 ? b : NULL, &p));
                            CHECK_OK(lunet__conv2d_reference(&ref, x, w, (k + pad) % 2 ? b : NULL, &p));
                            double d = max_abs_diff(fast, ref);
                            worst[dt] = d > worst[dt] ? d : worst[dt];
                            cases++;
                            lunet_tensor *items[] = {x, w, b, fast, ref};
                            for (size_t i = 0; i < 5; i++) lunet_tensor_release(items[i]);
                        }
    }
    CHECK(worst[0] < 1e-4 && worst[1] < 1e-12);
    printf("  conv2d vs reference over %d cases: largest difference f32 %.3g, f64 %.3g\n", cases, worst[0], worst[1]);
}

static void test_shapes_and_errors(void) {
    int64_t xs[4] = {1, 3, 10, 10}, ws[4] = {8, 3, 3, 3}, bad_w[4] = {8, 2, 3, 3};
    lunet_tensor *x = randn(LUNET_DTYPE_F32, 4, xs), *w = randn(LUNET_DTYPE_F32, 4, ws), *bw = randn(LUNET_DTYPE_F32, 4, bad_w);
    lunet_conv2d_params p = {{2, 2}, {1, 1}, {1, 1}, 1};
    lunet_tensor *y = NULL, *none = NULL;
    CHECK_OK(lunet_conv2d(&y, x, w, NULL, &p));
    CHECK(lunet_tensor_shape(y)[2] == 5 && lunet_tensor_shape(y)[3] == 5);
    CHECK_FAILS(lunet_conv2d(&none, x, bw, NULL, &p), LUNET_ERR_SHAPE, "expects 2 input channels per group");
    lunet_conv2d_params g3 = {{1, 1}, {0, 0}, {1, 1}, 3};
    CHECK_FAILS(lunet_conv2d(&none, x, w, NULL, &g3), LUNET_ERR_ARG, "groups 3 must divide");
    lunet_pool2d_params pool = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, true, true};
    lunet_tensor *m = NULL;
    CHECK_OK(lunet_max_pool2d(&m, y, &pool)); /* 5x5 -> 3x3 with ceil_mode */
    CHECK(lunet_tensor_shape(m)[2] == 3);
    lunet_pool2d_params wide = {{2, 2}, {2, 2}, {2, 2}, {1, 1}, false, true};
    CHECK_FAILS(lunet_max_pool2d(&none, y, &wide), LUNET_ERR_ARG, "more than half");
    lunet_tensor *items[] = {x, w, bw, y, m};
    for (size_t i = 0; i < 5; i++) lunet_tensor_release(items[i]);
}

/* Two threads split the batch: the forward must still equal the reference, and the weight
 * and bias gradients (summed per thread, then added in thread order) the one-thread ones. */
static void test_conv2d_on_two_threads(void) {
    int64_t xs[4] = {5, 4, 8, 7}, ws[4] = {6, 2, 3, 3}, bs[1] = {6};
    lunet_tensor *x = randn(LUNET_DTYPE_F64, 4, xs), *w = randn(LUNET_DTYPE_F64, 4, ws), *b = randn(LUNET_DTYPE_F64, 1, bs);
    lunet_tensor_set_requires_grad(x, true);
    lunet_tensor_set_requires_grad(w, true);
    lunet_tensor_set_requires_grad(b, true);
    lunet_conv2d_params p = {{1, 2}, {1, 1}, {1, 1}, 2};
    lunet_tensor *grads[2][3] = {{NULL}};
    for (int threads = 1; threads <= 2; threads++) {
        lunet_set_num_threads(threads);
        lunet_tensor *y = NULL, *ref = NULL, *loss = NULL;
        CHECK_OK(lunet_conv2d(&y, x, w, b, &p));
        CHECK_OK(lunet__conv2d_reference(&ref, x, w, b, &p));
        CHECK(max_abs_diff(y, ref) < 1e-12);
        CHECK_OK(lunet_tensor_sum_all(&loss, y));
        CHECK_OK(lunet_tensor_backward(loss, NULL, false));
        lunet_tensor *inputs[3] = {x, w, b};
        for (int i = 0; i < 3; i++) {
            grads[threads - 1][i] = lunet_tensor_retain(lunet_tensor_grad(inputs[i]));
            lunet_tensor_set_grad(inputs[i], NULL);
        }
        lunet_tensor_release(y);
        lunet_tensor_release(ref);
        lunet_tensor_release(loss);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(max_abs_diff(grads[0][i], grads[1][i]) < 1e-12);
        lunet_tensor_release(grads[0][i]);
        lunet_tensor_release(grads[1][i]);
    }
    lunet_set_num_threads(1);
    lunet_tensor_release(x);
    lunet_tensor_release(w);
    lunet_tensor_release(b);
}

int main(void) {
    lunet_manual_seed(21);
    lunet_set_num_threads(1);
    RUN(test_conv2d_matches_reference);
    RUN(test_conv2d_on_two_threads);
    RUN(test_shapes_and_errors);
    return check_report("test_nn");
}
