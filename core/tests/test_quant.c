/*
 * test_quant.c: the int8 kernels against their definitions.  Every kernel this machine can
 * run (the plain C one always, AVX2 when the CPU has it) must give the reference's bits on
 * random shapes and on the extremes: inputs 0 and 255, weights +-63 (the most a 7-bit
 * weight holds, where vpmaddubsw's pair sums come closest to saturating) and +-127 (where
 * they do saturate, so the choice of kernel must steer around it).
 */
#include "check.h"
#include "quant.h"

static uint64_t rng_state = 88172645463325252ull;

static uint32_t next_u32(void) { /* xorshift64 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static int64_t pick(int64_t lo, int64_t hi) { return lo + (int64_t)(next_u32() % (uint64_t)(hi - lo + 1)); }

typedef enum fill { FILL_RANDOM, FILL_MAX, FILL_MIN, FILL_ALTERNATE } fill;

static void fill_u8(uint8_t *x, int64_t n, fill how) {
    for (int64_t i = 0; i < n; i++)
        x[i] = how == FILL_MAX ? 255 : how == FILL_MIN ? 0 : how == FILL_ALTERNATE ? (i % 2 ? 255 : 0) : (uint8_t)next_u32();
}

/* Weights in [-limit, limit]: random, all +limit, all -limit, or alternating signs. */
static void fill_s8(int8_t *w, int64_t n, int limit, fill how) {
    for (int64_t i = 0; i < n; i++)
        w[i] = (int8_t)(how == FILL_MAX ? limit : how == FILL_MIN ? -limit : how == FILL_ALTERNATE ? (i % 2 ? limit : -limit)
                                                                                           : pick(-limit, limit));
}

static bool have_avx2(void) { return __builtin_cpu_supports("avx2"); }

/* The kernels to try on weights: C always; AVX2 when the CPU has it and, unless `unsafe`,
 * only where the weights are pair-safe. */
static int kernels_for(lunet__qkernel *out, const int8_t *w, int64_t n, int64_t k, bool unsafe) {
    int count = 0;
    out[count++] = LUNET__QKERNEL_C;
    if (have_avx2() && (unsafe || lunet__qweights_pair_safe(w, n, k, k))) out[count++] = LUNET__QKERNEL_AVX2;
    return count;
}

/* Per-channel epilogue data for `channels` outputs. */
typedef struct epilogue_data {
    int32_t bias[128];
    float w_scale[128];
    float fbias[128];
} epilogue_data;

static void random_epilogue_data(epilogue_data *d, int64_t channels) {
    for (int64_t o = 0; o < channels; o++) {
        d->bias[o] = (int32_t)pick(-20000, 20000);
        d->w_scale[o] = (float)pick(1, 1000) / 50000.0f;
        d->fbias[o] = (float)pick(-1000, 1000) / 100.0f;
    }
}

/* The kinds of output a Linear product has. */
enum { OUT_U8, OUT_U8_RELU, OUT_F32_RELU, OUT_F32, OUTPUT_KINDS };

/* Runs a Linear product with that kind of output (u8 for static layers, f32 for dynamic ones)
 * through `kernel` and the reference. */
static bool linear_matches(lunet__qkernel kernel, const uint8_t *x, const int8_t *w, int64_t rows, int64_t channels,
                           int64_t k, const epilogue_data *d, int output) {
    lunet__qlayer q;
    bool dynamic = output == OUT_F32_RELU || output == OUT_F32;
    float x_scale = 0.02f, y_scale = output == OUT_U8_RELU ? 0.05f : 0.5f;
    int32_t x_zp = 17;
    if (lunet__qlayer_init(&q, w, channels, k, dynamic ? NULL : d->bias, dynamic ? d->fbias : NULL, d->w_scale,
                           x_scale, x_zp, dynamic ? 0 : y_scale) != LUNET_OK)
        return false;
    q.kernel = kernel;
    float row_scale[64];
    int32_t row_zp[64];
    for (int64_t r = 0; r < rows; r++) row_scale[r] = 0.01f * (float)(r + 1), row_zp[r] = (int32_t)(r * 7 % 256);
    lunet__epilogue e = dynamic ? lunet__dynamic_epilogue(&q, row_scale, row_zp, output == OUT_F32_RELU)
                                : lunet__static_epilogue(&q, (lunet_qparams){y_scale, 100}, output == OUT_U8_RELU);
    size_t bytes = (size_t)(rows * channels) * lunet__epilogue_elem(&e);
    char *fast = malloc(bytes + 1), *slow = malloc(bytes + 1);
    memset(fast, 0xAB, bytes + 1);
    memset(slow, 0xAB, bytes + 1);
    lunet__qlinear_rows(&q, &e, x, rows, fast);
    lunet__qlinear_reference(&e, x, w, rows, channels, k, slow);
    bool same = memcmp(fast, slow, bytes + 1) == 0; /* the byte past the end is untouched too */
    free(fast);
    free(slow);
    lunet__qlayer_free(&q);
    return same;
}

static void test_linear_random_shapes(void) {
    epilogue_data d;
    for (int trial = 0; trial < 60; trial++) {
        int64_t rows = pick(1, 37), channels = pick(1, 70), k = pick(1, 300);
        int limit = trial % 2 ? 63 : 127;
        uint8_t *x = malloc((size_t)(rows * k));
        int8_t *w = malloc((size_t)(channels * k));
        fill_u8(x, rows * k, FILL_RANDOM);
        fill_s8(w, channels * k, limit, FILL_RANDOM);
        random_epilogue_data(&d, channels);
        lunet__qkernel kernels[2];
        int nk = kernels_for(kernels, w, channels, k, false);
        for (int i = 0; i < nk; i++)
            for (int output = 0; output < OUTPUT_KINDS; output++)
                CHECK(linear_matches(kernels[i], x, w, rows, channels, k, &d, output));
        free(x);
        free(w);
    }
}

/* The extremes: 7-bit weights at their limits meet inputs of 255 on every kernel; 8-bit ones
 * make the choice fall on the C kernel, which must also match, while AVX2 forced onto them
 * must not (proof that these inputs do reach the saturation the choice avoids). */
static void test_linear_extremes(void) {
    epilogue_data d;
    const int64_t rows = 5, channels = 19, k = 258;
    uint8_t x[5 * 258];
    int8_t w[19 * 258];
    random_epilogue_data(&d, channels);
    fill s8_fills[3] = {FILL_MAX, FILL_MIN, FILL_ALTERNATE};
    for (int f = 0; f < 3; f++)
        for (int xf = 0; xf < 2; xf++) {
            fill_u8(x, rows * k, xf ? FILL_MIN : FILL_MAX);
            fill_s8(w, channels * k, 63, s8_fills[f]);
            CHECK(lunet__qweights_pair_safe(w, channels, k, k));
            lunet__qkernel kernels[2];
            int nk = kernels_for(kernels, w, channels, k, false);
            for (int i = 0; i < nk; i++) CHECK(linear_matches(kernels[i], x, w, rows, channels, k, &d, OUT_U8));
            for (int i = 0; i < nk; i++) CHECK(linear_matches(kernels[i], x, w, rows, channels, k, &d, OUT_F32_RELU));
            fill_s8(w, channels * k, 127, s8_fills[f]);
            CHECK(!lunet__qweights_pair_safe(w, channels, k, k));
            CHECK(lunet__qkernel_for(false) == LUNET__QKERNEL_C);
            CHECK(linear_matches(LUNET__QKERNEL_C, x, w, rows, channels, k, &d, OUT_F32_RELU));
        }
    if (have_avx2()) { /* all 255 times all 127: every pair sum is 64770, past int16 */
        fill_u8(x, rows * k, FILL_MAX);
        fill_s8(w, channels * k, 127, FILL_MAX);
        CHECK(!linear_matches(LUNET__QKERNEL_AVX2, x, w, rows, channels, k, &d, OUT_F32_RELU));
    }
}

/* A convolution's fast path (channels-last: unfold, product, epilogue) against its definition
 * on the channels-first image: w_last is w (O, C, KH, KW) laid (O, KH, KW, C), as the layer
 * prepares it. */
static bool conv_matches(lunet__qkernel kernel, const lunet__conv_geometry *g, const uint8_t *x, const int8_t *w,
                         const int8_t *w_last, const epilogue_data *d, int32_t x_zp, bool relu) {
    lunet__qlayer q;
    if (lunet__qlayer_init(&q, w_last, g->o, g->col_rows, d->bias, NULL, d->w_scale, 0.03f, x_zp, 0.7f) != LUNET_OK)
        return false;
    q.kernel = kernel;
    lunet__epilogue e = lunet__static_epilogue(&q, (lunet_qparams){0.7f, 60}, relu);
    int64_t in_bytes = g->c * g->h * g->w, out_bytes = g->o * g->col_cols;
    uint8_t *x_last = malloc((size_t)in_bytes), *y_last = malloc((size_t)out_bytes + 1);
    uint8_t *fast = malloc((size_t)out_bytes), *slow = malloc((size_t)out_bytes);
    uint8_t *cols = lunet__alloc(lunet__qconv_cols_bytes(g));
    lunet__u8_to_channels_last(x_last, x, g->c, g->h * g->w);
    y_last[out_bytes] = 0xAB;
    lunet__qconv2d_image(g, &q, &e, x_last, x_zp, y_last, cols);
    lunet__u8_to_channels_first(fast, y_last, g->o, g->col_cols);
    lunet__qconv2d_reference(g, &e, x, x_zp, w, slow);
    bool same = memcmp(fast, slow, (size_t)out_bytes) == 0 && y_last[out_bytes] == 0xAB;
    lunet__free(cols, lunet__qconv_cols_bytes(g));
    free(x_last);
    free(y_last);
    free(fast);
    free(slow);
    lunet__qlayer_free(&q);
    return same;
}

/* Random geometries (stride, padding, dilation), 1 to 20 channels so that the unfolded runs
 * take every copy path (under and over 16 bytes, near the image's end or not). */
static void test_conv_random_shapes(void) {
    epilogue_data d;
    for (int trial = 0; trial < 60; trial++) {
        int64_t c = trial % 3 == 0 ? pick(1, 3) : pick(1, 20), o = pick(1, 40), h = pick(3, 13), wd = pick(3, 13);
        int64_t kh = pick(1, 3), kw = pick(1, 3);
        lunet_conv2d_params p = {.stride = {pick(1, 2), pick(1, 2)}, .padding = {pick(0, 1), pick(0, 1)},
                                 .dilation = {pick(1, 2), pick(1, 2)}, .groups = 1};
        int64_t xs[4] = {1, c, h, wd}, ws[4] = {o, c, kh, kw}, k = c * kh * kw;
        lunet__conv_geometry g;
        if (lunet__conv_geometry_of(&g, xs, ws, &p) != LUNET_OK) continue;
        uint8_t *x = malloc((size_t)(c * h * wd));
        int8_t *w = malloc((size_t)(o * k)), *w_last = malloc((size_t)(o * k));
        bool extreme = trial % 4 == 3;
        fill_u8(x, c * h * wd, extreme ? FILL_MAX : FILL_RANDOM);
        fill_s8(w, o * k, trial % 2 ? 63 : 127, extreme ? FILL_MIN : FILL_RANDOM);
        for (int64_t r = 0; r < o; r++)
            lunet__u8_to_channels_last((uint8_t *)w_last + r * k, (const uint8_t *)w + r * k, c, kh * kw);
        random_epilogue_data(&d, o);
        lunet__qkernel kernels[2];
        int nk = kernels_for(kernels, w_last, o, k, false);
        for (int i = 0; i < nk; i++) {
            CHECK(conv_matches(kernels[i], &g, x, w, w_last, &d, (int32_t)pick(0, 255), trial % 3 == 0));
            CHECK(conv_matches(kernels[i], &g, x, w, w_last, &d, 0, trial % 3 != 0));
        }
        free(x);
        free(w);
        free(w_last);
    }
}

static void test_quantize_rounding(void) {
    /* ties go to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0 (+ zero point 10) */
    const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 1000.0f, -1000.0f, NAN, INFINITY, 0.49999997f};
    uint8_t q[10];
    lunet__quantize_f32(q, x, 10, 1.0f, 10);
    const uint8_t want[] = {10, 12, 12, 10, 8, 255, 0, 0, 255, 10};
    CHECK(memcmp(q, want, sizeof want) == 0);
    float back[3];
    lunet__dequantize_f32(back, (const uint8_t[]){0, 10, 255}, 3, 0.5f, 10);
    CHECK(back[0] == -5.0f && back[1] == 0.0f && back[2] == 122.5f);
    lunet_qparams p = lunet_qparams_for_range(-1.0, 3.0);
    CHECK_NEAR(p.scale, 4.0 / 255, 1e-9);
    CHECK(p.zero_point == 64); /* round(1 / (4/255)) = round(63.75) */
    p = lunet_qparams_for_range(0.5, 2.0); /* widened to hold 0 */
    CHECK(p.zero_point == 0);
    CHECK_NEAR(p.scale, 2.0 / 255, 1e-9);
    p = lunet_qparams_for_range(0, 0);
    CHECK(p.scale == 1.0f && p.zero_point == 0);
    float row[4] = {-1, 0, 2, 3}, rs;
    int32_t rz;
    uint8_t rq[4];
    lunet__quantize_rows_dynamic(rq, &rs, &rz, row, 1, 4);
    CHECK(rs == 4.0f / 255.0f && rz == 64 && rq[0] == 0 && rq[1] == 64 && rq[3] == 255);
}

