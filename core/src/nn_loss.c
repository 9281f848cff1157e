/*
 * nn_loss.c: classification and regression losses.
 *
 * cross_entropy fuses log-softmax and the negative log likelihood: one pass computes each
 * row's log-sum-exp and its loss, and the backward is a closed form (softmax minus the
 * smoothed target), never materialising log-probabilities for autograd.  Label smoothing,
 * class weights, ignore_index and the mean's denominator follow torch.nn.functional:
 *   loss_i = (1 - e) * w[t_i] * -logp[i, t_i] + (e / C) * sum_j w[j] * -logp[i, j]
 * and "mean" divides the sum by sum_i w[t_i] over the rows that are not ignored.
 */
#include "internal.h"

#include <math.h>

typedef struct class_loss {
    int64_t n, c;
    double smoothing;
    const int64_t *targets; /* 0-based, n entries */
    const double *weight;   /* c entries, or NULL for all ones */
    bool has_ignore;
    int64_t ignore;
} class_loss;

static double class_weight(const class_loss *L, int64_t j) { return L->weight ? L->weight[j] : 1.0; }
static bool ignored(const class_loss *L, int64_t i) { return L->has_ignore && L->targets[i] == L->ignore; }

/* Per-row losses (n) and the mean's denominator; log_probs says whether x already holds
 * log-probabilities (nll_loss) or logits (cross_entropy). */
#define CLASS_LOSS_KERNELS(T)                                                              \
    static double class_loss_forward_##T(double *row_loss, const T *x, const class_loss *L, bool log_probs) { \
        double denominator = 0;                                                            \
        for (int64_t i = 0; i < L->n; i++) {                                               \
            const T *row = x + i * L->c;                                                   \
            if (ignored(L, i)) {                                                           \
                row_loss[i] = 0;                                                           \
                continue;                                                                  \
            }                                                                              \
            double lse = 0;                                                                \
            if (!log_probs) {                                                              \
                double mx = -INFINITY, sum = 0;                                            \
                for (int64_t j = 0; j < L->c; j++) mx = row[j] > mx ? row[j] : mx;         \
                for (int64_t j = 0; j < L->c; j++) sum += exp((double)row[j] - mx);        \
                lse = mx + log(sum);                                                       \
            }                                                                              \
            int64_t t = L->targets[i];                                                     \
            double nll = -class_weight(L, t) * ((double)row[t] - lse), smooth = 0;         \
            if (L->smoothing > 0)                                                          \
                for (int64_t j = 0; j < L->c; j++) smooth -= class_weight(L, j) * ((double)row[j] - lse); \
            row_loss[i] = (1 - L->smoothing) * nll + L->smoothing / (double)L->c * smooth; \
            denominator += class_weight(L, t);                                             \
        }                                                                                  \
        return denominator;                                                                \
    }                                                                                      \
    /* dx (n, c) for upstream row gradients scale[i] (already divided for the mean). */   \
    static void class_loss_backward_##T(T *dx, const T *x, const double *scale, const class_loss *L, bool log_probs) { \
        double weight_sum = 0;                                                             \
        for (int64_t j = 0; j < L->c; j++) weight_sum += class_weight(L, j);               \
        for (int64_t i = 0; i < L->n; i++) {                                               \
            const T *row = x + i * L->c;                                                   \
            T *d = dx + i * L->c;                                                          \
            int64_t t = L->targets[i];                                                     \
            if (ignored(L, i)) {                                                           \
                for (int64_t j = 0; j < L->c; j++) d[j] = 0;                               \
                continue;                                                                  \
            }                                                                              \
            double e = L->smoothing, wt = class_weight(L, t), s = scale[i];                \
            if (log_probs) { /* d/dlogp: -(1-e) w_t [j == t] - (e/C) w_j */                \
                for (int64_t j = 0; j < L->c; j++)                                         \
                    d[j] = (T)(s * (-(1 - e) * wt * (j == t) - e / (double)L->c * class_weight(L, j))); \
                continue;                                                                  \
            }                                                                              \
            double mx = -INFINITY, sum = 0;                                                \
            for (int64_t j = 0; j < L->c; j++) mx = row[j] > mx ? row[j] : mx;             \
            for (int64_t j = 0; j < L->c; j++) sum += exp((double)row[j] - mx);            \
            double lse = mx + log(sum);                                                    \
            /* d/dx_j: (1-e) w_t (p_j - [j == t]) + (e/C) (p_j sum_k w_k - w_j) */        \
            for (int64_t j = 0; j < L->c; j++) {                                           \
                double p = exp((double)row[j] - lse);                                      \
                d[j] = (T)(s * ((1 - e) * wt * (p - (j == t)) + e / (double)L->c * (p * weight_sum - class_weight(L, j)))); \
            }                                                                              \
        }                                                                                  \
    }
