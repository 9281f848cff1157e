/*
 * view.c: copies, dtype conversions and views, with their gradients.
 * A view shares its input's storage and differs only in shape, strides and offset; its
 * gradient maps the incoming gradient back onto the input's geometry.
 */
#include "internal.h"

#include <string.h>

/* Records node name/backward on out when t needs a gradient; on failure releases out. */
static lunet_status record_unary(lunet_tensor **out, lunet_tensor *o, const lunet_tensor *t,
                                 const char *name, lunet__backward_fn backward, lunet__node **node) {
    const lunet_tensor *inputs[1] = {t};
    lunet__node *n = NULL;
    lunet_status s = lunet__record(&n, o, name, backward, 1, inputs);
    if (s != LUNET_OK) {
        lunet_tensor_release(o);
        *out = NULL;
        return s;
    }
    if (node) *node = n;
    *out = o;
    return LUNET_OK;
}

/* ---- copies and conversions ------------------------------------------------------------------ */

static lunet_status identity_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    (void)node;
    grad_in[0] = lunet_tensor_retain(g);
    return LUNET_OK;
}

static lunet_status copy_to_new(lunet_tensor **out, const lunet_tensor *t, lunet_dtype dtype, const char *op) {
    LUNET_TRY(lunet__tensor_new(out, dtype, t->ndim, t->shape, op));
    lunet__copy_cast(*out, t);
    return LUNET_OK;
}

lunet_status lunet_tensor_clone(lunet_tensor **out, const lunet_tensor *t) {
    lunet_tensor *o;
    LUNET_TRY(copy_to_new(&o, t, t->dtype, "clone"));
    return record_unary(out, o, t, "CloneBackward", identity_backward, NULL);
}

lunet_status lunet_tensor_contiguous(lunet_tensor **out, const lunet_tensor *t) {
    if (lunet_tensor_is_contiguous(t)) {
        *out = lunet_tensor_retain(t);
        return LUNET_OK;
    }
    lunet_tensor *o;
    LUNET_TRY(copy_to_new(&o, t, t->dtype, "contiguous"));
    return record_unary(out, o, t, "ContiguousBackward", identity_backward, NULL);
}

static lunet_status to_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    return lunet_tensor_to(&grad_in[0], g, node->inputs[0]->dtype);
}

lunet_status lunet_tensor_to(lunet_tensor **out, const lunet_tensor *t, lunet_dtype dtype) {
    *out = NULL;
    if ((unsigned)dtype >= LUNET_DTYPE_COUNT)
        return lunet__fail(LUNET_ERR_DTYPE, "to: invalid dtype %d", (int)dtype);
    if (dtype == t->dtype) {
        *out = lunet_tensor_retain(t);
        return LUNET_OK;
    }
    lunet_tensor *o;
    LUNET_TRY(copy_to_new(&o, t, dtype, "to"));
    if (!lunet_dtype_is_float(dtype)) { /* integer results never carry gradients */
        *out = o;
        return LUNET_OK;
    }
    return record_unary(out, o, t, "ToBackward", to_backward, NULL);
}

lunet_status lunet_tensor_detach(lunet_tensor **out, const lunet_tensor *t) {
    return lunet__tensor_alias(out, t, t->ndim, t->shape, t->strides, t->offset);
}

/* ---- reshaping -------------------------------------------------------------------------------- */

/* Resolves one -1 entry and checks the element count. */
static lunet_status infer_shape(int64_t *shape, int ndim, const int64_t *requested, const lunet_tensor *t,
                                const char *op) {
    char sr[LUNET__SHAPE_BUF], st[LUNET__SHAPE_BUF];
    if (ndim < 0 || ndim > LUNET_MAX_DIMS)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: %d dims requested, at most %d are supported", op, ndim,
                           LUNET_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = requested[i];
        if (requested[i] == -1) {
            if (infer >= 0) return lunet__fail(LUNET_ERR_SHAPE, "%s: only one dim can be -1", op);
            infer = i;
        } else if (requested[i] < 0) {
            return lunet__fail(LUNET_ERR_SHAPE, "%s: invalid size %lld in %s", op, (long long)requested[i],
                               lunet_shape_format(sr, sizeof sr, ndim, requested));
        } else if (__builtin_mul_overflow(known, requested[i], &known)) {
            return lunet__fail(LUNET_ERR_SHAPE, "%s: the number of elements of %s overflows", op,
                               lunet_shape_format(sr, sizeof sr, ndim, requested));
        }
    }
    if (infer >= 0 && known != 0 && t->numel % known == 0) shape[infer] = t->numel / known;
    if ((infer >= 0 && (known == 0 || t->numel % known != 0)) || lunet__numel(ndim, shape) != t->numel)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: shape %s is invalid for a tensor of %lld elements (%s)", op,
                           lunet_shape_format(sr, sizeof sr, ndim, requested), (long long)t->numel,
                           lunet__shape_str(st, sizeof st, t));
    return LUNET_OK;
}

