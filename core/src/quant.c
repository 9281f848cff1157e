/*
 * quant.c: the int8 kernels other than the product itself (qgemm.c): quantizing and
 * dequantizing, preparing a layer's weights, Linear rows and channels-last Conv2d images
 * through the product, u8 max pooling, and the plain definitions the fast paths are tested
 * against.
 */
#include "quant.h"

#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- quantizing --------------------------------------------------------------------------------- */

LUNET_VECTORIZED
void lunet__quantize_f32(uint8_t *q, const float *x, int64_t n, float scale, int32_t zero_point) {
    float lo = (float)(0 - zero_point), hi = (float)(255 - zero_point);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / scale;
        v = v < lo ? lo : v; /* NaN compares false twice and would stay: turn it into lo */
        v = v > hi ? hi : v;
        v = v == v ? v : lo;
        q[i] = (uint8_t)((int32_t)lunet__round_half_even(v) + zero_point);
    }
}

LUNET_VECTORIZED
void lunet__dequantize_f32(float *x, const uint8_t *q, int64_t n, float scale, int32_t zero_point) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((int32_t)q[i] - zero_point) * scale;
}

void lunet__quantize_rows_dynamic(uint8_t *q, float *row_scale, int32_t *row_zero_point, const float *x,
                                  int64_t rows, int64_t k) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        float lo = 0, hi = 0; /* the range always holds 0, so that 0 is exact */
        for (int64_t i = 0; i < k; i++) {
            lo = xr[i] < lo ? xr[i] : lo;
            hi = xr[i] > hi ? xr[i] : hi;
        }
        float scale = (hi - lo) / 255.0f;
        if (!(scale > 0) || !isfinite(scale)) scale = 1; /* an all-zero row (or a non-finite one) */
        float zp = lunet__round_half_even((0 - lo) / scale);
        int32_t z = zp < 0 ? 0 : zp > 255 ? 255 : (int32_t)zp;
        row_scale[r] = scale;
        row_zero_point[r] = z;
        lunet__quantize_f32(q + r * k, xr, k, scale, z);
    }
}

/* ---- layers ----------------------------------------------------------------------------------------- */

void lunet__qlayer_free(lunet__qlayer *q) {
    lunet__free(q->weight, q->weight_bytes);
    free(q->offset);
    free(q->wsum);
    free(q->multiplier);
    free(q->fbias);
    memset(q, 0, sizeof *q);
}

lunet_status lunet__qlayer_init(lunet__qlayer *q, const int8_t *w, int64_t channels, int64_t k,
                                const int32_t *bias_q, const float *fbias, const float *w_scale, float x_scale,
                                int32_t x_zero_point, float y_scale) {
    memset(q, 0, sizeof *q);
    /* Every |sum| stays below 255 * 128 * k: keep it inside int32 so that no kernel wraps. */
    if (k > (int64_t)(INT32_MAX / (255 * 128)))
        return lunet__fail(LUNET_ERR_SHAPE, "int8: %lld inputs per output is more than the int32 sums hold (%d)",
                           (long long)k, INT32_MAX / (255 * 128));
    size_t nc = (size_t)(channels ? channels : 1);
    q->channels = channels, q->k = k;
    q->weight_bytes = lunet__qpacked_bytes(k, channels);
    q->weight = lunet__alloc(q->weight_bytes);
    q->offset = malloc(nc * sizeof *q->offset);
    q->wsum = malloc(nc * sizeof *q->wsum);
    q->multiplier = malloc(nc * sizeof *q->multiplier);
    q->fbias = fbias ? malloc(nc * sizeof *q->fbias) : NULL;
    if ((q->weight_bytes && !q->weight) || !q->offset || !q->wsum || !q->multiplier || (fbias && !q->fbias)) {
        lunet__qlayer_free(q);
        return lunet__nomem("int8");
    }
    lunet__qpack_transposed(q->weight, w, channels, k);
    for (int64_t o = 0; o < channels; o++) {
        int32_t sum = 0;
        for (int64_t i = 0; i < k; i++) sum += w[o * k + i];
        q->wsum[o] = sum;
        q->offset[o] = (int32_t)((uint32_t)(bias_q ? bias_q[o] : 0) - (uint32_t)x_zero_point * (uint32_t)sum);
        q->multiplier[o] = y_scale > 0 ? x_scale * w_scale[o] / y_scale : w_scale[o];
        if (fbias) q->fbias[o] = fbias[o];
        if (!isfinite(q->multiplier[o]) || !(q->multiplier[o] > 0)) {
            lunet_status s = lunet__fail(LUNET_ERR_ARG, "int8: output channel %lld's scales give the multiplier %g; "
                                         "it must be finite and positive", (long long)o + 1, (double)q->multiplier[o]);
            lunet__qlayer_free(q);
            return s;
        }
    }
    q->kernel = lunet__qkernel_for(lunet__qweights_pair_safe(w, channels, k, k));
    return LUNET_OK;
}

