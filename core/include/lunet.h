/*
 * lunet.h: the public C API of lunet, a deep-learning library for Lua 5.4 with a C core.
 *
 * Overview
 * --------
 * A lunet_tensor is a strided view (shape, strides, offset, dtype) onto a refcounted
 * lunet_storage.  Views (reshape, transpose, narrow, expand, ...) share storage; every op
 * returns a new reference that the caller releases with lunet_tensor_release().
 *
 * Every differentiable op records itself on a define-by-run autograd graph when grad mode is
 * on (the default) and one of its inputs requires grad; lunet_tensor_backward() walks that
 * graph in reverse and accumulates gradients into the leaves' .grad tensors.
 *
 * Conventions
 * -----------
 * - Functions that can fail return lunet_status (LUNET_OK == 0, errors < 0) and hand their
 *   results back through out-parameters that come first.  On failure nothing is leaked,
 *   out-parameters are left NULL, and lunet_last_error() holds a message that names the op
 *   and the problem, e.g. "matmul: [2,3] x [4,5]: inner sizes differ".
 * - "Returns a new reference" means the caller owns one reference and must release it;
 *   "borrowed" means the pointer is valid as long as its owner is.
 * - Dimensions are 0-based; a negative dimension counts from the end (-1 is the last).
 * - Nothing in lunet exits, aborts or longjmps on bad input.
 *
 * Example
 * -------
 *     lunet_tensor *w = NULL, *x = NULL, *y = NULL, *loss = NULL;
 *     int64_t shape[2] = {64, 64};
 *     lunet_tensor_randn(&w, LUNET_DTYPE_F32, 2, shape);
 *     lunet_tensor_set_requires_grad(w, true);
 *     lunet_tensor_ones(&x, LUNET_DTYPE_F32, 2, shape);
 *     lunet_tensor_matmul(&y, x, w);
 *     lunet_tensor_sum_all(&loss, y);
 *     if (lunet_tensor_backward(loss, NULL, false) != LUNET_OK)
 *         fprintf(stderr, "%s\n", lunet_last_error());
 *     // lunet_tensor_grad(w) now holds d loss / d w (borrowed).
 *     lunet_tensor_release(loss); lunet_tensor_release(y);
 *     lunet_tensor_release(x); lunet_tensor_release(w);
 */
#ifndef LUNET_H
#define LUNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LUNET_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------
 * Status codes
 * ---------------------------------------------------------------------------------------- */

/* One list generates the enum, lunet_status_name() and lunet_status_str(). */
#define LUNET_STATUS_LIST(X)                                                        \
    X(OK, 0, "ok")                                                                  \
    X(ERR_NOMEM, -1, "out of memory")                                               \
    X(ERR_SHAPE, -2, "shape mismatch")                                              \
    X(ERR_DTYPE, -3, "unsupported dtype")                                           \
    X(ERR_INDEX, -4, "index out of range")                                          \
    X(ERR_ARG, -5, "invalid argument")                                              \
    X(ERR_AUTOGRAD, -6, "autograd error")                                           \
    X(ERR_IO, -7, "input/output error")                                             \
    X(ERR_FORMAT, -8, "malformed data")

typedef enum lunet_status {
#define LUNET__STATUS_ENUM(name, value, text) LUNET_##name = value,
    LUNET_STATUS_LIST(LUNET__STATUS_ENUM)
#undef LUNET__STATUS_ENUM
} lunet_status;

/* "LUNET_ERR_SHAPE" for LUNET_ERR_SHAPE; "unknown" for values outside the list. */
const char *lunet_status_name(lunet_status status);
/* A short description ("shape mismatch"). */
const char *lunet_status_str(lunet_status status);
/* The detailed message of the last failure on this thread (borrowed, never NULL). */
const char *lunet_last_error(void);

/* ------------------------------------------------------------------------------------------
 * Data types
 * ---------------------------------------------------------------------------------------- */

typedef enum lunet_dtype {
    LUNET_DTYPE_F32 = 0, /* the default */
    LUNET_DTYPE_F64,
    LUNET_DTYPE_I64,
    LUNET_DTYPE_I32,
    LUNET_DTYPE_I8,
    LUNET_DTYPE_U8,
    LUNET_DTYPE_COUNT
} lunet_dtype;

/* "f32", "f64", "i64", "i32", "i8", "u8"; "?" for an invalid value. */
const char *lunet_dtype_name(lunet_dtype dtype);
/* Parses a name produced by lunet_dtype_name(). */
lunet_status lunet_dtype_from_name(lunet_dtype *out, const char *name);
size_t lunet_dtype_size(lunet_dtype dtype);
bool lunet_dtype_is_float(lunet_dtype dtype);

/* ------------------------------------------------------------------------------------------
 * Tensors: life cycle and properties
 * ---------------------------------------------------------------------------------------- */

#define LUNET_MAX_DIMS 8

typedef struct lunet_tensor lunet_tensor;

/* Adds a reference; returns t.  Safe to call from several threads. */
lunet_tensor *lunet_tensor_retain(const lunet_tensor *t);
/* Drops a reference; frees the tensor (and its storage, graph node and grad when they have
 * no other owner) at zero.  NULL is ignored.  Long autograd chains are freed iteratively. */
void lunet_tensor_release(lunet_tensor *t);

int lunet_tensor_ndim(const lunet_tensor *t);
const int64_t *lunet_tensor_shape(const lunet_tensor *t);   /* borrowed, ndim entries */
const int64_t *lunet_tensor_strides(const lunet_tensor *t); /* in elements */
int64_t lunet_tensor_numel(const lunet_tensor *t);
lunet_dtype lunet_tensor_dtype(const lunet_tensor *t);
bool lunet_tensor_is_contiguous(const lunet_tensor *t);
/* Address of the first element (borrowed).  Writing through it bypasses autograd's in-place
 * checks; use lunet_tensor_mark_modified() afterwards. */
void *lunet_tensor_data(const lunet_tensor *t);
/* Bytes of the underlying storage (shared by all views of it). */
size_t lunet_tensor_storage_nbytes(const lunet_tensor *t);
/* True when a and b are views of one storage (writing one may change the other). */
bool lunet_tensor_shares_storage(const lunet_tensor *a, const lunet_tensor *b);
/* Tells autograd that the tensor's data was changed in place through lunet_tensor_data(). */
void lunet_tensor_mark_modified(lunet_tensor *t);
/* A counter that changes with every in-place write to t's storage (in-place ops, optimizer
 * steps, lunet_tensor_mark_modified): something computed from t and kept (a compiled model
 * graph) compares it to know whether t has changed since. */