/* Pooling channels-last images (16 channels at a time, the last 16 overlapping, or one at a
 * time under 16) against the window maxima by definition: 2x2 windows on every width from 2
 * to 12 and heights that leave a row or column out, then 3x3 windows with stride 2, padding
 * and dilation, for channel counts around the 16-byte step, two images at once. */
static void test_max_pool_u8(void) {
    enum { MAX_W = 12, MAX_H = 7, IMAGES = 2, MAX_C = 40 };
    static uint8_t x[IMAGES * MAX_H * MAX_W * MAX_C], y[IMAGES * MAX_H * MAX_W * MAX_C + 1];
    const int64_t channel_counts[] = {1, 3, 15, 16, 17, 32, 40};
    lunet_pool2d_params two = {.kernel = {2, 2}, .stride = {2, 2}, .dilation = {1, 1}};
    lunet_pool2d_params three = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .dilation = {1, 2}};
    for (int kind = 0; kind < 2; kind++)
        for (size_t ci = 0; ci < sizeof channel_counts / sizeof *channel_counts; ci++)
            for (int64_t h = 2; h <= MAX_H; h++)
                for (int64_t w = 2; w <= MAX_W; w++) {
                    int64_t c = channel_counts[ci];
                    lunet__pool_geometry g;
                    if (lunet__pool_geometry_of(&g, h, w, kind ? &three : &two, "max_pool2d") != LUNET_OK) continue;
                    fill_u8(x, IMAGES * h * w * c, FILL_RANDOM);
                    int64_t out = IMAGES * g.oh * g.ow * c;
                    y[out] = 0xAA;
                    lunet__max_pool2d_u8(&g, IMAGES, c, y, x);
                    int wrong = 0;
                    for (int64_t n = 0; n < IMAGES; n++)
                        for (int64_t oy = 0; oy < g.oh; oy++)
                            for (int64_t ox = 0; ox < g.ow; ox++)
                                for (int64_t ch = 0; ch < c; ch++) {
                                    int best = 0;
                                    for (int64_t ki = 0; ki < g.kh; ki++)
                                        for (int64_t kj = 0; kj < g.kw; kj++) {
                                            int64_t iy = oy * g.sh - g.ph + ki * g.dh, ix = ox * g.sw - g.pw + kj * g.dw;
                                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                            int v = x[((n * h + iy) * w + ix) * c + ch];
                                            best = v > best ? v : best;
                                        }
                                    wrong += y[((n * g.oh + oy) * g.ow + ox) * c + ch] != best;
                                }
                    CHECK(wrong == 0);
                    CHECK(y[out] == 0xAA); /* nothing written past the output */
                }
}

