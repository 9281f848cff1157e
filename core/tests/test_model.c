/* test_model.c: the model graph against the same network run op by op (the reference):
 * bit for bit where it only fuses, within rounding where it folds BatchNorm; its buffers,
 * slicing and threads; and its errors. */
#include "check.h"

/* Replaces *x by f(*x) (an op's result), releasing the old one. */
#define STEP(x, call)                                                                      \
    do {                                                                                   \
        lunet_tensor *step_out = NULL;                                                     \
        CHECK_OK(call);                                                                    \
        lunet_tensor_release(x);                                                           \
        x = step_out;                                                                      \
    } while (0)

typedef struct cnn_weights {
    lunet_tensor *w1, *b1, *w2, *b2, *w3, *b3, *w4, *b4;
} cnn_weights;

static cnn_weights cnn_weights_new(lunet_dtype dt) {
    int64_t w1[4] = {6, 3, 3, 3}, b1[1] = {6}, w2[4] = {9, 2, 3, 3}, b2[1] = {9}, w3[2] = {20, 9 * 2 * 2}, b3[1] = {20},
            w4[2] = {5, 20}, b4[1] = {5};
    return (cnn_weights){randn(dt, 4, w1), randn(dt, 1, b1), randn(dt, 4, w2), randn(dt, 1, b2),
                         randn(dt, 2, w3), randn(dt, 1, b3), randn(dt, 2, w4), randn(dt, 1, b4)};
}

static void cnn_weights_free(cnn_weights *c) {
    lunet_tensor *all[8] = {c->w1, c->b1, c->w2, c->b2, c->w3, c->b3, c->w4, c->b4};
    for (int i = 0; i < 8; i++) lunet_tensor_release(all[i]);
}

static const lunet_conv2d_params conv1 = {{1, 1}, {1, 1}, {1, 1}, 1};
static const lunet_conv2d_params conv2 = {{2, 2}, {1, 1}, {1, 1}, 3}; /* strided, padded, grouped */
static const lunet_pool2d_params max2 = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, true};
static const lunet_pool2d_params avg3 = {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true, false};

/* conv+relu, max pool, conv+leaky relu, avg pool, flatten, linear+gelu, linear, log_softmax on
 * (3, 12, 12) images. */
static lunet_model *cnn_graph(lunet_dtype dt, const cnn_weights *c) {
    lunet_model *m = NULL;
    int64_t sample[3] = {3, 12, 12};
    CHECK_OK(lunet_model_create(&m, dt, 3, sample));
    CHECK_OK(lunet_model_add_conv2d(m, c->w1, c->b1, &conv1));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
    CHECK_OK(lunet_model_add_pool2d(m, LUNET_LAYER_MAX_POOL2D, &max2));
    CHECK_OK(lunet_model_add_conv2d(m, c->w2, c->b2, &conv2));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_LEAKY_RELU, 0.1));
    CHECK_OK(lunet_model_add_pool2d(m, LUNET_LAYER_AVG_POOL2D, &avg3));
    CHECK_OK(lunet_model_add_flatten(m, 1, -1));
    CHECK_OK(lunet_model_add_linear(m, c->w3, c->b3));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_GELU, 0));
    CHECK_OK(lunet_model_add_linear(m, c->w4, c->b4));
    CHECK_OK(lunet_model_add_softmax(m, LUNET_LAYER_LOG_SOFTMAX, -1));
    return m;
}

static lunet_tensor *cnn_by_ops(const lunet_tensor *x, const void *ctx) {
    const cnn_weights *c = ctx;
    lunet_tensor *y = lunet_tensor_retain(x);
    STEP(y, lunet_conv2d(&step_out, y, c->w1, c->b1, &conv1));
    STEP(y, lunet_tensor_relu(&step_out, y));
    STEP(y, lunet_max_pool2d(&step_out, y, &max2));
    STEP(y, lunet_conv2d(&step_out, y, c->w2, c->b2, &conv2));
    STEP(y, lunet_leaky_relu(&step_out, y, 0.1));
    STEP(y, lunet_avg_pool2d(&step_out, y, &avg3));
    STEP(y, lunet_tensor_flatten(&step_out, y, 1, -1));
    STEP(y, lunet_linear(&step_out, y, c->w3, c->b3));
    STEP(y, lunet_gelu(&step_out, y, false));
    STEP(y, lunet_linear(&step_out, y, c->w4, c->b4));
    STEP(y, lunet_log_softmax(&step_out, y, -1));
    return y;
}

