/*
 * qgemm.c: the int8 product of quant.h: packing, the epilogue, a plain C kernel and an AVX2
 * kernel, and the choice between them.  The product is cut into tiles of up to 4 rows by 16
 * columns (two panels); a tile's int32 sums are built in registers over the whole of K, then
 * go through the epilogue straight into the output.
 */
#include "quant.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNEL 1
#endif

enum { TILE_ROWS = 4, TILE_PANELS = 2, TILE_COLS = 8 * TILE_PANELS };

/* ---- epilogue ------------------------------------------------------------------------------------- */

/* Wrapping int32 addition (the kernels' vpaddd does the same). */
static inline int32_t add_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static inline uint8_t requantize(int32_t sum, float multiplier, float lo, float hi, int32_t zero_point) {
    float v = (float)sum * multiplier;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (uint8_t)((int32_t)lunet__round_half_even(v) + zero_point);
}

LUNET_VECTORIZED
void lunet__epilogue_run(const lunet__epilogue *e, const int32_t *acc, int64_t n, int64_t row, int64_t col, void *out) {
    if (e->row_scale) { /* dynamic: f32 output, the row's own scale and zero point */
        float *y = out, rs = e->row_scale[row];
        int32_t rz = e->row_zero_point[row];
        for (int64_t j = 0; j < n; j++) {
            int64_t ch = col + j;
            int32_t offset = (int32_t)(0u - (uint32_t)rz * (uint32_t)e->wsum[ch]);
            float v = (float)add_wrap(acc[j], offset) * (rs * e->multiplier[ch]);
            if (e->fbias) v += e->fbias[ch];
            y[j] = e->relu && v < 0 ? 0 : v;
        }
        return;
    }
    uint8_t *y = out;
    float lo = (float)(e->low - e->zero_point), hi = (float)(255 - e->zero_point);
    for (int64_t j = 0; j < n; j++)
        y[j] = requantize(add_wrap(acc[j], e->offset[col + j]), e->multiplier[col + j], lo, hi, e->zero_point);
}

/* ---- packing ----------------------------------------------------------------------------------------- */

void lunet__qpack_transposed(uint8_t *packed, const void *w, int64_t n, int64_t k) {
    const uint8_t *src = w;
    int64_t quads = lunet__qk_quads(k);
    for (int64_t p = 0; p < lunet__qpanels(n); p++)
        for (int64_t q = 0; q < quads; q++)
            for (int64_t c = 0; c < 8; c++)
                for (int64_t t = 0; t < 4; t++) {
                    int64_t col = 8 * p + c, kk = 4 * q + t;
                    *packed++ = col < n && kk < k ? src[col * k + kk] : 0;
                }
}

bool lunet__qweights_pair_safe(const int8_t *w, int64_t n, int64_t k, int64_t ld) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < k; i += 2) {
            int a = w[r * ld + i], b = i + 1 < k ? w[r * ld + i + 1] : 0;
            if ((a < 0 ? -a : a) + (b < 0 ? -b : b) > 128) return false;
        }
    return true;
}

/* ---- kernels ------------------------------------------------------------------------------------------- */

/* Four bytes of row a at quad q, zero past k. */
static inline uint32_t quad_of(const uint8_t *a, int64_t q, int64_t k) {
    uint32_t v = 0;
    int64_t have = k - 4 * q;
    memcpy(&v, a + 4 * q, (size_t)(have < 4 ? have : 4));
    return v;
}

/* The C kernel: sums of rows [i0, i0 + rows) by panels [p0, p0 + panels). */
static void tile_c(const lunet__qgemm *g, int64_t i0, int rows, int64_t p0, int panels, int32_t acc[TILE_ROWS][TILE_COLS]) {
    int64_t quads = lunet__qk_quads(g->k);
    uint32_t sum[TILE_ROWS][TILE_COLS] = {{0}};
    for (int r = 0; r < rows; r++) {
        const uint8_t *a = g->a + (i0 + r) * g->lda;
        for (int pp = 0; pp < panels; pp++) {
            const uint8_t *b = g->b + (p0 + pp) * quads * 32;
            for (int64_t q = 0; q < quads; q++) {
                uint32_t word = quad_of(a, q, g->k);
                uint8_t aq[4];
                memcpy(aq, &word, 4);
                for (int c = 0; c < 8; c++)
                    for (int t = 0; t < 4; t++) {
                        uint8_t bq = b[q * 32 + c * 4 + t];
                        sum[r][8 * pp + c] += (uint32_t)((int32_t)aq[t] * (int8_t)bq);
                    }
            }
        }
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < TILE_COLS; j++) acc[r][j] = (int32_t)sum[r][j];
}

