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

/* The scratch holds the packed unfolded image, then four unfolded rows on their way into it. */
size_t lunet__qconv_cols_bytes(const lunet__conv_geometry *g) {
    return lunet__qpacked_bytes(g->col_rows, g->col_cols) + 32 * (size_t)lunet__qpanels(g->col_cols) +
           16; /* + copy_row's slack */
}

/* Copies n bytes from src to dst.  Rows of a small image are shorter than a memcpy call is
 * worth: 16 to 32 bytes move as two overlapping 16-byte loads and stores; fewer as one when
 * the source has 16 bytes before `end`, dst then being written up to 16 bytes on (the scratch
 * has that slack, and whatever lands past the row is overwritten by what follows it). */
static inline void copy_row(uint8_t *dst, const uint8_t *src, int64_t n, const uint8_t *end) {
#ifdef __SSE2__
    if (n >= 16 && n <= 32) {
        __m128i head = _mm_loadu_si128((const __m128i *)src), tail = _mm_loadu_si128((const __m128i *)(src + n - 16));
        _mm_storeu_si128((__m128i *)dst, head);
        _mm_storeu_si128((__m128i *)(dst + n - 16), tail);
        return;
    }
    if (n < 16 && end - src >= 16) {
        _mm_storeu_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src));
        return;
    }
#else
    (void)end;
#endif
    memcpy(dst, src, (size_t)n);
}

/* Unfolds rows [first, first + 4) of one u8 image into rows (4 x width): row kk = tap (c, ky,
 * kx) holds that tap for every output pixel, pad where it falls outside the image; rows past
 * col_rows and pixels past col_cols are zero (the packed product reads them).  The output
 * rows whose taps all lie inside the image (the common case) go without per-row checks. */
static void unfold_quad(const lunet__conv_geometry *g, const uint8_t *x, uint8_t pad, int64_t first, uint8_t *rows,
                        int64_t width) {
    const uint8_t *end = x + g->c * g->h * g->w;
    int64_t c = first / (g->kh * g->kw), ky = first / g->kw % g->kh, kx = first % g->kw;
    for (int64_t kk = first; kk < first + 4; kk++, rows += width) {
        if (kk >= g->col_rows) {
            memset(rows, 0, (size_t)width);
            continue;
        }
        const uint8_t *plane = x + c * g->h * g->w;
        int64_t x0 = kx * g->dw - g->pw; /* input column of output column 0 */
        bool plain = g->sw == 1 && x0 >= 0 && x0 + g->ow <= g->w;
        for (int64_t oy = 0; oy < g->oh; oy++) {
            uint8_t *dst = rows + oy * g->ow;
            int64_t iy = oy * g->sh - g->ph + ky * g->dh;
            if (iy < 0 || iy >= g->h) {
                memset(dst, pad, (size_t)g->ow);
            } else if (plain) {
                copy_row(dst, plane + iy * g->w + x0, g->ow, end);
            } else {
                const uint8_t *src = plane + iy * g->w;
                for (int64_t ox = 0; ox < g->ow; ox++) {
                    int64_t ix = ox * g->sw + x0;
                    dst[ox] = ix >= 0 && ix < g->w ? src[ix] : pad;
                }
            }
        }
        memset(rows + g->col_cols, 0, (size_t)(width - g->col_cols));
        if (++kx == g->kw) { /* the next tap without dividing */
            kx = 0;
            if (++ky == g->kh) ky = 0, c++;
        }
    }
}

/* Packs four unfolded rows (4 x width, width a multiple of 8) as quad q of every panel: for
 * each panel of 8 pixels, pixel c's four bytes at 4c. */
static void pack_quad(uint8_t *packed, const uint8_t *rows, int64_t q, int64_t quads, int64_t width) {
    for (int64_t p = 0; p < width / 8; p++) {
        uint8_t *dst = packed + (p * quads + q) * 32;
#ifdef __SSE2__
        __m128i r0 = _mm_loadl_epi64((const __m128i *)(rows + 8 * p));
        __m128i r1 = _mm_loadl_epi64((const __m128i *)(rows + width + 8 * p));
        __m128i r2 = _mm_loadl_epi64((const __m128i *)(rows + 2 * width + 8 * p));
        __m128i r3 = _mm_loadl_epi64((const __m128i *)(rows + 3 * width + 8 * p));
        __m128i r01 = _mm_unpacklo_epi8(r0, r1), r23 = _mm_unpacklo_epi8(r2, r3);
        _mm_storeu_si128((__m128i *)dst, _mm_unpacklo_epi16(r01, r23));
        _mm_storeu_si128((__m128i *)(dst + 16), _mm_unpackhi_epi16(r01, r23));
#else
        for (int c = 0; c < 8; c++)
            for (int t = 0; t < 4; t++) dst[4 * c + t] = rows[t * width + 8 * p + c];
#endif
    }
}

