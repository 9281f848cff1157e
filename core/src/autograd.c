/*
 * autograd.c: grad mode, graph recording, and the backward engine.
 *
 * The graph is define-by-run: an op that sees an input requiring grad attaches a node to its
 * output (out->grad_fn).  A node holds strong references to the inputs that need gradients,
 * never to its outputs, so the graph has no cycles and is freed with the last tensor that
 * reaches it.  Tensors the backward needs are saved as detached aliases with the storage
 * version at save time; an in-place write in between is reported instead of giving a wrong
 * gradient.
 *
 * backward() collects the nodes reachable from the root, counts for each node how many
 * edges lead into it, then runs nodes in an order where every consumer of a tensor has
 * delivered its gradient before the producer runs (Kahn's algorithm).  Gradients meeting at
 * a node are summed in grad_accum; gradients reaching a leaf are added to leaf->grad.
 */
#include "internal.h"

#include <string.h>

static _Thread_local bool grad_disabled; /* zero-initialised: grad mode starts on */
static atomic_uint backward_epoch;

bool lunet_grad_is_enabled(void) { return !grad_disabled; }
void lunet_grad_set_enabled(bool enabled) { grad_disabled = !enabled; }

bool lunet_tensor_requires_grad(const lunet_tensor *t) { return t->requires_grad; }
bool lunet_tensor_is_leaf(const lunet_tensor *t) { return t->grad_fn == NULL; }
const char *lunet_tensor_grad_fn_name(const lunet_tensor *t) {
    return t->grad_fn ? t->grad_fn->name : NULL;
}
lunet_tensor *lunet_tensor_grad(const lunet_tensor *t) { return t->grad; }

