/*
 * optim.c: the optimizer steps (SGD, Adam/AdamW, RMSprop) and gradient-norm clipping, computed
 * the way torch.optim 1.13 computes them.
 *
 * Every entry point makes two passes over the parameters.  The first checks each parameter
 * that has a gradient and its state tensors, so that a bad argument fails before anything is
 * written; the second updates in place with one flat loop per parameter.
 *
 * Rounding follows PyTorch: the scalars that torch.optim computes in Python (bias corrections,
 * step sizes, 1 - beta) are computed here in double and rounded once to the parameter's dtype;
 * the element-wise arithmetic then runs in that dtype, in the order PyTorch's tensor ops apply
 * it (buf.mul_(m).add_(g, alpha=a) is buf * m + a * g, addcdiv_(t1, t2, value=v) is
 * x + v * t1 / t2, ...).  PyTorch's vectorised CPU kernels may fuse a multiply-add where this
 * code rounds twice, so f32 results agree to an ulp or so, not always bit for bit.
 */
#include "internal.h"

#include <math.h>

/* ---- checks shared by the steps ------------------------------------------------------------ */

static lunet_status check_list(const char *op, const char *name, lunet_tensor *const *list, size_t n) {
    if (n > 0 && !list)
        return lunet__fail(LUNET_ERR_ARG, "%s: %s is NULL but %zu parameters were given", op, name, n);
    return LUNET_OK;
}

/* The gradient of params[i] (borrowed) in *grad, or NULL when the parameter has none and is to
 * be skipped.  A gradient set by hand may be a strided view; it is replaced by a contiguous
 * copy here so that the loops can stay flat.  The steps write the parameter itself too, so
 * they ask for it to be contiguous (clipping only touches gradients). */
static lunet_status check_param(lunet_tensor **grad, const char *op, size_t i, lunet_tensor *p,
                                bool written) {
    *grad = NULL;
    if (!p) return lunet__fail(LUNET_ERR_ARG, "%s: params[%zu] is NULL", op, i);
    lunet_tensor *g = lunet_tensor_grad(p);
    if (!g) return LUNET_OK;
    if (!lunet_dtype_is_float(p->dtype))
        return lunet__fail(LUNET_ERR_DTYPE,
                           "%s: params[%zu] has dtype %s; only f32 and f64 parameters can be optimized", op,
                           i, lunet_dtype_name(p->dtype));
    if (written && !lunet_tensor_is_contiguous(p))
        return lunet__fail(LUNET_ERR_ARG,
                           "%s: params[%zu] is not contiguous (optimize the tensor it is a view of)", op, i);
    if (g->dtype != p->dtype || g->numel != p->numel) {
        char sg[LUNET__SHAPE_BUF], sp[LUNET__SHAPE_BUF];
        return lunet__fail(g->dtype != p->dtype ? LUNET_ERR_DTYPE : LUNET_ERR_SHAPE,
                           "%s: params[%zu] is %s %s but its gradient is %s %s", op, i,
                           lunet_dtype_name(p->dtype), lunet__shape_str(sp, sizeof sp, p),
                           lunet_dtype_name(g->dtype), lunet__shape_str(sg, sizeof sg, g));
    }
    if (!lunet_tensor_is_contiguous(g)) {
        lunet_tensor *c;
        LUNET_TRY(lunet_tensor_contiguous(&c, g));
        lunet_status s = lunet_tensor_set_grad(p, c);
        lunet_tensor_release(c);
        LUNET_TRY(s);
        g = lunet_tensor_grad(p);
    }
    *grad = g;
    return LUNET_OK;
}

