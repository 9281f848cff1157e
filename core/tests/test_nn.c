/* test_nn.c: the conv2d fast path against its reference, layer shapes, and the nn ops'
 * gradients by central differences in f64. */
#include "check.h"

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

/* A Linear layer large enough that two threads share each of its products, along the
 * out-features side (forward and dW) and as they like (dX): the f32 output and gradients must
 * agree with the same layer computed in f64, which stays on one BLAS call per product. */
static void test_linear_on_two_threads(void) {
    int64_t xs[2] = {64, 300}, ws[2] = {100, 300}, bs[1] = {100};
    lunet_tensor *x64 = randn(LUNET_DTYPE_F64, 2, xs), *w64 = randn(LUNET_DTYPE_F64, 2, ws), *b64 = randn(LUNET_DTYPE_F64, 1, bs);
    lunet_tensor *x32, *w32, *b32;
    CHECK_OK(lunet_tensor_to(&x32, x64, LUNET_DTYPE_F32));
    CHECK_OK(lunet_tensor_to(&w32, w64, LUNET_DTYPE_F32));
    CHECK_OK(lunet_tensor_to(&b32, b64, LUNET_DTYPE_F32));
    lunet_tensor *sets[2][3] = {{x64, w64, b64}, {x32, w32, b32}}, *results[2][4] = {{NULL}};
    lunet_set_num_threads(2);
    for (int f = 0; f < 2; f++) {
        lunet_tensor *y, *loss, *weights, *weighted;
        for (int i = 0; i < 3; i++) lunet_tensor_set_requires_grad(sets[f][i], true);
        CHECK_OK(lunet_linear(&y, sets[f][0], sets[f][1], sets[f][2]));
        CHECK_OK(lunet_tensor_tanh(&weights, y)); /* a loss whose gradient differs per element */
        CHECK_OK(lunet_tensor_mul(&weighted, weights, y));
        CHECK_OK(lunet_tensor_sum_all(&loss, weighted));
        CHECK_OK(lunet_tensor_backward(loss, NULL, false));
        results[f][0] = y;
        for (int i = 0; i < 3; i++) results[f][i + 1] = lunet_tensor_retain(lunet_tensor_grad(sets[f][i]));
        lunet_tensor *items[] = {loss, weights, weighted};
        for (size_t i = 0; i < 3; i++) lunet_tensor_release(items[i]);
    }
    lunet_set_num_threads(1);
    double worst = 0;
    for (int r = 0; r < 4; r++) {
        lunet_tensor *as64;
        CHECK_OK(lunet_tensor_to(&as64, results[1][r], LUNET_DTYPE_F64));
        double d = max_abs_diff(as64, results[0][r]);
        worst = d > worst ? d : worst;
        lunet_tensor_release(as64);
        lunet_tensor_release(results[0][r]);
        lunet_tensor_release(results[1][r]);
    }
    CHECK(worst < 1e-3); /* sums of 300 and of 64 f32 products of order 10 */
    printf("  linear f32 on two threads against f64: largest difference %.3g\n", worst);
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 3; i++) lunet_tensor_release(sets[f][i]);
}

int main(void) {
    lunet_manual_seed(21);
    lunet_set_num_threads(1);
    RUN(test_conv2d_matches_reference);
    RUN(test_conv2d_on_two_threads);
    RUN(test_linear_on_two_threads);
    RUN(test_shapes_and_errors);
    return check_report("test_nn");
}
