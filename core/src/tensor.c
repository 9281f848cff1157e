/*
 * tensor.c: storage and tensor life cycle, properties, element access, fill and copy.
 *
 * Ownership: a tensor owns one reference to its storage, its grad and its grad_fn node; a
 * node owns references to its inputs and saved tensors.  Releasing the last reference of a
 * long autograd chain would recurse once per link, so releases go through a per-thread
 * queue that the outermost call drains in a loop.
 */
#include "internal.h"

#include <string.h>

/* ---- release queue ------------------------------------------------------------------------ */

static _Thread_local struct {
    bool draining;
    lunet_tensor *tensors;
    lunet__node *nodes;
} release_queue;

static void storage_release(lunet_storage *s) {
    if (s && atomic_fetch_sub(&s->refcount, 1) == 1) {
        lunet__free(s->data, s->nbytes);
        lunet__free(s, sizeof *s);
    }
}

static void destroy_node(lunet__node *node) {
    for (int i = 0; i < LUNET__NODE_MAX_INPUTS; i++) lunet_tensor_release(node->inputs[i]);
    for (int i = 0; i < LUNET__NODE_MAX_SAVED; i++) lunet_tensor_release(node->saved[i]);
    lunet_tensor_release(node->grad_accum);
    lunet__free(node, sizeof *node);
}

static void destroy_tensor(lunet_tensor *t) {
    storage_release(t->storage);
    lunet_tensor_release(t->grad);
    lunet__node_release(t->grad_fn);
    lunet__free(t, sizeof *t);
}

static void drain_release_queue(void) {
    release_queue.draining = true;
    while (release_queue.tensors || release_queue.nodes) {
        if (release_queue.tensors) {
            lunet_tensor *t = release_queue.tensors;
            release_queue.tensors = t->release_next;
            destroy_tensor(t);
        } else {
            lunet__node *n = release_queue.nodes;
            release_queue.nodes = n->release_next;
            destroy_node(n);
        }
    }
    release_queue.draining = false;
}

void lunet_tensor_release(lunet_tensor *t) {
    if (!t || atomic_fetch_sub(&t->refcount, 1) != 1) return;
    t->release_next = release_queue.tensors;
    release_queue.tensors = t;
    if (!release_queue.draining) drain_release_queue();
}

void lunet__node_release(lunet__node *node) {
    if (!node || atomic_fetch_sub(&node->refcount, 1) != 1) return;
    node->release_next = release_queue.nodes;
    release_queue.nodes = node;
    if (!release_queue.draining) drain_release_queue();
}

lunet_tensor *lunet_tensor_retain(const lunet_tensor *t) {
    lunet_tensor *m = (lunet_tensor *)t; /* the refcount is the one mutable part of an input */
    if (m) atomic_fetch_add(&m->refcount, 1);
    return m;
}

/* ---- construction ----------------------------------------------------------------------- */

lunet_status lunet__check_shape(const char *op, int ndim, const int64_t *shape, lunet_dtype dtype) {
    if (ndim < 0 || ndim > LUNET_MAX_DIMS)
        return lunet__fail(LUNET_ERR_SHAPE, "%s: %d dims requested, at most %d are supported", op,
                           ndim, LUNET_MAX_DIMS);
    if ((unsigned)dtype >= LUNET_DTYPE_COUNT)
        return lunet__fail(LUNET_ERR_DTYPE, "%s: invalid dtype %d", op, (int)dtype);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lunet__fail(LUNET_ERR_SHAPE, "%s: negative size %lld in dim %d", op,
                               (long long)shape[i], i);
        if (__builtin_mul_overflow(n, shape[i], &n))
            return lunet__fail(LUNET_ERR_SHAPE, "%s: the number of elements overflows", op);
    }
    int64_t bytes;
    if (__builtin_mul_overflow(n, (int64_t)lunet_dtype_size(dtype), &bytes))
        return lunet__fail(LUNET_ERR_SHAPE, "%s: the size in bytes overflows", op);
    return LUNET_OK;
}