/* State tensor list[i] of params[i]: present, and contiguous with the parameter's shape and dtype. */
static lunet_status check_state(const char *op, const char *name, lunet_tensor *const *list, size_t i,
                                const lunet_tensor *p) {
    const lunet_tensor *s = list[i];
    if (!s) return lunet__fail(LUNET_ERR_ARG, "%s: %s[%zu] is NULL", op, name, i);
    char ss[LUNET__SHAPE_BUF], sp[LUNET__SHAPE_BUF];
    if (!lunet__same_shape(s->ndim, s->shape, p->ndim, p->shape))
        return lunet__fail(LUNET_ERR_SHAPE, "%s: %s[%zu] has shape %s but params[%zu] has shape %s", op, name,
                           i, lunet__shape_str(ss, sizeof ss, s), i, lunet__shape_str(sp, sizeof sp, p));
    if (s->dtype != p->dtype)
        return lunet__fail(LUNET_ERR_DTYPE, "%s: %s[%zu] has dtype %s but params[%zu] has dtype %s", op, name,
                           i, lunet_dtype_name(s->dtype), i, lunet_dtype_name(p->dtype));
    if (!lunet_tensor_is_contiguous(s))
        return lunet__fail(LUNET_ERR_ARG, "%s: %s[%zu] is not contiguous", op, name, i);
    return LUNET_OK;
}

/* A hyper-parameter that must be a number >= 0 (NaN fails too). */
static lunet_status check_nonnegative(const char *op, const char *name, double v) {
    if (!(v >= 0)) return lunet__fail(LUNET_ERR_ARG, "%s: %s must be >= 0, got %g", op, name, v);
    return LUNET_OK;
}

/* A decay rate (beta, alpha) in [0, 1). */
static lunet_status check_rate(const char *op, const char *name, double v) {
    if (!(v >= 0 && v < 1))
        return lunet__fail(LUNET_ERR_ARG, "%s: %s must be in [0, 1), got %g", op, name, v);
    return LUNET_OK;
}

#define F32_MATH(fn) fn##f
#define F64_MATH(fn) fn

/* torch.maximum: NaN in either operand gives NaN (fmax would drop it). */
#define MAX_NAN(a, b) ((a) != (a) ? (a) : ((b) != (b) || (b) > (a)) ? (b) : (a))

/* Each parameter's update is shared among the threads in the blocks lunet__block gives (see
 * internal.h): the rows of a Linear weight that each worker's GEMMs wrote its gradient for.  A
 * parameter below this many elements per worker is updated on the calling thread. */
#define MIN_ELEMENTS_PER_WORKER ((int64_t)1 << 14)

/* Calls update(job, first, last) on the blocks of n elements, one block per worker. */
static void over_blocks(int64_t n, size_t elem_size, void (*update)(const void *job, int64_t first, int64_t last),
                        const void *job) {
    int workers = lunet__workers_for(n, MIN_ELEMENTS_PER_WORKER);
    if (workers == 1) {
        update(job, 0, n);
        return;
    }
#pragma omp parallel for num_threads(workers) schedule(static, 1)
    for (int w = 0; w < workers; w++) {
        int64_t first, last;
        lunet__block(&first, &last, n, w, workers, 64 / (int64_t)elem_size);
        if (last > first) update(job, first, last);
    }
}

/* Element `first` of tensor t (NULL stays NULL). */
static void *at(const lunet_tensor *t, int64_t first) {
    return t ? lunet__data(t) + (size_t)first * lunet_dtype_size(t->dtype) : NULL;
}

/* ---- SGD ----------------------------------------------------------------------------------------- */

/* One parameter of n elements.  fresh: the momentum buffer starts from this gradient. */
#define SGD_KERNEL(N, T)                                                                                     \
    static void sgd_##N(T *p, const T *grad, T *buf, int64_t n, const lunet_sgd_options *o, bool fresh) {    \
        const T weight_decay = (T)o->weight_decay, momentum = (T)o->momentum;                                \
        const T keep = (T)(1.0 - o->dampening), neg_lr = (T)(-o->lr);                                        \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            T d = o->maximize ? -grad[k] : grad[k];                                                          \
            if (o->weight_decay != 0) d = d + weight_decay * p[k];                                           \
            if (o->momentum != 0) {                                                                          \
                T b = fresh ? d : buf[k] * momentum + keep * d;                                              \
                buf[k] = b;                                                                                  \
                d = o->nesterov ? d + momentum * b : b;                                                      \
            }                                                                                                \
            p[k] = p[k] + neg_lr * d;                                                                        \
        }                                                                                                    \
    }