lunet_status lunet_tensor_set_requires_grad(lunet_tensor *t, bool requires_grad) {
    if (t->grad_fn) {
        if (requires_grad) return LUNET_OK;
        return lunet__fail(LUNET_ERR_AUTOGRAD,
                           "requires_grad: only leaf tensors can change it; this one comes from "
                           "%s (use detach())",
                           t->grad_fn->name);
    }
    if (requires_grad && !lunet_dtype_is_float(t->dtype))
        return lunet__fail(LUNET_ERR_DTYPE,
                           "requires_grad: only float tensors can require gradients, not %s",
                           lunet_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return LUNET_OK;
}

lunet_status lunet_tensor_set_grad(lunet_tensor *t, const lunet_tensor *grad) {
    if (grad) {
        char st[LUNET__SHAPE_BUF], sg[LUNET__SHAPE_BUF];
        if (!lunet__same_shape(t->ndim, t->shape, grad->ndim, grad->shape))
            return lunet__fail(LUNET_ERR_SHAPE, "grad: shape %s does not match the tensor's %s",
                               lunet__shape_str(sg, sizeof sg, grad), lunet__shape_str(st, sizeof st, t));
        if (grad->dtype != t->dtype)
            return lunet__fail(LUNET_ERR_DTYPE, "grad: dtype %s does not match the tensor's %s",
                               lunet_dtype_name(grad->dtype), lunet_dtype_name(t->dtype));
        if (grad->requires_grad)
            return lunet__fail(LUNET_ERR_AUTOGRAD, "grad: a gradient must not require grad itself (detach it)");
    }
    lunet_tensor *old = t->grad;
    t->grad = lunet_tensor_retain(grad);
    lunet_tensor_release(old);
    return LUNET_OK;
}

/* ---- recording ---------------------------------------------------------------------------- */

bool lunet__needs_grad(int n, const lunet_tensor *const *inputs) {
    if (grad_disabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

lunet_status lunet__record(lunet__node **node, lunet_tensor *out, const char *name,
                           lunet__backward_fn backward, int n_inputs,
                           const lunet_tensor *const *inputs) {
    *node = NULL;
    if (!lunet__needs_grad(n_inputs, inputs)) return LUNET_OK;
    LUNET_ASSERT(n_inputs <= LUNET__NODE_MAX_INPUTS && out->grad_fn == NULL);
    lunet__node *n = lunet__alloc(sizeof *n);
    if (!n) return lunet__nomem(name);
    memset(n, 0, sizeof *n);
    atomic_init(&n->refcount, 1);
    n->name = name;
    n->backward = backward;
    n->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->requires_grad) n->inputs[i] = lunet_tensor_retain(inputs[i]);
    n->out_dtype = out->dtype;
    n->out_ndim = out->ndim;
    memcpy(n->out_shape, out->shape, sizeof n->out_shape);
    out->grad_fn = n;
    out->requires_grad = true;
    *node = n;
    return LUNET_OK;
}

lunet_status lunet__save(lunet__node *node, int slot, const lunet_tensor *t) {
    LUNET_ASSERT(slot < LUNET__NODE_MAX_SAVED && node->saved[slot] == NULL);
    LUNET_TRY(lunet__tensor_alias(&node->saved[slot], t, t->ndim, t->shape, t->strides, t->offset));
    node->saved_version[slot] = atomic_load(&t->storage->version);
    return LUNET_OK;
}

lunet_status lunet__save_all(lunet__node *node, int n, const lunet_tensor *const *ts) {
    for (int i = 0; i < n; i++)
        if (ts[i]) LUNET_TRY(lunet__save(node, i, ts[i]));
    return LUNET_OK;
}

/* ---- gradient accumulation ------------------------------------------------------------------ */

/* A tensor nobody else can see: safe to add into in place. */
static bool privately_owned(const lunet_tensor *t) {
    return atomic_load(&((lunet_tensor *)t)->refcount) == 1 &&
           atomic_load(&t->storage->refcount) == 1 && lunet_tensor_is_contiguous(t);
}

/* *slot += g, taking a reference to g when *slot is empty. */
static lunet_status accumulate(lunet_tensor **slot, const lunet_tensor *g) {
    if (!*slot) {
        *slot = lunet_tensor_retain(g);
        return LUNET_OK;
    }
    if (privately_owned(*slot)) return lunet__add_into(*slot, g);
    lunet_tensor *sum;
    LUNET_TRY(lunet__add_same(&sum, *slot, g));
    lunet_tensor_release(*slot);
    *slot = sum;
    return LUNET_OK;
}

static lunet_status accumulate_leaf(lunet_tensor *leaf, const lunet_tensor *g) {
    if (!lunet__same_shape(leaf->ndim, leaf->shape, g->ndim, g->shape) || leaf->dtype != g->dtype) {
        char sl[LUNET__SHAPE_BUF], sg[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_AUTOGRAD, "backward: gradient %s %s does not fit leaf %s %s",
                           lunet_dtype_name(g->dtype), lunet__shape_str(sg, sizeof sg, g),
                           lunet_dtype_name(leaf->dtype), lunet__shape_str(sl, sizeof sl, leaf));
    }
    if (leaf->grad) {
        atomic_fetch_add(&leaf->grad->storage->version, 1);
        return lunet__add_into(leaf->grad, g);
    }
    /* The leaf's grad is added into by later backwards, so it must not share memory. */
    if (privately_owned(g)) {
        leaf->grad = lunet_tensor_retain(g);
        return LUNET_OK;
    }
    return lunet_tensor_clone(&leaf->grad, g);
}

/* ---- the engine ------------------------------------------------------------------------------ */

typedef struct node_list {
    lunet__node **items;
    size_t count, capacity;
} node_list;

static lunet_status list_push(node_list *l, lunet__node *n) {
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 64;
        lunet__node **items = lunet__alloc(cap * sizeof *items);
        if (!items) return lunet__nomem("backward");
        if (l->count) memcpy(items, l->items, l->count * sizeof *items);
        lunet__free(l->items, l->capacity * sizeof *l->items);
        l->items = items;
        l->capacity = cap;
    }
    l->items[l->count++] = n;
    return LUNET_OK;
}

static void list_free(node_list *l) { lunet__free(l->items, l->capacity * sizeof *l->items); }

/* Every node reachable from root, each retained once, with pending = number of graph edges
 * that deliver a gradient into it. */
static lunet_status collect_graph(node_list *nodes, lunet__node *root) {
    unsigned epoch = atomic_fetch_add(&backward_epoch, 1) + 1;
    root->visit_epoch = epoch;
    root->pending = 0;
    LUNET_TRY(list_push(nodes, root));
    atomic_fetch_add(&root->refcount, 1);
    for (size_t i = 0; i < nodes->count; i++) {
        lunet__node *n = nodes->items[i];
        if (n->freed)
            return lunet__fail(LUNET_ERR_AUTOGRAD,
                               "backward: the graph through %s was freed by an earlier backward; "
                               "pass retain_graph = true to go through it twice",
                               n->name);
        for (int k = 0; k < n->n_inputs; k++) {
            lunet_tensor *in = n->inputs[k];
            if (!in || !in->grad_fn) continue;
            lunet__node *m = in->grad_fn;
            if (m->visit_epoch != epoch) {
                m->visit_epoch = epoch;
                m->pending = 0;
                LUNET_TRY(list_push(nodes, m));
                atomic_fetch_add(&m->refcount, 1);
            }
            m->pending++;
        }
    }
    return LUNET_OK;
}

static lunet_status check_saved_versions(const lunet__node *n) {
    for (int i = 0; i < LUNET__NODE_MAX_SAVED; i++) {
        const lunet_tensor *s = n->saved[i];
        if (s && atomic_load(&s->storage->version) != n->saved_version[i])
            return lunet__fail(LUNET_ERR_AUTOGRAD,
                               "backward: a tensor that %s saved was modified in place after the "
                               "forward pass",
                               n->name);
    }
    return LUNET_OK;
}

static void free_saved_state(lunet__node *n) {
    for (int i = 0; i < LUNET__NODE_MAX_INPUTS; i++) {
        lunet_tensor_release(n->inputs[i]);
        n->inputs[i] = NULL;
    }
    for (int i = 0; i < LUNET__NODE_MAX_SAVED; i++) {
        lunet_tensor_release(n->saved[i]);
        n->saved[i] = NULL;
    }
    n->freed = true;
}

/* Runs one node: its gradient goes through its backward function to its inputs. */
static lunet_status run_node(lunet__node *n, node_list *ready, bool retain_graph) {
    lunet_tensor *g = n->grad_accum;
    n->grad_accum = NULL;
    lunet_tensor *grad_in[LUNET__NODE_MAX_INPUTS] = {NULL};
    lunet_status s = LUNET_OK;
    if (g) {
        s = check_saved_versions(n);
        if (s == LUNET_OK) s = n->backward(n, g, grad_in);
    }
    for (int k = 0; k < n->n_inputs; k++) {
        lunet_tensor *in = n->inputs[k];
        if (s == LUNET_OK && in && grad_in[k]) {
            if (!lunet__same_shape(in->ndim, in->shape, grad_in[k]->ndim, grad_in[k]->shape)) {
                char si[LUNET__SHAPE_BUF], sg[LUNET__SHAPE_BUF];
                s = lunet__fail(LUNET_ERR_AUTOGRAD, "backward: %s gave a %s gradient for a %s input",
                                n->name, lunet__shape_str(sg, sizeof sg, grad_in[k]),
                                lunet__shape_str(si, sizeof si, in));
            } else if (in->grad_fn) {
                s = accumulate(&in->grad_fn->grad_accum, grad_in[k]);
            } else {
                s = accumulate_leaf(in, grad_in[k]);
            }
        }
        if (s == LUNET_OK && in && in->grad_fn && --in->grad_fn->pending == 0)
            s = list_push(ready, in->grad_fn);
        lunet_tensor_release(grad_in[k]);
    }
    lunet_tensor_release(g);
    if (s == LUNET_OK && !retain_graph) free_saved_state(n);
    return s;
}

static lunet_status seed_gradient(lunet_tensor **seed, const lunet_tensor *t, const lunet_tensor *grad) {
    char st[LUNET__SHAPE_BUF], sg[LUNET__SHAPE_BUF];
    if (!grad) {
        if (t->numel != 1)
            return lunet__fail(LUNET_ERR_SHAPE,
                               "backward: a gradient argument is needed for a tensor of shape %s "
                               "(only one-element tensors imply 1)",
                               lunet__shape_str(st, sizeof st, t));
        return lunet_tensor_ones(seed, t->dtype, t->ndim, t->shape);
    }
    if (!lunet__same_shape(t->ndim, t->shape, grad->ndim, grad->shape))
        return lunet__fail(LUNET_ERR_SHAPE, "backward: gradient shape %s does not match the tensor's %s",
                           lunet__shape_str(sg, sizeof sg, grad), lunet__shape_str(st, sizeof st, t));
    return lunet_tensor_to(seed, grad, t->dtype);
}

lunet_status lunet_tensor_backward(lunet_tensor *t, const lunet_tensor *grad, bool retain_graph) {
    if (!t->requires_grad)
        return lunet__fail(LUNET_ERR_AUTOGRAD,
                           "backward: the tensor does not require grad (no input of the ops that "
                           "made it requires grad)");
    bool was_enabled = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false); /* backward functions must not record */
    lunet_tensor *seed = NULL;
    lunet_status s = seed_gradient(&seed, t, grad);
    if (s != LUNET_OK || !t->grad_fn) {
        if (s == LUNET_OK) s = accumulate_leaf(t, seed);
        lunet_tensor_release(seed);
        lunet_grad_set_enabled(was_enabled);
        return s;
    }

    node_list nodes = {0}, ready = {0};
    s = collect_graph(&nodes, t->grad_fn);
    if (s == LUNET_OK) {
        t->grad_fn->grad_accum = seed;
        seed = NULL;
        s = list_push(&ready, t->grad_fn);
    }
    while (s == LUNET_OK && ready.count > 0) s = run_node(ready.items[--ready.count], &ready, retain_graph);

    lunet_tensor_release(seed);
    for (size_t i = 0; i < nodes.count; i++) { /* after a failure, partial sums are dropped */
        lunet_tensor_release(nodes.items[i]->grad_accum);
        nodes.items[i]->grad_accum = NULL;
    }
    for (size_t i = 0; i < nodes.count; i++) lunet__node_release(nodes.items[i]);
    list_free(&nodes);
    list_free(&ready);
    lunet_grad_set_enabled(was_enabled);
    return s;
}