/* Strides that let t be seen with new_shape without copying, if any exist.  Dims of t are
 * grouped into runs that are contiguous with each other; each run must map onto a run of
 * the new dims with the same element count. */
static bool view_strides(int64_t *new_strides, const lunet_tensor *t, int new_ndim, const int64_t *new_shape) {
    if (t->numel <= 1 || t->ndim == 0) {
        lunet__contiguous_strides(new_strides, new_ndim, new_shape);
        return true;
    }
    int view_d = new_ndim - 1;
    int64_t chunk_stride = t->strides[t->ndim - 1], tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        bool run_ends = d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tensor_numel * chunk_stride);
        if (!run_ends) continue;
        while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
            new_strides[view_d] = view_numel * chunk_stride;
            view_numel *= new_shape[view_d];
            view_d--;
        }
        if (view_numel != tensor_numel) return false;
        if (d > 0) {
            chunk_stride = t->strides[d - 1];
            tensor_numel = view_numel = 1;
        }
    }
    return view_d == -1;
}

static lunet_status reshape_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *in = node->inputs[0];
    return lunet_tensor_reshape(&grad_in[0], g, in->ndim, in->shape);
}

static lunet_status reshape_impl(lunet_tensor **out, const lunet_tensor *t, int ndim, const int64_t *requested,
                                 bool may_copy, const char *op) {
    *out = NULL;
    int64_t shape[LUNET_MAX_DIMS], strides[LUNET_MAX_DIMS];
    LUNET_TRY(infer_shape(shape, ndim, requested, t, op));
    lunet_tensor *o;
    if (view_strides(strides, t, ndim, shape)) {
        LUNET_TRY(lunet__tensor_alias(&o, t, ndim, shape, strides, t->offset));
    } else if (may_copy) {
        /* Copy into a fresh contiguous tensor of t's shape, then relabel its geometry: a
         * contiguous buffer can take any shape with the same element count. */
        LUNET_TRY(lunet__tensor_new(&o, t->dtype, t->ndim, t->shape, op));
        lunet__copy_cast(o, t);
        o->ndim = ndim;
        memcpy(o->shape, shape, (size_t)ndim * sizeof *shape);
        lunet__contiguous_strides(o->strides, ndim, shape);
    } else {
        char sr[LUNET__SHAPE_BUF], st[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_SHAPE,
                           "view: a %s tensor with these strides cannot be viewed as %s without "
                           "copying (use reshape)",
                           lunet__shape_str(st, sizeof st, t), lunet_shape_format(sr, sizeof sr, ndim, shape));
    }
    return record_unary(out, o, t, "ViewBackward", reshape_backward, NULL);
}

lunet_status lunet_tensor_view(lunet_tensor **out, const lunet_tensor *t, int ndim, const int64_t *shape) {
    return reshape_impl(out, t, ndim, shape, false, "view");
}

lunet_status lunet_tensor_reshape(lunet_tensor **out, const lunet_tensor *t, int ndim, const int64_t *shape) {
    return reshape_impl(out, t, ndim, shape, true, "reshape");
}

lunet_status lunet_tensor_flatten(lunet_tensor **out, const lunet_tensor *t, int start_dim, int end_dim) {
    *out = NULL;
    if (t->ndim == 0) {
        int64_t one = 1;
        return lunet_tensor_reshape(out, t, 1, &one);
    }
    int s, e;
    LUNET_TRY(lunet__normalize_dim(&s, start_dim, t->ndim, 0, "flatten"));
    LUNET_TRY(lunet__normalize_dim(&e, end_dim, t->ndim, 0, "flatten"));
    if (s > e) return lunet__fail(LUNET_ERR_ARG, "flatten: start_dim %d comes after end_dim %d", start_dim, end_dim);
    int64_t shape[LUNET_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < s; d++) shape[n++] = t->shape[d];
    shape[n] = 1;
    for (int d = s; d <= e; d++) shape[n] *= t->shape[d];
    n++;
    for (int d = e + 1; d < t->ndim; d++) shape[n++] = t->shape[d];
    return lunet_tensor_reshape(out, t, n, shape);
}

/* ---- dims: transpose, permute, squeeze, unsqueeze ------------------------------------------------ */

static lunet_status permute_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    int inverse[LUNET_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) inverse[node->iarg[i]] = i;
    return lunet_tensor_permute(&grad_in[0], g, inverse);
}