CLASS_LOSS_KERNELS(float)
CLASS_LOSS_KERNELS(double)

/* ---- shared plumbing for cross_entropy and nll_loss ------------------------------------------- */

/* The saved pieces: 0 contiguous input, 1 targets (i64), 2 weights (f64) or nothing.
 * iarg: 0 reduction, 1 log_probs, 2 has_ignore, 3 ignore; farg: 0 smoothing, 1 denominator. */
static class_loss loss_from_node(const lunet__node *node) {
    const lunet_tensor *x = node->saved[0];
    return (class_loss){x->shape[0], x->shape[1], node->farg[0], lunet_tensor_data(node->saved[1]),
                        node->saved[2] ? lunet_tensor_data(node->saved[2]) : NULL, node->iarg[2] != 0, node->iarg[3]};
}

static lunet_status class_loss_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->saved[0];
    class_loss L = loss_from_node(node);
    lunet_reduction reduction = (lunet_reduction)node->iarg[0];
    double *scale = lunet__alloc((size_t)(L.n ? L.n : 1) * sizeof(double));
    if (!scale) return lunet__nomem("backward");
    lunet_tensor *g = NULL;
    lunet_status s = lunet_tensor_to(&g, grad, LUNET_DTYPE_F64);
    lunet_tensor *gc = NULL;
    if (s == LUNET_OK) s = lunet__contiguous_nograd(&gc, g);
    if (s == LUNET_OK) {
        const double *gv = lunet_tensor_data(gc);
        for (int64_t i = 0; i < L.n; i++)
            scale[i] = reduction == LUNET_REDUCTION_NONE ? gv[i] : reduction == LUNET_REDUCTION_SUM ? gv[0] : gv[0] / node->farg[1];
        s = lunet__tensor_new(&grad_in[0], x->dtype, 2, x->shape, "backward");
    }
    if (s == LUNET_OK) {
        if (x->dtype == LUNET_DTYPE_F32) class_loss_backward_float(lunet_tensor_data(grad_in[0]), lunet_tensor_data(x), scale, &L, node->iarg[1]);
        else class_loss_backward_double(lunet_tensor_data(grad_in[0]), lunet_tensor_data(x), scale, &L, node->iarg[1]);
    }
    lunet__free(scale, (size_t)(L.n ? L.n : 1) * sizeof(double));
    lunet_tensor_release(g);
    lunet_tensor_release(gc);
    return s;
}

