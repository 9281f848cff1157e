/*
 * pointwise.c: elementwise ops with broadcasting, their row kernels, and their gradients.
 *
 * Each op is one row kernel per dtype (a unit-stride loop the compiler vectorises, a loop for
 * a broadcast scalar operand, and a general strided loop), driven by lunet__iter.  Integer
 * arithmetic goes through the dtype's unsigned twin so overflow wraps instead of being
 * undefined.  The fused *_BACKWARD kinds compute gradients in one pass over (grad, saved).
 */
#include "internal.h"

#include <math.h>
#include <string.h>

typedef enum binary_kind {
    BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW,
    BIN_EQ, BIN_NE, BIN_LT, BIN_LE, BIN_GT, BIN_GE,
    /* gradients: x is the incoming gradient, y the saved tensor */
    BIN_RELU_BACKWARD,    /* y is the output */
    BIN_SIGMOID_BACKWARD, /* y is the output */
    BIN_TANH_BACKWARD,    /* y is the output */
    BIN_SQRT_BACKWARD,    /* y is the output */
    BIN_ABS_BACKWARD,     /* y is the input */
    BIN_XLOGY,            /* x * log(y), 0 where y == 0: the exponent's gradient of pow */
    BIN_COUNT
} binary_kind;

typedef enum unary_kind {
    UN_NEG, UN_ABS, UN_RELU, UN_EXP, UN_LOG, UN_SQRT, UN_SIGMOID, UN_TANH, UN_CLAMP,
    UN_CLAMP_BACKWARD, /* the gradient where lo <= x <= hi: runs on (grad, input) */
    UN_COUNT
} unary_kind;

/* ---- scalar building blocks ----------------------------------------------------------------- */

#define F32_MATH(fn) fn##f
#define F64_MATH(fn) fn

/* Integer power by squaring with wrap-around; the exponent is checked non-negative first. */
#define IPOW(N, T, U)                                                                      \
    static inline T ipow_##N(T base, T e) {                                                \
        U result = 1, b = (U)base;                                                         \
        uint64_t k = (uint64_t)e;                                                          \
        while (k) {                                                                        \
            if (k & 1) result = (U)(result * b);                                           \
            b = (U)(b * b);                                                                \
            k >>= 1;                                                                       \
        }                                                                                  \
        return (T)result;                                                                  \
    }
IPOW(I64, int64_t, uint64_t)
IPOW(I32, int32_t, uint32_t)
IPOW(I8, int8_t, uint8_t)
IPOW(U8, uint8_t, uint8_t)
#undef IPOW

/* Spelled per dtype so that unsigned types do not compare "x < 0" (always false). */
static inline bool is_negative_F32(float x) { return x < 0; }
static inline bool is_negative_F64(double x) { return x < 0; }
static inline bool is_negative_I64(int64_t x) { return x < 0; }
static inline bool is_negative_I32(int32_t x) { return x < 0; }
static inline bool is_negative_I8(int8_t x) { return x < 0; }
static inline bool is_negative_U8(uint8_t x) { (void)x; return false; }

/* ---- binary row kernels -------------------------------------------------------------------- */

/* out[k] = EXPR(x = a[k], y = b[k]) with TO the output element type. */
#define BINARY_ROW(NAME, T, TO, EXPR)                                                      \
    static void NAME(char *const *p, const int64_t *s, int64_t n, const void *ctx) {       \
        (void)ctx;                                                                         \
        const int64_t z = sizeof(T), zo = sizeof(TO);                                      \
        if (s[0] == zo && s[1] == z && s[2] == z) {                                        \
            TO *o = (TO *)p[0];                                                            \
            const T *pa = (const T *)p[1], *pb = (const T *)p[2];                          \
            for (int64_t k = 0; k < n; k++) {                                              \
                const T x = pa[k], y = pb[k];                                              \
                o[k] = (TO)(EXPR);                                                         \
            }                                                                              \
        } else if (s[0] == zo && s[1] == z && s[2] == 0) {                                 \
            TO *o = (TO *)p[0];                                                            \
            const T *pa = (const T *)p[1];                                                 \
            const T y = *(const T *)p[2];                                                  \
            for (int64_t k = 0; k < n; k++) {                                              \
                const T x = pa[k];                                                         \
                o[k] = (TO)(EXPR);                                                         \
            }                                                                              \
        } else if (s[0] == zo && s[1] == 0 && s[2] == z) {                                 \
            TO *o = (TO *)p[0];                                                            \
            const T x = *(const T *)p[1];                                                  \
            const T *pb = (const T *)p[2];                                                 \
            for (int64_t k = 0; k < n; k++) {                                              \
                const T y = pb[k];                                                         \
                o[k] = (TO)(EXPR);                                                         \
            }                                                                              \
        } else {                                                                           \
            for (int64_t k = 0; k < n; k++) {                                              \
                const T x = *(const T *)(p[1] + k * s[1]), y = *(const T *)(p[2] + k * s[2]); \
                *(TO *)(p[0] + k * s[0]) = (TO)(EXPR);                                     \
            }                                                                              \
        }                                                                                  \
    }