SGD_KERNEL(F32, float)
SGD_KERNEL(F64, double)
#undef SGD_KERNEL

typedef struct sgd_job {
    const lunet_tensor *p, *g, *buf;
    const lunet_sgd_options *o;
    bool fresh;
} sgd_job;

static void sgd_block(const void *job, int64_t first, int64_t last) {
    const sgd_job *j = job;
    if (j->p->dtype == LUNET_DTYPE_F32)
        sgd_F32(at(j->p, first), at(j->g, first), at(j->buf, first), last - first, j->o, j->fresh);
    else
        sgd_F64(at(j->p, first), at(j->g, first), at(j->buf, first), last - first, j->o, j->fresh);
}

static lunet_status check_sgd_options(const lunet_sgd_options *o) {
    if (!o) return lunet__fail(LUNET_ERR_ARG, "sgd: options is NULL");
    LUNET_TRY(check_nonnegative("sgd", "lr", o->lr));
    LUNET_TRY(check_nonnegative("sgd", "momentum", o->momentum));
    LUNET_TRY(check_nonnegative("sgd", "weight_decay", o->weight_decay));
    if (!isfinite(o->dampening))
        return lunet__fail(LUNET_ERR_ARG, "sgd: dampening must be finite, got %g", o->dampening);
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return lunet__fail(LUNET_ERR_ARG,
                           "sgd: nesterov momentum needs momentum > 0 and dampening 0 "
                           "(got momentum %g, dampening %g)",
                           o->momentum, o->dampening);
    return LUNET_OK;
}

lunet_status lunet_sgd_step(lunet_tensor *const *params, lunet_tensor *const *momentum_buffers, size_t n,
                            int64_t step, const lunet_sgd_options *options) {
    LUNET_TRY(check_sgd_options(options));
    if (step < 1) return lunet__fail(LUNET_ERR_ARG, "sgd: step counts from 1, got %lld", (long long)step);
    LUNET_TRY(check_list("sgd", "params", params, n));
    bool use_buffers = options->momentum != 0;
    if (use_buffers)
        LUNET_TRY(check_list("sgd", "momentum_buffers (needed when momentum != 0)", momentum_buffers, n));
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *g;
        LUNET_TRY(check_param(&g, "sgd", i, params[i], true));
        if (g && use_buffers)
            LUNET_TRY(check_state("sgd", "momentum_buffers", momentum_buffers, i, params[i]));
    }
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *p = params[i], *g = lunet_tensor_grad(p),
                     *buf = use_buffers ? momentum_buffers[i] : NULL;
        if (!g) continue;
        sgd_job job = {p, g, buf, options, step == 1};
        over_blocks(p->numel, lunet_dtype_size(p->dtype), sgd_block, &job);
        lunet_tensor_mark_modified(p);
        if (buf) lunet_tensor_mark_modified(buf);
    }
    return LUNET_OK;
}

/* ---- Adam and AdamW -------------------------------------------------------------------------------- */

/* The step's scalars, computed in double as torch.optim computes them in Python. */
typedef struct adam_scalars {
    double step_size;             /* lr / (1 - beta1^step) */
    double bias_correction2_sqrt; /* sqrt(1 - beta2^step) */
    double decay;                 /* AdamW: the weights are multiplied by 1 - lr * weight_decay */
} adam_scalars;