static lunet_status class_loss_op(lunet_tensor **out, const lunet_tensor *x, const lunet_tensor *targets,
                                  const lunet_class_loss_options *o, bool log_probs, const char *op) {
    *out = NULL;
    char sx[LUNET__SHAPE_BUF], st[LUNET__SHAPE_BUF];
    lunet_class_loss_options defaults = {0};
    if (!o) o = &defaults;
    if (!lunet_dtype_is_float(x->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: input must be f32 or f64, not %s", op, lunet_dtype_name(x->dtype));
    if (x->ndim != 2)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: input must be (N, C), got %s", op, lunet__shape_str(sx, sizeof sx, x));
    if (targets->ndim != 1 || targets->shape[0] != x->shape[0] || lunet_dtype_is_float(targets->dtype))
        return lunet__fail(LUNET_ERR_SHAPE, "%s: targets must be %lld class indices (a 1-d integer tensor), got %s %s", op,
                           (long long)x->shape[0], lunet_dtype_name(targets->dtype), lunet__shape_str(st, sizeof st, targets));
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1) || (log_probs && o->label_smoothing != 0))
        return lunet__fail(LUNET_ERR_ARG, "%s: label_smoothing must be in [0, 1]%s", op, log_probs ? " and 0 for nll_loss" : "");
    if ((unsigned)o->reduction > LUNET_REDUCTION_NONE) return lunet__fail(LUNET_ERR_ARG, "%s: unknown reduction", op);
    int64_t n = x->shape[0], c = x->shape[1];
    if (o->weight && (o->weight->ndim != 1 || o->weight->shape[0] != c))
        return lunet__fail(LUNET_ERR_SHAPE, "%s: weight must have one entry per class (%lld)", op, (long long)c);
    lunet_tensor *xc = NULL, *t = NULL, *w = NULL, *rows = NULL, *result = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) { /* the targets and weights as contiguous i64 / f64 copies */
        lunet_tensor *tmp = NULL;
        bool was = lunet_grad_is_enabled();
        lunet_grad_set_enabled(false);
        s = lunet_tensor_to(&tmp, targets, LUNET_DTYPE_I64);
        if (s == LUNET_OK) s = lunet_tensor_contiguous(&t, tmp);
        lunet_tensor_release(tmp);
        tmp = NULL;
        if (s == LUNET_OK && o->weight) s = lunet_tensor_to(&tmp, o->weight, LUNET_DTYPE_F64);
        if (s == LUNET_OK && o->weight) s = lunet_tensor_contiguous(&w, tmp);
        lunet_tensor_release(tmp);
        lunet_grad_set_enabled(was);
    }
    if (s == LUNET_OK) {
        const int64_t *tv = lunet_tensor_data(t);
        for (int64_t i = 0; i < n && s == LUNET_OK; i++)
            if (!(o->has_ignore_index && tv[i] == o->ignore_index) && (tv[i] < 0 || tv[i] >= c))
                s = lunet__fail(LUNET_ERR_INDEX, "%s: target %lld of row %lld is out of range for %lld classes", op,
                                (long long)tv[i], (long long)i, (long long)c);
    }
    class_loss L = {n, c, o->label_smoothing, t ? lunet_tensor_data(t) : NULL, w ? lunet_tensor_data(w) : NULL,
                    o->has_ignore_index, o->ignore_index};
    double denominator = 0;
    if (s == LUNET_OK) s = lunet__tensor_new(&rows, LUNET_DTYPE_F64, 1, &n, op);
    if (s == LUNET_OK) {
        if (x->dtype == LUNET_DTYPE_F32) denominator = class_loss_forward_float(lunet_tensor_data(rows), lunet_tensor_data(xc), &L, log_probs);
        else denominator = class_loss_forward_double(lunet_tensor_data(rows), lunet_tensor_data(xc), &L, log_probs);
        /* the result in the input's dtype: per row, or reduced in double */
        const double *r = lunet_tensor_data(rows);
        if (o->reduction == LUNET_REDUCTION_NONE) {
            s = lunet__tensor_new(&result, x->dtype, 1, &n, op);
            for (int64_t i = 0; s == LUNET_OK && i < n; i++)
                lunet__store_f64(lunet__data(result) + (size_t)i * lunet_dtype_size(x->dtype), x->dtype, r[i]);
        } else {
            double total = 0;
            for (int64_t i = 0; i < n; i++) total += r[i];
            if (o->reduction == LUNET_REDUCTION_MEAN) total /= denominator;
            s = lunet_tensor_full(&result, x->dtype, 0, NULL, total);
        }
    }
    lunet_tensor_release(rows);
    lunet__node *node = NULL;
    if (s == LUNET_OK)
        s = lunet__record_or_release(&node, &result, log_probs ? "NllLossBackward" : "CrossEntropyBackward",
                                     class_loss_backward, 1, &x);
    if (s == LUNET_OK && node) {
        node->iarg[0] = o->reduction;
        node->iarg[1] = log_probs;
        node->iarg[2] = o->has_ignore_index;
        node->iarg[3] = o->ignore_index;
        node->farg[0] = o->label_smoothing;
        node->farg[1] = denominator;
        s = lunet__save_all(node, 3, (const lunet_tensor *[]){xc, t, w});
    }
    lunet_tensor_release(xc);
    lunet_tensor_release(t);
    lunet_tensor_release(w);
    return lunet__hand_over(out, result, s);
}

lunet_status lunet_cross_entropy(lunet_tensor **out, const lunet_tensor *logits, const lunet_tensor *targets,
                                 const lunet_class_loss_options *options) {
    return class_loss_op(out, logits, targets, options, false, "cross_entropy");
}

lunet_status lunet_nll_loss(lunet_tensor **out, const lunet_tensor *log_probs, const lunet_tensor *targets,
                            const lunet_class_loss_options *options) {
    return class_loss_op(out, log_probs, targets, options, true, "nll_loss");
}

/* ---- regression losses ------------------------------------------------------------------------------ */

