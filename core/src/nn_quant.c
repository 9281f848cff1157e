/*
 * nn_quant.c: the int8 ops of lunet.h on tensors: choosing parameters, quantizing
 * activations, weights and biases, and the quantized Linear and Conv2d layers.  Each layer
 * call prepares its weights afresh (quant.h); the model graph prepares them once.
 */
#include "quant.h"

#include <stdlib.h>
#include <string.h>

/* ---- parameters --------------------------------------------------------------------------------- */

lunet_qparams lunet_qparams_for_range(double lo, double hi) {
    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    float scale = (float)((hi - lo) / 255.0);
    if (!(scale > 0) || !isfinite(scale)) return (lunet_qparams){1.0f, 0};
    double zp = nearbyint(-lo / scale);
    return (lunet_qparams){scale, zp < 0 ? 0 : zp > 255 ? 255 : (int32_t)zp};
}

lunet_status lunet_qparams_check(lunet_qparams p, const char *op) {
    if (!(p.scale > 0) || !isfinite(p.scale))
        return lunet__fail(LUNET_ERR_ARG, "%s: scale %g must be finite and positive", op, (double)p.scale);
    if (p.zero_point < 0 || p.zero_point > 255)
        return lunet__fail(LUNET_ERR_ARG, "%s: zero point %d is outside 0..255", op, (int)p.zero_point);
    return LUNET_OK;
}

static lunet_status check_dtype(const lunet_tensor *t, lunet_dtype want, const char *op, const char *name) {
    if (t->dtype != want)
        return lunet__fail(LUNET_ERR_DTYPE, "%s: %s must be %s, not %s", op, name, lunet_dtype_name(want),
                           lunet_dtype_name(t->dtype));
    return LUNET_OK;
}

/* A new tensor of dtype shaped like x, filled by fill(y data, x data) from a contiguous x. */
typedef void (*map_fn)(void *y, const void *x, int64_t n, lunet_qparams q);

static lunet_status map(lunet_tensor **out, const lunet_tensor *x, lunet_dtype dtype, map_fn fill, lunet_qparams q,
                        const char *op) {
    lunet_tensor *xc = NULL, *y = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, dtype, x->ndim, x->shape, op);
    if (s == LUNET_OK) fill(lunet__data(y), lunet__data(xc), x->numel, q);
    lunet_tensor_release(xc);
    return lunet__hand_over(out, y, s);
}

static void quantize_fill(void *y, const void *x, int64_t n, lunet_qparams q) {
    lunet__quantize_f32(y, x, n, q.scale, q.zero_point);
}
static void dequantize_fill(void *y, const void *x, int64_t n, lunet_qparams q) {
    lunet__dequantize_f32(y, x, n, q.scale, q.zero_point);
}

lunet_status lunet_quantize(lunet_tensor **out, const lunet_tensor *x, lunet_qparams q) {
    *out = NULL;
    LUNET_TRY(lunet_qparams_check(q, "quantize"));
    LUNET_TRY(check_dtype(x, LUNET_DTYPE_F32, "quantize", "input"));
    return map(out, x, LUNET_DTYPE_U8, quantize_fill, q, "quantize");
}

lunet_status lunet_dequantize(lunet_tensor **out, const lunet_tensor *q, lunet_qparams p) {
    *out = NULL;
    LUNET_TRY(lunet_qparams_check(p, "dequantize"));
    LUNET_TRY(check_dtype(q, LUNET_DTYPE_U8, "dequantize", "input"));
    return map(out, q, LUNET_DTYPE_F32, dequantize_fill, p, "dequantize");
}

/* ---- weights and biases ------------------------------------------------------------------------------ */

