/*
 * join.c: cat and stack.  cat copies each input into its slice of one new tensor; its
 * gradient hands each input the matching slice of the incoming gradient.  Autograd nodes
 * hold at most LUNET__NODE_MAX_INPUTS inputs, so joining more tensors records a chain of
 * nodes over groups (which still gives each input exactly its slice).
 */
#include "internal.h"

#include <string.h>

/* node->iarg[0] = dim, iarg[1 + i] = the offset of input i along dim, iarg[1 + n] the end. */
static lunet_status cat_backward(lunet__node *node, const lunet_tensor *grad, lunet_tensor **grad_in) {
    int dim = (int)node->iarg[0];
    for (int i = 0; i < node->n_inputs; i++) {
        if (!node->inputs[i]) continue;
        lunet_tensor *part;
        LUNET_TRY(lunet_tensor_narrow(&part, grad, dim, node->iarg[1 + i], node->iarg[2 + i] - node->iarg[1 + i]));
        lunet_status s = lunet__contiguous_nograd(&grad_in[i], part);
        lunet_tensor_release(part);
        LUNET_TRY(s);
    }
    return LUNET_OK;
}

/* Joins up to LUNET__NODE_MAX_INPUTS tensors already checked and converted to one dtype. */
static lunet_status cat_group(lunet_tensor **out, const lunet_tensor *const *ts, int n, int dim) {
    int64_t shape[LUNET_MAX_DIMS];
    memcpy(shape, ts[0]->shape, sizeof shape);
    shape[dim] = 0;
    for (int i = 0; i < n; i++) shape[dim] += ts[i]->shape[dim];
    lunet_tensor *o;
    LUNET_TRY(lunet__tensor_new(&o, ts[0]->dtype, ts[0]->ndim, shape, "cat"));
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        int64_t strides[LUNET_MAX_DIMS];
        memcpy(strides, o->strides, sizeof strides);
        lunet_tensor *slice;
        lunet_status s = lunet__tensor_alias(&slice, o, ts[i]->ndim, ts[i]->shape, strides, offset * o->strides[dim]);
        if (s != LUNET_OK) {
            lunet_tensor_release(o);
            return s;
        }
        lunet__copy_cast(slice, ts[i]);
        lunet_tensor_release(slice);
        offset += ts[i]->shape[dim];
    }
    lunet__node *node = NULL;
    LUNET_TRY(lunet__record_or_release(&node, &o, "CatBackward", cat_backward, n, ts));
    if (node) {
        node->iarg[0] = dim;
        int64_t at = 0;
        for (int i = 0; i < n; i++) {
            node->iarg[1 + i] = at;
            at += ts[i]->shape[dim];
        }
        node->iarg[1 + n] = at;
    }
    *out = o;
    return LUNET_OK;
}

lunet_status lunet_tensor_cat(lunet_tensor **out, const lunet_tensor *const *tensors, size_t n, int dim) {
    *out = NULL;
    if (n == 0) return lunet__fail(LUNET_ERR_ARG, "cat: needs at least one tensor");
    const lunet_tensor *first = tensors[0];
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, first->ndim, 0, "cat"));
    lunet_dtype dtype = first->dtype;
    for (size_t i = 1; i < n; i++) {
        const lunet_tensor *t = tensors[i];
        bool fits = t->ndim == first->ndim;
        for (int k = 0; fits && k < t->ndim; k++) fits = k == d || t->shape[k] == first->shape[k];
        if (!fits) {
            char sa[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
            return lunet__fail(LUNET_ERR_SHAPE, "cat: tensor %zu has shape %s, which does not fit %s along dim %d", i + 1,
                               lunet__shape_str(sb, sizeof sb, t), lunet__shape_str(sa, sizeof sa, first), d);
        }
        dtype = lunet__promote_dtypes(dtype, t->dtype);
    }
    /* Convert to the common dtype (recorded, so gradients flow back through the conversion). */
    lunet_tensor **conv = lunet__alloc(n * sizeof *conv);
    if (!conv) return lunet__nomem("cat");
    memset(conv, 0, n * sizeof *conv);
    lunet_status s = LUNET_OK;
    for (size_t i = 0; i < n && s == LUNET_OK; i++) s = lunet_tensor_to(&conv[i], tensors[i], dtype);
    /* Join in groups of at most LUNET__NODE_MAX_INPUTS, then join the groups' results. */
    lunet_tensor *acc = NULL;
    size_t i = 0;
    while (s == LUNET_OK && i < n) {
        const lunet_tensor *group[LUNET__NODE_MAX_INPUTS];
        int k = 0;
        if (acc) group[k++] = acc;
        while (k < LUNET__NODE_MAX_INPUTS && i < n) group[k++] = conv[i++];
        lunet_tensor *joined;
        s = k == 1 ? (joined = lunet_tensor_retain(group[0]), LUNET_OK) : cat_group(&joined, group, k, d);
        lunet_tensor_release(acc);
        acc = s == LUNET_OK ? joined : NULL;
    }
    for (size_t j = 0; j < n; j++) lunet_tensor_release(conv[j]);
    lunet__free(conv, n * sizeof *conv);
    return lunet__hand_over(out, acc, s);
}

lunet_status lunet_tensor_stack(lunet_tensor **out, const lunet_tensor *const *tensors, size_t n, int dim) {
    *out = NULL;
    if (n == 0) return lunet__fail(LUNET_ERR_ARG, "stack: needs at least one tensor");
    int d;
    LUNET_TRY(lunet__normalize_dim(&d, dim, tensors[0]->ndim, 1, "stack"));
    lunet_tensor **expanded = lunet__alloc(n * sizeof *expanded);
    if (!expanded) return lunet__nomem("stack");
    memset(expanded, 0, n * sizeof *expanded);
    lunet_status s = LUNET_OK;
    for (size_t i = 0; i < n && s == LUNET_OK; i++) {
        if (!lunet__same_shape(tensors[i]->ndim, tensors[i]->shape, tensors[0]->ndim, tensors[0]->shape)) {
            char sa[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
            s = lunet__fail(LUNET_ERR_SHAPE, "stack: tensor %zu has shape %s, tensor 1 has %s", i + 1,
                            lunet__shape_str(sb, sizeof sb, tensors[i]), lunet__shape_str(sa, sizeof sa, tensors[0]));
        } else {
            s = lunet_tensor_unsqueeze(&expanded[i], tensors[i], d);
        }
    }
    if (s == LUNET_OK) s = lunet_tensor_cat(out, (const lunet_tensor *const *)expanded, n, d);
    for (size_t i = 0; i < n; i++) lunet_tensor_release(expanded[i]);
    lunet__free(expanded, n * sizeof *expanded);
    return s;
}