#ifdef HAVE_AVX2_KERNEL
#define AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline

/* acc[r][p] += the products of row r's quad (broadcast in av) and panel p's quad bv[p]. */
AVX2_INLINE void accumulate(__m256i acc[TILE_ROWS][TILE_PANELS], int r, __m256i av, const __m256i *bv, const int P) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int p = 0; p < P; p++) {
        __m256i pairs = _mm256_maddubs_epi16(av, bv[p]);
        acc[r][p] = _mm256_add_epi32(acc[r][p], _mm256_madd_epi16(pairs, ones));
    }
}

/* requantize() of eight sums of a register (channel offsets and multipliers in off and m), as
 * eight int32 values before the zero point is added.  The clamps come first, as max and min
 * (they agree with the comparisons, as no value is NaN); the clamped value lies within +-255,
 * where vcvtps2dq in the default rounding mode rounds half to even exactly as
 * lunet__round_half_even does. */
AVX2_INLINE __m256i requantize8(__m256i acc, __m256i off, __m256 m, __m256 lo, __m256 hi) {
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc, off)), m);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
}

/* Stores 8 * P requantized outputs (q[0] then q[1]) with the zero point added: each value is
 * in [low - zp, 255 - zp], so the 16-bit sum lies in [0, 255] and the packs never saturate. */
AVX2_INLINE void store_u8(const __m256i *q, const int P, __m256i zp16, uint8_t *dst) {
    __m256i words = _mm256_add_epi16(_mm256_packs_epi32(q[0], P > 1 ? q[1] : q[0]), zp16);
    __m256i bytes = _mm256_packus_epi16(words, words);
    /* Per 128-bit lane the dwords are q0[0..3], q1[0..3] (low lane) and q0[4..7], q1[4..7]. */
    __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5));
    if (P > 1) _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(ordered));
    else _mm_storel_epi64((__m128i *)dst, _mm256_castsi256_si128(ordered));
}

/* The static epilogue of a whole tile whose columns all lie inside C. */
AVX2_INLINE void requantize_tile(const lunet__qgemm *g, __m256i acc[TILE_ROWS][TILE_PANELS], int64_t i0, const int R,
                                 int64_t p0, const int P) {
    const lunet__epilogue *e = g->epilogue;
    const __m256 lo = _mm256_set1_ps((float)(e->low - e->zero_point)), hi = _mm256_set1_ps((float)(255 - e->zero_point));
    const __m256i zp16 = _mm256_set1_epi16((int16_t)e->zero_point);
    __m256i off[TILE_PANELS];
    __m256 m[TILE_PANELS];
    for (int p = 0; p < P; p++) {
        off[p] = _mm256_loadu_si256((const __m256i *)(e->offset + 8 * (p0 + p)));
        m[p] = _mm256_loadu_ps(e->multiplier + 8 * (p0 + p));
    }
    for (int r = 0; r < R; r++) {
        __m256i q[TILE_PANELS];
        for (int p = 0; p < P; p++) q[p] = requantize8(acc[r][p], off[p], m[p], lo, hi);
        store_u8(q, P, zp16, (uint8_t *)g->c + (i0 + r) * g->ldc + 8 * p0);
    }
}

/* One tile in registers, then through the epilogue into C.  R and P are constants after
 * inlining, so each use below compiles to a kernel with its loops unrolled. */
