/*
 * quant.c: the int8 kernels other than the product itself (qgemm.c): quantizing and
 * dequantizing, preparing a layer's weights, Linear rows and Conv2d images through the
 * product, u8 max pooling, and the plain definitions the fast paths are tested against.
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

lunet_status lunet__qlayer_init(lunet__qlayer *q, const int8_t *w, int64_t channels, int64_t k, bool conv,
                                const int32_t *bias_q, const float *fbias, const float *w_scale, float x_scale,
                                int32_t x_zero_point, float y_scale) {
    memset(q, 0, sizeof *q);
    /* Every |sum| stays below 255 * 128 * k: keep it inside int32 so that no kernel wraps. */
    if (k > (int64_t)(INT32_MAX / (255 * 128)))
        return lunet__fail(LUNET_ERR_SHAPE, "int8: %lld inputs per output is more than the int32 sums hold (%d)",
                           (long long)k, INT32_MAX / (255 * 128));
    size_t nc = (size_t)(channels ? channels : 1);
    q->channels = channels, q->k = k;
    q->k_padded = 4 * lunet__qk_quads(k);
    q->weight_bytes = conv ? (size_t)(channels * q->k_padded) : lunet__qpacked_bytes(k, channels);
    q->weight = lunet__alloc(q->weight_bytes);
    q->offset = malloc(nc * sizeof *q->offset);
    q->wsum = malloc(nc * sizeof *q->wsum);
    q->multiplier = malloc(nc * sizeof *q->multiplier);
    q->fbias = fbias ? malloc(nc * sizeof *q->fbias) : NULL;
    if ((q->weight_bytes && !q->weight) || !q->offset || !q->wsum || !q->multiplier || (fbias && !q->fbias)) {
        lunet__qlayer_free(q);
        return lunet__nomem("int8");
    }
    if (conv) {
        memset(q->weight, 0, q->weight_bytes);
        for (int64_t o = 0; o < channels; o++) memcpy(q->weight + o * q->k_padded, w + o * k, (size_t)k);
    } else {
        lunet__qpack_transposed(q->weight, w, channels, k);
    }
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
    lunet__qgemm g = {.m = rows, .n = q->channels, .k = q->k, .a = x, .lda = q->k, .a_unsigned = true,
                      .b = q->weight, .epilogue = e, .c = y, .ldc = q->channels, .kernel = q->kernel};
    lunet__qgemm_rows(&g, 0, rows);
}

/* ---- convolution --------------------------------------------------------------------------------------- */

/* The scratch holds the unfolded image twice: row-major (k rows of the padded pixel count),
 * then packed. */
size_t lunet__qconv_cols_bytes(const lunet__conv_geometry *g) {
    return 2 * lunet__qpacked_bytes(g->col_rows, g->col_cols) + 16; /* + copy_row's slack */
}

/* Copies n bytes from src to dst.  Rows of a small image are shorter than a memcpy call is
 * worth, so a row of up to 16 bytes moves as one 16-byte load and store when the source has
 * 16 bytes before `end`; dst may be written up to 16 bytes on (the scratch has that slack, and
 * whatever lands past the row is overwritten by the rows after it). */
static inline void copy_row(uint8_t *dst, const uint8_t *src, int64_t n, const uint8_t *end) {
#ifdef __SSE2__
    if (n <= 16 && end - src >= 16) {
        _mm_storeu_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src));
        return;
    }
#else
    (void)end;
#endif
    memcpy(dst, src, (size_t)n);
}

/* Unfolds one u8 image into rows: row k = (c, ky, kx) holds that tap for every output pixel,
 * pad where the tap falls outside the image; rows past col_rows and pixels past col_cols are
 * zero (the packed product reads them). */
static void unfold_rows(const lunet__conv_geometry *g, const uint8_t *x, uint8_t pad, uint8_t *rows, int64_t k_rows,
                        int64_t width) {
    const uint8_t *end = x + g->c * g->h * g->w;
    for (int64_t kk = 0; kk < g->col_rows; kk++) {
        int64_t c = kk / (g->kh * g->kw), ky = kk / g->kw % g->kh, kx = kk % g->kw;
        const uint8_t *plane = x + c * g->h * g->w;
        uint8_t *dst = rows + kk * width;
        for (int64_t oy = 0; oy < g->oh; oy++, dst += g->ow) {
            int64_t iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->h) {
                memset(dst, pad, (size_t)g->ow);
                continue;
            }
            const uint8_t *src = plane + iy * g->w;
            int64_t x0 = kx * g->dw - g->pw; /* input column of output column 0 */
            if (g->sw == 1 && x0 >= 0 && x0 + g->ow <= g->w) { /* a plain copy */
                copy_row(dst, src + x0, g->ow, end);
                continue;
            }
            for (int64_t ox = 0; ox < g->ow; ox++) {
                int64_t ix = ox * g->sw + x0;
                dst[ox] = ix >= 0 && ix < g->w ? src[ix] : pad;
            }
        }
        memset(rows + kk * width + g->col_cols, 0, (size_t)(width - g->col_cols));
    }
    memset(rows + g->col_rows * width, 0, (size_t)((k_rows - g->col_rows) * width));
}