/* max_sq is NULL unless amsgrad. */
#define ADAM_KERNEL(N, T, M)                                                                                 \
    static void adam_##N(T *p, const T *grad, T *exp_avg, T *exp_avg_sq, T *max_sq, int64_t n,               \
                         const lunet_adam_options *o, const adam_scalars *c) {                               \
        const T beta1 = (T)o->beta1, beta2 = (T)o->beta2, eps = (T)o->eps;                                   \
        const T one_minus_beta1 = (T)(1.0 - o->beta1), one_minus_beta2 = (T)(1.0 - o->beta2);                \
        const T weight_decay = (T)o->weight_decay, decay = (T)c->decay;                                      \
        const T neg_step_size = (T)(-c->step_size), bc2_sqrt = (T)c->bias_correction2_sqrt;                  \
        const bool coupled_decay = !o->decoupled_weight_decay && o->weight_decay != 0;                       \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            T g = o->maximize ? -grad[k] : grad[k];                                                          \
            if (coupled_decay) g = g + weight_decay * p[k];                                                  \
            T x = o->decoupled_weight_decay ? p[k] * decay : p[k];                                           \
            T m = exp_avg[k] * beta1 + one_minus_beta1 * g;                                                  \
            T v = exp_avg_sq[k] * beta2 + one_minus_beta2 * g * g;                                           \
            exp_avg[k] = m;                                                                                  \
            exp_avg_sq[k] = v;                                                                               \
            if (max_sq) {                                                                                    \
                v = MAX_NAN(max_sq[k], v);                                                                   \
                max_sq[k] = v;                                                                               \
            }                                                                                                \
            T denom = M(sqrt)(v) / bc2_sqrt + eps;                                                           \
            p[k] = x + neg_step_size * m / denom;                                                            \
        }                                                                                                    \
    }
ADAM_KERNEL(F32, float, F32_MATH)
ADAM_KERNEL(F64, double, F64_MATH)
#undef ADAM_KERNEL

/* The common case (no maximize, no amsgrad, no L2 penalty through the gradient) without a
 * branch in the loop and with restrict pointers, so the compiler vectorises it: the same
 * operations in the same order as adam_N, hence the same bits (x * 1 is exact when there is
 * no decoupled decay). */
#define ADAM_PLAIN_KERNEL(N, T, M)                                                                           \
    LUNET_VECTORIZED static void adam_plain_##N(T *restrict p, const T *restrict grad, T *restrict exp_avg,  \
                                                T *restrict exp_avg_sq, int64_t n,                           \
                                                const lunet_adam_options *o, const adam_scalars *c) {        \
        const T beta1 = (T)o->beta1, beta2 = (T)o->beta2, eps = (T)o->eps;                                   \
        const T one_minus_beta1 = (T)(1.0 - o->beta1), one_minus_beta2 = (T)(1.0 - o->beta2);                \
        const T decay = o->decoupled_weight_decay ? (T)c->decay : (T)1;                                      \
        const T neg_step_size = (T)(-c->step_size), bc2_sqrt = (T)c->bias_correction2_sqrt;                  \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            T g = grad[k];                                                                                   \
            T m = exp_avg[k] * beta1 + one_minus_beta1 * g;                                                  \
            T v = exp_avg_sq[k] * beta2 + one_minus_beta2 * g * g;                                           \
            exp_avg[k] = m;                                                                                  \
            exp_avg_sq[k] = v;                                                                               \
            T denom = M(sqrt)(v) / bc2_sqrt + eps;                                                           \
            p[k] = p[k] * decay + neg_step_size * m / denom;                                                 \
        }                                                                                                    \
    }
ADAM_PLAIN_KERNEL(F32, float, F32_MATH)
ADAM_PLAIN_KERNEL(F64, double, F64_MATH)
#undef ADAM_PLAIN_KERNEL

typedef struct adam_job {
    const lunet_tensor *p, *g, *m, *v, *vmax;
    const lunet_adam_options *o;
    const adam_scalars *c;
} adam_job;

static void adam_block(const void *job, int64_t first, int64_t last) {
    const adam_job *j = job;
    const lunet_adam_options *o = j->o;
    bool plain = !o->maximize && !j->vmax && (o->decoupled_weight_decay || o->weight_decay == 0);
    bool f32 = j->p->dtype == LUNET_DTYPE_F32;
    void *p = at(j->p, first), *m = at(j->m, first), *v = at(j->v, first), *vmax = at(j->vmax, first);
    const void *g = at(j->g, first);
    int64_t n = last - first;
    if (plain && f32) adam_plain_F32(p, g, m, v, n, o, j->c);
    else if (plain) adam_plain_F64(p, g, m, v, n, o, j->c);
    else if (f32) adam_F32(p, g, m, v, vmax, n, o, j->c);
    else adam_F64(p, g, m, v, vmax, n, o, j->c);
}