unsigned lunet_tensor_version(const lunet_tensor *t);

/* Formats a shape as "[2,3]" into buf (always NUL-terminated); returns buf. */
char *lunet_shape_format(char *buf, size_t size, int ndim, const int64_t *shape);

/* ------------------------------------------------------------------------------------------
 * Creation.  Each returns a new contiguous tensor (a new reference) in *out.
 * ---------------------------------------------------------------------------------------- */

/* Uninitialised memory. */
lunet_status lunet_tensor_empty(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape);
lunet_status lunet_tensor_zeros(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape);
lunet_status lunet_tensor_ones(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape);
lunet_status lunet_tensor_full(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape, double value);
/* Copies numel elements of dtype from data (C order). */
lunet_status lunet_tensor_from_data(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data);
/* start, start + step, ... while < end (> end for a negative step). */
lunet_status lunet_tensor_arange(lunet_tensor **out, lunet_dtype dtype, double start, double end,
                                 double step);
/* steps evenly spaced values from start to end inclusive. */
lunet_status lunet_tensor_linspace(lunet_tensor **out, lunet_dtype dtype, double start,
                                   double end, int64_t steps);
/* An n x m matrix with ones on the diagonal. */
lunet_status lunet_tensor_eye(lunet_tensor **out, lunet_dtype dtype, int64_t n, int64_t m);
/* Uniform in [0, 1) and standard normal, from the default generator (float dtypes only). */
lunet_status lunet_tensor_rand(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape);
lunet_status lunet_tensor_randn(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape);

/* ------------------------------------------------------------------------------------------
 * Random numbers.  A generator is xoshiro256** state: small, fast, and the same seed gives
 * the same numbers on every machine.  The default generator is process-wide and not locked
 * (draw from one thread at a time); it serves rand, randn, dropout and weight initialisation.
 * Other generators (a data loader's shuffling, say) are independent streams.
 * ---------------------------------------------------------------------------------------- */

typedef struct lunet_generator {
    uint64_t s[4]; /* private: use the functions below */
} lunet_generator;

void lunet_generator_seed(lunet_generator *g, uint64_t seed);
uint64_t lunet_generator_next(lunet_generator *g);      /* 64 random bits */
double lunet_generator_uniform(lunet_generator *g);     /* [0, 1) */
double lunet_generator_normal(lunet_generator *g);      /* standard normal */
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t lunet_generator_below(lunet_generator *g, uint64_t n);
/* The process-wide default generator (borrowed). */
lunet_generator *lunet_default_generator(void);

/* Shorthands for the default generator. */
void lunet_manual_seed(uint64_t seed);
void lunet_rng_get_state(uint64_t state[4]);
void lunet_rng_set_state(const uint64_t state[4]);
double lunet_rng_uniform(void);
double lunet_rng_normal(void);

/* A random permutation of 0..n-1 as i64 (Fisher-Yates); g NULL means the default. */
lunet_status lunet_tensor_randperm(lunet_tensor **out, int64_t n, lunet_generator *g);

/* ------------------------------------------------------------------------------------------
 * Elements and in-place writes
 * ---------------------------------------------------------------------------------------- */

/* index holds ndim 0-based (or negative, from the end) indices. */
lunet_status lunet_tensor_get_f64(double *out, const lunet_tensor *t, const int64_t *index);
lunet_status lunet_tensor_get_i64(int64_t *out, const lunet_tensor *t, const int64_t *index);
lunet_status lunet_tensor_set_f64(lunet_tensor *t, const int64_t *index, double value);
lunet_status lunet_tensor_set_i64(lunet_tensor *t, const int64_t *index, int64_t value);
/* The single element of a one-element tensor. */
lunet_status lunet_tensor_item_f64(double *out, const lunet_tensor *t);
lunet_status lunet_tensor_item_i64(int64_t *out, const lunet_tensor *t);
/* Sets every element to value (converted to t's dtype). */
lunet_status lunet_tensor_fill(lunet_tensor *t, double value);
/* Copies src into dst, broadcasting src to dst's shape and converting its dtype. */
lunet_status lunet_tensor_copy(lunet_tensor *dst, const lunet_tensor *src);

/* ------------------------------------------------------------------------------------------
 * Copies, conversions and views.  All return a new reference in *out and are differentiable
 * (conversions between float dtypes; integer tensors never require grad).
 * Views share storage with their input.
 * ---------------------------------------------------------------------------------------- */

lunet_status lunet_tensor_clone(lunet_tensor **out, const lunet_tensor *t);
/* Returns t itself (retained) when it is already contiguous. */
lunet_status lunet_tensor_contiguous(lunet_tensor **out, const lunet_tensor *t);
/* Returns t itself (retained) when it already has that dtype. */
lunet_status lunet_tensor_to(lunet_tensor **out, const lunet_tensor *t, lunet_dtype dtype);
/* Shares data, has no grad_fn and does not require grad. */
lunet_status lunet_tensor_detach(lunet_tensor **out, const lunet_tensor *t);

/* One entry of shape may be -1 (inferred).  view fails when the strides do not allow it;
 * reshape then copies. */
lunet_status lunet_tensor_view(lunet_tensor **out, const lunet_tensor *t, int ndim,
                               const int64_t *shape);
lunet_status lunet_tensor_reshape(lunet_tensor **out, const lunet_tensor *t, int ndim,
                                  const int64_t *shape);
lunet_status lunet_tensor_transpose(lunet_tensor **out, const lunet_tensor *t, int dim0, int dim1);
/* dims is a permutation of 0..ndim-1 (negative entries allowed). */
lunet_status lunet_tensor_permute(lunet_tensor **out, const lunet_tensor *t, const int *dims);
/* Elements start .. start+length-1 of dim. */
lunet_status lunet_tensor_narrow(lunet_tensor **out, const lunet_tensor *t, int dim,
                                 int64_t start, int64_t length);
/* Elements start, start+step, ... < stop of dim (step > 0). */
lunet_status lunet_tensor_slice(lunet_tensor **out, const lunet_tensor *t, int dim,
                                int64_t start, int64_t stop, int64_t step);
/* The slice at index of dim, with that dim removed. */
lunet_status lunet_tensor_select(lunet_tensor **out, const lunet_tensor *t, int dim,
                                 int64_t index);
