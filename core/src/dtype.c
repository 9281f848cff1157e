/* dtype.c: dtype names and sizes, result-type promotion, element loads/stores and casts. */
#include "internal.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    bool is_float;
} dtype_info[LUNET_DTYPE_COUNT] = {
    [LUNET_DTYPE_F32] = {"f32", 4, true}, [LUNET_DTYPE_F64] = {"f64", 8, true},
    [LUNET_DTYPE_I64] = {"i64", 8, false}, [LUNET_DTYPE_I32] = {"i32", 4, false},
    [LUNET_DTYPE_I8] = {"i8", 1, false},   [LUNET_DTYPE_U8] = {"u8", 1, false},
};

static bool valid(lunet_dtype d) { return (unsigned)d < LUNET_DTYPE_COUNT; }

const char *lunet_dtype_name(lunet_dtype dtype) { return valid(dtype) ? dtype_info[dtype].name : "?"; }
size_t lunet_dtype_size(lunet_dtype dtype) { return valid(dtype) ? dtype_info[dtype].size : 0; }
bool lunet_dtype_is_float(lunet_dtype dtype) { return valid(dtype) && dtype_info[dtype].is_float; }

lunet_status lunet_dtype_from_name(lunet_dtype *out, const char *name) {
    for (int d = 0; d < LUNET_DTYPE_COUNT; d++) {
        if (name && strcmp(name, dtype_info[d].name) == 0) {
            *out = (lunet_dtype)d;
            return LUNET_OK;
        }
    }
    return lunet__fail(LUNET_ERR_DTYPE, "unknown dtype '%s' (expected f32, f64, i64, i32, i8 or u8)",
                       name ? name : "(null)");
}

/* Promotion among dtypes of one kind: the wider wins; u8 with i8 needs a signed type that
 * holds both, and i32 is the narrowest lunet has. */
static lunet_dtype promote_same_kind(lunet_dtype a, lunet_dtype b) {
    if (a == b) return a;
    if (lunet_dtype_is_float(a)) return (a == LUNET_DTYPE_F64 || b == LUNET_DTYPE_F64) ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
    if (a == LUNET_DTYPE_I64 || b == LUNET_DTYPE_I64) return LUNET_DTYPE_I64;
    return LUNET_DTYPE_I32; /* any remaining mix of i32, i8, u8 */
}

lunet_dtype lunet__promote_dtypes(lunet_dtype a, lunet_dtype b) {
    bool fa = lunet_dtype_is_float(a), fb = lunet_dtype_is_float(b);
    if (fa == fb) return promote_same_kind(a, b);
    return fa ? a : b;
}

lunet_dtype lunet__promote(const lunet_tensor *a, const lunet_tensor *b) {
    bool fa = lunet_dtype_is_float(a->dtype), fb = lunet_dtype_is_float(b->dtype);
    bool scalar_a = a->ndim == 0 && b->ndim > 0, scalar_b = b->ndim == 0 && a->ndim > 0;
    if (fa == fb) {
        /* A 0-d operand (a Lua number) does not widen a tensor of the same kind. */
        if (scalar_a) return b->dtype;
        if (scalar_b) return a->dtype;
        return promote_same_kind(a->dtype, b->dtype);
    }
    const lunet_tensor *f = fa ? a : b;
    /* An integer tensor meeting a float scalar becomes the default float dtype. */
    if (f->ndim == 0 && (fa ? b : a)->ndim > 0) return LUNET_DTYPE_F32;
    return f->dtype;
}

/* ---- element loads and stores -------------------------------------------------------------- */

/* Float to integer conversion saturates (NaN gives 0): C leaves out-of-range conversions
 * undefined, and a saturated value is what a user can reason about. */
#define SATURATE(T, lo, hi)                                                                \
    static inline T saturate_##T(double v) {                                               \
        if (v != v) return 0;                                                              \
        if (v <= (double)(lo)) return (T)(lo);                                             \
        if (v >= (double)(hi)) return (T)(hi);                                             \
        return (T)v;                                                                       \
    }
SATURATE(int32_t, INT32_MIN, INT32_MAX)
SATURATE(int8_t, INT8_MIN, INT8_MAX)
SATURATE(uint8_t, 0, UINT8_MAX)
#undef SATURATE
static inline int64_t saturate_int64_t(double v) {
    if (v != v) return 0;
    if (v >= 0x1p63) return INT64_MAX; /* (double)INT64_MAX rounds up to 2^63 */
    if (v <= -0x1p63) return INT64_MIN;
    return (int64_t)v;
}
static inline float saturate_float(double v) { return (float)v; }
static inline double saturate_double(double v) { return v; }

double lunet__load_f64(const char *p, lunet_dtype dtype) {
    switch (dtype) {
#define LOAD(N, T, U)                                                                      \
    case LUNET_DTYPE_##N: {                                                                \
        T v;                                                                               \
        memcpy(&v, p, sizeof v);                                                           \
        return (double)v;                                                                  \
    }
        LUNET__FOR_EACH_DTYPE(LOAD)
#undef LOAD
    default: return 0;
    }
}

int64_t lunet__load_i64(const char *p, lunet_dtype dtype) {
    switch (dtype) {
    case LUNET_DTYPE_F32: return saturate_int64_t(lunet__load_f64(p, dtype));
    case LUNET_DTYPE_F64: return saturate_int64_t(lunet__load_f64(p, dtype));
#define LOAD(N, T, U)                                                                      \
    case LUNET_DTYPE_##N: {                                                                \
        T v;                                                                               \
        memcpy(&v, p, sizeof v);                                                           \
        return (int64_t)v;                                                                 \
    }
        LOAD(I64, int64_t, uint64_t)
        LOAD(I32, int32_t, uint32_t)
        LOAD(I8, int8_t, uint8_t)
        LOAD(U8, uint8_t, uint8_t)
#undef LOAD
    default: return 0;
    }
}