static lunet_status check_adam_options(const char *op, const lunet_adam_options *o) {
    if (!o) return lunet__fail(LUNET_ERR_ARG, "%s: options is NULL", op);
    LUNET_TRY(check_nonnegative(op, "lr", o->lr));
    LUNET_TRY(check_rate(op, "beta1", o->beta1));
    LUNET_TRY(check_rate(op, "beta2", o->beta2));
    LUNET_TRY(check_nonnegative(op, "eps", o->eps));
    LUNET_TRY(check_nonnegative(op, "weight_decay", o->weight_decay));
    return LUNET_OK;
}

lunet_status lunet_adam_step(lunet_tensor *const *params, lunet_tensor *const *exp_avg,
                             lunet_tensor *const *exp_avg_sq, lunet_tensor *const *max_exp_avg_sq, size_t n,
                             int64_t step, const lunet_adam_options *options) {
    const char *op = options && options->decoupled_weight_decay ? "adamw" : "adam";
    LUNET_TRY(check_adam_options(op, options));
    if (step < 1) return lunet__fail(LUNET_ERR_ARG, "%s: step counts from 1, got %lld", op, (long long)step);
    LUNET_TRY(check_list(op, "params", params, n));
    LUNET_TRY(check_list(op, "exp_avg", exp_avg, n));
    LUNET_TRY(check_list(op, "exp_avg_sq", exp_avg_sq, n));
    if (options->amsgrad)
        LUNET_TRY(check_list(op, "max_exp_avg_sq (needed with amsgrad)", max_exp_avg_sq, n));
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *g;
        LUNET_TRY(check_param(&g, op, i, params[i], true));
        if (!g) continue;
        LUNET_TRY(check_state(op, "exp_avg", exp_avg, i, params[i]));
        LUNET_TRY(check_state(op, "exp_avg_sq", exp_avg_sq, i, params[i]));
        if (options->amsgrad) LUNET_TRY(check_state(op, "max_exp_avg_sq", max_exp_avg_sq, i, params[i]));
    }
    /* pow(beta, step) in double is Python's beta ** step for the step counts that occur. */
    adam_scalars c = {
        .step_size = options->lr / (1.0 - pow(options->beta1, (double)step)),
        .bias_correction2_sqrt = sqrt(1.0 - pow(options->beta2, (double)step)),
        .decay = 1.0 - options->lr * options->weight_decay,
    };
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *p = params[i], *g = lunet_tensor_grad(p);
        if (!g) continue;
        lunet_tensor *m = exp_avg[i], *v = exp_avg_sq[i], *vmax = options->amsgrad ? max_exp_avg_sq[i] : NULL;
        adam_job job = {p, g, m, v, vmax, options, &c};
        over_blocks(p->numel, lunet_dtype_size(p->dtype), adam_block, &job);
        lunet_tensor_mark_modified(p);
        lunet_tensor_mark_modified(m);
        lunet_tensor_mark_modified(v);
        if (vmax) lunet_tensor_mark_modified(vmax);
    }
    return LUNET_OK;
}

/* ---- RMSprop ----------------------------------------------------------------------------------------- */