/* The tensor ops check what they are given. */
static void test_op_errors(void) {
    int64_t ws[2] = {3, 4}, xs[2] = {2, 4}, s3 = 3, s2 = 2;
    lunet_tensor *w = NULL, *scale = NULL, *x = NULL, *xf = NULL, *bad_scale = NULL, *y = NULL, *wf = randn(LUNET_DTYPE_F32, 2, ws);
    CHECK_OK(lunet_quantize_weight(&w, &scale, wf, 7));
    CHECK_OK(lunet_tensor_zeros(&x, LUNET_DTYPE_U8, 2, xs));
    CHECK_OK(lunet_tensor_zeros(&xf, LUNET_DTYPE_F32, 2, xs));
    CHECK_OK(lunet_tensor_zeros(&bad_scale, LUNET_DTYPE_F32, 1, &s2));
    lunet_qparams xq = {0.1f, 3};
    lunet_qlayer_params l = {.weight = w, .scale = scale, .output = {0.2f, 0}};
    CHECK_OK(lunet_qlinear(&y, x, xq, &l));
    lunet_tensor_release(y);
    CHECK_FAILS(lunet_qlinear(&y, xf, xq, &l), LUNET_ERR_DTYPE, "input must be u8, not f32");
    CHECK_FAILS(lunet_qlinear(&y, x, (lunet_qparams){0, 0}, &l), LUNET_ERR_ARG, "scale 0 must be finite and positive");
    CHECK_FAILS(lunet_qlinear(&y, x, (lunet_qparams){1, 300}, &l), LUNET_ERR_ARG, "zero point 300 is outside 0..255");
    l.scale = bad_scale;
    CHECK_FAILS(lunet_qlinear(&y, x, xq, &l), LUNET_ERR_SHAPE, "one entry per output channel (3)");
    l.scale = scale, l.weight = wf;
    CHECK_FAILS(lunet_qlinear(&y, x, xq, &l), LUNET_ERR_DTYPE, "weight must be i8, not f32");
    CHECK_FAILS(lunet_quantize_weight(&y, &y, wf, 9), LUNET_ERR_ARG, "bits must be 7 or 8");
    CHECK_FAILS(lunet_quantize(&y, x, xq), LUNET_ERR_DTYPE, "input must be f32, not u8");
    CHECK_FAILS(lunet_dequantize(&y, xf, xq), LUNET_ERR_DTYPE, "input must be u8, not f32");
    CHECK_FAILS(lunet_linear_dynamic(&y, x, w, scale, NULL, false), LUNET_ERR_DTYPE, "input must be f32, not u8");
    lunet_tensor *b3 = NULL;
    CHECK_OK(lunet_tensor_zeros(&b3, LUNET_DTYPE_F32, 1, &s3));
    CHECK_OK(lunet_linear_dynamic(&y, xf, w, scale, b3, true));
    CHECK(lunet_tensor_dtype(y) == LUNET_DTYPE_F32 && lunet_tensor_shape(y)[1] == 3);
    lunet_tensor_release(y);
    lunet_tensor *all[7] = {w, scale, x, xf, bad_scale, wf, b3};
    for (int i = 0; i < 7; i++) lunet_tensor_release(all[i]);
}