void lunet__store_f64(char *p, lunet_dtype dtype, double v) {
    switch (dtype) {
#define STORE(N, T, U)                                                                     \
    case LUNET_DTYPE_##N: {                                                                \
        T x = saturate_##T(v);                                                             \
        memcpy(p, &x, sizeof x);                                                           \
        return;                                                                            \
    }
        LUNET__FOR_EACH_DTYPE(STORE)
#undef STORE
    default: return;
    }
}

void lunet__store_i64(char *p, lunet_dtype dtype, int64_t v) {
    switch (dtype) {
#define STORE(N, T, U)                                                                     \
    case LUNET_DTYPE_##N: {                                                                \
        T x = (T)v;                                                                        \
        memcpy(p, &x, sizeof x);                                                           \
        return;                                                                            \
    }
        LUNET__FOR_EACH_DTYPE(STORE)
#undef STORE
    default: return;
    }
}

/* ---- casts: one row kernel per (destination, source) pair ---------------------------------- */

#define IS_FLOAT_F32 1
#define IS_FLOAT_F64 1
#define IS_FLOAT_I64 0
#define IS_FLOAT_I32 0
#define IS_FLOAT_I8 0
#define IS_FLOAT_U8 0

#define CAST_ROW(DN, DT, SN, ST)                                                           \
    static void cast_##DN##_##SN(char *const *p, const int64_t *s, int64_t n,              \
                                 const void *ctx) {                                        \
        (void)ctx;                                                                         \
        if (s[0] == sizeof(DT) && s[1] == sizeof(ST)) {                                    \
            DT *restrict o = (DT *)p[0];                                                   \
            const ST *restrict in = (const ST *)p[1];                                      \
            for (int64_t k = 0; k < n; k++)                                                \
                o[k] = IS_FLOAT_##SN ? saturate_##DT((double)in[k]) : (DT)in[k];           \
        } else {                                                                           \
            for (int64_t k = 0; k < n; k++) {                                              \
                ST v = *(const ST *)(p[1] + k * s[1]);                                     \
                *(DT *)(p[0] + k * s[0]) =                                                 \
                    IS_FLOAT_##SN ? saturate_##DT((double)v) : (DT)v;                      \
            }                                                                              \
        }                                                                                  \
    }

#define CAST_FROM_EACH(DN, DT, DU)                                                         \
    CAST_ROW(DN, DT, F32, float)                                                           \
    CAST_ROW(DN, DT, F64, double)                                                          \
    CAST_ROW(DN, DT, I64, int64_t)                                                         \
    CAST_ROW(DN, DT, I32, int32_t)                                                         \
    CAST_ROW(DN, DT, I8, int8_t)                                                           \
    CAST_ROW(DN, DT, U8, uint8_t)
LUNET__FOR_EACH_DTYPE(CAST_FROM_EACH)
#undef CAST_FROM_EACH
#undef CAST_ROW

#define CAST_ENTRY(DN, SN) [LUNET_DTYPE_##DN][LUNET_DTYPE_##SN] = cast_##DN##_##SN,
#define CAST_TABLE_ROW(DN, DT, DU)                                                         \
    CAST_ENTRY(DN, F32) CAST_ENTRY(DN, F64) CAST_ENTRY(DN, I64) CAST_ENTRY(DN, I32)         \
    CAST_ENTRY(DN, I8) CAST_ENTRY(DN, U8)
static const lunet__row_fn cast_rows[LUNET_DTYPE_COUNT][LUNET_DTYPE_COUNT] = {
    LUNET__FOR_EACH_DTYPE(CAST_TABLE_ROW)};
#undef CAST_TABLE_ROW
#undef CAST_ENTRY

void lunet__copy_cast_strided(lunet_tensor *dst, const char *src_data, lunet_dtype src_dtype,
                              const int64_t *src_strides) {
    if (dst->numel == 0) return;
    char *base[2] = {lunet__data(dst), (char *)src_data};
    const int64_t *strides[2] = {dst->strides, src_strides};
    size_t sizes[2] = {lunet_dtype_size(dst->dtype), lunet_dtype_size(src_dtype)};
    lunet__iter it;
    lunet__iter_init(&it, dst->ndim, dst->shape, 2, base, strides, sizes);
    lunet__iter_run(&it, cast_rows[dst->dtype][src_dtype], NULL);
}

void lunet__copy_cast(lunet_tensor *dst, const lunet_tensor *src) {
    LUNET_ASSERT(lunet__same_shape(dst->ndim, dst->shape, src->ndim, src->shape));
    lunet__copy_cast_strided(dst, lunet__data(src), src->dtype, src->strides);
}

lunet_status lunet__check_float_operands(const char *op, int n, const lunet_tensor *const *ts,
                                         const char *const *names) {
    if (!lunet_dtype_is_float(ts[0]->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: %s must be f32 or f64, not %s", op, names[0],
                           lunet_dtype_name(ts[0]->dtype));
    for (int i = 1; i < n; i++)
        if (ts[i] && ts[i]->dtype != ts[0]->dtype)
            return lunet__fail(LUNET_ERR_DTYPE, "%s: %s is %s but %s is %s", op, names[i],
                               lunet_dtype_name(ts[i]->dtype), names[0], lunet_dtype_name(ts[0]->dtype));
    return LUNET_OK;
}