/* buf is NULL unless momentum > 0, grad_avg NULL unless centered. */
#define RMSPROP_KERNEL(N, T, M)                                                                              \
    static void rmsprop_##N(T *p, const T *grad, T *square_avg, T *buf, T *grad_avg, int64_t n,              \
                            const lunet_rmsprop_options *o) {                                                \
        const T alpha = (T)o->alpha, one_minus_alpha = (T)(1.0 - o->alpha), eps = (T)o->eps;                 \
        const T weight_decay = (T)o->weight_decay, momentum = (T)o->momentum, neg_lr = (T)(-o->lr);          \
        for (int64_t k = 0; k < n; k++) {                                                                    \
            T g = o->maximize ? -grad[k] : grad[k];                                                          \
            if (o->weight_decay != 0) g = g + weight_decay * p[k];                                           \
            T sq = square_avg[k] * alpha + one_minus_alpha * g * g;                                          \
            square_avg[k] = sq;                                                                              \
            T avg;                                                                                           \
            if (grad_avg) {                                                                                  \
                T ga = grad_avg[k] * alpha + one_minus_alpha * g;                                            \
                grad_avg[k] = ga;                                                                            \
                avg = M(sqrt)(sq + (T)-1 * ga * ga);                                                         \
            } else {                                                                                         \
                avg = M(sqrt)(sq);                                                                           \
            }                                                                                                \
            avg = avg + eps;                                                                                 \
            if (buf) {                                                                                       \
                T b = buf[k] * momentum + g / avg;                                                           \
                buf[k] = b;                                                                                  \
                p[k] = p[k] + neg_lr * b;                                                                    \
            } else {                                                                                         \
                p[k] = p[k] + neg_lr * g / avg;                                                              \
            }                                                                                                \
        }                                                                                                    \
    }
RMSPROP_KERNEL(F32, float, F32_MATH)
RMSPROP_KERNEL(F64, double, F64_MATH)
#undef RMSPROP_KERNEL

typedef struct rmsprop_job {
    const lunet_tensor *p, *g, *sq, *buf, *ga;
    const lunet_rmsprop_options *o;
} rmsprop_job;

static void rmsprop_block(const void *job, int64_t first, int64_t last) {
    const rmsprop_job *j = job;
    if (j->p->dtype == LUNET_DTYPE_F32)
        rmsprop_F32(at(j->p, first), at(j->g, first), at(j->sq, first), at(j->buf, first), at(j->ga, first),
                    last - first, j->o);
    else
        rmsprop_F64(at(j->p, first), at(j->g, first), at(j->sq, first), at(j->buf, first), at(j->ga, first),
                    last - first, j->o);
}

static lunet_status check_rmsprop_options(const lunet_rmsprop_options *o) {
    if (!o) return lunet__fail(LUNET_ERR_ARG, "rmsprop: options is NULL");
    LUNET_TRY(check_nonnegative("rmsprop", "lr", o->lr));
    LUNET_TRY(check_nonnegative("rmsprop", "alpha", o->alpha));
    LUNET_TRY(check_nonnegative("rmsprop", "eps", o->eps));
    LUNET_TRY(check_nonnegative("rmsprop", "weight_decay", o->weight_decay));
    LUNET_TRY(check_nonnegative("rmsprop", "momentum", o->momentum));
    return LUNET_OK;
}

lunet_status lunet_rmsprop_step(lunet_tensor *const *params, lunet_tensor *const *square_avg,
                                lunet_tensor *const *momentum_buffers, lunet_tensor *const *grad_avg,
                                size_t n, const lunet_rmsprop_options *options) {
    LUNET_TRY(check_rmsprop_options(options));
    bool use_buffers = options->momentum > 0, centered = options->centered;
    LUNET_TRY(check_list("rmsprop", "params", params, n));
    LUNET_TRY(check_list("rmsprop", "square_avg", square_avg, n));
    if (use_buffers)
        LUNET_TRY(check_list("rmsprop", "momentum_buffers (needed when momentum > 0)", momentum_buffers, n));
    if (centered) LUNET_TRY(check_list("rmsprop", "grad_avg (needed when centered)", grad_avg, n));
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *g;
        LUNET_TRY(check_param(&g, "rmsprop", i, params[i], true));
        if (!g) continue;
        LUNET_TRY(check_state("rmsprop", "square_avg", square_avg, i, params[i]));
        if (use_buffers)
            LUNET_TRY(check_state("rmsprop", "momentum_buffers", momentum_buffers, i, params[i]));
        if (centered) LUNET_TRY(check_state("rmsprop", "grad_avg", grad_avg, i, params[i]));
    }
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *p = params[i], *g = lunet_tensor_grad(p);
        if (!g) continue;
        lunet_tensor *sq = square_avg[i], *buf = use_buffers ? momentum_buffers[i] : NULL;
        lunet_tensor *ga = centered ? grad_avg[i] : NULL;
        rmsprop_job job = {p, g, sq, buf, ga, options};
        over_blocks(p->numel, lunet_dtype_size(p->dtype), rmsprop_block, &job);
        lunet_tensor_mark_modified(p);
        lunet_tensor_mark_modified(sq);
        if (buf) lunet_tensor_mark_modified(buf);
        if (ga) lunet_tensor_mark_modified(ga);
    }
    return LUNET_OK;
}