lunet_status lunet_tensor_permute(lunet_tensor **out, const lunet_tensor *t, const int *dims) {
    *out = NULL;
    int64_t shape[LUNET_MAX_DIMS], strides[LUNET_MAX_DIMS];
    int perm[LUNET_MAX_DIMS];
    bool seen[LUNET_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        LUNET_TRY(lunet__normalize_dim(&perm[i], dims[i], t->ndim, 0, "permute"));
        if (seen[perm[i]])
            return lunet__fail(LUNET_ERR_ARG, "permute: dim %d appears twice", dims[i]);
        seen[perm[i]] = true;
        shape[i] = t->shape[perm[i]];
        strides[i] = t->strides[perm[i]];
    }
    lunet_tensor *o;
    LUNET_TRY(lunet__tensor_alias(&o, t, t->ndim, shape, strides, t->offset));
    lunet__node *node = NULL;
    LUNET_TRY(record_unary(out, o, t, "PermuteBackward", permute_backward, &node));
    if (node)
        for (int i = 0; i < t->ndim; i++) node->iarg[i] = perm[i];
    return LUNET_OK;
}

lunet_status lunet_tensor_transpose(lunet_tensor **out, const lunet_tensor *t, int dim0, int dim1) {
    *out = NULL;
    int d0, d1;
    LUNET_TRY(lunet__normalize_dim(&d0, dim0, t->ndim, 0, "transpose"));
    LUNET_TRY(lunet__normalize_dim(&d1, dim1, t->ndim, 0, "transpose"));
    int perm[LUNET_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return lunet_tensor_permute(out, t, perm);
}

lunet_status lunet_tensor_squeeze(lunet_tensor **out, const lunet_tensor *t, int dim) {
    *out = NULL;
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, t->ndim, 0, "squeeze"));
    int64_t shape[LUNET_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d || t->shape[i] != 1) shape[n++] = t->shape[i];
    return lunet_tensor_view(out, t, n, shape);
}

lunet_status lunet_tensor_squeeze_all(lunet_tensor **out, const lunet_tensor *t) {
    int64_t shape[LUNET_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) shape[n++] = t->shape[i];
    return lunet_tensor_view(out, t, n, shape);
}

lunet_status lunet_tensor_unsqueeze(lunet_tensor **out, const lunet_tensor *t, int dim) {
    *out = NULL;
    int d;
    if (t->ndim >= LUNET_MAX_DIMS)
        return lunet__fail(LUNET_ERR_SHAPE, "unsqueeze: a tensor has at most %d dims", LUNET_MAX_DIMS);
    LUNET_TRY(lunet__normalize_dim(&d, dim, t->ndim, 1, "unsqueeze"));
    int64_t shape[LUNET_MAX_DIMS];
    for (int i = 0, n = 0; i <= t->ndim; i++) shape[i] = i == d ? 1 : t->shape[n++];
    return lunet_tensor_view(out, t, t->ndim + 1, shape);
}

/* ---- expand --------------------------------------------------------------------------------- */

static lunet_status expand_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *in = node->inputs[0];
    return lunet__sum_to_shape(&grad_in[0], g, in->ndim, in->shape);
}

lunet_status lunet_tensor_expand(lunet_tensor **out, const lunet_tensor *t, int ndim, const int64_t *requested) {
    *out = NULL;
    char st[LUNET__SHAPE_BUF], sr[LUNET__SHAPE_BUF];
    if (ndim < t->ndim || ndim > LUNET_MAX_DIMS)
        return lunet__fail(LUNET_ERR_SHAPE, "expand: %s cannot be expanded to %s (fewer dims)",
                           lunet__shape_str(st, sizeof st, t), lunet_shape_format(sr, sizeof sr, ndim, requested));
    int64_t shape[LUNET_MAX_DIMS], strides[LUNET_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t want = requested[i];
        if (i < lead) {
            if (want < 0)
                return lunet__fail(LUNET_ERR_SHAPE, "expand: new leading dim %d needs a size, not %lld", i,
                                   (long long)want);
            shape[i] = want;
            strides[i] = 0;
            continue;
        }
        int64_t have = t->shape[i - lead];
        if (want == -1 || want == have) {
            shape[i] = have;
            strides[i] = t->strides[i - lead];
        } else if (have == 1 && want >= 0) {
            shape[i] = want;
            strides[i] = 0;
        } else {
            return lunet__fail(LUNET_ERR_SHAPE, "expand: %s cannot be expanded to %s: dim %d has size %lld, not 1",
                               lunet__shape_str(st, sizeof st, t), lunet_shape_format(sr, sizeof sr, ndim, requested),
                               i - lead, (long long)have);
        }
    }
    lunet_tensor *o;
    LUNET_TRY(lunet__tensor_alias(&o, t, ndim, shape, strides, t->offset));
    return record_unary(out, o, t, "ExpandBackward", expand_backward, NULL);
}