lunet_status lunet_quantize_weight(lunet_tensor **q, lunet_tensor **scale, const lunet_tensor *w, int bits) {
    *q = *scale = NULL;
    char sw[LUNET__SHAPE_BUF];
    if (bits != 7 && bits != 8) return lunet__fail(LUNET_ERR_ARG, "quantize_weight: bits must be 7 or 8, not %d", bits);
    if (!lunet_dtype_is_float(w->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "quantize_weight: weight must be f32 or f64, not %s", lunet_dtype_name(w->dtype));
    if (w->ndim < 1 || w->shape[0] < 1)
        return lunet__fail(LUNET_ERR_SHAPE, "quantize_weight: weight %s has no output channels", lunet__shape_str(sw, sizeof sw, w));
    int64_t o = w->shape[0], per = w->numel / o;
    double qmax = (1 << (bits - 1)) - 1;
    lunet_tensor *wc = NULL, *qt = NULL, *st = NULL;
    lunet_status s = lunet__contiguous_nograd(&wc, w);
    if (s == LUNET_OK) s = lunet__tensor_new(&qt, LUNET_DTYPE_I8, w->ndim, w->shape, "quantize_weight");
    if (s == LUNET_OK) s = lunet__tensor_new(&st, LUNET_DTYPE_F32, 1, &o, "quantize_weight");
    for (int64_t c = 0; s == LUNET_OK && c < o; c++) {
        const char *row = lunet__data(wc) + (size_t)(c * per) * lunet_dtype_size(w->dtype);
        double maxabs = 0;
        for (int64_t i = 0; i < per; i++) {
            double v = fabs(lunet__load_f64(row + (size_t)i * lunet_dtype_size(w->dtype), w->dtype));
            if (!isfinite(v)) {
                s = lunet__fail(LUNET_ERR_ARG, "quantize_weight: output channel %lld holds a non-finite weight",
                                (long long)c + 1);
                break;
            }
            maxabs = v > maxabs ? v : maxabs;
        }
        float sc = maxabs > 0 ? (float)(maxabs / qmax) : 1.0f;
        if (!(sc > 0)) sc = 1.0f; /* a channel of denormals */
        ((float *)lunet__data(st))[c] = sc;
        int8_t *qrow = (int8_t *)lunet__data(qt) + c * per;
        for (int64_t i = 0; s == LUNET_OK && i < per; i++) {
            double v = nearbyint(lunet__load_f64(row + (size_t)i * lunet_dtype_size(w->dtype), w->dtype) / sc);
            qrow[i] = (int8_t)(v < -qmax ? -qmax : v > qmax ? qmax : v);
        }
    }
    lunet_tensor_release(wc);
    if (s != LUNET_OK) {
        lunet_tensor_release(qt);
        lunet_tensor_release(st);
        return s;
    }
    *q = qt, *scale = st;
    return LUNET_OK;
}

/* scale must be f32 with n entries. */
static lunet_status check_scale(const lunet_tensor *scale, int64_t n, const char *op) {
    char ss[LUNET__SHAPE_BUF];
    LUNET_TRY(check_dtype(scale, LUNET_DTYPE_F32, op, "weight scale"));
    if (scale->ndim != 1 || scale->shape[0] != n)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: weight scale %s must have one entry per output channel (%lld)", op,
                           lunet__shape_str(ss, sizeof ss, scale), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double v;
        LUNET_TRY(lunet_tensor_get_f64(&v, scale, &i));
        if (!(v > 0) || !isfinite(v))
            return lunet__fail(LUNET_ERR_ARG, "%s: weight scale %lld is %g; scales must be finite and positive", op,
                               (long long)i + 1, v);
    }
    return LUNET_OK;
}

lunet_status lunet_quantize_bias(lunet_tensor **out, const lunet_tensor *bias, float x_scale, const lunet_tensor *w_scale) {
    *out = NULL;
    char sb[LUNET__SHAPE_BUF];
    if (!lunet_dtype_is_float(bias->dtype) || bias->ndim != 1)
        return lunet__fail(LUNET_ERR_ARG, "quantize_bias: bias must be a 1-d float tensor, got %s %s",
                           lunet_dtype_name(bias->dtype), lunet__shape_str(sb, sizeof sb, bias));
    LUNET_TRY(check_scale(w_scale, bias->shape[0], "quantize_bias"));
    LUNET_TRY(lunet_qparams_check((lunet_qparams){x_scale, 0}, "quantize_bias"));
    lunet_tensor *y = NULL;
    LUNET_TRY(lunet__tensor_new(&y, LUNET_DTYPE_I32, 1, bias->shape, "quantize_bias"));
    for (int64_t i = 0; i < bias->shape[0]; i++) {
        double b, ws;
        LUNET_TRY(lunet_tensor_get_f64(&b, bias, &i));
        LUNET_TRY(lunet_tensor_get_f64(&ws, w_scale, &i));
        double v = nearbyint(b / ((double)x_scale * ws));
        ((int32_t *)lunet__data(y))[i] = v != v ? 0 : v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int32_t)v;
    }
    *out = y;
    return LUNET_OK;
}

/* ---- layers ------------------------------------------------------------------------------------------ */

/* rows (o x c*h*w) with each row's (C, H, W) block laid channels-last: (H, W, C). */
static void rows_to_channels_last(int8_t *dst, const int8_t *src, int64_t o, const int64_t chw[3]) {
    int64_t hw = chw[1] * chw[2], k = chw[0] * hw;
    for (int64_t r = 0; r < o; r++)
        lunet__u8_to_channels_last((uint8_t *)dst + r * k, (const uint8_t *)src + r * k, chw[0], hw);
}