/* ---- gradient clipping ------------------------------------------------------------------------------ */

/* Adds sum |g|^p (or, for p = inf, raises *acc to max |g|) over one gradient.  Sums run in double
 * whatever the dtype, so that the joint norm of many f32 gradients does not lose digits. */
#define NORM_KERNEL(N, T)                                                                                    \
    static void norm_accumulate_##N(double *acc, const T *g, int64_t n, double p) {                          \
        double a = *acc;                                                                                     \
        if (p == 2) {                                                                                        \
            for (int64_t k = 0; k < n; k++)                                                                  \
                a += (double)g[k] * (double)g[k];                                                            \
        } else if (p == 1) {                                                                                 \
            for (int64_t k = 0; k < n; k++)                                                                  \
                a += fabs((double)g[k]);                                                                     \
        } else if (isinf(p)) {                                                                               \
            for (int64_t k = 0; k < n; k++)                                                                  \
                a = MAX_NAN(a, fabs((double)g[k]));                                                          \
        } else {                                                                                             \
            for (int64_t k = 0; k < n; k++)                                                                  \
                a += pow(fabs((double)g[k]), p);                                                             \
        }                                                                                                    \
        *acc = a;                                                                                            \
    }                                                                                                        \
    static void scale_##N(T *g, int64_t n, T c) {                                                            \
        for (int64_t k = 0; k < n; k++)                                                                      \
            g[k] = g[k] * c;                                                                                 \
    }
NORM_KERNEL(F32, float)
NORM_KERNEL(F64, double)
#undef NORM_KERNEL

lunet_status lunet_clip_grad_norm(double *total_norm, lunet_tensor *const *params, size_t n, double max_norm,
                                  double norm_type) {
    if (total_norm) *total_norm = 0;
    if (!total_norm) return lunet__fail(LUNET_ERR_ARG, "clip_grad_norm: total_norm is NULL");
    if (!(max_norm >= 0))
        return lunet__fail(LUNET_ERR_ARG, "clip_grad_norm: max_norm must be >= 0, got %g", max_norm);
    if (!(norm_type > 0))
        return lunet__fail(LUNET_ERR_ARG, "clip_grad_norm: norm_type must be > 0 (2, 1, inf, ...), got %g",
                           norm_type);
    LUNET_TRY(check_list("clip_grad_norm", "params", params, n));
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *g;
        LUNET_TRY(check_param(&g, "clip_grad_norm", i, params[i], false));
    }
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        const lunet_tensor *g = lunet_tensor_grad(params[i]);
        if (!g) continue;
        if (g->dtype == LUNET_DTYPE_F32)
            norm_accumulate_F32(&acc, (const float *)lunet__data(g), g->numel, norm_type);
        else
            norm_accumulate_F64(&acc, (const double *)lunet__data(g), g->numel, norm_type);
    }
    double total = isinf(norm_type) ? acc
                   : norm_type == 1 ? acc
                   : norm_type == 2 ? sqrt(acc)
                                    : pow(acc, 1 / norm_type);
    *total_norm = total;
    /* torch.clamp(max_norm / (total + 1e-6), max=1): a NaN norm scales to NaN, as in PyTorch. */
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1.0) return LUNET_OK; /* scaling by exactly 1 changes nothing */
    for (size_t i = 0; i < n; i++) {
        lunet_tensor *g = lunet_tensor_grad(params[i]);
        if (!g) continue;
        if (g->dtype == LUNET_DTYPE_F32)
            scale_F32((float *)lunet__data(g), g->numel, (float)coef);
        else
            scale_F64((double *)lunet__data(g), g->numel, coef);
        lunet_tensor_mark_modified(g);
    }
    return LUNET_OK;
}
