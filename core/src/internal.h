/*
 * internal.h: the structures behind the public handles and the helpers shared by core/src.
 * Nothing here is installed; the bindings and the server use lunet.h only.
 */
#ifndef LUNET_INTERNAL_H
#define LUNET_INTERNAL_H

#include "lunet.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

/* Internal invariants only; never for anything a caller, a file or a socket controls. */
#ifdef NDEBUG
#define LUNET_ASSERT(cond) ((void)0)
#else
#define LUNET_ASSERT(cond)                                                                 \
    ((cond) ? (void)0 : lunet__assert_fail(#cond, __FILE__, __LINE__))
#endif
void lunet__assert_fail(const char *cond, const char *file, int line);

#if defined(__GNUC__)
#define LUNET_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#define LUNET_LIKELY(x) __builtin_expect(!!(x), 1)
#define LUNET_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LUNET_PRINTF(fmt_index, first_arg)
#define LUNET_LIKELY(x) (x)
#define LUNET_UNLIKELY(x) (x)
#endif

/* A hot loop compiled twice, for AVX2 and for baseline x86-64, with the choice made once at
 * load time from cpuid (an ifunc).  Without -ffast-math and with floating-point contraction
 * off (-std=c11), both versions compute the same bits; AVX2 just does eight floats at once. */
/* Built with AddressSanitizer: GCC says so with __SANITIZE_ADDRESS__, clang with __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define LUNET_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LUNET_ASAN 1
#endif
#endif
#if defined(__GNUC__) && defined(__x86_64__) && !defined(LUNET_ASAN)
#define LUNET_VECTORIZED __attribute__((target_clones("avx2", "default")))
#else
#define LUNET_VECTORIZED
#endif

/* ---- numbers (decimal.c) ---------------------------------------------------------------- */

/* The decimal number at p ([+-]digits[.digits][e[+-]digits], before end) as the nearest
 * double, when that needs no more than one IEEE multiply or divide (Clinger's fast path: a
 * mantissa of at most 2^53 and a power of ten of at most 22): returns the number's end.  NULL
 * sends it to strtod_l, which gives the same bits for the numbers this takes. */
const char *lunet__decimal_fast(double *out, const char *p, const char *end);
/* The same from a number's parts, read by the caller: -1^negative * mantissa * 10^exponent;
 * false when that needs strtod.  Inline: the JSON reader calls it for every number. */
extern const double lunet__powers_of_ten[23]; /* 1e0 .. 1e22, each exact */
static inline bool lunet__decimal_compose(double *out, bool negative, uint64_t mantissa, int exponent) {
    if (mantissa > ((uint64_t)1 << 53) || exponent < -22 || exponent > 22) return false;
    double v = (double)mantissa;
    v = exponent < 0 ? v / lunet__powers_of_ten[-exponent] : v * lunet__powers_of_ten[exponent];
    *out = negative ? -v : v;
    return true;
}

/* ---- errors (status.c) ------------------------------------------------------------------ */

/* Stores a printf-style message as this thread's last error and returns status. */
lunet_status lunet__fail(lunet_status status, const char *fmt, ...) LUNET_PRINTF(2, 3);
/* The usual out-of-memory failure for op. */
lunet_status lunet__nomem(const char *op);

/* Propagates a failing status. */
#define LUNET_TRY(expr)                                                                    \
    do {                                                                                   \
        lunet_status lunet__s = (expr);                                                    \
        if (LUNET_UNLIKELY(lunet__s != LUNET_OK)) return lunet__s;                         \
    } while (0)

/* ---- memory (alloc.c) ------------------------------------------------------------------- */

/* 64-byte aligned; NULL when the system is out of memory.  nbytes may be 0. */
void *lunet__alloc(size_t nbytes);
/* p may be NULL; nbytes must be the size given to lunet__alloc. */
void lunet__free(void *p, size_t nbytes);

/* ---- storage and tensors (tensor.c) ------------------------------------------------------- */

typedef struct lunet_storage {
    atomic_int refcount;
    atomic_uint version; /* bumped by every in-place write; autograd checks saved tensors */
    size_t nbytes;
    void *data;
} lunet_storage;

typedef struct lunet__node lunet__node;

struct lunet_tensor {
    atomic_int refcount;
    lunet_dtype dtype;
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    int64_t strides[LUNET_MAX_DIMS]; /* in elements */
    int64_t offset;                  /* in elements, from storage->data */
    int64_t numel;
    lunet_storage *storage;

    /* autograd */
    bool requires_grad;
    lunet_tensor *grad;    /* owned; NULL until the first backward reaches a leaf */
    lunet__node *grad_fn;  /* owned; NULL for leaves */

    lunet_tensor *release_next; /* the iterative release list (see lunet_tensor_release) */
};

/* A new contiguous tensor with fresh storage; the data is uninitialised. */
lunet_status lunet__tensor_new(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape, const char *op);
/* A new view header on t's storage with the given geometry (no autograd). */
lunet_status lunet__tensor_alias(lunet_tensor **out, const lunet_tensor *t, int ndim,
                                 const int64_t *shape, const int64_t *strides, int64_t offset);
/* Address of element 0 of t, as bytes. */
static inline char *lunet__data(const lunet_tensor *t) {
    return (char *)t->storage->data + (size_t)t->offset * lunet_dtype_size(t->dtype);
}
static inline int64_t lunet__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}
/* Checks that a shape has no negative entry and that its element and byte counts fit. */
lunet_status lunet__check_shape(const char *op, int ndim, const int64_t *shape,
                                lunet_dtype dtype);
/* Normalises a possibly negative dim for a tensor of ndim dims (ndim_plus = 1 allows
 * dim == ndim, as unsqueeze needs). */
lunet_status lunet__normalize_dim(int *out, int dim, int ndim, int ndim_plus, const char *op);
/* Marks an in-place write: refuses tensors autograd would need, bumps the version. */
lunet_status lunet__check_inplace(lunet_tensor *t, const char *op);
/* Fills a fresh contiguous tensor: every element set to value. */
void lunet__fill_contiguous(lunet_tensor *t, double value);

/* ---- dtypes (dtype.c) ------------------------------------------------------------------- */

/* Result dtype of a binary op following the rules described in lunet.h. */
lunet_dtype lunet__promote(const lunet_tensor *a, const lunet_tensor *b);
/* The same for two tensors of at least one dim each (no 0-d weak typing). */
lunet_dtype lunet__promote_dtypes(lunet_dtype a, lunet_dtype b);
/* Copies src into dst (same shape, any strides, any dtypes); no autograd. */
void lunet__copy_cast(lunet_tensor *dst, const lunet_tensor *src);
/* The same with the source given as data, dtype and strides (in elements) over dst's shape:
 * zero strides broadcast. */
void lunet__copy_cast_strided(lunet_tensor *dst, const char *src_data, lunet_dtype src_dtype,
                              const int64_t *src_strides);
/* Reads element at byte address p of dtype as double / int64 and writes it back. */
double lunet__load_f64(const char *p, lunet_dtype dtype);
int64_t lunet__load_i64(const char *p, lunet_dtype dtype);
void lunet__store_f64(char *p, lunet_dtype dtype, double v);
void lunet__store_i64(char *p, lunet_dtype dtype, int64_t v);

/* Calls X(DTYPE_ENUM_SUFFIX, c_type, unsigned_twin) for each dtype.  The unsigned twin lets
 * integer kernels wrap on overflow instead of invoking undefined behaviour. */
#define LUNET__FOR_EACH_DTYPE(X)                                                           \
    X(F32, float, float)                                                                   \
    X(F64, double, double)                                                                 \
    X(I64, int64_t, uint64_t)                                                              \
    X(I32, int32_t, uint32_t)                                                              \
    X(I8, int8_t, uint8_t)                                                                 \
    X(U8, uint8_t, uint8_t)

/* ---- shapes (shape.c) ------------------------------------------------------------------- */

/* The broadcast shape of a and b, or an error naming op and both shapes. */
lunet_status lunet__broadcast_shape(int *out_ndim, int64_t *out_shape, const char *op,
                                    int ndim_a, const int64_t *shape_a, int ndim_b,
                                    const int64_t *shape_b);
/* Strides of a (src_ndim, src_shape, src_strides) operand seen as broadcast to (ndim, shape):
 * 0 on expanded and new leading dims. */
void lunet__broadcast_strides(int64_t *out_strides, int src_ndim, const int64_t *src_shape,
                              const int64_t *src_strides, int ndim, const int64_t *shape);
/* Contiguous (C order) strides for shape. */
void lunet__contiguous_strides(int64_t *out_strides, int ndim, const int64_t *shape);
bool lunet__same_shape(int ndim_a, const int64_t *a, int ndim_b, const int64_t *b);
/* Writes "[2,3]" for t into buf. */
const char *lunet__shape_str(char *buf, size_t size, const lunet_tensor *t);
#define LUNET__SHAPE_BUF 96

/* ---- strided iteration (iter.c) ------------------------------------------------------------
 * Up to LUNET__ITER_MAX_OPS operands of one shape (inputs broadcast with zero strides) are
 * walked row by row: dims that are contiguous for every operand are merged first, then the
 * row function runs over the last dim.  Strides are in bytes; this is NumPy's inner-loop
 * design and lets each kernel keep a unit-stride fast path the compiler vectorises. */

#define LUNET__ITER_MAX_OPS 4

typedef void (*lunet__row_fn)(char *const *ptrs, const int64_t *byte_strides, int64_t n,
                              const void *ctx);

typedef struct lunet__iter {
    int nops;
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    int64_t strides[LUNET__ITER_MAX_OPS][LUNET_MAX_DIMS]; /* bytes */
    char *base[LUNET__ITER_MAX_OPS];
} lunet__iter;

/* Operand 0 is usually the output.  Each operand: base address, strides in elements
 * (already broadcast to shape) and element size. */
void lunet__iter_init(lunet__iter *it, int ndim, const int64_t *shape, int nops,
                      char *const *base, const int64_t *const *elem_strides,
                      const size_t *elem_sizes);
void lunet__iter_run(const lunet__iter *it, lunet__row_fn row, const void *ctx);

/* ---- autograd (autograd.c) -------------------------------------------------------------- */

#define LUNET__NODE_MAX_INPUTS 3
#define LUNET__NODE_MAX_SAVED 4

/* Computes the gradients of the node's inputs from the gradient of its output.  grad_in[i]
 * is left NULL for inputs that do not need one (node->inputs[i] == NULL).  Runs with grad
 * mode off and may call any public op. */
typedef lunet_status (*lunet__backward_fn)(lunet__node *node, const lunet_tensor *grad_out,
                                           lunet_tensor **grad_in);

struct lunet__node {
    atomic_int refcount;
    const char *name;
    lunet__backward_fn backward;
    int n_inputs;
    /* Strong references to the inputs that need a gradient, NULL for the others. */
    lunet_tensor *inputs[LUNET__NODE_MAX_INPUTS];
    /* Detached aliases of tensors the backward needs, with their storage version then. */
    lunet_tensor *saved[LUNET__NODE_MAX_SAVED];
    unsigned saved_version[LUNET__NODE_MAX_SAVED];
    /* The output's geometry: backward checks the incoming gradient against it. */
    lunet_dtype out_dtype;
    int out_ndim;
    int64_t out_shape[LUNET_MAX_DIMS];
    /* Op settings the backward needs (dims, bounds, shapes). */
    int64_t iarg[LUNET_MAX_DIMS + 2];
    double farg[2];
    bool freed; /* saved state dropped after a backward without retain_graph */

    /* Backward bookkeeping, valid during one lunet_tensor_backward call. */
    unsigned visit_epoch;
    int pending;
    lunet_tensor *grad_accum;

    lunet__node *release_next;
};

/* True when an op on these inputs must record a node (grad mode on and one requires grad). */
bool lunet__needs_grad(int n, const lunet_tensor *const *inputs);
/* Attaches a new node to out (which must not have one) recording inputs; returns it
 * (borrowed) in *node, or NULL when no input needs a gradient. */
lunet_status lunet__record(lunet__node **node, lunet_tensor *out, const char *name,
                           lunet__backward_fn backward, int n_inputs,
                           const lunet_tensor *const *inputs);
/* Saves a detached alias of t in slot i of node. */
lunet_status lunet__save(lunet__node *node, int slot, const lunet_tensor *t);
/* Saves ts[i] in slot i for each i < n; a NULL entry leaves its slot empty. */
lunet_status lunet__save_all(lunet__node *node, int n, const lunet_tensor *const *ts);
void lunet__node_release(lunet__node *node);

/* ---- helpers the nn ops share --------------------------------------------------------------- */

/* Fails unless every non-NULL tensor in ts is f32 or f64 with the dtype of ts[0]; names label
 * them in the message ("linear: weight is f64 but input is f32"). */
lunet_status lunet__check_float_operands(const char *op, int n, const lunet_tensor *const *ts,
                                         const char *const *names);
/* t itself (retained) when contiguous, else a contiguous copy; never records autograd. */
lunet_status lunet__contiguous_nograd(lunet_tensor **out, const lunet_tensor *t);
/* Records node name/backward on out for inputs, or releases out and fails. */
lunet_status lunet__record_or_release(lunet__node **node, lunet_tensor **out, const char *name,
                                      lunet__backward_fn backward, int n_inputs, const lunet_tensor *const *inputs);

/* The end of an op that made y: on success hands y to *out, otherwise releases it and
 * passes the failure on. */
static inline lunet_status lunet__hand_over(lunet_tensor **out, lunet_tensor *y, lunet_status s) {
    if (s != LUNET_OK) {
        lunet_tensor_release(y);
        return s;
    }
    *out = y;
    return LUNET_OK;
}

/* ---- helpers that backward functions share ------------------------------------------------ */

/* Sums grad over broadcast dims so that it has (ndim, shape); returns a new reference. */
lunet_status lunet__sum_to_shape(lunet_tensor **out, const lunet_tensor *grad, int ndim,
                                 const int64_t *shape);
/* out = a + b without autograd, in a fresh tensor with a's dtype (shapes equal). */
lunet_status lunet__add_same(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
/* dst += src in place (same shape and dtype), no autograd. */
lunet_status lunet__add_into(lunet_tensor *dst, const lunet_tensor *src);

/* C = alpha * op(A) op(B) + beta * C for row-major float matrices of dtype (f32 or f64), on
 * BLAS (blas.c): the one place lunet calls GEMM.  op transposes when trans_* is true.
 * A product large enough is shared among the threads in blocks of C, along the side split
 * names; LUNET__SPLIT_ANY takes C's longer side. */
typedef enum lunet__split { LUNET__SPLIT_ANY, LUNET__SPLIT_ROWS, LUNET__SPLIT_COLS } lunet__split;
void lunet__gemm(lunet__split split, lunet_dtype dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                 int64_t ldc);

/* ---- sharing work among the threads (blas.c) -------------------------------------------------
 *
 * Work is split into as many contiguous blocks as there are workers, and worker k always gets
 * block k of the same work.  That ownership matters more than balance on these machines: a
 * Linear layer's products are split along its out-features side and the optimizers split each
 * parameter into the same blocks, so a block of weights, its gradient and its optimizer state
 * stay in one core's cache from step to step.  Letting oneDNN split the MLP's GEMMs its own way
 * made them 20% faster but the Adam step after them 2x slower, as every line moved between the
 * cores; with fixed blocks, two threads train the MLP faster than one.  */

/* How many workers share `work` units so that each has at least min_per_worker: between 1
 * and lunet_get_num_threads(), and 1 inside a parallel region (OpenMP does not nest). */
int lunet__workers_for(int64_t work, int64_t min_per_worker);

/* Worker k's block [*first, *last) of n units shared by `workers`, with inner bounds rounded to
 * multiples of align (so two workers never write one cache line when align spans a line). */
static inline void lunet__block(int64_t *first, int64_t *last, int64_t n, int worker, int workers, int64_t align) {
    int64_t a = n * worker / workers, b = n * (worker + 1) / workers;
    *first = worker == 0 ? 0 : a / align * align;
    *last = worker == workers - 1 ? n : b / align * align;
}

/* ---- writing files atomically (atomic_file.c) ------------------------------------------------ */

/* Writes the whole contents into the open temporary file f (named tmp, for messages). */
typedef lunet_status (*lunet__write_fn)(FILE *f, const char *tmp, void *ctx);
/* Runs write into a temporary file beside path, fsyncs it, renames it over path and syncs the
 * directory; on failure the temporary file is removed and path is untouched.  op starts the
 * messages ("safetensors: ..."). */
lunet_status lunet__write_atomically(const char *path, const char *op, lunet__write_fn write, void *ctx);
/* fwrite of n bytes that reports the system's error as "op: writing tmp failed: ...". */
lunet_status lunet__fwrite(FILE *f, const void *bytes, size_t n, const char *op, const char *tmp);

/* ---- forward kernels on raw memory ----------------------------------------------------------
 * The ops and the model graph (model_run.c) run the same kernels, so a compiled model computes
 * the same bits as the modules it was compiled from.  All buffers are contiguous. */

typedef struct lunet__conv_geometry {
    int64_t n, c, h, w;          /* input */
    int64_t o, kh, kw;           /* weight */
    int64_t oh, ow;              /* output */
    int64_t groups, cg, og;      /* groups, input and output channels per group */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t col_rows, col_cols;  /* cg * kh * kw, oh * ow */
    bool pointwise;              /* 1x1, stride 1, no padding: no unfolding needed */
} lunet__conv_geometry;

/* The geometry of conv2d on x_shape (N, C, H, W) with w_shape (O, C/groups, KH, KW) (nn_conv.c). */
lunet_status lunet__conv_geometry_of(lunet__conv_geometry *g, const int64_t x_shape[4], const int64_t w_shape[4],
                                     const lunet_conv2d_params *p);
/* The column scratch one image needs (0 for pointwise convolutions). */
size_t lunet__conv_cols_bytes(const lunet__conv_geometry *g, lunet_dtype dtype);
/* y_img (O, OH, OW) = conv(x_img (C, H, W)) + b (b may be NULL), unfolding into cols. */
void lunet__conv2d_image(const lunet__conv_geometry *g, lunet_dtype dtype, const void *x_img, const void *w,
                         const void *b, void *y_img, void *cols);

typedef struct lunet__pool_geometry {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    bool count_include_pad;
} lunet__pool_geometry;

/* The geometry of pooling one (H, W) plane with params (nn_pool.c); planes is left 1. */
lunet_status lunet__pool_geometry_of(lunet__pool_geometry *g, int64_t h, int64_t w, const lunet_pool2d_params *p,
                                     const char *op);
/* Adaptive average pooling of an (h, w) plane to (out_h, out_w). */
lunet_status lunet__adaptive_pool_geometry_of(lunet__pool_geometry *g, int64_t h, int64_t w, int64_t out_h,
                                              int64_t out_w);
/* y (planes, oh, ow) from x (planes, h, w); at receives each maximum's index in its plane
 * when not NULL. */
void lunet__max_pool2d_forward(const lunet__pool_geometry *g, lunet_dtype dtype, void *y, int32_t *at, const void *x);
void lunet__avg_pool2d_forward(const lunet__pool_geometry *g, lunet_dtype dtype, void *y, const void *x, bool adaptive);

typedef enum lunet__activation {
    LUNET__ACT_NONE, LUNET__ACT_RELU, LUNET__ACT_LEAKY_RELU, LUNET__ACT_GELU, LUNET__ACT_GELU_TANH,
    LUNET__ACT_SIGMOID, LUNET__ACT_TANH
} lunet__activation;

/* y = f(x) over n elements (y may be x); slope is leaky ReLU's (nn_activation.c). */
void lunet__activation_forward(lunet__activation kind, lunet_dtype dtype, void *y, const void *x, int64_t n,
                               double slope);
/* y = softmax (or log_softmax) of x seen as (outer, n, inner), over the middle dim. */
void lunet__softmax_forward(lunet_dtype dtype, void *y, const void *x, int64_t outer, int64_t n, int64_t inner,
                            bool log);

/* The logistic function, split at 0 so that neither side overflows (pointwise.c and the graph). */
static inline float lunet__sigmoid_f32(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}
static inline double lunet__sigmoid_f64(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* conv2d's forward by the definition (seven nested loops, double accumulation): the reference
 * the tests hold the im2col + GEMM path to.  No autograd. */
lunet_status lunet__conv2d_reference(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                                     const lunet_tensor *bias, const lunet_conv2d_params *params);

/* The product of two (batches of) matrices of one dtype by the plain loop only: the reference
 * the tests hold the BLAS path to.  No autograd, no 1-d promotion. */
lunet_status lunet__matmul_reference(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);

/* lunet_safetensors_read on n bytes in memory (safetensors.c): the same checks and messages,
 * with name standing for the path.  The fuzz target (core/tests/fuzz_safetensors.c) calls it. */
lunet_status lunet__safetensors_read_memory(lunet_safetensors **out, const void *bytes, size_t n, const char *name);

/* v as printf's "%.9g" writes it (float_text.c), NUL-terminated in out (LUNET__F32_TEXT_MAX
 * bytes); returns its length. */
#define LUNET__F32_TEXT_MAX 32
size_t lunet__f32_text(char *out, float v);

#endif /* LUNET_INTERNAL_H */