/* Fusing changes nothing: every batch size (including more than one slice) and thread count
 * gives the ops' bits, in f32 and f64. */
static void test_graph_equals_ops(void) {
    lunet_grad_set_enabled(false);
    for (int dt = 0; dt < 2; dt++) {
        lunet_dtype dtype = dt ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
        cnn_weights c = cnn_weights_new(dtype);
        lunet_model *m = cnn_graph(dtype, &c);
        CHECK(lunet_model_layer_count(m) == 8); /* eleven layers, three activations fused */
        CHECK(lunet_model_layer_activation(m, 0) == LUNET_LAYER_RELU);
        CHECK(lunet_model_layer_activation(m, 2) == LUNET_LAYER_LEAKY_RELU);
        CHECK(lunet_model_layer_kind(m, 7) == LUNET_LAYER_LOG_SOFTMAX);
        int ndim;
        const int64_t *out_shape = lunet_model_output_shape(m, &ndim);
        CHECK(ndim == 1 && out_shape[0] == 5);
        check_graph_equals_ops(m, dtype, cnn_by_ops, &c);
        lunet_model_free(m);
        cnn_weights_free(&c);
    }
    lunet_grad_set_enabled(true);
}

/* BatchNorm after a conv or a linear layer folds into it; elsewhere it stays a layer.  Both
 * agree with lunet_batch_norm in evaluation mode within rounding. */
static void test_batch_norm(void) {
    lunet_grad_set_enabled(false);
    for (int dt = 0; dt < 2; dt++) {
        lunet_dtype dtype = dt ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
        double tol = dt ? 1e-12 : 1e-5;
        int64_t ws[4] = {4, 2, 3, 3}, cs[1] = {4}, xs[4] = {5, 2, 6, 6}, sample[3] = {2, 6, 6};
        lunet_tensor *w = randn(dtype, 4, ws), *b = randn(dtype, 1, cs), *mean = randn(dtype, 1, cs), *var = NULL,
                     *gamma = randn(dtype, 1, cs), *beta = randn(dtype, 1, cs), *x = randn(dtype, 4, xs);
        lunet_tensor *v0 = randn(dtype, 1, cs);
        CHECK_OK(lunet_tensor_abs(&var, v0)); /* variances are positive */
        lunet_model *m = NULL;
        CHECK_OK(lunet_model_create(&m, dtype, 3, sample));
        CHECK_OK(lunet_model_add_conv2d(m, w, b, &conv1));
        CHECK_OK(lunet_model_add_batch_norm(m, mean, var, gamma, beta, 1e-3));
        CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
        CHECK_OK(lunet_model_add_batch_norm(m, mean, var, NULL, NULL, 1e-5)); /* after an activation */
        CHECK(lunet_model_layer_count(m) == 2);
        CHECK(lunet_model_layer_kind(m, 0) == LUNET_LAYER_CONV2D);
        CHECK(lunet_model_layer_kind(m, 1) == LUNET_LAYER_BATCH_NORM);
        lunet_tensor *y = NULL, *ref = lunet_tensor_retain(x);
        STEP(ref, lunet_conv2d(&step_out, ref, w, b, &conv1));
        STEP(ref, lunet_batch_norm(&step_out, ref, mean, var, gamma, beta, false, 0.1, 1e-3));
        STEP(ref, lunet_tensor_relu(&step_out, ref));
        STEP(ref, lunet_batch_norm(&step_out, ref, mean, var, NULL, NULL, false, 0.1, 1e-5));
        CHECK_OK(lunet_model_forward(&y, m, x));
        CHECK(y && max_abs_diff(y, ref) < tol * 10);
        lunet_tensor *all[10] = {w, b, mean, var, gamma, beta, x, v0, y, ref};
        for (int i = 0; i < 10; i++) lunet_tensor_release(all[i]);
        lunet_model_free(m);
    }
    lunet_grad_set_enabled(true);
}

/* A graph whose first layer works in place must still leave the caller's input alone, and a
 * graph of flattens only copies. */