/* Per-channel weight quantization: each channel's largest weight maps to +-qmax. */
static void test_quantize_weight(void) {
    const double v[6] = {0.5, -1.0, 0.25, 0, 0, 0};
    int64_t shape[2] = {2, 3};
    lunet_tensor *w = tensor_of(LUNET_DTYPE_F32, 2, shape, v), *q = NULL, *s = NULL, *b = NULL, *bias = NULL;
    CHECK_OK(lunet_quantize_weight(&q, &s, w, 8));
    CHECK(element(q, 0) == 64 && element(q, 1) == -127 && element(q, 2) == 32); /* 63.5 -> 64 (even), 31.75 -> 32 */
    CHECK_NEAR(element(s, 0), 1.0 / 127, 1e-9);
    CHECK(element(s, 1) == 1 && element(q, 3) == 0); /* an all-zero channel */
    int64_t two = 2;
    bias = tensor_of(LUNET_DTYPE_F32, 1, &two, (const double[]){0.01, -1e30});
    CHECK_OK(lunet_quantize_bias(&b, bias, 0.1f, s));
    CHECK(element(b, 0) == 13 && element(b, 1) == INT32_MIN); /* 0.01 / (0.1 / 127) = 12.7 */
    lunet_tensor *all[5] = {w, q, s, b, bias};
    for (int i = 0; i < 5; i++) lunet_tensor_release(all[i]);
}