void lunet__qlinear_rows(const lunet__qlayer *q, const lunet__epilogue *e, const uint8_t *x, int64_t rows, void *y) {
    lunet__qgemm g = {.m = rows, .n = q->channels, .k = q->k, .a = x, .lda = q->k,
                      .b = q->weight, .epilogue = e, .c = y, .ldc = q->channels, .kernel = q->kernel};
    lunet__qgemm_rows(&g, 0, rows);
}

/* ---- channels-last images ------------------------------------------------------------------------------ */

void lunet__u8_to_channels_last(uint8_t *dst, const uint8_t *src, int64_t c, int64_t hw) {
    for (int64_t p = 0; p < hw; p++)
        for (int64_t ch = 0; ch < c; ch++) dst[p * c + ch] = src[ch * hw + p];
}

void lunet__u8_to_channels_first(uint8_t *dst, const uint8_t *src, int64_t c, int64_t hw) {
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t p = 0; p < hw; p++) dst[ch * hw + p] = src[p * c + ch];
}

/* ---- convolution --------------------------------------------------------------------------------------- */

/* Bytes of one unfolded row: the receptive field rounded up to whole quads. */
static int64_t unfolded_row_bytes(const lunet__conv_geometry *g) { return 4 * lunet__qk_quads(g->col_rows); }

size_t lunet__qconv_cols_bytes(const lunet__conv_geometry *g) {
    return (size_t)(g->col_cols * unfolded_row_bytes(g)) + 16; /* + copy_run's slack */
}

/* Copies a run of n bytes from src to dst.  Runs (a kernel row's KW * C bytes, or one pixel's
 * C) are shorter than a memcpy call is worth: 16 bytes or more move 16 at a time, the last 16
 * overlapping the ones before; fewer move as one 16-byte load and store when the image has
 * 16 bytes from src on (before `end`), dst then being written up to 16 bytes on.  The scratch
 * has that slack, and the unfolding writes in address order, so whatever lands past the run
 * is overwritten by what follows it. */
static inline void copy_run(uint8_t *dst, const uint8_t *src, int64_t n, const uint8_t *end) {
#ifdef __SSE2__
    if (n >= 16) {
        for (int64_t i = 0; i + 16 < n; i += 16)
            _mm_storeu_si128((__m128i *)(dst + i), _mm_loadu_si128((const __m128i *)(src + i)));
        _mm_storeu_si128((__m128i *)(dst + n - 16), _mm_loadu_si128((const __m128i *)(src + n - 16)));
        return;
    }
    if (end - src >= 16) {
        _mm_storeu_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src));
        return;
    }
#else
    (void)end;
#endif
    memcpy(dst, src, (size_t)n);
}

/* Unfolds one channels-last image into rows of row_bytes: row p holds output pixel p's
 * receptive field in (ky, kx, c) order (pad where it falls outside the image), then zeros up
 * to row_bytes.  A kernel row whose taps are adjacent pixels inside the image (the common
 * case) is one contiguous run of KW * C bytes. */
static void unfold_image(const lunet__conv_geometry *g, const uint8_t *x, uint8_t pad, uint8_t *cols,
                         int64_t row_bytes) {
    const uint8_t *end = x + g->h * g->w * g->c;
    int64_t c = g->c, run = g->kw * c;
    for (int64_t oy = 0; oy < g->oh; oy++)
        for (int64_t ox = 0; ox < g->ow; ox++, cols += row_bytes) {
            int64_t x0 = ox * g->sw - g->pw; /* input column of tap kx = 0 */
            bool one_run = g->dw == 1 && x0 >= 0 && x0 + g->kw <= g->w;
            uint8_t *dst = cols;
            for (int64_t ky = 0; ky < g->kh; ky++, dst += run) {
                int64_t iy = oy * g->sh - g->ph + ky * g->dh;
                if (iy < 0 || iy >= g->h) {
                    memset(dst, pad, (size_t)run);
                    continue;
                }
                const uint8_t *src = x + iy * g->w * c;
                if (one_run) {
                    copy_run(dst, src + x0 * c, run, end);
                    continue;
                }
                for (int64_t kx = 0; kx < g->kw; kx++) {
                    int64_t ix = x0 + kx * g->dw;
                    if (ix >= 0 && ix < g->w) copy_run(dst + kx * c, src + ix * c, c, end);
                    else memset(dst + kx * c, pad, (size_t)c);
                }
            }
            memset(cols + g->col_rows, 0, (size_t)(row_bytes - g->col_rows));
        }
}