/* ---- shared backward helpers ---------------------------------------------------------------- */

lunet_status lunet__sum_to_shape(lunet_tensor **out, const lunet_tensor *grad, int ndim,
                                 const int64_t *shape) {
    *out = NULL;
    lunet_tensor *cur = lunet_tensor_retain(grad);
    while (cur->ndim > ndim) { /* leading broadcast dims */
        lunet_tensor *next;
        lunet_status s = lunet_tensor_sum_dim(&next, cur, 0, false);
        lunet_tensor_release(cur);
        LUNET_TRY(s);
        cur = next;
    }
    for (int d = 0; d < ndim; d++) {
        if (shape[d] != 1 || cur->shape[d] == 1) continue;
        lunet_tensor *next;
        lunet_status s = lunet_tensor_sum_dim(&next, cur, d, true);
        lunet_tensor_release(cur);
        LUNET_TRY(s);
        cur = next;
    }
    *out = cur;
    return LUNET_OK;
}

lunet_status lunet__contiguous_nograd(lunet_tensor **out, const lunet_tensor *t) {
    bool was = lunet_grad_is_enabled();
    lunet_grad_set_enabled(false);
    lunet_status s = lunet_tensor_contiguous(out, t);
    lunet_grad_set_enabled(was);
    return s;
}

lunet_status lunet__record_or_release(lunet__node **node, lunet_tensor **out, const char *name,
                                      lunet__backward_fn backward, int n_inputs, const lunet_tensor *const *inputs) {
    lunet_status s = lunet__record(node, *out, name, backward, n_inputs, inputs);
    if (s != LUNET_OK) {
        lunet_tensor_release(*out);
        *out = NULL;
    }
    return s;
}