/* ---- the model graph's int8 layers ------------------------------------------------------------- */

typedef struct qcnn {
    lunet_tensor *w1, *s1, *b1, *w2, *s2, *b2, *w3, *s3, *b3;
    lunet_qparams in, a1, a2, a3;
} qcnn;

/* A small quantized CNN: conv 2->4 3x3 pad 1 + ReLU, 2x2 max pool, flatten, linear 64->12 +
 * ReLU, linear 12->3; weights from float ones through lunet_quantize_weight (7-bit, so the
 * AVX2 kernel runs where the CPU has it). */
static qcnn qcnn_new(void) {
    qcnn c;
    int64_t ws1[4] = {4, 2, 3, 3}, ws2[2] = {12, 64}, ws3[2] = {3, 12}, n4 = 4, n12 = 12, n3 = 3;
    lunet_tensor *f1 = randn(LUNET_DTYPE_F32, 4, ws1), *f2 = randn(LUNET_DTYPE_F32, 2, ws2),
                 *f3 = randn(LUNET_DTYPE_F32, 2, ws3), *fb1 = randn(LUNET_DTYPE_F32, 1, &n4),
                 *fb2 = randn(LUNET_DTYPE_F32, 1, &n12), *fb3 = randn(LUNET_DTYPE_F32, 1, &n3);
    c.in = lunet_qparams_for_range(-3, 3), c.a1 = lunet_qparams_for_range(0, 8), c.a2 = lunet_qparams_for_range(0, 20);
    c.a3 = lunet_qparams_for_range(-30, 30);
    lunet_quantize_weight(&c.w1, &c.s1, f1, 7);
    lunet_quantize_weight(&c.w2, &c.s2, f2, 7);
    lunet_quantize_weight(&c.w3, &c.s3, f3, 7);
    lunet_quantize_bias(&c.b1, fb1, c.in.scale, c.s1);
    lunet_quantize_bias(&c.b2, fb2, c.a1.scale, c.s2);
    lunet_quantize_bias(&c.b3, fb3, c.a2.scale, c.s3);
    lunet_tensor *all[6] = {f1, f2, f3, fb1, fb2, fb3};
    for (int i = 0; i < 6; i++) lunet_tensor_release(all[i]);
    return c;
}