/* ---- narrow, slice, select -------------------------------------------------------------------- */

typedef enum { CUT_SLICE, CUT_SELECT } cut_kind;

/* The gradient of a cut is the incoming gradient placed into zeros of the input's shape, at
 * the same place the forward cut from: the forward op itself, run on the zeros, finds it. */
static lunet_status cut_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *in = node->inputs[0];
    lunet_tensor *zeros, *region = NULL;
    LUNET_TRY(lunet_tensor_zeros(&zeros, g->dtype, in->ndim, in->shape));
    int dim = (int)node->iarg[0];
    lunet_status s = node->iarg[4] == CUT_SELECT
                         ? lunet_tensor_select(&region, zeros, dim, node->iarg[1])
                         : lunet_tensor_slice(&region, zeros, dim, node->iarg[1], node->iarg[2], node->iarg[3]);
    if (s == LUNET_OK) s = lunet_tensor_copy(region, g);
    lunet_tensor_release(region);
    if (s != LUNET_OK) {
        lunet_tensor_release(zeros);
        return s;
    }
    grad_in[0] = zeros;
    return LUNET_OK;
}

static lunet_status record_cut(lunet_tensor **out, lunet_tensor *o, const lunet_tensor *t, const char *name,
                               int dim, int64_t a, int64_t b, int64_t step, cut_kind kind) {
    lunet__node *node = NULL;
    LUNET_TRY(record_unary(out, o, t, name, cut_backward, &node));
    if (node) {
        node->iarg[0] = dim;
        node->iarg[1] = a;
        node->iarg[2] = b;
        node->iarg[3] = step;
        node->iarg[4] = kind;
    }
    return LUNET_OK;
}

lunet_status lunet_tensor_slice(lunet_tensor **out, const lunet_tensor *t, int dim, int64_t start,
                                int64_t stop, int64_t step) {
    *out = NULL;
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, t->ndim, 0, "slice"));
    if (step <= 0) return lunet__fail(LUNET_ERR_ARG, "slice: step must be positive, got %lld", (long long)step);
    int64_t size = t->shape[d];
    /* Python's rules: negative positions count from the end, then clamp to [0, size]. */
    if (start < 0) start += size;
    if (stop < 0) stop += size;
    start = start < 0 ? 0 : (start > size ? size : start);
    stop = stop < start ? start : (stop > size ? size : stop);
    int64_t shape[LUNET_MAX_DIMS], strides[LUNET_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    shape[d] = (stop - start + step - 1) / step;
    strides[d] = t->strides[d] * step;
    lunet_tensor *o;
    LUNET_TRY(lunet__tensor_alias(&o, t, t->ndim, shape, strides, t->offset + start * t->strides[d]));
    return record_cut(out, o, t, "SliceBackward", d, start, stop, step, CUT_SLICE);
}

lunet_status lunet_tensor_narrow(lunet_tensor **out, const lunet_tensor *t, int dim, int64_t start, int64_t length) {
    *out = NULL;
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, t->ndim, 0, "narrow"));
    int64_t size = t->shape[d], s = start < 0 ? start + size : start;
    if (s < 0 || length < 0 || s > size || length > size - s)
        return lunet__fail(LUNET_ERR_INDEX,
                           "narrow: start %lld and length %lld do not fit dim %d of size %lld",
                           (long long)start, (long long)length, dim, (long long)size);
    return lunet_tensor_slice(out, t, d, s, s + length, 1);
}

lunet_status lunet_tensor_select(lunet_tensor **out, const lunet_tensor *t, int dim, int64_t index) {
    *out = NULL;
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, t->ndim, 0, "select"));
    int64_t size = t->shape[d], i = index < 0 ? index + size : index;
    if (i < 0 || i >= size)
        return lunet__fail(LUNET_ERR_INDEX, "select: index %lld out of range for dim %d of size %lld",
                           (long long)index, dim, (long long)size);
    int64_t shape[LUNET_MAX_DIMS], strides[LUNET_MAX_DIMS];
    for (int k = 0, n = 0; k < t->ndim; k++) {
        if (k == d) continue;
        shape[n] = t->shape[k];
        strides[n++] = t->strides[k];
    }
    lunet_tensor *o;
    LUNET_TRY(lunet__tensor_alias(&o, t, t->ndim - 1, shape, strides, t->offset + i * t->strides[d]));
    return record_cut(out, o, t, "SelectBackward", d, i, 0, 0, CUT_SELECT);
}