static lunet_status reduce(lunet_tensor **out, lunet_tensor *per_element, lunet_reduction reduction) {
    if (reduction == LUNET_REDUCTION_NONE) {
        *out = per_element;
        return LUNET_OK;
    }
    lunet_status s = reduction == LUNET_REDUCTION_SUM ? lunet_tensor_sum_all(out, per_element)
                                                      : lunet_tensor_mean_all(out, per_element);
    lunet_tensor_release(per_element);
    return s;
}

static lunet_status check_regression(const lunet_tensor *input, const lunet_tensor *target, lunet_reduction r,
                                     const char *op) {
    if (!lunet_dtype_is_float(input->dtype) || !lunet_dtype_is_float(target->dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: input and target must be f32 or f64, got %s and %s", op,
                           lunet_dtype_name(input->dtype), lunet_dtype_name(target->dtype));
    if ((unsigned)r > LUNET_REDUCTION_NONE) return lunet__fail(LUNET_ERR_ARG, "%s: unknown reduction", op);
    return LUNET_OK;
}

/* Composed from recorded ops: the gradients of sub, pow and abs are the loss's own. */
lunet_status lunet_mse_loss(lunet_tensor **out, const lunet_tensor *input, const lunet_tensor *target,
                            lunet_reduction reduction) {
    *out = NULL;
    LUNET_TRY(check_regression(input, target, reduction, "mse_loss"));
    lunet_tensor *diff = NULL, *two = NULL, *sq = NULL;
    lunet_status s = lunet_tensor_sub(&diff, input, target);
    if (s == LUNET_OK) s = lunet_tensor_full(&two, input->dtype, 0, NULL, 2.0);
    if (s == LUNET_OK) s = lunet_tensor_pow(&sq, diff, two);
    lunet_tensor_release(diff);
    lunet_tensor_release(two);
    if (s != LUNET_OK) return s;
    return reduce(out, sq, reduction);
}

lunet_status lunet_l1_loss(lunet_tensor **out, const lunet_tensor *input, const lunet_tensor *target,
                           lunet_reduction reduction) {
    *out = NULL;
    LUNET_TRY(check_regression(input, target, reduction, "l1_loss"));
    lunet_tensor *diff = NULL, *abs = NULL;
    lunet_status s = lunet_tensor_sub(&diff, input, target);
    if (s == LUNET_OK) s = lunet_tensor_abs(&abs, diff);
    lunet_tensor_release(diff);
    if (s != LUNET_OK) return s;
    return reduce(out, abs, reduction);
}

/* ---- binary cross-entropy on logits ------------------------------------------------------------------ */

/* With q = 1 + (pw - 1) y:  loss = (1 - y) x + q (log(1 + exp(-|x|)) + max(-x, 0)),
 * which never exponentiates a positive number, and d loss / dx = q sigmoid(x) - pw y.
 * The target is data here: it gets no gradient. */
#define BCE_KERNEL(T)                                                                      \
    static void bce_##T(T *out, const T *x, const T *y, const T *pw, int64_t n, int64_t last, bool grad, const T *g, \
                        int64_t g_stride) {                                                \
        for (int64_t i = 0; i < n; i++) {                                                  \
            double v = x[i], t = y[i], w = pw ? (double)pw[i % last] : 1.0, q = 1 + (w - 1) * t; \
            if (grad) {                                                                    \
                double sig = v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));           \
                out[i] = (T)((q * sig - w * t) * (double)g[i * g_stride]);                 \
            } else {                                                                       \
                out[i] = (T)((1 - t) * v + q * (log1p(exp(-fabs(v))) + (v < 0 ? -v : 0))); \
            }                                                                              \
        }                                                                                  \
    }
BCE_KERNEL(float)
BCE_KERNEL(double)