static lunet_tensor *tensor_header(lunet_dtype dtype, int ndim, const int64_t *shape) {
    lunet_tensor *t = lunet__alloc(sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    atomic_init(&t->refcount, 1);
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = lunet__numel(ndim, shape);
    return t;
}

lunet_status lunet__tensor_new(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape, const char *op) {
    *out = NULL;
    LUNET_TRY(lunet__check_shape(op, ndim, shape, dtype));
    lunet_tensor *t = tensor_header(dtype, ndim, shape);
    lunet_storage *s = lunet__alloc(sizeof *s);
    size_t nbytes = (size_t)t->numel * lunet_dtype_size(dtype);
    void *data = t && s ? lunet__alloc(nbytes) : NULL;
    if (!data) {
        lunet__free(s, sizeof *s);
        lunet__free(t, sizeof *t);
        return lunet__nomem(op);
    }
    atomic_init(&s->refcount, 1);
    atomic_init(&s->version, 0);
    s->nbytes = nbytes;
    s->data = data;
    t->storage = s;
    lunet__contiguous_strides(t->strides, ndim, shape);
    *out = t;
    return LUNET_OK;
}

lunet_status lunet__tensor_alias(lunet_tensor **out, const lunet_tensor *src, int ndim,
                                 const int64_t *shape, const int64_t *strides, int64_t offset) {
    *out = NULL;
    lunet_tensor *t = tensor_header(src->dtype, ndim, shape);
    if (!t) return lunet__nomem("view");
    if (ndim) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    t->offset = offset;
    t->storage = src->storage;
    atomic_fetch_add(&t->storage->refcount, 1);
    *out = t;
    return LUNET_OK;
}

/* ---- properties --------------------------------------------------------------------------- */

int lunet_tensor_ndim(const lunet_tensor *t) { return t->ndim; }
const int64_t *lunet_tensor_shape(const lunet_tensor *t) { return t->shape; }
const int64_t *lunet_tensor_strides(const lunet_tensor *t) { return t->strides; }
int64_t lunet_tensor_numel(const lunet_tensor *t) { return t->numel; }
lunet_dtype lunet_tensor_dtype(const lunet_tensor *t) { return t->dtype; }
void *lunet_tensor_data(const lunet_tensor *t) { return lunet__data(t); }
size_t lunet_tensor_storage_nbytes(const lunet_tensor *t) { return t->storage->nbytes; }
bool lunet_tensor_shares_storage(const lunet_tensor *a, const lunet_tensor *b) { return a->storage == b->storage; }
void lunet_tensor_mark_modified(lunet_tensor *t) { atomic_fetch_add(&t->storage->version, 1); }

unsigned lunet_tensor_version(const lunet_tensor *t) { return atomic_load(&t->storage->version); }

bool lunet_tensor_is_contiguous(const lunet_tensor *t) {
    if (t->numel == 0) return true; /* no element is out of place, as in PyTorch */
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != expected) return false;
        expected *= t->shape[i];
    }
    return true;
}

lunet_status lunet__normalize_dim(int *out, int dim, int ndim, int ndim_plus, const char *op) {
    int n = ndim + ndim_plus;
    int d = dim < 0 ? dim + n : dim;
    if (d < 0 || d >= n || (n == 0)) {
        return lunet__fail(LUNET_ERR_INDEX, "%s: dim %d out of range for a %d-d tensor", op, dim,
                           ndim);
    }
    *out = d;
    return LUNET_OK;
}

lunet_status lunet__check_inplace(lunet_tensor *t, const char *op) {
    if (lunet_grad_is_enabled() && t->requires_grad) {
        if (!t->grad_fn)
            return lunet__fail(LUNET_ERR_AUTOGRAD,
                               "%s: a leaf tensor that requires grad cannot be modified in place "
                               "(do it inside lunet.no_grad)",
                               op);
        return lunet__fail(LUNET_ERR_AUTOGRAD,
                           "%s: in-place change of a tensor that autograd recorded (%s) is not "
                           "supported",
                           op, t->grad_fn->name);
    }
    atomic_fetch_add(&t->storage->version, 1);
    return LUNET_OK;
}

/* ---- elements ----------------------------------------------------------------------------- */

static lunet_status element_address(char **out, const lunet_tensor *t, const int64_t *index,
                                    const char *op) {
    int64_t offset = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t i = index[d] < 0 ? index[d] + t->shape[d] : index[d];
        if (i < 0 || i >= t->shape[d])
            return lunet__fail(LUNET_ERR_INDEX, "%s: index %lld out of range for dim %d of size %lld",
                               op, (long long)index[d], d, (long long)t->shape[d]);
        offset += i * t->strides[d];
    }
    *out = lunet__data(t) + offset * (int64_t)lunet_dtype_size(t->dtype);
    return LUNET_OK;
}

lunet_status lunet_tensor_get_f64(double *out, const lunet_tensor *t, const int64_t *index) {
    char *p;
    LUNET_TRY(element_address(&p, t, index, "get"));
    *out = lunet__load_f64(p, t->dtype);
    return LUNET_OK;
}

lunet_status lunet_tensor_get_i64(int64_t *out, const lunet_tensor *t, const int64_t *index) {
    char *p;
    LUNET_TRY(element_address(&p, t, index, "get"));
    *out = lunet__load_i64(p, t->dtype);
    return LUNET_OK;
}