void lunet__qconv2d_image(const lunet__conv_geometry *g, const lunet__qlayer *q, const lunet__epilogue *e,
                          const uint8_t *x_img, int32_t x_zero_point, void *y_img, uint8_t *cols) {
    LUNET_ASSERT(g->groups == 1);
    int64_t row_bytes = unfolded_row_bytes(g);
    unfold_image(g, x_img, (uint8_t)x_zero_point, cols, row_bytes);
    /* K runs to whole quads: the rows are zero past col_rows and so is the packed weight, so
     * the kernel never takes its partial-quad path. */
    lunet__qgemm gm = {.m = g->col_cols, .n = g->o, .k = row_bytes, .a = cols, .lda = row_bytes, .b = q->weight,
                       .epilogue = e, .c = y_img, .ldc = g->o, .kernel = q->kernel};
    lunet__qgemm_rows(&gm, 0, g->col_cols);
}

/* ---- pooling ---------------------------------------------------------------------------------------------- */

/* out[i] = max(out[i], in[i]) for the n channels of a pixel: 16 at a time when there are 16
 * or more, the last 16 overlapping the ones before (max is idempotent). */
static inline void max_into(uint8_t *restrict out, const uint8_t *restrict in, int64_t n) {
#ifdef __SSE2__
    if (n >= 16) {
        for (int64_t i = 0;; i += 16) {
            if (i > n - 16) i = n - 16;
            __m128i *o = (__m128i *)(out + i);
            _mm_storeu_si128(o, _mm_max_epu8(_mm_loadu_si128(o), _mm_loadu_si128((const __m128i *)(in + i))));
            if (i == n - 16) return;
        }
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = in[i] > out[i] ? in[i] : out[i];
}

void lunet__max_pool2d_u8(const lunet__pool_geometry *g, int64_t images, int64_t channels, uint8_t *y,
                          const uint8_t *x) {
    int64_t c = channels;
    for (int64_t n = 0; n < images; n++) {
        const uint8_t *img = x + n * g->h * g->w * c;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++, y += c) {
                /* u8 values are >= 0, so starting from 0 gives the maximum of the taps inside the
                 * image (and 0 for a window wholly in the padding). */
                memset(y, 0, (size_t)c);
                int64_t y0 = oy * g->sh - g->ph, x0 = ox * g->sw - g->pw;
                for (int64_t ki = 0; ki < g->kh; ki++) {
                    int64_t iy = y0 + ki * g->dh;
                    if (iy < 0 || iy >= g->h) continue;
                    for (int64_t kj = 0; kj < g->kw; kj++) {
                        int64_t ix = x0 + kj * g->dw;
                        if (ix >= 0 && ix < g->w) max_into(y, img + (iy * g->w + ix) * c, c);
                    }
                }
            }
    }
}

/* ---- references ------------------------------------------------------------------------------------------- */

void lunet__qlinear_reference(const lunet__epilogue *e, const uint8_t *x, const int8_t *w, int64_t rows,
                              int64_t channels, int64_t k, void *y) {
    size_t elem = lunet__epilogue_elem(e);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < channels; o++) {
            int64_t sum = 0;
            for (int64_t i = 0; i < k; i++) sum += (int64_t)x[r * k + i] * w[o * k + i];
            int32_t acc = (int32_t)sum;
            lunet__epilogue_run(e, &acc, 1, r, o, (char *)y + (size_t)(r * channels + o) * elem);
        }
}

void lunet__qconv2d_reference(const lunet__conv_geometry *g, const lunet__epilogue *e, const uint8_t *x_img,
                              int32_t x_zero_point, const int8_t *w, void *y_img) {
    size_t elem = lunet__epilogue_elem(e);
    for (int64_t o = 0; o < g->o; o++)
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++) {
                int64_t sum = 0;
                for (int64_t c = 0; c < g->c; c++)
                    for (int64_t ky = 0; ky < g->kh; ky++)
                        for (int64_t kx = 0; kx < g->kw; kx++) {
                            int64_t iy = oy * g->sh - g->ph + ky * g->dh, ix = ox * g->sw - g->pw + kx * g->dw;
                            int32_t v = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w ? x_img[(c * g->h + iy) * g->w + ix]
                                                                                    : x_zero_point;
                            sum += (int64_t)v * w[((o * g->c + c) * g->kh + ky) * g->kw + kx];
                        }
                int32_t acc = (int32_t)sum;
                int64_t p = oy * g->ow + ox;
                lunet__epilogue_run(e, &acc, 1, p, o, (char *)y_img + (size_t)(o * g->col_cols + p) * elem);
            }
}