lunet_status lunet__qlayer_prepare(lunet__qlayer *q, const lunet_tensor *weight, const lunet_tensor *scale,
                                   const lunet_tensor *bias, int weight_ndim, const int64_t chw[3], lunet_qparams x,
                                   float y_scale, const char *op) {
    char sw[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
    bool dynamic = !(y_scale > 0);
    LUNET_TRY(check_dtype(weight, LUNET_DTYPE_I8, op, "weight"));
    if (weight->ndim != weight_ndim || weight->shape[0] < 1)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: weight %s must have %d dims and at least one output channel", op,
                           lunet__shape_str(sw, sizeof sw, weight), weight_ndim);
    int64_t o = weight->shape[0], k = weight->numel / o;
    LUNET_ASSERT(!chw || chw[0] * chw[1] * chw[2] == k);
    LUNET_TRY(check_scale(scale, o, op));
    if (bias) {
        LUNET_TRY(check_dtype(bias, dynamic ? LUNET_DTYPE_F32 : LUNET_DTYPE_I32, op, "bias"));
        if (bias->ndim != 1 || bias->shape[0] != o)
            return lunet__fail(LUNET_ERR_SHAPE, "%s: bias %s must have %lld entries", op,
                               lunet__shape_str(sb, sizeof sb, bias), (long long)o);
    }
    lunet_tensor *w = NULL, *sc = NULL, *b = NULL;
    int8_t *permuted = NULL;
    lunet_status s = lunet__contiguous_nograd(&w, weight);
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&sc, scale);
    if (s == LUNET_OK && bias) s = lunet__contiguous_nograd(&b, bias);
    if (s == LUNET_OK && chw) {
        permuted = malloc((size_t)weight->numel);
        if (!permuted) s = lunet__nomem(op);
        else rows_to_channels_last(permuted, (const int8_t *)lunet__data(w), o, chw);
    }
    if (s == LUNET_OK) {
        const void *bias_data = b ? lunet__data(b) : NULL;
        s = lunet__qlayer_init(q, permuted ? permuted : (const int8_t *)lunet__data(w), o, k,
                               dynamic ? NULL : bias_data, dynamic ? bias_data : NULL, (const float *)lunet__data(sc),
                               x.scale, x.zero_point, y_scale);
    }
    free(permuted);
    lunet_tensor_release(w);
    lunet_tensor_release(sc);
    lunet_tensor_release(b);
    return s;
}

/* A new (..., out) tensor of dtype for x (..., in) through a Linear layer of `out` outputs,
 * after checking that x ends in `in`. */
static lunet_status linear_output(lunet_tensor **y, const lunet_tensor *x, int64_t in, int64_t out, lunet_dtype dtype,
                                  const char *op) {
    char sx[LUNET__SHAPE_BUF];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: input %s does not end in in_features %lld of the weight", op,
                           lunet__shape_str(sx, sizeof sx, x), (long long)in);
    int64_t shape[LUNET_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    return lunet__tensor_new(y, dtype, x->ndim, shape, op);
}

lunet_status lunet_qlinear(lunet_tensor **out, const lunet_tensor *x, lunet_qparams xq, const lunet_qlayer_params *l) {
    *out = NULL;
    LUNET_TRY(lunet_qparams_check(l->output, "qlinear"));
    LUNET_TRY(lunet_qparams_check(xq, "qlinear input"));
    LUNET_TRY(check_dtype(x, LUNET_DTYPE_U8, "qlinear", "input"));
    lunet__qlayer q;
    LUNET_TRY(lunet__qlayer_prepare(&q, l->weight, l->scale, l->bias, 2, NULL, xq, l->output.scale, "qlinear"));
    lunet_tensor *xc = NULL, *y = NULL;
    lunet_status s = linear_output(&y, x, q.k, q.channels, LUNET_DTYPE_U8, "qlinear");
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) {
        lunet__epilogue e = lunet__static_epilogue(&q, l->output, l->relu);
        lunet__qlinear_rows(&q, &e, (const uint8_t *)lunet__data(xc), q.k ? x->numel / q.k : 0, lunet__data(y));
    }
    lunet_tensor_release(xc);
    lunet__qlayer_free(&q);
    return lunet__hand_over(out, y, s);
}