static void qcnn_free(qcnn *c) {
    lunet_tensor *all[9] = {c->w1, c->s1, c->b1, c->w2, c->s2, c->b2, c->w3, c->s3, c->b3};
    for (int i = 0; i < 9; i++) lunet_tensor_release(all[i]);
}

static const lunet_conv2d_params qcnn_conv = {.stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .groups = 1};
static const lunet_pool2d_params qcnn_pool = {.kernel = {2, 2}, .stride = {2, 2}, .dilation = {1, 1}};

/* The same network through the tensor ops, one layer at a time. */
static lunet_tensor *qcnn_by_ops(const lunet_tensor *x, const void *ctx) {
    const qcnn *c = ctx;
    lunet_tensor *q = NULL, *h1 = NULL, *p = NULL, *f = NULL, *h2 = NULL, *h3 = NULL, *y = NULL;
    lunet_qlayer_params l1 = {c->w1, c->s1, c->b1, c->a1, true}, l2 = {c->w2, c->s2, c->b2, c->a2, true},
                        l3 = {c->w3, c->s3, c->b3, c->a3, false};
    lunet_quantize(&q, x, c->in);
    lunet_qconv2d(&h1, q, c->in, &l1, &qcnn_conv);
    lunet_max_pool2d(&p, h1, &qcnn_pool);
    lunet_tensor_flatten(&f, p, 1, -1);
    lunet_qlinear(&h2, f, c->a1, &l2);
    lunet_qlinear(&h3, h2, c->a2, &l3);
    lunet_dequantize(&y, h3, c->a3);
    lunet_tensor *all[6] = {q, h1, p, f, h2, h3};
    for (int i = 0; i < 6; i++) lunet_tensor_release(all[i]);
    return y;
}

static lunet_model *qcnn_graph(const qcnn *c) {
    lunet_model *m = NULL;
    int64_t sample[3] = {2, 8, 8};
    lunet_qlayer_params l1 = {c->w1, c->s1, c->b1, c->a1, false}, l2 = {c->w2, c->s2, c->b2, c->a2, false},
                        l3 = {c->w3, c->s3, c->b3, c->a3, false};
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 3, sample));
    CHECK_OK(lunet_model_add_quantize(m, c->in));
    CHECK_OK(lunet_model_add_qconv2d(m, &l1, &qcnn_conv));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
    CHECK_OK(lunet_model_add_pool2d(m, LUNET_LAYER_MAX_POOL2D, &qcnn_pool));
    CHECK_OK(lunet_model_add_flatten(m, 1, -1));
    CHECK_OK(lunet_model_add_qlinear(m, &l2));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
    CHECK_OK(lunet_model_add_qlinear(m, &l3));
    CHECK_OK(lunet_model_add_dequantize(m));
    return m;
}