static void test_input_is_never_written(void) {
    int64_t xs[3] = {4, 3, 5}, sample[2] = {3, 5};
    lunet_tensor *x = randn(LUNET_DTYPE_F32, 3, xs), *before = NULL, *y = NULL;
    CHECK_OK(lunet_tensor_clone(&before, x));
    lunet_model *m = NULL;
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 2, sample));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_TANH, 0)); /* nothing to fuse into: a layer of its own */
    CHECK(lunet_model_layer_count(m) == 2);
    CHECK_OK(lunet_model_add_flatten(m, 1, 2));
    CHECK_OK(lunet_model_forward(&y, m, x));
    CHECK(max_abs_diff(x, before) == 0);
    CHECK(y && lunet_tensor_ndim(y) == 2 && lunet_tensor_shape(y)[1] == 15);
    for (int64_t i = 0; y && i < 60; i++) {
        double v = element(before, i);
        CHECK(element(y, i) == (double)tanhf(v < 0 ? 0.0f : (float)v));
    }
    lunet_tensor_release(y);
    lunet_model_free(m);

    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 2, sample));
    CHECK_OK(lunet_model_add_flatten(m, 1, -1));
    CHECK_OK(lunet_model_forward(&y, m, x));
    CHECK(y && lunet_tensor_numel(y) == 60);
    for (int64_t i = 0; y && i < 60; i++) CHECK(element(y, i) == element(x, i));
    lunet_tensor_release(y);
    lunet_model_free(m);
    lunet_tensor_release(before);
    lunet_tensor_release(x);
}

/* Every mistake is an error that says what and where, and leaves the graph usable. */
static void test_errors(void) {
    int64_t sample[3] = {1, 28, 28}, w_shape[2] = {10, 100}, cw[4] = {4, 2, 3, 3}, xs[4] = {2, 1, 28, 27};
    lunet_tensor *w = randn(LUNET_DTYPE_F32, 2, w_shape), *w64 = randn(LUNET_DTYPE_F64, 2, w_shape),
                 *conv_w = randn(LUNET_DTYPE_F32, 4, cw), *x = randn(LUNET_DTYPE_F32, 4, xs), *y = NULL;
    lunet_model *m = NULL;
    CHECK_FAILS(lunet_model_create(&m, LUNET_DTYPE_I32, 3, sample), LUNET_ERR_DTYPE, "f32 or f64");
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 3, sample));
    CHECK_FAILS(lunet_model_add_conv2d(m, conv_w, NULL, &conv1), LUNET_ERR_SHAPE, "2 input channels per group");
    CHECK_FAILS(lunet_model_add_softmax(m, LUNET_LAYER_SOFTMAX, 0), LUNET_ERR_INDEX, "softmax dim 0");
    CHECK_FAILS(lunet_model_add_activation(m, LUNET_LAYER_LINEAR, 0), LUNET_ERR_ARG, "linear is not an activation");
    CHECK_OK(lunet_model_add_flatten(m, 1, -1));
    CHECK_FAILS(lunet_model_add_linear(m, w, NULL), LUNET_ERR_SHAPE, "linear layer 2 takes 100 features but gets samples of shape [784]");
    CHECK_FAILS(lunet_model_add_conv2d(m, conv_w, NULL, &conv1), LUNET_ERR_SHAPE, "needs (C, H, W) samples, gets [784]");
    CHECK(lunet_model_layer_count(m) == 1); /* failed adds left it as it was */
    CHECK_FAILS(lunet_model_forward(&y, m, x), LUNET_ERR_SHAPE, "input [2,1,28,27] is not a batch of samples of shape [1,28,28]");
    CHECK(y == NULL);
    lunet_model_free(m);

    int64_t flat[1] = {100};
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 1, flat));
    CHECK_FAILS(lunet_model_add_linear(m, w64, NULL), LUNET_ERR_DTYPE, "linear weight is f64 but the graph is f32");
    CHECK_OK(lunet_model_add_linear(m, w, NULL));
    int64_t x64s[2] = {3, 100};
    lunet_tensor *x64 = randn(LUNET_DTYPE_F64, 2, x64s);
    CHECK_FAILS(lunet_model_forward(&y, m, x64), LUNET_ERR_DTYPE, "input is f64 but the graph is f32");
    float in[100] = {0}, out[10];
    CHECK_FAILS(lunet_model_run(m, in, -1, out), LUNET_ERR_ARG, "negative");
    CHECK_OK(lunet_model_run(m, in, 1, out));
    CHECK(out[0] == 0 && out[9] == 0); /* no bias: zeros in, zeros out */
    lunet_model_free(m);
    lunet_model_free(NULL);
    lunet_tensor *all[5] = {w, w64, conv_w, x, x64};
    for (int i = 0; i < 5; i++) lunet_tensor_release(all[i]);
}

int main(void) {
    lunet_manual_seed(5);
    lunet_set_num_threads(1);
    RUN(test_graph_equals_ops);
    RUN(test_batch_norm);
    RUN(test_input_is_never_written);
    RUN(test_errors);
    return check_report("test_model");
}