/* Removes dim if its size is 1 (otherwise returns a plain view of t). */
lunet_status lunet_tensor_squeeze(lunet_tensor **out, const lunet_tensor *t, int dim);
/* Removes every dim of size 1. */
lunet_status lunet_tensor_squeeze_all(lunet_tensor **out, const lunet_tensor *t);
/* Inserts a dim of size 1 at position dim (0..ndim; negative counts from ndim+1). */
lunet_status lunet_tensor_unsqueeze(lunet_tensor **out, const lunet_tensor *t, int dim);
/* Merges dims start_dim..end_dim into one. */
lunet_status lunet_tensor_flatten(lunet_tensor **out, const lunet_tensor *t, int start_dim,
                                  int end_dim);
/* Broadcasts size-1 dims (and new leading dims) to shape; -1 keeps a size. */
lunet_status lunet_tensor_expand(lunet_tensor **out, const lunet_tensor *t, int ndim,
                                 const int64_t *shape);

/* ------------------------------------------------------------------------------------------
 * Elementwise ops with NumPy broadcasting.  Result dtypes follow PyTorch: a float operand
 * wins over an integer one, the wider of two floats or two integers wins, and a 0-d tensor
 * (how the bindings pass scalars) does not widen a tensor of the same kind.  div and the
 * float functions (exp, log, sqrt, sigmoid, tanh) give f32 for integer input.
 * Comparisons return u8 tensors of 0/1 and are not differentiable.
 * ---------------------------------------------------------------------------------------- */