/* The graph gives the ops' bits at every batch size (one slice or more) and thread count. */
static void test_graph_equals_ops(void) {
    qcnn c = qcnn_new();
    lunet_model *m = qcnn_graph(&c);
    CHECK(lunet_model_layer_count(m) == 7);
    CHECK(lunet_model_layer_kind(m, 1) == LUNET_LAYER_QCONV2D && lunet_model_layer_activation(m, 1) == LUNET_LAYER_RELU);
    check_graph_equals_ops(m, LUNET_DTYPE_F32, qcnn_by_ops, &c);
    lunet_model_free(m);
    qcnn_free(&c);
}

/* Int8 images are channels-last inside the graph (model.h).  Two graphs that need them
 * transposed give the ops' bits too: a convolution straight into a dequantize, and a pooling
 * of the (channels-first) quantized input, a convolution, a flatten of the pixels only and a
 * Linear layer over them. */
static lunet_tensor *conv_to_dequantize_by_ops(const lunet_tensor *x, const void *ctx) {
    const qcnn *c = ctx;
    lunet_tensor *q = NULL, *h = NULL, *y = NULL;
    lunet_qlayer_params l1 = {c->w1, c->s1, c->b1, c->a1, true};
    lunet_quantize(&q, x, c->in);
    lunet_qconv2d(&h, q, c->in, &l1, &qcnn_conv);
    lunet_dequantize(&y, h, c->a1);
    lunet_tensor_release(q);
    lunet_tensor_release(h);
    return y;
}

/* w3 here is (3, 16): a Linear layer over each channel's 4 x 4 pixels. */
static lunet_tensor *pixels_linear_by_ops(const lunet_tensor *x, const void *ctx) {
    const qcnn *c = ctx;
    lunet_tensor *q = NULL, *p = NULL, *h = NULL, *f = NULL, *h3 = NULL, *y = NULL;
    lunet_qlayer_params l1 = {c->w1, c->s1, c->b1, c->a1, false}, l3 = {c->w3, c->s3, NULL, c->a3, false};
    lunet_quantize(&q, x, c->in);
    lunet_max_pool2d(&p, q, &qcnn_pool);
    lunet_qconv2d(&h, p, c->in, &l1, &qcnn_conv);
    lunet_tensor_flatten(&f, h, 2, -1);
    lunet_qlinear(&h3, f, c->a1, &l3);
    lunet_dequantize(&y, h3, c->a3);
    lunet_tensor *all[5] = {q, p, h, f, h3};
    for (int i = 0; i < 5; i++) lunet_tensor_release(all[i]);
    return y;
}

static void test_graph_layouts(void) {
    qcnn c = qcnn_new();
    int64_t sample[3] = {2, 8, 8}, ws3[2] = {3, 16};
    lunet_qlayer_params l1 = {c.w1, c.s1, c.b1, c.a1, false};
    lunet_model *m = NULL;
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 3, sample));
    CHECK_OK(lunet_model_add_quantize(m, c.in));
    CHECK_OK(lunet_model_add_qconv2d(m, &l1, &qcnn_conv));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
    CHECK_OK(lunet_model_add_dequantize(m));
    check_graph_equals_ops(m, LUNET_DTYPE_F32, conv_to_dequantize_by_ops, &c);
    lunet_model_free(m);

    lunet_tensor *f3 = randn(LUNET_DTYPE_F32, 2, ws3);
    lunet_tensor_release(c.w3);
    lunet_tensor_release(c.s3);
    CHECK_OK(lunet_quantize_weight(&c.w3, &c.s3, f3, 7));
    lunet_qlayer_params l3 = {c.w3, c.s3, NULL, c.a3, false};
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 3, sample));
    CHECK_OK(lunet_model_add_quantize(m, c.in));
    CHECK_OK(lunet_model_add_pool2d(m, LUNET_LAYER_MAX_POOL2D, &qcnn_pool));
    CHECK_OK(lunet_model_add_qconv2d(m, &l1, &qcnn_conv));
    CHECK_OK(lunet_model_add_flatten(m, 2, -1));
    CHECK_OK(lunet_model_add_qlinear(m, &l3));
    CHECK_OK(lunet_model_add_dequantize(m));
    check_graph_equals_ops(m, LUNET_DTYPE_F32, pixels_linear_by_ops, &c);
    lunet_model_free(m);
    lunet_tensor_release(f3);
    qcnn_free(&c);
}

/* A dynamic Linear layer in the graph gives lunet_linear_dynamic's bits, and a row's answer
 * does not depend on the rest of its batch. */