lunet_status lunet_tensor_set_f64(lunet_tensor *t, const int64_t *index, double value) {
    char *p;
    LUNET_TRY(element_address(&p, t, index, "set"));
    LUNET_TRY(lunet__check_inplace(t, "set"));
    lunet__store_f64(p, t->dtype, value);
    return LUNET_OK;
}

lunet_status lunet_tensor_set_i64(lunet_tensor *t, const int64_t *index, int64_t value) {
    char *p;
    LUNET_TRY(element_address(&p, t, index, "set"));
    LUNET_TRY(lunet__check_inplace(t, "set"));
    lunet__store_i64(p, t->dtype, value);
    return LUNET_OK;
}

static lunet_status check_one_element(const lunet_tensor *t) {
    if (t->numel != 1) {
        char s[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_SHAPE,
                           "item: a tensor of shape %s has %lld elements, item needs exactly one",
                           lunet__shape_str(s, sizeof s, t), (long long)t->numel);
    }
    return LUNET_OK;
}

lunet_status lunet_tensor_item_f64(double *out, const lunet_tensor *t) {
    LUNET_TRY(check_one_element(t));
    *out = lunet__load_f64(lunet__data(t), t->dtype);
    return LUNET_OK;
}

lunet_status lunet_tensor_item_i64(int64_t *out, const lunet_tensor *t) {
    LUNET_TRY(check_one_element(t));
    *out = lunet__load_i64(lunet__data(t), t->dtype);
    return LUNET_OK;
}

/* ---- fill and copy ------------------------------------------------------------------------ */

#define FILL_ROW(N, T, U)                                                                  \
    static void fill_row_##N(char *const *p, const int64_t *s, int64_t n, const void *ctx) { \
        const T v = *(const T *)ctx;                                                       \
        if (s[0] == sizeof(T)) {                                                           \
            T *restrict o = (T *)p[0];                                                     \
            for (int64_t k = 0; k < n; k++) o[k] = v;                                      \
        } else {                                                                           \
            for (int64_t k = 0; k < n; k++) *(T *)(p[0] + k * s[0]) = v;                   \
        }                                                                                  \
    }
LUNET__FOR_EACH_DTYPE(FILL_ROW)
#undef FILL_ROW

static const lunet__row_fn fill_rows[LUNET_DTYPE_COUNT] = {
#define FILL_ENTRY(N, T, U) [LUNET_DTYPE_##N] = fill_row_##N,
    LUNET__FOR_EACH_DTYPE(FILL_ENTRY)
#undef FILL_ENTRY
};

static void fill_any(lunet_tensor *t, double value) {
    if (t->numel == 0) return;
    _Alignas(8) char v[8];
    lunet__store_f64(v, t->dtype, value);
    char *base[1] = {lunet__data(t)};
    const int64_t *strides[1] = {t->strides};
    size_t sizes[1] = {lunet_dtype_size(t->dtype)};
    lunet__iter it;
    lunet__iter_init(&it, t->ndim, t->shape, 1, base, strides, sizes);
    lunet__iter_run(&it, fill_rows[t->dtype], v);
}

void lunet__fill_contiguous(lunet_tensor *t, double value) { fill_any(t, value); }

lunet_status lunet_tensor_fill(lunet_tensor *t, double value) {
    LUNET_TRY(lunet__check_inplace(t, "fill"));
    fill_any(t, value);
    return LUNET_OK;
}

lunet_status lunet_tensor_copy(lunet_tensor *dst, const lunet_tensor *src) {
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    LUNET_TRY(lunet__broadcast_shape(&ndim, shape, "copy", dst->ndim, dst->shape, src->ndim,
                                     src->shape));
    if (!lunet__same_shape(ndim, shape, dst->ndim, dst->shape)) {
        char sd[LUNET__SHAPE_BUF], ss[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_SHAPE, "copy: source %s cannot be broadcast to destination %s",
                           lunet__shape_str(ss, sizeof ss, src), lunet__shape_str(sd, sizeof sd, dst));
    }
    LUNET_TRY(lunet__check_inplace(dst, "copy"));
    /* Copying between overlapping views of one storage would read what it already wrote. */
    lunet_tensor *private_src = NULL;
    if (src->storage == dst->storage) {
        bool was = lunet_grad_is_enabled();
        lunet_grad_set_enabled(false);
        lunet_status s = lunet_tensor_clone(&private_src, src);
        lunet_grad_set_enabled(was);
        LUNET_TRY(s);
        src = private_src;
    }
    int64_t strides[LUNET_MAX_DIMS];
    lunet__broadcast_strides(strides, src->ndim, src->shape, src->strides, dst->ndim, dst->shape);
    lunet__copy_cast_strided(dst, lunet__data(src), src->dtype, strides);
    lunet_tensor_release(private_src);
    return LUNET_OK;
}