/* saved: 0 input, 1 target (broadcast, contiguous), 2 pos_weight or nothing; iarg[0] reduction. */
static lunet_status bce_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    const lunet_tensor *x = node->saved[0], *y = node->saved[1], *pw = node->saved[2];
    lunet_reduction reduction = (lunet_reduction)node->iarg[0];
    lunet_tensor *g = NULL, *scaled = NULL;
    lunet_status s = lunet__contiguous_nograd(&g, grad);
    if (s == LUNET_OK && reduction == LUNET_REDUCTION_MEAN) { /* the mean's 1/n, folded into g */
        double v = lunet__load_f64(lunet__data(g), g->dtype) / (double)(x->numel ? x->numel : 1);
        s = lunet_tensor_full(&scaled, g->dtype, 0, NULL, v);
    }
    if (s == LUNET_OK) s = lunet__tensor_new(&grad_in[0], x->dtype, x->ndim, x->shape, "backward");
    if (s == LUNET_OK) {
        const lunet_tensor *gg = scaled ? scaled : g;
        int64_t stride = reduction == LUNET_REDUCTION_NONE ? 1 : 0, last = x->ndim ? x->shape[x->ndim - 1] : 1;
        if (x->dtype == LUNET_DTYPE_F32)
            bce_float(lunet_tensor_data(grad_in[0]), lunet_tensor_data(x), lunet_tensor_data(y), pw ? lunet_tensor_data(pw) : NULL,
                      x->numel, last, true, lunet_tensor_data(gg), stride);
        else
            bce_double(lunet_tensor_data(grad_in[0]), lunet_tensor_data(x), lunet_tensor_data(y), pw ? lunet_tensor_data(pw) : NULL,
                       x->numel, last, true, lunet_tensor_data(gg), stride);
    }
    lunet_tensor_release(g);
    lunet_tensor_release(scaled);
    return s;
}

lunet_status lunet_bce_with_logits(lunet_tensor **out, const lunet_tensor *input, const lunet_tensor *target,
                                   const lunet_tensor *pos_weight, lunet_reduction reduction) {
    *out = NULL;
    LUNET_TRY(check_regression(input, target, reduction, "bce_with_logits"));
    char si[LUNET__SHAPE_BUF], st[LUNET__SHAPE_BUF];
    if (!lunet__same_shape(input->ndim, input->shape, target->ndim, target->shape))
        return lunet__fail(LUNET_ERR_SHAPE, "bce_with_logits: target %s must have the input's shape %s",
                           lunet__shape_str(st, sizeof st, target), lunet__shape_str(si, sizeof si, input));
    int64_t last = input->ndim ? input->shape[input->ndim - 1] : 1;
    if (pos_weight && (pos_weight->ndim != 1 || pos_weight->shape[0] != last))
        return lunet__fail(LUNET_ERR_SHAPE, "bce_with_logits: pos_weight must have %lld entries (the input's last dim)",
                           (long long)last);
    lunet_tensor *xc = NULL, *yc = NULL, *pc = NULL, *per = NULL, *result = NULL;
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false);
    lunet_status s = lunet_tensor_contiguous(&xc, input);
    lunet_tensor *tmp = NULL;
    if (s == LUNET_OK) s = lunet_tensor_to(&tmp, target, input->dtype);
    if (s == LUNET_OK) s = lunet_tensor_contiguous(&yc, tmp);
    lunet_tensor_release(tmp);
    tmp = NULL;
    if (s == LUNET_OK && pos_weight) s = lunet_tensor_to(&tmp, pos_weight, input->dtype);
    if (s == LUNET_OK && pos_weight) s = lunet_tensor_contiguous(&pc, tmp);
    lunet_tensor_release(tmp);
    if (s == LUNET_OK) s = lunet__tensor_new(&per, input->dtype, input->ndim, input->shape, "bce_with_logits");
    if (s == LUNET_OK) {
        if (input->dtype == LUNET_DTYPE_F32)
            bce_float(lunet_tensor_data(per), lunet_tensor_data(xc), lunet_tensor_data(yc), pc ? lunet_tensor_data(pc) : NULL,
                      input->numel, last, false, NULL, 0);
        else
            bce_double(lunet_tensor_data(per), lunet_tensor_data(xc), lunet_tensor_data(yc), pc ? lunet_tensor_data(pc) : NULL,
                       input->numel, last, false, NULL, 0);
        s = reduce(&result, per, reduction);
        per = NULL;
    }
    lunet_grad_set_enabled(was);
    lunet__node *node = NULL;
    if (s == LUNET_OK) s = lunet__record_or_release(&node, &result, "BceWithLogitsBackward", bce_backward, 1, &input);
    if (s == LUNET_OK && node) {
        node->iarg[0] = reduction;
        s = lunet__save_all(node, 3, (const lunet_tensor *[]){xc, yc, pc});
    }
    lunet_tensor_release(xc);
    lunet_tensor_release(yc);
    lunet_tensor_release(pc);
    return lunet__hand_over(out, result, s);
}