lunet_status lunet_qconv2d(lunet_tensor **out, const lunet_tensor *x, lunet_qparams xq, const lunet_qlayer_params *l,
                           const lunet_conv2d_params *params) {
    *out = NULL;
    char sx[LUNET__SHAPE_BUF];
    LUNET_TRY(lunet_qparams_check(l->output, "qconv2d"));
    LUNET_TRY(lunet_qparams_check(xq, "qconv2d input"));
    LUNET_TRY(check_dtype(x, LUNET_DTYPE_U8, "qconv2d", "input"));
    if (x->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "qconv2d: input must be (N, C, H, W), got %s", lunet__shape_str(sx, sizeof sx, x));
    if (params->groups != 1) return lunet__fail(LUNET_ERR_ARG, "qconv2d: groups must be 1, not %lld", (long long)params->groups);
    const int64_t *ws = l->weight->shape; /* (O, C, KH, KW) once prepare has checked it */
    lunet__qlayer q;
    LUNET_TRY(lunet__qlayer_prepare(&q, l->weight, l->scale, l->bias, 4, l->weight->ndim == 4 ? ws + 1 : NULL, xq,
                                    l->output.scale, "qconv2d"));
    lunet__conv_geometry g;
    lunet_status s = lunet__conv_geometry_of(&g, x->shape, ws, params);
    if (s != LUNET_OK) {
        lunet__qlayer_free(&q);
        return s;
    }
    /* The kernel works on channels-last images: each image goes through it between two
     * transposes, in a scratch of the unfolded rows, the image and its output. */
    int64_t in_img = g.c * g.h * g.w, out_img = g.o * g.col_cols;
    size_t cols_bytes = lunet__qconv_cols_bytes(&g), scratch_bytes = cols_bytes + (size_t)(in_img + out_img);
    uint8_t *scratch = lunet__alloc(scratch_bytes);
    lunet_tensor *xc = NULL, *y = NULL;
    if (!scratch) s = lunet__nomem("qconv2d");
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, LUNET_DTYPE_U8, 4, (int64_t[]){x->shape[0], g.o, g.oh, g.ow}, "qconv2d");
    if (s == LUNET_OK) {
        lunet__epilogue e = lunet__static_epilogue(&q, l->output, l->relu);
        uint8_t *x_last = scratch + cols_bytes, *y_last = x_last + in_img;
        for (int64_t n = 0; n < x->shape[0]; n++) {
            lunet__u8_to_channels_last(x_last, (const uint8_t *)lunet__data(xc) + n * in_img, g.c, g.h * g.w);
            lunet__qconv2d_image(&g, &q, &e, x_last, xq.zero_point, y_last, scratch);
            lunet__u8_to_channels_first((uint8_t *)lunet__data(y) + n * out_img, y_last, g.o, g.col_cols);
        }
    }
    lunet__free(scratch, scratch_bytes);
    lunet_tensor_release(xc);
    lunet__qlayer_free(&q);
    return lunet__hand_over(out, y, s);
}

lunet_status lunet_linear_dynamic(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                                  const lunet_tensor *scale, const lunet_tensor *bias, bool relu) {
    *out = NULL;
    LUNET_TRY(check_dtype(x, LUNET_DTYPE_F32, "linear_dynamic", "input"));
    lunet__qlayer q;
    LUNET_TRY(lunet__qlayer_prepare(&q, weight, scale, bias, 2, NULL, (lunet_qparams){1.0f, 0}, 0, "linear_dynamic"));
    int64_t in = q.k, rows = in ? x->numel / in : 0;
    lunet_tensor *xc = NULL, *y = NULL, *xq = NULL, *rs = NULL, *rz = NULL;
    lunet_status s = linear_output(&y, x, in, q.channels, LUNET_DTYPE_F32, "linear_dynamic");
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&xq, LUNET_DTYPE_U8, 1, (int64_t[]){rows * in}, "linear_dynamic");
    if (s == LUNET_OK) s = lunet__tensor_new(&rs, LUNET_DTYPE_F32, 1, &rows, "linear_dynamic");
    if (s == LUNET_OK) s = lunet__tensor_new(&rz, LUNET_DTYPE_I32, 1, &rows, "linear_dynamic");
    if (s == LUNET_OK) {
        lunet__quantize_rows_dynamic((uint8_t *)lunet__data(xq), (float *)lunet__data(rs), (int32_t *)lunet__data(rz),
                                     (const float *)lunet__data(xc), rows, in);
        lunet__epilogue e = lunet__dynamic_epilogue(&q, (const float *)lunet__data(rs),
                                                    (const int32_t *)lunet__data(rz), relu);
        lunet__qlinear_rows(&q, &e, (const uint8_t *)lunet__data(xq), rows, lunet__data(y));
    }
    lunet__qlayer_free(&q);
    lunet_tensor *all[4] = {xc, xq, rs, rz};
    for (int i = 0; i < 4; i++) lunet_tensor_release(all[i]);
    return lunet__hand_over(out, y, s);
}