/* Packs rows (k_rows x width, both multiples of 4 and 8) into quad-by-panel order: for each
 * panel of 8 pixels and quad of 4 rows, pixel c's four bytes at 4c. */
static void pack_rows(uint8_t *packed, const uint8_t *rows, int64_t k_rows, int64_t width) {
    int64_t quads = k_rows / 4;
    for (int64_t q = 0; q < quads; q++) {
        const uint8_t *r = rows + 4 * q * width;
        for (int64_t p = 0; p < width / 8; p++) {
            uint8_t *dst = packed + (p * quads + q) * 32;
#ifdef __SSE2__
            __m128i r0 = _mm_loadl_epi64((const __m128i *)(r + 8 * p));
            __m128i r1 = _mm_loadl_epi64((const __m128i *)(r + width + 8 * p));
            __m128i r2 = _mm_loadl_epi64((const __m128i *)(r + 2 * width + 8 * p));
            __m128i r3 = _mm_loadl_epi64((const __m128i *)(r + 3 * width + 8 * p));
            __m128i r01 = _mm_unpacklo_epi8(r0, r1), r23 = _mm_unpacklo_epi8(r2, r3);
            _mm_storeu_si128((__m128i *)dst, _mm_unpacklo_epi16(r01, r23));
            _mm_storeu_si128((__m128i *)(dst + 16), _mm_unpackhi_epi16(r01, r23));
#else
            for (int c = 0; c < 8; c++)
                for (int t = 0; t < 4; t++) dst[4 * c + t] = r[t * width + 8 * p + c];
#endif
        }
    }
}

void lunet__qconv2d_image(const lunet__conv_geometry *g, const lunet__qlayer *q, const lunet__epilogue *e,
                          const uint8_t *x_img, int32_t x_zero_point, void *y_img, uint8_t *cols) {
    LUNET_ASSERT(g->groups == 1);
    int64_t k_rows = 4 * lunet__qk_quads(g->col_rows), width = 8 * lunet__qpanels(g->col_cols);
    uint8_t *rows = cols + lunet__qpacked_bytes(g->col_rows, g->col_cols);
    unfold_rows(g, x_img, (uint8_t)x_zero_point, rows, k_rows, width);
    pack_rows(cols, rows, k_rows, width);
    lunet__qgemm gm = {.m = g->o, .n = g->col_cols, .k = g->col_rows, .a = q->weight, .lda = q->k_padded,
                       .a_unsigned = false, .b = cols, .epilogue = e, .c = y_img, .ldc = g->col_cols,
                       .kernel = q->kernel};
    lunet__qgemm_rows(&gm, 0, g->o);
}

/* ---- pooling ---------------------------------------------------------------------------------------------- */

/* The common case, 2x2 windows at stride 2 with no padding or dilation, without the bounds checks
 * (the compiler vectorizes the row loop). */
LUNET_VECTORIZED
static void max_pool_2x2_u8(const lunet__pool_geometry *g, uint8_t *restrict y, const uint8_t *restrict x) {
    for (int64_t p = 0; p < g->planes; p++)
        for (int64_t oy = 0; oy < g->oh; oy++) {
            const uint8_t *r0 = x + (p * g->h + 2 * oy) * g->w, *r1 = r0 + g->w;
            uint8_t *out = y + (p * g->oh + oy) * g->ow;
            for (int64_t ox = 0; ox < g->ow; ox++) {
                uint8_t a = r0[2 * ox] > r0[2 * ox + 1] ? r0[2 * ox] : r0[2 * ox + 1];
                uint8_t b = r1[2 * ox] > r1[2 * ox + 1] ? r1[2 * ox] : r1[2 * ox + 1];
                out[ox] = a > b ? a : b;
            }
        }
}

void lunet__max_pool2d_u8(const lunet__pool_geometry *g, uint8_t *y, const uint8_t *x) {
    if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 && g->dw == 1 &&
        2 * g->oh <= g->h && 2 * g->ow <= g->w) {
        max_pool_2x2_u8(g, y, x);
        return;
    }
    for (int64_t p = 0; p < g->planes; p++) {
        const uint8_t *plane = x + p * g->h * g->w;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++) {
                int64_t y0 = oy * g->sh - g->ph, x0 = ox * g->sw - g->pw;
                int best = -1;
                for (int64_t ki = 0; ki < g->kh; ki++) {
                    int64_t iy = y0 + ki * g->dh;
                    if (iy < 0 || iy >= g->h) continue;
                    for (int64_t kj = 0; kj < g->kw; kj++) {
                        int64_t ix = x0 + kj * g->dw;
                        if (ix >= 0 && ix < g->w && plane[iy * g->w + ix] > best) best = plane[iy * g->w + ix];
                    }
                }
                *y++ = (uint8_t)(best < 0 ? 0 : best);
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
                lunet__epilogue_run(e, &acc, 1, o, p, (char *)y_img + (size_t)(o * g->col_cols + p) * elem);
            }
}