void lunet__qconv2d_image(const lunet__conv_geometry *g, const lunet__qlayer *q, const lunet__epilogue *e,
                          const uint8_t *x_img, int32_t x_zero_point, void *y_img, uint8_t *cols) {
    LUNET_ASSERT(g->groups == 1);
    int64_t quads = lunet__qk_quads(g->col_rows), width = 8 * lunet__qpanels(g->col_cols);
    /* Quad by quad, so that the four unfolded rows are still in L1 when they are packed. */
    uint8_t *rows = cols + lunet__qpacked_bytes(g->col_rows, g->col_cols);
    for (int64_t qd = 0; qd < quads; qd++) {
        unfold_quad(g, x_img, (uint8_t)x_zero_point, 4 * qd, rows, width);
        pack_quad(cols, rows, qd, quads, width);
    }
    /* K runs to 4 quads: the weight rows and the unfolded rows are both zero past col_rows, so
     * every quad is whole and the kernel never takes its partial-quad path. */
    lunet__qgemm gm = {.m = g->o, .n = g->col_cols, .k = 4 * quads, .a = q->weight, .lda = q->k_padded,
                       .a_unsigned = false, .b = cols, .epilogue = e, .c = y_img, .ldc = g->col_cols,
                       .kernel = q->kernel};
    lunet__qgemm_rows(&gm, 0, g->o);
}

/* ---- pooling ---------------------------------------------------------------------------------------------- */

#ifdef __SSE2__
/* 2x2 maxima of the byte pairs of v (the rows' maximum), as 16-bit lanes: low byte against high. */
static inline __m128i max_of_pairs(__m128i v) {
    __m128i pairs = _mm_max_epi16(_mm_and_si128(v, _mm_set1_epi16(0xff)), _mm_srli_epi16(v, 8));
    return _mm_packus_epi16(pairs, pairs);
}

/* One output row from input rows r0 and r1, `step` outputs (8 or 4) at a time from 2 * step
 * bytes of each row; the last step overlaps the ones before rather than reading past 2 ow <=
 * w bytes. */
static inline void max_pool_2x2_row(uint8_t *out, const uint8_t *r0, const uint8_t *r1, int64_t ow, int64_t step) {
    for (int64_t ox = 0;; ox += step) {
        if (ox > ow - step) ox = ow - step;
        if (step == 8) {
            __m128i v = _mm_max_epu8(_mm_loadu_si128((const __m128i *)(r0 + 2 * ox)),
                                     _mm_loadu_si128((const __m128i *)(r1 + 2 * ox)));
            _mm_storel_epi64((__m128i *)(out + ox), max_of_pairs(v));
        } else {
            __m128i v = _mm_max_epu8(_mm_loadl_epi64((const __m128i *)(r0 + 2 * ox)),
                                     _mm_loadl_epi64((const __m128i *)(r1 + 2 * ox)));
            int32_t four = _mm_cvtsi128_si32(max_of_pairs(v));
            memcpy(out + ox, &four, 4);
        }
        if (ox == ow - step) return;
    }
}
#endif

/* The common case, 2x2 windows at stride 2 with no padding or dilation: rows of at least four
 * outputs run in SSE2, shorter ones one output at a time. */
static void max_pool_2x2_u8(const lunet__pool_geometry *g, uint8_t *restrict y, const uint8_t *restrict x) {
    for (int64_t p = 0; p < g->planes; p++)
        for (int64_t oy = 0; oy < g->oh; oy++) {
            const uint8_t *r0 = x + (p * g->h + 2 * oy) * g->w, *r1 = r0 + g->w;
            uint8_t *out = y + (p * g->oh + oy) * g->ow;
#ifdef __SSE2__
            if (g->ow >= 4) {
                max_pool_2x2_row(out, r0, r1, g->ow, g->ow >= 8 ? 8 : 4);
                continue;
            }
#endif
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