AVX2_INLINE void tile_avx2_body(const lunet__qgemm *g, int64_t i0, const int R, int64_t p0, const int P) {
    int64_t quads = lunet__qk_quads(g->k), full = g->k / 4, lda = g->lda;
    __m256i acc[TILE_ROWS][TILE_PANELS];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) acc[r][p] = _mm256_setzero_si256();
    const uint8_t *b0 = g->b + p0 * quads * 32, *b1 = b0 + quads * 32;
    const uint8_t *a = g->a + i0 * lda;
    for (int64_t q = 0; q < full; q++) {
        __m256i bv[TILE_PANELS];
        bv[0] = _mm256_loadu_si256((const __m256i *)(b0 + q * 32));
        if (P > 1) bv[1] = _mm256_loadu_si256((const __m256i *)(b1 + q * 32));
        for (int r = 0; r < R; r++) {
            int32_t word;
            memcpy(&word, a + r * lda + 4 * q, 4);
            accumulate(acc, r, _mm256_set1_epi32(word), bv, P);
        }
    }
    if (full < quads) { /* the last, partial quad of A: its missing bytes read as zero */
        __m256i bv[TILE_PANELS];
        bv[0] = _mm256_loadu_si256((const __m256i *)(b0 + full * 32));
        if (P > 1) bv[1] = _mm256_loadu_si256((const __m256i *)(b1 + full * 32));
        for (int r = 0; r < R; r++)
            accumulate(acc, r, _mm256_set1_epi32((int32_t)quad_of(a + r * lda, full, g->k)), bv, P);
    }
    /* Panels wholly inside C take the vector epilogue; the last, partial one and the dynamic
     * layers' f32 outputs go through lunet__epilogue_run. */
    const lunet__epilogue *e = g->epilogue;
    int whole = e->row_scale ? 0 : 8 * (p0 + P) <= g->n ? P : 8 * (p0 + 1) <= g->n ? 1 : 0;
    if (whole == P) {
        requantize_tile(g, acc, i0, R, p0, P);
        return;
    }
    if (whole == 1) requantize_tile(g, acc, i0, R, p0, 1);
    size_t elem = lunet__epilogue_elem(e);
    for (int r = 0; r < R; r++)
        for (int p = whole; p < P; p++) {
            int64_t row = i0 + r, col = 8 * (p0 + p);
            int32_t sums[8];
            _mm256_storeu_si256((__m256i *)sums, acc[r][p]);
            lunet__epilogue_run(e, sums, g->n - col < 8 ? g->n - col : 8, row, col,
                                (char *)g->c + (size_t)(row * g->ldc + col) * elem);
        }
}

#define TILE_CASE(R, P)                                                                    \
    case (R) * 4 + (P):                                                                    \
        tile_avx2_body(g, i0, R, p0, P);                                                   \
        break;

__attribute__((target("avx2"))) static void tile_avx2(const lunet__qgemm *g, int64_t i0, int rows, int64_t p0,
                                                      int panels) {
    switch (rows * 4 + panels) {
        TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(2, 1) TILE_CASE(2, 2)
        TILE_CASE(3, 1) TILE_CASE(3, 2) TILE_CASE(4, 1) TILE_CASE(4, 2)
    default: LUNET_ASSERT(!"tile size");
    }
}
#endif

/* ---- choosing and running ------------------------------------------------------------------------------ */

lunet__qkernel lunet__qkernel_for(bool weights_pair_safe) {
#ifdef HAVE_AVX2_KERNEL
    if (weights_pair_safe && __builtin_cpu_supports("avx2")) return LUNET__QKERNEL_AVX2;
#endif
    return LUNET__QKERNEL_C;
}

void lunet__qgemm_rows(const lunet__qgemm *g, int64_t first, int64_t last) {
    const lunet__epilogue *e = g->epilogue;
    size_t elem = lunet__epilogue_elem(e);
    int64_t panels = lunet__qpanels(g->n);
    int32_t acc[TILE_ROWS][TILE_COLS];
    for (int64_t i0 = first; i0 < last; i0 += TILE_ROWS) {
        int rows = (int)(last - i0 < TILE_ROWS ? last - i0 : TILE_ROWS);
        for (int64_t p0 = 0; p0 < panels; p0 += TILE_PANELS) {
            int np = (int)(panels - p0 < TILE_PANELS ? panels - p0 : TILE_PANELS);
#ifdef HAVE_AVX2_KERNEL
            if (g->kernel == LUNET__QKERNEL_AVX2) {
                tile_avx2(g, i0, rows, p0, np);
                continue;
            }
#endif
            tile_c(g, i0, rows, p0, np, acc);
            int64_t col = 8 * p0, cols = g->n - col < TILE_COLS ? g->n - col : TILE_COLS;
            for (int r = 0; r < rows; r++)
                lunet__epilogue_run(e, acc[r], cols, i0 + r, col,
                                    (char *)g->c + (size_t)((i0 + r) * g->ldc + col) * elem);
        }
    }
}