/* Kernels every dtype has. */
#define ALL_DTYPE_BINARY(N, T, U)                                                          \
    BINARY_ROW(add_##N, T, T, (T)((U)x + (U)y))                                            \
    BINARY_ROW(sub_##N, T, T, (T)((U)x - (U)y))                                            \
    BINARY_ROW(mul_##N, T, T, (T)((U)x * (U)y))                                            \
    BINARY_ROW(eq_##N, T, uint8_t, x == y)                                                 \
    BINARY_ROW(ne_##N, T, uint8_t, x != y)                                                 \
    BINARY_ROW(lt_##N, T, uint8_t, x < y)                                                  \
    BINARY_ROW(le_##N, T, uint8_t, x <= y)                                                 \
    BINARY_ROW(gt_##N, T, uint8_t, x > y)                                                  \
    BINARY_ROW(ge_##N, T, uint8_t, x >= y)
LUNET__FOR_EACH_DTYPE(ALL_DTYPE_BINARY)
#undef ALL_DTYPE_BINARY

/* Kernels of float dtypes only (integer inputs are converted to f32 first). */
#define FLOAT_BINARY(N, T, M)                                                              \
    BINARY_ROW(div_##N, T, T, x / y)                                                       \
    BINARY_ROW(pow_##N, T, T, M(pow)(x, y))                                                \
    BINARY_ROW(relu_backward_##N, T, T, y > 0 ? x : (T)0)                                  \
    BINARY_ROW(sigmoid_backward_##N, T, T, x * y * ((T)1 - y))                             \
    BINARY_ROW(tanh_backward_##N, T, T, x * ((T)1 - y * y))                                \
    BINARY_ROW(sqrt_backward_##N, T, T, x / ((T)2 * y))                                    \
    BINARY_ROW(abs_backward_##N, T, T, y > 0 ? x : (y < 0 ? -x : (T)0))                    \
    BINARY_ROW(xlogy_##N, T, T, y == 0 ? (T)0 : x * M(log)(y))
FLOAT_BINARY(F32, float, F32_MATH)
FLOAT_BINARY(F64, double, F64_MATH)
#undef FLOAT_BINARY

#define INT_POW(N, T, U) BINARY_ROW(pow_##N, T, T, ipow_##N(x, y))
INT_POW(I64, int64_t, uint64_t)
INT_POW(I32, int32_t, uint32_t)
INT_POW(I8, int8_t, uint8_t)
INT_POW(U8, uint8_t, uint8_t)
#undef INT_POW

#define ROW_ALL(name)                                                                      \
    {name##_F32, name##_F64, name##_I64, name##_I32, name##_I8, name##_U8}
#define ROW_FLOAT(name) {name##_F32, name##_F64, NULL, NULL, NULL, NULL}

static const lunet__row_fn binary_rows[BIN_COUNT][LUNET_DTYPE_COUNT] = {
    [BIN_ADD] = ROW_ALL(add), [BIN_SUB] = ROW_ALL(sub), [BIN_MUL] = ROW_ALL(mul),
    [BIN_DIV] = ROW_FLOAT(div), [BIN_POW] = ROW_ALL(pow),
    [BIN_EQ] = ROW_ALL(eq), [BIN_NE] = ROW_ALL(ne), [BIN_LT] = ROW_ALL(lt),
    [BIN_LE] = ROW_ALL(le), [BIN_GT] = ROW_ALL(gt), [BIN_GE] = ROW_ALL(ge),
    [BIN_RELU_BACKWARD] = ROW_FLOAT(relu_backward),
    [BIN_SIGMOID_BACKWARD] = ROW_FLOAT(sigmoid_backward),
    [BIN_TANH_BACKWARD] = ROW_FLOAT(tanh_backward),
    [BIN_SQRT_BACKWARD] = ROW_FLOAT(sqrt_backward),
    [BIN_ABS_BACKWARD] = ROW_FLOAT(abs_backward),
    [BIN_XLOGY] = ROW_FLOAT(xlogy),
};

/* ---- unary row kernels ---------------------------------------------------------------------- */

/* ctx, where used, points at two elements of type T: the clamp bounds. */
#define UNARY_ROW(NAME, T, EXPR)                                                           \
    static void NAME(char *const *p, const int64_t *s, int64_t n, const void *ctx) {       \
        const T lo = ctx ? ((const T *)ctx)[0] : (T)0, hi = ctx ? ((const T *)ctx)[1] : (T)0; \
        (void)lo;                                                                          \
        (void)hi;                                                                          \
        const int64_t z = sizeof(T);                                                       \
        if (s[0] == z && s[1] == z) {                                                      \
            T *o = (T *)p[0];                                                              \
            const T *pa = (const T *)p[1];                                                 \
            for (int64_t k = 0; k < n; k++) {                                              \
                const T x = pa[k];                                                         \
                o[k] = (T)(EXPR);                                                          \
            }                                                                              \
        } else {                                                                           \
            for (int64_t k = 0; k < n; k++) {                                              \
                const T x = *(const T *)(p[1] + k * s[1]);                                 \
                *(T *)(p[0] + k * s[0]) = (T)(EXPR);                                       \
            }                                                                              \
        }                                                                                  \
    }

#define ALL_DTYPE_UNARY(N, T, U)                                                           \
    UNARY_ROW(neg_##N, T, (T)(0 - (U)x))                                                   \
    UNARY_ROW(abs_##N, T, is_negative_##N(x) ? (T)(0 - (U)x) : x)                          \
    UNARY_ROW(relu_##N, T, is_negative_##N(x) ? (T)0 : x)                                  \
    UNARY_ROW(clamp_##N, T, x < lo ? lo : (x > hi ? hi : x))
LUNET__FOR_EACH_DTYPE(ALL_DTYPE_UNARY)
#undef ALL_DTYPE_UNARY

#define FLOAT_UNARY(N, T, M)                                                               \
    UNARY_ROW(exp_##N, T, M(exp)(x))                                                       \
    UNARY_ROW(log_##N, T, M(log)(x))                                                       \
    UNARY_ROW(sqrt_##N, T, M(sqrt)(x))                                                     \
    UNARY_ROW(sigmoid_##N, T, SIGMOID_##N(x))                                              \
    UNARY_ROW(tanh_##N, T, M(tanh)(x))
#define SIGMOID_F32 lunet__sigmoid_f32
#define SIGMOID_F64 lunet__sigmoid_f64
FLOAT_UNARY(F32, float, F32_MATH)
FLOAT_UNARY(F64, double, F64_MATH)
#undef FLOAT_UNARY

/* The clamp gradient is binary (grad, input) but needs the bounds, so it lives here. */
#define CLAMP_BACKWARD_ROW(N, T)                                                           \
    static void clamp_backward_##N(char *const *p, const int64_t *s, int64_t n, const void *ctx) { \
        const T lo = ((const T *)ctx)[0], hi = ((const T *)ctx)[1];                        \
        for (int64_t k = 0; k < n; k++) {                                                  \
            const T g = *(const T *)(p[1] + k * s[1]), x = *(const T *)(p[2] + k * s[2]);  \
            *(T *)(p[0] + k * s[0]) = (x >= lo && x <= hi) ? g : (T)0;                     \
        }                                                                                  \
    }
CLAMP_BACKWARD_ROW(F32, float)
CLAMP_BACKWARD_ROW(F64, double)
#undef CLAMP_BACKWARD_ROW

static const lunet__row_fn unary_rows[UN_COUNT][LUNET_DTYPE_COUNT] = {
    [UN_NEG] = ROW_ALL(neg), [UN_ABS] = ROW_ALL(abs), [UN_RELU] = ROW_ALL(relu),
    [UN_EXP] = ROW_FLOAT(exp), [UN_LOG] = ROW_FLOAT(log), [UN_SQRT] = ROW_FLOAT(sqrt),
    [UN_SIGMOID] = ROW_FLOAT(sigmoid), [UN_TANH] = ROW_FLOAT(tanh),
    [UN_CLAMP] = ROW_ALL(clamp), [UN_CLAMP_BACKWARD] = ROW_FLOAT(clamp_backward),
};

/* ---- drivers ------------------------------------------------------------------------------- */

/* out = kind(a, b) broadcast; a and b already share the compute dtype. */
static lunet_status run_binary(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b,
                               binary_kind kind, lunet_dtype out_dtype, const char *op) {
    *out = NULL;
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    LUNET_TRY(lunet__broadcast_shape(&ndim, shape, op, a->ndim, a->shape, b->ndim, b->shape));
    lunet__row_fn row = binary_rows[kind][a->dtype];
    LUNET_ASSERT(row && a->dtype == b->dtype);
    lunet_tensor *o;
    LUNET_TRY(lunet__tensor_new(&o, out_dtype, ndim, shape, op));
    if (o->numel > 0) {
        int64_t sa[LUNET_MAX_DIMS], sb[LUNET_MAX_DIMS];
        lunet__broadcast_strides(sa, a->ndim, a->shape, a->strides, ndim, shape);
        lunet__broadcast_strides(sb, b->ndim, b->shape, b->strides, ndim, shape);
        char *base[3] = {lunet__data(o), lunet__data(a), lunet__data(b)};
        const int64_t *strides[3] = {o->strides, sa, sb};
        size_t sizes[3] = {lunet_dtype_size(out_dtype), lunet_dtype_size(a->dtype),
                           lunet_dtype_size(b->dtype)};
        lunet__iter it;
        lunet__iter_init(&it, ndim, shape, 3, base, strides, sizes);
        lunet__iter_run(&it, row, NULL);
    }
    *out = o;
    return LUNET_OK;
}

/* Runs a (grad, saved) kernel with bounds in ctx: used by the clamp gradient. */
static lunet_status run_binary_ctx(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b,
                                   lunet__row_fn row, const void *ctx, const char *op) {
    LUNET_TRY(lunet__tensor_new(out, a->dtype, a->ndim, a->shape, op));
    if ((*out)->numel == 0) return LUNET_OK;
    char *base[3] = {lunet__data(*out), lunet__data(a), lunet__data(b)};
    const int64_t *strides[3] = {(*out)->strides, a->strides, b->strides};
    size_t z = lunet_dtype_size(a->dtype), sizes[3] = {z, z, z};
    lunet__iter it;
    lunet__iter_init(&it, a->ndim, a->shape, 3, base, strides, sizes);
    lunet__iter_run(&it, row, ctx);
    return LUNET_OK;
}

static lunet_status run_unary(lunet_tensor **out, const lunet_tensor *t, unary_kind kind,
                              const void *ctx, const char *op) {
    LUNET_TRY(lunet__tensor_new(out, t->dtype, t->ndim, t->shape, op));
    if ((*out)->numel == 0) return LUNET_OK;
    char *base[2] = {lunet__data(*out), lunet__data(t)};
    const int64_t *strides[2] = {(*out)->strides, t->strides};
    size_t z = lunet_dtype_size(t->dtype), sizes[2] = {z, z};
    lunet__iter it;
    lunet__iter_init(&it, t->ndim, t->shape, 2, base, strides, sizes);
    lunet__iter_run(&it, unary_rows[kind][t->dtype], ctx);
    return LUNET_OK;
}

/* The gradient of a (grad, saved) kernel with the shapes equal. */
static lunet_status grad_kernel(lunet_tensor **out, const lunet_tensor *grad, const lunet_tensor *saved,
                                binary_kind kind) {
    return run_binary(out, grad, saved, kind, grad->dtype, "backward");
}

/* ---- binary ops with autograd ----------------------------------------------------------------- */

typedef struct binary_spec {
    const char *name, *grad_name;
    binary_kind kind;
    bool float_result; /* integer inputs compute in f32 */
    lunet__backward_fn backward;
    bool save_inputs, save_output;
} binary_spec;

static lunet_status add_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    for (int i = 0; i < 2; i++)
        if (node->inputs[i])
            LUNET_TRY(lunet__sum_to_shape(&grad_in[i], g, node->inputs[i]->ndim, node->inputs[i]->shape));
    return LUNET_OK;
}

static lunet_status sub_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    if (node->inputs[0])
        LUNET_TRY(lunet__sum_to_shape(&grad_in[0], g, node->inputs[0]->ndim, node->inputs[0]->shape));
    if (node->inputs[1]) {
        lunet_tensor *neg;
        LUNET_TRY(lunet_tensor_neg(&neg, g));
        lunet_status s = lunet__sum_to_shape(&grad_in[1], neg, node->inputs[1]->ndim, node->inputs[1]->shape);
        lunet_tensor_release(neg);
        LUNET_TRY(s);
    }
    return LUNET_OK;
}

/* grad_in[i] = sum_to_shape(g * other) for the inputs that need it. */
static lunet_status mul_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    for (int i = 0; i < 2; i++) {
        if (!node->inputs[i]) continue;
        lunet_tensor *prod;
        LUNET_TRY(lunet_tensor_mul(&prod, g, node->saved[1 - i]));
        lunet_status s = lunet__sum_to_shape(&grad_in[i], prod, node->inputs[i]->ndim, node->inputs[i]->shape);
        lunet_tensor_release(prod);
        LUNET_TRY(s);
    }
    return LUNET_OK;
}

/* d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b = -out/b. */
static lunet_status div_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *b = node->saved[1], *out = node->saved[2];
    lunet_tensor *g_over_b, *t = NULL, *neg = NULL;
    LUNET_TRY(lunet_tensor_div(&g_over_b, g, b));
    lunet_status s = LUNET_OK;
    if (node->inputs[0])
        s = lunet__sum_to_shape(&grad_in[0], g_over_b, node->inputs[0]->ndim, node->inputs[0]->shape);
    if (s == LUNET_OK && node->inputs[1]) {
        s = lunet_tensor_mul(&t, g_over_b, out);
        if (s == LUNET_OK) s = lunet_tensor_neg(&neg, t);
        if (s == LUNET_OK)
            s = lunet__sum_to_shape(&grad_in[1], neg, node->inputs[1]->ndim, node->inputs[1]->shape);
    }
    lunet_tensor_release(g_over_b);
    lunet_tensor_release(t);
    lunet_tensor_release(neg);
    return s;
}

/* d(a^b)/da = b * a^(b-1), d(a^b)/db = a^b * log(a) (0 where a == 0, as PyTorch does). */
static lunet_status pow_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *a = node->saved[0], *b = node->saved[1], *out = node->saved[2];
    lunet_tensor *one = NULL, *bm1 = NULL, *p = NULL, *bp = NULL, *ga = NULL, *gout = NULL, *gb = NULL;
    lunet_status s = LUNET_OK;
    if (node->inputs[0]) {
        int64_t none = 0;
        s = lunet_tensor_full(&one, b->dtype, 0, &none, 1.0);
        if (s == LUNET_OK) s = lunet_tensor_sub(&bm1, b, one);
        if (s == LUNET_OK) s = lunet_tensor_pow(&p, a, bm1);
        if (s == LUNET_OK) s = lunet_tensor_mul(&bp, p, b);
        if (s == LUNET_OK) s = lunet_tensor_mul(&ga, bp, g);
        if (s == LUNET_OK)
            s = lunet__sum_to_shape(&grad_in[0], ga, node->inputs[0]->ndim, node->inputs[0]->shape);
    }
    if (s == LUNET_OK && node->inputs[1]) {
        s = lunet_tensor_mul(&gout, g, out);
        lunet_tensor *ab = NULL;
        if (s == LUNET_OK && !lunet__same_shape(a->ndim, a->shape, gout->ndim, gout->shape))
            s = lunet_tensor_expand(&ab, a, gout->ndim, gout->shape);
        if (s == LUNET_OK) s = run_binary(&gb, gout, ab ? ab : a, BIN_XLOGY, gout->dtype, "backward");
        lunet_tensor_release(ab);
        if (s == LUNET_OK)
            s = lunet__sum_to_shape(&grad_in[1], gb, node->inputs[1]->ndim, node->inputs[1]->shape);
    }
    lunet_tensor *tmp[] = {one, bm1, p, bp, ga, gout, gb};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++) lunet_tensor_release(tmp[i]);
    return s;
}

static const binary_spec add_spec = {"add", "AddBackward", BIN_ADD, false, add_backward, false, false};
static const binary_spec sub_spec = {"sub", "SubBackward", BIN_SUB, false, sub_backward, false, false};
static const binary_spec mul_spec = {"mul", "MulBackward", BIN_MUL, false, mul_backward, true, false};
static const binary_spec div_spec = {"div", "DivBackward", BIN_DIV, true, div_backward, true, true};
static const binary_spec pow_spec = {"pow", "PowBackward", BIN_POW, false, pow_backward, true, true};

static lunet_status check_int_exponent(const lunet_tensor *b) {
    if (lunet_dtype_is_float(b->dtype) || b->dtype == LUNET_DTYPE_U8) return LUNET_OK;
    lunet_tensor *c;
    LUNET_TRY(lunet_tensor_contiguous(&c, b));
    const char *p = lunet__data(c);
    size_t z = lunet_dtype_size(c->dtype);
    bool negative = false;
    for (int64_t i = 0; i < c->numel && !negative; i++) negative = lunet__load_i64(p + (size_t)i * z, c->dtype) < 0;
    lunet_tensor_release(c);
    if (negative)
        return lunet__fail(LUNET_ERR_ARG, "pow: integers cannot be raised to negative integer powers "
                                          "(convert to a float dtype first)");
    return LUNET_OK;
}

static lunet_status arithmetic(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b,
                               const binary_spec *spec) {
    *out = NULL;
    lunet_dtype dtype = lunet__promote(a, b);
    if (spec->float_result && !lunet_dtype_is_float(dtype)) dtype = LUNET_DTYPE_F32;
    lunet_tensor *ca = NULL, *cb = NULL, *o = NULL;
    lunet_status s = lunet_tensor_to(&ca, a, dtype);
    if (s == LUNET_OK) s = lunet_tensor_to(&cb, b, dtype);
    if (s == LUNET_OK && spec->kind == BIN_POW) s = check_int_exponent(cb);
    if (s == LUNET_OK) s = run_binary(&o, ca, cb, spec->kind, dtype, spec->name);
    lunet__node *node = NULL;
    if (s == LUNET_OK) {
        const lunet_tensor *inputs[2] = {ca, cb};
        s = lunet__record(&node, o, spec->grad_name, spec->backward, 2, inputs);
    }
    if (s == LUNET_OK && node && spec->save_inputs) s = lunet__save_all(node, 2, (const lunet_tensor *[]){ca, cb});
    if (s == LUNET_OK && node && spec->save_output) s = lunet__save(node, 2, o);
    lunet_tensor_release(ca);
    lunet_tensor_release(cb);
    return lunet__hand_over(out, o, s);
}

lunet_status lunet_tensor_add(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    return arithmetic(out, a, b, &add_spec);
}
lunet_status lunet_tensor_sub(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    return arithmetic(out, a, b, &sub_spec);
}
lunet_status lunet_tensor_mul(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    return arithmetic(out, a, b, &mul_spec);
}
lunet_status lunet_tensor_div(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    return arithmetic(out, a, b, &div_spec);
}
lunet_status lunet_tensor_pow(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    return arithmetic(out, a, b, &pow_spec);
}

/* ---- comparisons ---------------------------------------------------------------------------- */

static lunet_status compare(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b,
                            binary_kind kind, const char *op) {
    *out = NULL;
    lunet_dtype dtype = lunet__promote(a, b);
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false); /* comparisons are not differentiable */
    lunet_tensor *ca = NULL, *cb = NULL;
    lunet_status s = lunet_tensor_to(&ca, a, dtype);
    if (s == LUNET_OK) s = lunet_tensor_to(&cb, b, dtype);
    if (s == LUNET_OK) s = run_binary(out, ca, cb, kind, LUNET_DTYPE_U8, op);
    lunet_grad_set_enabled(was);
    lunet_tensor_release(ca);
    lunet_tensor_release(cb);
    return s;
}

lunet_status lunet_tensor_eq(lunet_tensor **o, const lunet_tensor *a, const lunet_tensor *b) { return compare(o, a, b, BIN_EQ, "eq"); }
lunet_status lunet_tensor_ne(lunet_tensor **o, const lunet_tensor *a, const lunet_tensor *b) { return compare(o, a, b, BIN_NE, "ne"); }
lunet_status lunet_tensor_lt(lunet_tensor **o, const lunet_tensor *a, const lunet_tensor *b) { return compare(o, a, b, BIN_LT, "lt"); }
lunet_status lunet_tensor_le(lunet_tensor **o, const lunet_tensor *a, const lunet_tensor *b) { return compare(o, a, b, BIN_LE, "le"); }
lunet_status lunet_tensor_gt(lunet_tensor **o, const lunet_tensor *a, const lunet_tensor *b) { return compare(o, a, b, BIN_GT, "gt"); }
lunet_status lunet_tensor_ge(lunet_tensor **o, const lunet_tensor *a, const lunet_tensor *b) { return compare(o, a, b, BIN_GE, "ge"); }

/* ---- unary ops with autograd ------------------------------------------------------------------ */

typedef struct unary_spec {
    const char *name, *grad_name;
    unary_kind kind;
    bool float_only;   /* integer inputs are converted to f32 */
    binary_kind grad;  /* fused gradient kernel on (grad, saved), or BIN_COUNT */
    bool save_output;  /* the saved tensor is the output (else the input) */
} unary_spec;

static lunet_status unary_fused_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    return grad_kernel(&grad_in[0], g, node->saved[0], (binary_kind)node->iarg[0]);
}

static lunet_status neg_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    (void)node;
    return lunet_tensor_neg(&grad_in[0], g);
}

static lunet_status exp_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    return lunet_tensor_mul(&grad_in[0], g, node->saved[0]); /* d exp(x) = exp(x) */
}

static lunet_status log_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    return lunet_tensor_div(&grad_in[0], g, node->saved[0]); /* d log(x) = 1 / x */
}

static const unary_spec neg_spec = {"neg", "NegBackward", UN_NEG, false, BIN_COUNT, false};
static const unary_spec abs_spec = {"abs", "AbsBackward", UN_ABS, false, BIN_ABS_BACKWARD, false};
static const unary_spec relu_spec = {"relu", "ReluBackward", UN_RELU, false, BIN_RELU_BACKWARD, true};
static const unary_spec exp_spec = {"exp", "ExpBackward", UN_EXP, true, BIN_COUNT, true};
static const unary_spec log_spec = {"log", "LogBackward", UN_LOG, true, BIN_COUNT, false};
static const unary_spec sqrt_spec = {"sqrt", "SqrtBackward", UN_SQRT, true, BIN_SQRT_BACKWARD, true};
static const unary_spec sigmoid_spec = {"sigmoid", "SigmoidBackward", UN_SIGMOID, true, BIN_SIGMOID_BACKWARD, true};
static const unary_spec tanh_spec = {"tanh", "TanhBackward", UN_TANH, true, BIN_TANH_BACKWARD, true};

static lunet__backward_fn unary_backward_of(const unary_spec *spec) {
    if (spec->grad != BIN_COUNT) return unary_fused_backward;
    switch (spec->kind) {
    case UN_NEG: return neg_backward;
    case UN_EXP: return exp_backward;
    default: return log_backward;
    }
}

static lunet_status unary(lunet_tensor **out, const lunet_tensor *t, const unary_spec *spec) {
    *out = NULL;
    lunet_tensor *in = NULL, *o = NULL;
    lunet_status s = spec->float_only && !lunet_dtype_is_float(t->dtype)
                         ? lunet_tensor_to(&in, t, LUNET_DTYPE_F32)
                         : (in = lunet_tensor_retain(t), LUNET_OK);
    if (s == LUNET_OK) s = run_unary(&o, in, spec->kind, NULL, spec->name);
    lunet__node *node = NULL;
    if (s == LUNET_OK) {
        const lunet_tensor *inputs[1] = {in};
        s = lunet__record(&node, o, spec->grad_name, unary_backward_of(spec), 1, inputs);
    }
    if (s == LUNET_OK && node && spec->kind != UN_NEG) {
        node->iarg[0] = spec->grad;
        s = lunet__save(node, 0, spec->save_output ? o : in);
    }
    lunet_tensor_release(in);
    return lunet__hand_over(out, o, s);
}

lunet_status lunet_tensor_neg(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &neg_spec); }
lunet_status lunet_tensor_abs(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &abs_spec); }
lunet_status lunet_tensor_relu(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &relu_spec); }
lunet_status lunet_tensor_exp(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &exp_spec); }
lunet_status lunet_tensor_log(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &log_spec); }
lunet_status lunet_tensor_sqrt(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &sqrt_spec); }
lunet_status lunet_tensor_sigmoid(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &sigmoid_spec); }
lunet_status lunet_tensor_tanh(lunet_tensor **out, const lunet_tensor *t) { return unary(out, t, &tanh_spec); }

/* ---- clamp ------------------------------------------------------------------------------------ */

/* The bounds as two elements of dtype; a NaN bound becomes the widest value of the dtype. */
static void clamp_bounds(char *bounds, lunet_dtype dtype, double lo, double hi) {
    size_t z = lunet_dtype_size(dtype);
    lunet__store_f64(bounds, dtype, isnan(lo) ? -INFINITY : lo);
    lunet__store_f64(bounds + z, dtype, isnan(hi) ? INFINITY : hi);
}

static lunet_status clamp_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    _Alignas(8) char bounds[16];
    clamp_bounds(bounds, g->dtype, node->farg[0], node->farg[1]);
    return run_binary_ctx(&grad_in[0], g, node->saved[0], unary_rows[UN_CLAMP_BACKWARD][g->dtype],
                          bounds, "backward");
}

lunet_status lunet_tensor_clamp(lunet_tensor **out, const lunet_tensor *t, double min, double max) {
    *out = NULL;
    if (!isnan(min) && !isnan(max) && min > max)
        return lunet__fail(LUNET_ERR_ARG, "clamp: min %g is greater than max %g", min, max);
    _Alignas(8) char bounds[16];
    clamp_bounds(bounds, t->dtype, min, max);
    lunet_tensor *o;
    LUNET_TRY(run_unary(&o, t, UN_CLAMP, bounds, "clamp"));
    lunet__node *node;
    const lunet_tensor *inputs[1] = {t};
    lunet_status s = lunet__record(&node, o, "ClampBackward", clamp_backward, 1, inputs);
    if (s == LUNET_OK && node) {
        node->farg[0] = min;
        node->farg[1] = max;
        s = lunet__save(node, 0, t);
    }
    return lunet__hand_over(out, o, s);
}

/* ---- helpers for the backward engine ------------------------------------------------------------ */

lunet_status lunet__add_same(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    return run_binary(out, a, b, BIN_ADD, a->dtype, "backward");
}

lunet_status lunet__add_into(lunet_tensor *dst, const lunet_tensor *src) {
    LUNET_ASSERT(dst->dtype == src->dtype && lunet__same_shape(dst->ndim, dst->shape, src->ndim, src->shape));
    if (dst->numel == 0) return LUNET_OK;
    char *base[3] = {lunet__data(dst), lunet__data(dst), lunet__data(src)};
    const int64_t *strides[3] = {dst->strides, dst->strides, src->strides};
    size_t z = lunet_dtype_size(dst->dtype), sizes[3] = {z, z, z};
    lunet__iter it;
    lunet__iter_init(&it, dst->ndim, dst->shape, 3, base, strides, sizes);
    lunet__iter_run(&it, binary_rows[BIN_ADD][dst->dtype], NULL);
    return LUNET_OK;
}