lunet_status lunet_tensor_add(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_sub(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_mul(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_div(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
/* Integer powers need non-negative exponents. */
lunet_status lunet_tensor_pow(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_eq(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_ne(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_lt(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_le(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_gt(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);
lunet_status lunet_tensor_ge(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);

lunet_status lunet_tensor_neg(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_abs(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_relu(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_exp(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_log(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_sqrt(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_sigmoid(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_tanh(lunet_tensor **out, const lunet_tensor *t);
/* Limits values to [min, max]; a NaN bound means "no bound on that side".  The gradient
 * passes where min <= x <= max. */
lunet_status lunet_tensor_clamp(lunet_tensor **out, const lunet_tensor *t, double min, double max);

/* ------------------------------------------------------------------------------------------
 * Reductions.  *_all reduce every element to a 0-d tensor; *_dim reduce one dim and keep it
 * with size 1 when keepdim is true.  Integer sums give i64; mean of integers gives f32.
 * max/min/argmax indices are 0-based i64; ties go to the first index, and so does the
 * gradient of max/min.
 * ---------------------------------------------------------------------------------------- */

lunet_status lunet_tensor_sum_all(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_sum_dim(lunet_tensor **out, const lunet_tensor *t, int dim,
                                  bool keepdim);
lunet_status lunet_tensor_mean_all(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_mean_dim(lunet_tensor **out, const lunet_tensor *t, int dim,
                                   bool keepdim);
lunet_status lunet_tensor_max_all(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_min_all(lunet_tensor **out, const lunet_tensor *t);
/* values and indices are both returned (new references); indices may be NULL if unwanted. */
lunet_status lunet_tensor_max_dim(lunet_tensor **values, lunet_tensor **indices,
                                  const lunet_tensor *t, int dim, bool keepdim);
lunet_status lunet_tensor_min_dim(lunet_tensor **values, lunet_tensor **indices,
                                  const lunet_tensor *t, int dim, bool keepdim);
/* Index into the flattened tensor. */
lunet_status lunet_tensor_argmax_all(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_argmax_dim(lunet_tensor **out, const lunet_tensor *t, int dim,
                                     bool keepdim);
lunet_status lunet_tensor_argmin_all(lunet_tensor **out, const lunet_tensor *t);
lunet_status lunet_tensor_argmin_dim(lunet_tensor **out, const lunet_tensor *t, int dim,
                                     bool keepdim);

/* ------------------------------------------------------------------------------------------
 * Joining
 * ---------------------------------------------------------------------------------------- */

/* The tensors joined along dim: every other dim must match; the result has the promoted
 * dtype.  Differentiable (each input gets its slice of the gradient). */
lunet_status lunet_tensor_cat(lunet_tensor **out, const lunet_tensor *const *tensors, size_t n, int dim);
/* The tensors (all of one shape) stacked along a new dim. */
lunet_status lunet_tensor_stack(lunet_tensor **out, const lunet_tensor *const *tensors, size_t n, int dim);

/* ------------------------------------------------------------------------------------------
 * Indexing and counting
 * ---------------------------------------------------------------------------------------- */

/* The slices of t along dim at the 0-based positions in indices (a 1-d integer tensor); out
 * has indices' length in dim.  Differentiable in t (the gradient is added back per index). */
lunet_status lunet_tensor_index_select(lunet_tensor **out, const lunet_tensor *t, int dim,
                                       const lunet_tensor *indices);
/* For a 1-d tensor of non-negative integers, out[v] counts the elements equal to v; out is
 * i64 of length max(max(t) + 1, minlength). */
lunet_status lunet_tensor_bincount(lunet_tensor **out, const lunet_tensor *t, int64_t minlength);

/* ------------------------------------------------------------------------------------------
 * Matrix product with torch.matmul's rules: 1-d x 1-d is a dot product, a 1-d operand is
 * promoted to a matrix and the added dim removed, batch dims broadcast.  Float dtypes run on
 * cblas_sgemm/dgemm; integer dtypes on a plain loop (wrapping like C unsigned arithmetic).
 * ---------------------------------------------------------------------------------------- */

lunet_status lunet_tensor_matmul(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b);

/* ------------------------------------------------------------------------------------------
 * Neural-network ops.  Each is one autograd node with a fused backward.  Inputs, weights and
 * biases must share one float dtype (f32 or f64); images are (N, C, H, W); weights have
 * PyTorch's shapes, so parameters move between the two without reshaping.
 * ---------------------------------------------------------------------------------------- */

/* y = x W^T + b: x (..., in), weight (out, in), bias (out) or NULL; y (..., out). */
lunet_status lunet_linear(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                          const lunet_tensor *bias);

typedef struct lunet_conv2d_params {
    int64_t stride[2], padding[2], dilation[2]; /* (height, width); stride and dilation >= 1 */
    int64_t groups;                             /* >= 1, divides both channel counts */
} lunet_conv2d_params;

/* x (N, C, H, W), weight (O, C / groups, KH, KW), bias (O) or NULL -> (N, O, OH, OW) with
 * OH = (H + 2 padding - dilation (KH - 1) - 1) / stride + 1, and likewise OW. */
lunet_status lunet_conv2d(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                          const lunet_tensor *bias, const lunet_conv2d_params *params);

typedef struct lunet_pool2d_params {
    int64_t kernel[2], stride[2], padding[2], dilation[2]; /* dilation: max pooling only */
    bool ceil_mode;         /* round the output size up instead of down */
    bool count_include_pad; /* average pooling: padded zeros count in the divisor */
} lunet_pool2d_params;

/* Max over each window of each (N, C) plane; the gradient goes to the first maximum (ties go to
 * the lowest index) and NaN wins, as in PyTorch.  A u8 (quantized) x is pooled too, without
 * a gradient. */
lunet_status lunet_max_pool2d(lunet_tensor **out, const lunet_tensor *x, const lunet_pool2d_params *params);
lunet_status lunet_avg_pool2d(lunet_tensor **out, const lunet_tensor *x, const lunet_pool2d_params *params);
/* Averages over windows that split (H, W) into (out_h, out_w) as evenly as possible. */
lunet_status lunet_adaptive_avg_pool2d(lunet_tensor **out, const lunet_tensor *x, int64_t out_h, int64_t out_w);

/* Batch normalisation over dim 1 of (N, C), (N, C, L) or (N, C, H, W).  Training uses the
 * batch's statistics and, when running_mean/running_var are given, updates them in place:
 * r = (1 - momentum) r + momentum s (the variance unbiased).  Otherwise the running statistics
 * are used.  weight and bias (C) may be NULL (no affine transform). */
lunet_status lunet_batch_norm(lunet_tensor **out, const lunet_tensor *x, lunet_tensor *running_mean,
                              lunet_tensor *running_var, const lunet_tensor *weight, const lunet_tensor *bias,
                              bool training, double momentum, double eps);

lunet_status lunet_leaky_relu(lunet_tensor **out, const lunet_tensor *x, double negative_slope);
/* 0.5 x (1 + erf(x / sqrt 2)), or PyTorch's tanh approximation when tanh_approximation. */
lunet_status lunet_gelu(lunet_tensor **out, const lunet_tensor *x, bool tanh_approximation);
lunet_status lunet_softmax(lunet_tensor **out, const lunet_tensor *x, int dim);
lunet_status lunet_log_softmax(lunet_tensor **out, const lunet_tensor *x, int dim);
/* Zeroes elements with probability p and scales the others by 1 / (1 - p).  The keep/drop mask
 * comes from the default generator, or from mask (any dtype, non-zero = keep, x's shape) when
 * given, which makes the op deterministic for tests. */
lunet_status lunet_dropout(lunet_tensor **out, const lunet_tensor *x, double p, const lunet_tensor *mask);

typedef enum lunet_reduction {
    LUNET_REDUCTION_MEAN = 0,
    LUNET_REDUCTION_SUM,
    LUNET_REDUCTION_NONE
} lunet_reduction;

typedef struct lunet_class_loss_options {
    lunet_reduction reduction;
    const lunet_tensor *weight; /* (C) class weights, or NULL */
    double label_smoothing;     /* cross_entropy only, in [0, 1] */
    bool has_ignore_index;
    int64_t ignore_index; /* a target value that contributes nothing */
} lunet_class_loss_options;

/* Fused log_softmax + negative log likelihood: logits (N, C), targets (N) 0-based class
 * indices (integer dtype).  Mean reduction divides by the summed weights of the targets, and
 * label smoothing mixes in the uniform distribution, both as torch.nn.functional does. */
lunet_status lunet_cross_entropy(lunet_tensor **out, const lunet_tensor *logits, const lunet_tensor *targets,
                                 const lunet_class_loss_options *options);
/* The same on log-probabilities (label_smoothing must be 0). */
lunet_status lunet_nll_loss(lunet_tensor **out, const lunet_tensor *log_probs, const lunet_tensor *targets,
                            const lunet_class_loss_options *options);
/* (input - target)^2 and |input - target|, shapes broadcast; differentiable in both. */
lunet_status lunet_mse_loss(lunet_tensor **out, const lunet_tensor *input, const lunet_tensor *target,
                            lunet_reduction reduction);
lunet_status lunet_l1_loss(lunet_tensor **out, const lunet_tensor *input, const lunet_tensor *target,
                           lunet_reduction reduction);
/* Binary cross-entropy on logits, computed stably; pos_weight (broadcast over the last dim)
 * weighs the positive term, or NULL. */
lunet_status lunet_bce_with_logits(lunet_tensor **out, const lunet_tensor *input, const lunet_tensor *target,
                                   const lunet_tensor *pos_weight, lunet_reduction reduction);

/* ------------------------------------------------------------------------------------------
 * int8: post-training quantization in the layout ONNX Runtime uses.  An activation is u8 with
 * a per-tensor scale and zero point (real = scale (q - zero_point)); a Linear or Conv2d weight
 * is s8, symmetric, with one scale per output channel; a bias is i32 with scale
 * x_scale w_scale[o].  Products accumulate in int32 and are requantized with the float
 * multiplier x_scale w_scale[o] / y_scale, rounding half to even; a fused ReLU is the clamp
 * at the output's zero point.  The answer is defined by plain loops; the fast kernels (AVX2,
 * chosen at run time) give the same bits.  On AVX2 without VNNI the fast kernel needs every
 * pair of neighbouring weights to satisfy |w[2i]| + |w[2i+1]| <= 128, which 7-bit weights
 * (weight_bits 7, in [-63, 63]) always do; other weights run a plain C kernel.
 * ---------------------------------------------------------------------------------------- */

typedef struct lunet_qparams {
    float scale;        /* > 0 */
    int32_t zero_point; /* 0..255 */
} lunet_qparams;

/* The parameters for values in [lo, hi]: the range is widened to hold 0 (so that 0 is
 * exact), scale = (hi - lo) / 255, zero_point = round(-lo / scale).  An empty range gives
 * scale 1, zero point 0. */
lunet_qparams lunet_qparams_for_range(double lo, double hi);
/* Checks that p is usable (finite positive scale, zero point in 0..255); op names the caller. */
lunet_status lunet_qparams_check(lunet_qparams p, const char *op);

/* f32 x -> u8, clamp(round_half_even(x / scale) + zero_point, 0, 255) (QuantizeLinear). */
lunet_status lunet_quantize(lunet_tensor **out, const lunet_tensor *x, lunet_qparams q);
/* u8 q -> f32, (q - zero_point) scale (DequantizeLinear). */
lunet_status lunet_dequantize(lunet_tensor **out, const lunet_tensor *q, lunet_qparams p);
/* Symmetric per-output-channel quantization of a float weight (dim 0 = output channels):
 * scale[o] = max |w[o]| / qmax (1 for an all-zero channel), q = clamp(round(w / scale), -qmax,
 * qmax) with qmax = 2^(bits-1) - 1, bits 7 or 8.  *q is i8 with w's shape, *scale f32 (O). */
lunet_status lunet_quantize_weight(lunet_tensor **q, lunet_tensor **scale, const lunet_tensor *w, int bits);
/* The i32 bias round(b[o] / (x_scale w_scale[o])), saturated to the int32 range. */
lunet_status lunet_quantize_bias(lunet_tensor **out, const lunet_tensor *bias, float x_scale,
                                 const lunet_tensor *w_scale);

/* A quantized Linear or Conv2d layer: weight i8 (O, ...), scale f32 (O), bias i32 (O) or
 * NULL, the output's parameters, and whether a ReLU is fused. */
typedef struct lunet_qlayer_params {
    const lunet_tensor *weight, *scale, *bias;
    lunet_qparams output;
    bool relu;
} lunet_qlayer_params;

/* x u8 (..., in) with parameters xq -> u8 (..., out). */
lunet_status lunet_qlinear(lunet_tensor **out, const lunet_tensor *x, lunet_qparams xq, const lunet_qlayer_params *layer);
/* x u8 (N, C, H, W) -> u8 (N, O, OH, OW); padding reads the input's zero point; groups 1. */
lunet_status lunet_qconv2d(lunet_tensor **out, const lunet_tensor *x, lunet_qparams xq, const lunet_qlayer_params *layer,
                           const lunet_conv2d_params *params);
/* Dynamic int8 Linear: each row of x f32 (..., in) is quantized on the fly with its own
 * range (DynamicQuantizeLinear's rule), multiplied in int32 by weight i8 (out, in) with scale
 * f32 (out), and returned as f32 (..., out) plus the f32 bias (or NULL); relu fuses a ReLU.
 * A row's answer does not depend on the other rows of the batch. */
lunet_status lunet_linear_dynamic(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *weight,
                                  const lunet_tensor *scale, const lunet_tensor *bias, bool relu);

/* ------------------------------------------------------------------------------------------
 * Model graphs: a trained network compiled for inference.  A graph is a fixed list of layers
 * with their own copies of the weights and buffers allocated once; running it calls the
 * same kernels as the ops above with no autograd, no per-layer allocation and nothing from
 * the caller in between.  Building checks every layer against the shape coming into it,
 * so a graph that built runs on any batch of its input shape.
 *
 * Two rewrites make the graph faster than the layers one by one without changing what it
 * computes: an activation that follows a Linear or Conv2d (or another activation) runs in
 * the same pass over that layer's output, and a BatchNorm right after a Linear or Conv2d is
 * folded into its weights and bias (w' = w g / sqrt(v + eps), b' = (b - m) g / sqrt(v + eps)
 * + beta), as inference runtimes do; folding changes the rounding, not the function.
 *
 *     lunet_model *m = NULL;
 *     int64_t sample[3] = {1, 28, 28};
 *     lunet_model_create(&m, LUNET_DTYPE_F32, 3, sample);
 *     lunet_model_add_flatten(m, 1, -1);
 *     lunet_model_add_linear(m, w1, b1);
 *     lunet_model_add_activation(m, LUNET_LAYER_RELU, 0);
 *     lunet_model_add_linear(m, w2, b2);
 *     lunet_model_forward(&logits, m, images);      // (N, 1, 28, 28) -> (N, 10)
 *     lunet_model_free(m);
 * ---------------------------------------------------------------------------------------- */

typedef enum lunet_layer_kind {
    LUNET_LAYER_LINEAR = 0,
    LUNET_LAYER_CONV2D,
    LUNET_LAYER_BATCH_NORM, /* one that could not be folded: a per-channel scale and shift */
    LUNET_LAYER_MAX_POOL2D,
    LUNET_LAYER_AVG_POOL2D,
    LUNET_LAYER_ADAPTIVE_AVG_POOL2D,
    LUNET_LAYER_FLATTEN,
    LUNET_LAYER_RELU,
    LUNET_LAYER_LEAKY_RELU, /* parameter: the negative slope */
    LUNET_LAYER_GELU,       /* parameter: 1 for the tanh approximation, 0 for erf */
    LUNET_LAYER_SIGMOID,
    LUNET_LAYER_TANH,
    LUNET_LAYER_SOFTMAX,
    LUNET_LAYER_LOG_SOFTMAX,
    LUNET_LAYER_QUANTIZE,       /* f32 -> u8 */
    LUNET_LAYER_DEQUANTIZE,     /* u8 -> f32 */
    LUNET_LAYER_QLINEAR,        /* u8 -> u8 */
    LUNET_LAYER_QCONV2D,        /* u8 -> u8 */
    LUNET_LAYER_LINEAR_DYNAMIC, /* f32 -> f32 through int8 */
    LUNET_LAYER_KIND_COUNT
} lunet_layer_kind;

/* "linear", "conv2d", "batch_norm", "max_pool2d", ..., "log_softmax" ("?" outside the enum). */
const char *lunet_layer_kind_name(lunet_layer_kind kind);

typedef struct lunet_model lunet_model;

/* An empty graph for samples of sample_shape (the input's shape without the batch dim,
 * at most LUNET_MAX_DIMS - 1 dims) in dtype (f32 or f64). */
lunet_status lunet_model_create(lunet_model **out, lunet_dtype dtype, int ndim, const int64_t *sample_shape);
void lunet_model_free(lunet_model *model); /* NULL is ignored */

/* Appending layers.  Tensors are copied (any strides); they must have the graph's dtype.
 * On failure the graph is left as it was. */
lunet_status lunet_model_add_linear(lunet_model *model, const lunet_tensor *weight, const lunet_tensor *bias);
lunet_status lunet_model_add_conv2d(lunet_model *model, const lunet_tensor *weight, const lunet_tensor *bias,
                                    const lunet_conv2d_params *params);
/* Evaluation-mode batch normalisation over dim 1 with running statistics mean and var;
 * weight and bias may be NULL (no affine transform). */
lunet_status lunet_model_add_batch_norm(lunet_model *model, const lunet_tensor *mean, const lunet_tensor *var,
                                        const lunet_tensor *weight, const lunet_tensor *bias, double eps);
/* kind is LUNET_LAYER_MAX_POOL2D or LUNET_LAYER_AVG_POOL2D. */
lunet_status lunet_model_add_pool2d(lunet_model *model, lunet_layer_kind kind, const lunet_pool2d_params *params);
lunet_status lunet_model_add_adaptive_avg_pool2d(lunet_model *model, int64_t out_h, int64_t out_w);
/* Merges dims start_dim..end_dim of the (N, ...) activation; start_dim >= 1 (the batch stays). */
lunet_status lunet_model_add_flatten(lunet_model *model, int start_dim, int end_dim);
/* RELU, LEAKY_RELU, GELU, SIGMOID or TANH, with the parameter noted at the enum. */
lunet_status lunet_model_add_activation(lunet_model *model, lunet_layer_kind kind, double parameter);
/* SOFTMAX or LOG_SOFTMAX over dim of the (N, ...) activation; dim is not the batch dim. */
lunet_status lunet_model_add_softmax(lunet_model *model, lunet_layer_kind kind, int dim);

/* int8 layers (see "int8" above).  A quantize layer turns the f32 activation into u8 with
 * parameters q; after it come qlinear and qconv2d layers (a ReLU added after one fuses into its
 * clamp), max pooling and flatten, which keep the activation u8, and a dequantize layer turns
 * it back into f32 (the graph must end in f32).  linear_dynamic is an f32 -> f32 Linear that
 * quantizes each input row on the fly; an activation after it fuses as usual.  Quantized
 * graphs have dtype f32. */
lunet_status lunet_model_add_quantize(lunet_model *model, lunet_qparams q);
lunet_status lunet_model_add_dequantize(lunet_model *model);
/* weight i8 (out, in), scale f32 (out), bias i32 (out) or NULL; output: the u8 result's
 * parameters; relu fuses a ReLU (as adding one after the layer does). */
lunet_status lunet_model_add_qlinear(lunet_model *model, const lunet_qlayer_params *layer);
lunet_status lunet_model_add_qconv2d(lunet_model *model, const lunet_qlayer_params *layer,
                                     const lunet_conv2d_params *params);
/* weight i8 (out, in), scale f32 (out), bias f32 (out) or NULL. */
lunet_status lunet_model_add_linear_dynamic(lunet_model *model, const lunet_tensor *weight, const lunet_tensor *scale,
                                            const lunet_tensor *bias);

/* The input's dtype and sample shape, and the output's sample shape (borrowed). */
lunet_dtype lunet_model_dtype(const lunet_model *model);
const int64_t *lunet_model_input_shape(const lunet_model *model, int *ndim);
const int64_t *lunet_model_output_shape(const lunet_model *model, int *ndim);
/* The layers as run, after fusing and folding: count and kinds, and the activation fused
 * into layer i (LUNET_LAYER_KIND_COUNT for none). */
size_t lunet_model_layer_count(const lunet_model *model);
lunet_layer_kind lunet_model_layer_kind(const lunet_model *model, size_t i);
lunet_layer_kind lunet_model_layer_activation(const lunet_model *model, size_t i);

/* Runs the graph on x (N, sample_shape...), any strides, the graph's dtype; *out is a new
 * (N, output_shape...) tensor that does not require grad.  Batches larger than the graph's
 * buffers run in slices of LUNET_MODEL_MAX_BATCH.  One call at a time per graph: its
 * buffers are shared (give each thread its own graph). */
#define LUNET_MODEL_MAX_BATCH 256
lunet_status lunet_model_forward(lunet_tensor **out, lunet_model *model, const lunet_tensor *x);
/* The same on raw memory: input holds batch samples and output receives batch outputs, both
 * contiguous in the graph's dtype.  This is the server's entry point. */
lunet_status lunet_model_run(lunet_model *model, const void *input, int64_t batch, void *output);

/* ------------------------------------------------------------------------------------------
 * Optimizers: one call updates every parameter in place (with grad mode ignored), the way
 * torch.optim does it.  params[i] must be a contiguous float tensor; parameters whose grad is
 * NULL are skipped.  State tensors (same shape and dtype as their parameter, contiguous) are
 * owned by the caller and start as zeros; step counts from 1.  The formulas are PyTorch's
 * (torch.optim, 1.13), so a run can be compared with it update for update.
 * ---------------------------------------------------------------------------------------- */

typedef struct lunet_sgd_options {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
} lunet_sgd_options;

/* momentum_buffers may be NULL when momentum is 0; at step 1 a buffer takes the gradient. */
lunet_status lunet_sgd_step(lunet_tensor *const *params, lunet_tensor *const *momentum_buffers, size_t n,
                            int64_t step, const lunet_sgd_options *options);

typedef struct lunet_adam_options {
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad;
    bool decoupled_weight_decay; /* AdamW: decay the weights directly, not through the gradient */
    bool maximize;
} lunet_adam_options;

/* max_exp_avg_sq is used only with amsgrad (may be NULL otherwise). */
lunet_status lunet_adam_step(lunet_tensor *const *params, lunet_tensor *const *exp_avg,
                             lunet_tensor *const *exp_avg_sq, lunet_tensor *const *max_exp_avg_sq, size_t n,
                             int64_t step, const lunet_adam_options *options);

typedef struct lunet_rmsprop_options {
    double lr, alpha, eps, weight_decay, momentum;
    bool centered, maximize;
} lunet_rmsprop_options;

/* momentum_buffers are used when momentum > 0 and grad_avg when centered (else may be NULL). */
lunet_status lunet_rmsprop_step(lunet_tensor *const *params, lunet_tensor *const *square_avg,
                                lunet_tensor *const *momentum_buffers, lunet_tensor *const *grad_avg, size_t n,
                                const lunet_rmsprop_options *options);

/* Scales the gradients so that their joint p-norm (norm_type p > 0, or INFINITY) is at most
 * max_norm, as torch.nn.utils.clip_grad_norm_; *total_norm receives the norm before. */
lunet_status lunet_clip_grad_norm(double *total_norm, lunet_tensor *const *params, size_t n, double max_norm,
                                  double norm_type);

/* ------------------------------------------------------------------------------------------
 * Data files.  Readers check every size against the file before allocating and report a bad
 * file as LUNET_ERR_FORMAT (or LUNET_ERR_IO) with the path and the problem in the message.
 * ---------------------------------------------------------------------------------------- */

/* An IDX file (the MNIST format), gzip-compressed or not (detected from the first bytes):
 * u8, i8, i32, f32 and f64 payloads keep their dtype, i16 becomes i32; the shape is the
 * file's. */
lunet_status lunet_idx_read(lunet_tensor **out, const char *path);

typedef struct lunet_csv_options {
    char delimiter;      /* ',' when 0 */
    int64_t skip_rows;   /* lines skipped at the top (a header) */
    lunet_dtype dtype;   /* F32 or F64 */
} lunet_csv_options;

/* A CSV file of numbers as a (rows, columns) tensor; every row must have the same number of
 * fields.  Empty lines are skipped. */
lunet_status lunet_csv_read(lunet_tensor **out, const char *path, const lunet_csv_options *options);

/* ------------------------------------------------------------------------------------------
 * safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets":
 * [begin, end]}, ..., "__metadata__": {"key": "value"}}, then the raw little-endian data.
 * The reader checks every length, offset and shape (overflow-checked) against the file
 * before allocating, and reports a bad file as LUNET_ERR_FORMAT naming the path and the
 * problem; it never trusts a size it has not checked.
 * ---------------------------------------------------------------------------------------- */

typedef struct lunet_named_tensor {
    const char *name;
    const lunet_tensor *tensor;
} lunet_named_tensor;

typedef struct lunet_string_pair {
    const char *key, *value;
} lunet_string_pair;

/* Writes the tensors (any strides; stored contiguous) and the metadata to path atomically:
 * a temporary file in the same directory is written, fsync'd and renamed over path, so a
 * crash leaves either the old file or the new one.  Names must be unique and non-empty. */
lunet_status lunet_safetensors_write(const char *path, const lunet_named_tensor *tensors, size_t n_tensors,
                                     const lunet_string_pair *metadata, size_t n_metadata);

/* Writes n bytes to path the same way (temporary file, fsync, rename, directory fsync): what
 * the ONNX exporter and checkpoints use for files that are not safetensors. */
lunet_status lunet_write_file_atomic(const char *path, const void *bytes, size_t n);

/* A file read into memory: its tensors (in file order) and metadata. */
typedef struct lunet_safetensors lunet_safetensors;

lunet_status lunet_safetensors_read(lunet_safetensors **out, const char *path);
size_t lunet_safetensors_count(const lunet_safetensors *file);
const char *lunet_safetensors_name(const lunet_safetensors *file, size_t i);       /* borrowed */
const lunet_tensor *lunet_safetensors_tensor(const lunet_safetensors *file, size_t i); /* borrowed */
size_t lunet_safetensors_metadata_count(const lunet_safetensors *file);
const char *lunet_safetensors_metadata_key(const lunet_safetensors *file, size_t i);   /* borrowed */
const char *lunet_safetensors_metadata_value(const lunet_safetensors *file, size_t i); /* borrowed */
/* The value of key, or NULL (borrowed). */
const char *lunet_safetensors_metadata_get(const lunet_safetensors *file, const char *key);
void lunet_safetensors_free(lunet_safetensors *file);

/* ------------------------------------------------------------------------------------------
 * Autograd
 * ---------------------------------------------------------------------------------------- */

/* Grad mode is per thread and on by default; with it off no op records a graph. */
bool lunet_grad_is_enabled(void);
void lunet_grad_set_enabled(bool enabled);

bool lunet_tensor_requires_grad(const lunet_tensor *t);
/* Only leaves (tensors without grad_fn) of a float dtype may change the flag. */
lunet_status lunet_tensor_set_requires_grad(lunet_tensor *t, bool requires_grad);
/* True when t was not produced by a recorded op. */
bool lunet_tensor_is_leaf(const lunet_tensor *t);
/* "MulBackward", or NULL for leaves (borrowed, static). */
const char *lunet_tensor_grad_fn_name(const lunet_tensor *t);
/* The accumulated gradient (borrowed), or NULL. */
lunet_tensor *lunet_tensor_grad(const lunet_tensor *t);
/* Replaces the gradient (grad is retained; NULL clears it).  Shape and dtype must match. */
lunet_status lunet_tensor_set_grad(lunet_tensor *t, const lunet_tensor *grad);
/* Computes gradients of t with respect to every leaf that requires grad and adds them to
 * the leaves' grads.  grad is d(result)/dt; NULL means 1 and needs a one-element t.
 * Without retain_graph the graph's saved tensors are freed and a second backward through
 * it fails. */
lunet_status lunet_tensor_backward(lunet_tensor *t, const lunet_tensor *grad, bool retain_graph);

/* ------------------------------------------------------------------------------------------
 * Threads and memory
 * ---------------------------------------------------------------------------------------- */

/* Sets the threads that BLAS and lunet's own parallel loops use (n >= 1). */
void lunet_set_num_threads(int n);
/* The same for the calling thread alone (n >= 1; 0 returns it to the global setting): a
 * server's event loop, one of several running graphs side by side, asks for 1. */
void lunet_set_thread_num_threads(int n);
/* The threads the calling thread's work uses: its own setting, else the global one. */
int lunet_get_num_threads(void);
/* Which GEMM kernels f32 products use, e.g. "oneDNN avx512_core" (borrowed, static). */
const char *lunet_blas_name(void);

/* Tensor memory comes from a size-bucketed cache so that a steady training loop stops
 * calling malloc after its first step.  LUNET_ALLOC_CACHE=0 in the environment turns the
 * cache off (useful under valgrind). */
typedef struct lunet_alloc_stats {
    uint64_t system_allocs; /* calls that reached the system allocator */
    uint64_t system_frees;
    uint64_t cache_hits;    /* requests served from the cache */
    size_t live_bytes;      /* bytes handed out and not yet returned */
    size_t cached_bytes;    /* bytes held in the cache for reuse */
    size_t cache_limit;     /* the most the cache holds */
    bool cache_enabled;     /* false in sanitizer builds and with LUNET_ALLOC_CACHE=0 */
} lunet_alloc_stats;

void lunet_alloc_get_stats(lunet_alloc_stats *out);
/* Returns cached memory to the system. */
void lunet_alloc_trim(void);
void lunet_alloc_set_cache_limit(size_t bytes);

/* ---- serving -------------------------------------------------------------------------------------- */

/*
 * An HTTP model server on libuv loops (the routes are DESIGN.md's HTTP API).  Create binds the
 * port; start runs the event loops on threads of their own and returns; the thread that
 * created the server then drives it: it adds, replaces and removes models and sets tokens at
 * any time, and waits (lunet_server_wait) for something to do: a change in the files it
 * watches, SIGHUP, or the server's end.  lunet_server_run is start, then waiting for the end.
 * Zero in any option means its default.
 *
 * Draining: the first SIGTERM or SIGINT turns readiness to 503 at once while the server keeps
 * serving for drain_delay_ms (load balancers stop routing to it), then closes the listener;
 * responses from then on say "Connection: close", idle connections get a second, and the
 * server ends once every connection has closed or shutdown_timeout_ms has passed.  A second
 * signal stops it at once.
 *
 *     lunet_server_options o = {.host = "127.0.0.1", .port = 0};
 *     lunet_server *srv;
 *     LUNET_TRY(lunet_server_create(&srv, &o));
 *     printf("listening on %d\n", lunet_server_port(srv));   // the port the system chose
 *     LUNET_TRY(lunet_server_add_model(srv, &model));
 *     lunet_status s = lunet_server_run(srv);
 *     lunet_server_free(srv);
 *
 * Threads: the functions below change what is served (add, remove, set_tokens, count_load) or
 * wait for events (watch, wait); calls within each group must not overlap, and the two groups
 * may run on different threads (they touch different state).  lunet_server_stop is safe from
 * any thread; create, start and free belong to the thread that drives the server.
 */
typedef struct lunet_server lunet_server;

typedef struct lunet_server_options {
    const char *host;             /* address to listen on: "0.0.0.0" */
    int port;                     /* 0 lets the system choose (see lunet_server_port) */
    int max_connections;          /* more are accepted and closed at once: 1024 */
    size_t max_header_bytes;      /* the request line and headers; more: 431. 16 KiB */
    size_t max_body_bytes;        /* more (from Content-Length, before reading): 413. 64 MiB */
    size_t max_write_queue_bytes; /* a connection with more unsent stops being read: 4 MiB */
    int header_timeout_ms;        /* from a request's first byte to its last header: 408. 10 s */
    int body_timeout_ms;          /* from its last header to its last body byte: 408. 30 s */
    int idle_timeout_ms;          /* a keep-alive connection with no request is closed: 60 s */
    bool quiet;                   /* no JSON access-log line per request on stdout */
    int threads;                  /* event loops, each serving its connections on its own graphs: the CPUs */
    int drain_delay_ms;           /* after SIGTERM: readiness 503, still serving, then the listener
                                     closes: 5 s (negative: none) */
    int shutdown_timeout_ms;      /* then the time in-flight requests have to finish: 25 s
                                     (negative: none) */
    bool protect_health;          /* with tokens set, the health paths need one too (any scope) */
} lunet_server_options;

lunet_status lunet_server_create(lunet_server **out, const lunet_server_options *options);
/* The port the server listens on. */
int lunet_server_port(const lunet_server *server);
/* The event loops (threads): each model added brings this many graphs. */
int lunet_server_threads(const lunet_server *server);

/* A model version to serve.  The graphs are lunet_server_threads(server) graphs of one model
 * (lunet_model_run allows one call at a time per graph), so each event loop runs its own; on
 * success the server owns them.  Concurrent requests for the model on one loop are decoded
 * into one batch and run as one forward of at most max_batch_size rows (1 turns batching
 * off): a batch is what arrived together, and it waits for more only when max_queue_delay_us
 * is set.  Zero means the default. */
typedef struct lunet_server_model {
    const char *name;            /* letters, digits, '_', '-', '.': the URL's model name */
    int64_t version;             /* >= 1; a request naming no version gets the newest */
    lunet_model *const *graphs;
    const char *input_name;      /* "input" */
    const char *output_name;     /* "output" */
    int max_batch_size;          /* 64 */
    int64_t max_queue_delay_us;  /* 0: no wait */
    int max_queue_size;          /* requests waiting in one loop's batch beyond which new ones get 503: 1024 */
    const char *const *labels;   /* other names for this version ("stable"), usable wherever a URL */
    int n_labels;                /*   takes a version: up to 8, each a valid name but not all digits */
} lunet_server_model;

/* Serves a model version, or replaces the one of the same name and version.  Each graph runs
 * once on zeros first (warming it), on the calling thread; then the new version is published
 * to every loop at once.  A request routed to a version before it was replaced or removed
 * finishes on it; the version is freed after the last such request. */
lunet_status lunet_server_add_model(lunet_server *server, const lunet_server_model *model);
/* Stops serving a model version (LUNET_ERR_ARG if it is not served). */
lunet_status lunet_server_remove_model(lunet_server *server, const char *name, int64_t version);
/* Counts a load of a version of model name, in lunet_model_loads_total{result="ok"|"error"}. */
void lunet_server_count_load(lunet_server *server, const char *name, bool ok);

/* Bearer tokens.  With tokens set (even none), requests need "Authorization: Bearer <token>"
 * of a token with the route's scope: infer for inference, model metadata and readiness, metrics
 * for /metrics, admin for the repository index (admin also allows the others).  Health paths
 * are open unless protect_health.  No token or an unknown one: 401 with WWW-Authenticate; a
 * token without the scope: 403.  Tokens are compared in constant time.  n < 0 turns auth off. */
enum { LUNET_SCOPE_INFER = 1, LUNET_SCOPE_METRICS = 2, LUNET_SCOPE_ADMIN = 4 };
typedef struct lunet_server_token {
    const char *token;            /* 16 to 256 visible ASCII characters */
    unsigned scopes;              /* LUNET_SCOPE_* or'ed */
} lunet_server_token;

lunet_status lunet_server_set_tokens(lunet_server *server, const lunet_server_token *tokens, int n);

/* Starts the event loops (once per server). */
lunet_status lunet_server_start(lunet_server *server);

typedef enum lunet_server_event {
    LUNET_SERVER_STOPPED,         /* the server has ended (drained, or lunet_server_stop) */
    LUNET_SERVER_TIMEOUT,         /* nothing happened in timeout_ms */
    LUNET_SERVER_CHANGED,         /* a watched path changed (and then nothing for 100 ms) */
    LUNET_SERVER_HANGUP,          /* SIGHUP: reload what you configure from files */
} lunet_server_event;

/* Watches these paths (files or directories; not recursive) from now on, instead of those of
 * the last call.  A path that cannot be watched is skipped, and the call says so (LUNET_ERR_IO)
 * after watching the others: poll for it with a wait timeout. */
lunet_status lunet_server_watch(lunet_server *server, const char *const *paths, int n);
/* Waits for the next event, at most timeout_ms (negative: no limit).  Once the server has
 * stopped, every call says LUNET_SERVER_STOPPED at once. */
lunet_status lunet_server_wait(lunet_server *server, int timeout_ms, lunet_server_event *event);
/* lunet_server_start, then waits until the server stops (HANGUP and CHANGED are ignored). */
lunet_status lunet_server_run(lunet_server *server);
/* Makes the server stop soon, as a second SIGTERM would; safe from any thread. */
void lunet_server_stop(lunet_server *server);
/* Frees the server; one still running is stopped first. */
void lunet_server_free(lunet_server *server);

#ifdef __cplusplus
}
#endif

#endif /* LUNET_H */