static void test_graph_dynamic(void) {
    int64_t ws[2] = {9, 30}, n9 = 9, sample = 30;
    lunet_tensor *wf = randn(LUNET_DTYPE_F32, 2, ws), *b = randn(LUNET_DTYPE_F32, 1, &n9), *w = NULL, *s = NULL;
    CHECK_OK(lunet_quantize_weight(&w, &s, wf, 7));
    lunet_model *m = NULL;
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 1, &sample));
    CHECK_OK(lunet_model_add_linear_dynamic(m, w, s, b));
    CHECK_OK(lunet_model_add_activation(m, LUNET_LAYER_RELU, 0));
    CHECK(lunet_model_layer_count(m) == 1);
    for (int threads = 1; threads <= 2; threads++) {
        lunet_set_num_threads(threads);
        int64_t xs[2] = {LUNET_MODEL_MAX_BATCH + 3, 30};
        lunet_tensor *x = randn(LUNET_DTYPE_F32, 2, xs), *y = NULL, *ref = NULL, *one = NULL, *y1 = NULL, *x1 = NULL;
        CHECK_OK(lunet_model_forward(&y, m, x));
        CHECK_OK(lunet_linear_dynamic(&ref, x, w, s, b, true));
        CHECK(y && max_abs_diff(y, ref) == 0);
        CHECK_OK(lunet_tensor_narrow(&x1, x, 0, 5, 1));
        CHECK_OK(lunet_model_forward(&y1, m, x1));
        CHECK_OK(lunet_tensor_narrow(&one, y, 0, 5, 1));
        CHECK(y1 && max_abs_diff(y1, one) == 0);
        lunet_tensor *all[6] = {x, y, ref, one, y1, x1};
        for (int i = 0; i < 6; i++) lunet_tensor_release(all[i]);
    }
    lunet_set_num_threads(1);
    lunet_model_free(m);
    lunet_tensor *all[4] = {wf, b, w, s};
    for (int i = 0; i < 4; i++) lunet_tensor_release(all[i]);
}

/* Layers that cannot run on the activation they get say so. */
static void test_graph_errors(void) {
    qcnn c = qcnn_new();
    lunet_model *m = NULL;
    int64_t sample[3] = {2, 8, 8};
    lunet_qlayer_params l1 = {c.w1, c.s1, c.b1, c.a1, false};
    CHECK_OK(lunet_model_create(&m, LUNET_DTYPE_F32, 3, sample));
    CHECK_FAILS(lunet_model_add_qconv2d(m, &l1, &qcnn_conv), LUNET_ERR_DTYPE, "needs a quantized (u8) activation");
    CHECK_FAILS(lunet_model_add_dequantize(m), LUNET_ERR_DTYPE, "add a quantize layer before it");
    CHECK_OK(lunet_model_add_quantize(m, c.in));
    CHECK_FAILS(lunet_model_add_conv2d(m, c.w1, NULL, &qcnn_conv), LUNET_ERR_DTYPE, "add a dequantize layer");
    CHECK_FAILS(lunet_model_add_activation(m, LUNET_LAYER_SIGMOID, 0), LUNET_ERR_DTYPE, "only a relu right after");
    lunet_pool2d_params avg = qcnn_pool;
    CHECK_FAILS(lunet_model_add_pool2d(m, LUNET_LAYER_AVG_POOL2D, &avg), LUNET_ERR_DTYPE, "add a dequantize layer");
    CHECK_OK(lunet_model_add_qconv2d(m, &l1, &qcnn_conv));
    float in[2 * 8 * 8] = {0}, out[4 * 8 * 8];
    CHECK_FAILS(lunet_model_run(m, in, 1, out), LUNET_ERR_DTYPE, "ends on a quantized (u8) activation");
    lunet_model_free(m);
    qcnn_free(&c);
}

int main(void) {
    lunet_manual_seed(9);
    RUN(test_linear_random_shapes);
    RUN(test_linear_extremes);
    RUN(test_conv_random_shapes);
    RUN(test_quantize_rounding);
    RUN(test_max_pool_u8);
    RUN(test_op_errors);
    RUN(test_quantize_weight);
    RUN(test_graph_equals_ops);
    RUN(test_graph_layouts);
    RUN(test_graph_dynamic);
    RUN(test_graph_errors);
    return check_report("test_quant");
}
