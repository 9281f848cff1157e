/* test_autograd.c: finite-difference checks of every op's gradient, and the engine's rules. */
#include "check.h"

typedef lunet_status (*op_fn)(lunet_tensor **out, lunet_tensor *const *in, const void *ctx);

/* Checks d/dx of L = sum(op(inputs) * w) for a fixed random w: autograd against central
 * differences, in float64.  Returns the largest relative error seen. */
static double gradcheck(const char *name, op_fn op, int n, lunet_tensor *const *in, const void *ctx) {
    lunet_tensor *out = NULL, *w = NULL, *prod = NULL, *loss = NULL;
    double worst = 0;
    for (int i = 0; i < n; i++) lunet_tensor_set_grad(in[i], NULL);
    if (op(&out, in, ctx) != LUNET_OK) {
        fprintf(stderr, "%s: forward failed: %s\n", name, lunet_last_error());
        return INFINITY;
    }
    lunet_tensor_randn(&w, LUNET_DTYPE_F64, lunet_tensor_ndim(out), lunet_tensor_shape(out));
    lunet_tensor_mul(&prod, out, w);
    lunet_tensor_sum_all(&loss, prod);
    if (lunet_tensor_backward(loss, NULL, false) != LUNET_OK) {
        fprintf(stderr, "%s: backward failed: %s\n", name, lunet_last_error());
        worst = INFINITY;
    }
    lunet_grad_set_enabled(false);
    const double eps = 1e-6;
    for (int i = 0; i < n && worst < INFINITY; i++) {
        if (!lunet_tensor_requires_grad(in[i])) continue;
        double *x = lunet_tensor_data(in[i]);
        const lunet_tensor *g = lunet_tensor_grad(in[i]);
        for (int64_t k = 0; k < lunet_tensor_numel(in[i]); k++) {
            double saved = x[k], f[2];
            for (int side = 0; side < 2; side++) {
                x[k] = saved + (side ? -eps : eps);
                lunet_tensor *o = NULL, *p = NULL, *l = NULL;
                op(&o, in, ctx);
                lunet_tensor_mul(&p, o, w);
                lunet_tensor_sum_all(&l, p);
                f[side] = element(l, 0);
                lunet_tensor_release(o);
                lunet_tensor_release(p);
                lunet_tensor_release(l);
            }
            x[k] = saved;
            double numeric = (f[0] - f[1]) / (2 * eps), analytic = g ? element(g, k) : 0;
            double err = fabs(numeric - analytic) / (1e-3 + fabs(numeric));
            if (err > worst) worst = err;
            if (err > 1e-5) {
                fprintf(stderr, "%s: input %d element %lld: analytic %.10g, numeric %.10g\n", name, i, (long long)k,
                        analytic, numeric);
                k = lunet_tensor_numel(in[i]);
            }
        }
    }
    lunet_grad_set_enabled(true);
    lunet_tensor_release(out);
    lunet_tensor_release(w);
    lunet_tensor_release(prod);
    lunet_tensor_release(loss);
    return worst;
}

static lunet_tensor *param(int ndim, const int64_t *shape, double shift) {
    lunet_tensor *t = NULL, *s = NULL, *r = NULL;
    lunet_tensor_randn(&t, LUNET_DTYPE_F64, ndim, shape);
    if (shift != 0) { /* keep log/sqrt/pow bases positive */
        lunet_tensor_abs(&r, t);
        double v = shift;
        s = tensor_of(LUNET_DTYPE_F64, 0, NULL, &v);
        lunet_tensor_release(t);
        lunet_tensor_add(&t, r, s);
        lunet_tensor_release(r);
        lunet_tensor_release(s);
    }
    lunet_tensor_set_requires_grad(t, true);
    return t;
}

/* ---- the ops under test, in op_fn form ---------------------------------------------------- */

#define BINARY(name)                                                                       \
    static lunet_status op_##name(lunet_tensor **o, lunet_tensor *const *in, const void *c) { \
        (void)c;                                                                           \
        return lunet_tensor_##name(o, in[0], in[1]);                                       \
    }
#define UNARY(name)                                                                        \
    static lunet_status op_##name(lunet_tensor **o, lunet_tensor *const *in, const void *c) { \
        (void)c;                                                                           \
        return lunet_tensor_##name(o, in[0]);                                              \
    }
BINARY(add) BINARY(sub) BINARY(mul) BINARY(div) BINARY(pow) BINARY(matmul)
UNARY(neg) UNARY(abs) UNARY(relu) UNARY(exp) UNARY(log) UNARY(sqrt) UNARY(sigmoid) UNARY(tanh)
UNARY(sum_all) UNARY(mean_all) UNARY(max_all) UNARY(min_all) UNARY(clone) UNARY(squeeze_all)

static lunet_status op_clamp(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    return lunet_tensor_clamp(o, in[0], -0.5, 0.7);
}
static lunet_status op_sum_dim(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    return lunet_tensor_sum_dim(o, in[0], *(const int *)c, false);
}
static lunet_status op_mean_dim(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    return lunet_tensor_mean_dim(o, in[0], *(const int *)c, true);
}
static lunet_status op_max_dim(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    return lunet_tensor_max_dim(o, NULL, in[0], *(const int *)c, false);
}
static lunet_status op_min_dim(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    return lunet_tensor_min_dim(o, NULL, in[0], *(const int *)c, true);
}
static lunet_status op_transpose(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    return lunet_tensor_transpose(o, in[0], 0, 2);
}
static lunet_status op_permute(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    int p[3] = {2, 0, 1};
    return lunet_tensor_permute(o, in[0], p);
}
static lunet_status op_narrow(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    return lunet_tensor_narrow(o, in[0], 1, 1, 2);
}
static lunet_status op_slice(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    return lunet_tensor_slice(o, in[0], 2, 0, 4, 2);
}
static lunet_status op_select(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    return lunet_tensor_select(o, in[0], 0, 1);
}
static lunet_status op_reshape_strided(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c; /* a transposed input forces reshape to copy */
    lunet_tensor *t;
    LUNET_TRY(lunet_tensor_transpose(&t, in[0], 0, 1));
    int64_t s[2] = {-1, 2};
    lunet_status st = lunet_tensor_reshape(o, t, 2, s);
    lunet_tensor_release(t);
    return st;
}
static lunet_status op_expand(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    int64_t s[3] = {2, 3, 4}; /* in is (3, 1) */
    return lunet_tensor_expand(o, in[0], 3, s);
}
static lunet_status op_unsqueeze_flatten(lunet_tensor **o, lunet_tensor *const *in, const void *c) {
    (void)c;
    lunet_tensor *u;
    LUNET_TRY(lunet_tensor_unsqueeze(&u, in[0], 1));
    lunet_status st = lunet_tensor_flatten(o, u, 1, 2);
    lunet_tensor_release(u);
    return st;
}

static void test_gradients_of_every_op(void) {
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s13[2] = {1, 3}, s234[3] = {2, 3, 4}, s31[2] = {3, 1};
    int64_t s2_34[3] = {2, 3, 4}, s42[2] = {4, 2}, s5_1_43[4] = {5, 1, 4, 3}, s2[1] = {2};
    struct {
        const char *name;
        op_fn op;
        int n;
        lunet_tensor *in[2];
        int ctx;
    } cases[] = {
        {"add broadcast", op_add, 2, {param(2, s23, 0), param(1, s3, 0)}, 0},
        {"sub broadcast", op_sub, 2, {param(2, s13, 0), param(2, s23, 0)}, 0},
        {"mul broadcast", op_mul, 2, {param(2, s31, 0), param(2, s13, 0)}, 0},
        {"div", op_div, 2, {param(2, s23, 0), param(1, s3, 0.5)}, 0},
        {"pow", op_pow, 2, {param(2, s23, 0.5), param(2, s23, 0)}, 0},
        {"neg", op_neg, 1, {param(2, s23, 0)}, 0},
        {"abs", op_abs, 1, {param(2, s23, 0)}, 0},
        {"relu", op_relu, 1, {param(2, s23, 0)}, 0},
        {"exp", op_exp, 1, {param(2, s23, 0)}, 0},
        {"log", op_log, 1, {param(2, s23, 0.2)}, 0},
        {"sqrt", op_sqrt, 1, {param(2, s23, 0.2)}, 0},
        {"sigmoid", op_sigmoid, 1, {param(2, s23, 0)}, 0},
        {"tanh", op_tanh, 1, {param(2, s23, 0)}, 0},
        {"clamp", op_clamp, 1, {param(2, s23, 0)}, 0},
        {"sum all", op_sum_all, 1, {param(3, s234, 0)}, 0},
        {"sum dim 0", op_sum_dim, 1, {param(3, s234, 0)}, 0},
        {"sum dim 1", op_sum_dim, 1, {param(3, s234, 0)}, 1},
        {"sum dim 2", op_sum_dim, 1, {param(3, s234, 0)}, 2},
        {"mean all", op_mean_all, 1, {param(3, s234, 0)}, 0},
        {"mean dim 0", op_mean_dim, 1, {param(3, s234, 0)}, 0},
        {"mean dim 2", op_mean_dim, 1, {param(3, s234, 0)}, 2},
        {"max all", op_max_all, 1, {param(3, s234, 0)}, 0},
        {"min all", op_min_all, 1, {param(3, s234, 0)}, 0},
        {"max dim 1", op_max_dim, 1, {param(3, s234, 0)}, 1},
        {"min dim 2", op_min_dim, 1, {param(3, s234, 0)}, 2},
        {"matmul 2d", op_matmul, 2, {param(2, s23, 0), param(2, s31, 0)}, 0},
        {"matmul batch broadcast", op_matmul, 2, {param(3, s2_34, 0), param(4, s5_1_43, 0)}, 0},
        {"matmul vector", op_matmul, 2, {param(2, s42, 0), param(1, s2, 0)}, 0},
        {"transpose", op_transpose, 1, {param(3, s234, 0)}, 0},
        {"permute", op_permute, 1, {param(3, s234, 0)}, 0},
        {"narrow", op_narrow, 1, {param(3, s234, 0)}, 0},
        {"slice step 2", op_slice, 1, {param(3, s234, 0)}, 0},
        {"select", op_select, 1, {param(3, s234, 0)}, 0},
        {"reshape of a transposed input", op_reshape_strided, 1, {param(2, s23, 0)}, 0},
        {"expand", op_expand, 1, {param(2, s31, 0)}, 0},
        {"unsqueeze + flatten", op_unsqueeze_flatten, 1, {param(2, s23, 0)}, 0},
        {"squeeze", op_squeeze_all, 1, {param(2, s13, 0)}, 0},
        {"clone", op_clone, 1, {param(2, s23, 0)}, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double err = gradcheck(cases[c].name, cases[c].op, cases[c].n, cases[c].in, &cases[c].ctx);
        CHECK(err <= 1e-5);
        if (err > 1e-5) fprintf(stderr, "  gradient of %s: relative error %.3g\n", cases[c].name, err);
        for (int i = 0; i < cases[c].n; i++) lunet_tensor_release(cases[c].in[i]);
    }
}

static void test_engine_rules(void) {
    int64_t s[1] = {3};
    double v[3] = {1, 2, 3};
    lunet_tensor *x = tensor_of(LUNET_DTYPE_F64, 1, s, v), *y, *z, *loss, *d, *ints;
    CHECK_OK(lunet_tensor_set_requires_grad(x, true));
    /* a diamond: x feeds two paths that meet again */
    CHECK_OK(lunet_tensor_mul(&y, x, x));
    CHECK_OK(lunet_tensor_add(&z, y, x));
    CHECK_OK(lunet_tensor_sum_all(&loss, z));
    CHECK(strcmp(lunet_tensor_grad_fn_name(loss), "SumBackward") == 0 && !lunet_tensor_is_leaf(loss));
    CHECK_OK(lunet_tensor_backward(loss, NULL, true));
    CHECK(element(lunet_tensor_grad(x), 2) == 7); /* 2x + 1 */
    CHECK_OK(lunet_tensor_backward(loss, NULL, false)); /* accumulates */
    CHECK(element(lunet_tensor_grad(x), 2) == 14);
    CHECK_FAILS(lunet_tensor_backward(loss, NULL, false), LUNET_ERR_AUTOGRAD, "freed by an earlier backward");
    CHECK_FAILS(lunet_tensor_backward(z, NULL, false), LUNET_ERR_SHAPE, "a gradient argument is needed");
    /* in-place changes: refused on leaves that require grad, detected on saved tensors */
    CHECK_FAILS(lunet_tensor_fill(x, 0), LUNET_ERR_AUTOGRAD, "fill: a leaf tensor that requires grad");
    lunet_tensor *w, *p, *l2;
    CHECK_OK(lunet_tensor_ones(&w, LUNET_DTYPE_F64, 1, s));
    CHECK_OK(lunet_tensor_mul(&p, x, w));
    CHECK_OK(lunet_tensor_sum_all(&l2, p));
    CHECK_OK(lunet_tensor_fill(w, 5));
    CHECK_FAILS(lunet_tensor_backward(l2, NULL, false), LUNET_ERR_AUTOGRAD, "MulBackward saved was modified in place");
    /* detach and no-grad mode stop recording */
    CHECK_OK(lunet_tensor_detach(&d, x));
    CHECK(!lunet_tensor_requires_grad(d) && lunet_tensor_shares_storage(d, x));
    lunet_grad_set_enabled(false);
    lunet_tensor *q;
    CHECK_OK(lunet_tensor_mul(&q, x, x));
    CHECK(!lunet_tensor_requires_grad(q) && lunet_tensor_is_leaf(q));
    lunet_grad_set_enabled(true);
    CHECK_OK(lunet_tensor_to(&ints, x, LUNET_DTYPE_I64));
    CHECK(!lunet_tensor_requires_grad(ints));
    CHECK_FAILS(lunet_tensor_set_requires_grad(ints, true), LUNET_ERR_DTYPE, "only float tensors");
    CHECK_FAILS(lunet_tensor_set_requires_grad(y, false), LUNET_ERR_AUTOGRAD, "only leaf tensors");
    CHECK_FAILS(lunet_tensor_backward(d, NULL, false), LUNET_ERR_AUTOGRAD, "does not require grad");
    /* an explicit gradient argument for a non-scalar output */
    lunet_tensor *g, *m;
    CHECK_OK(lunet_tensor_set_grad(x, NULL));
    CHECK_OK(lunet_tensor_mul(&m, x, x));
    CHECK_OK(lunet_tensor_full(&g, LUNET_DTYPE_F32, 1, s, 0.5)); /* converted to the output's dtype */
    CHECK_OK(lunet_tensor_backward(m, g, false));
    CHECK(element(lunet_tensor_grad(x), 1) == 2);
    /* a dtype conversion passes the gradient back in the input's dtype */
    lunet_tensor *f32, *twice, *two, *l3;
    double two_v = 2;
    CHECK_OK(lunet_tensor_set_grad(x, NULL));
    CHECK_OK(lunet_tensor_to(&f32, x, LUNET_DTYPE_F32));
    two = tensor_of(LUNET_DTYPE_F32, 0, NULL, &two_v);
    CHECK_OK(lunet_tensor_mul(&twice, f32, two));
    CHECK_OK(lunet_tensor_sum_all(&l3, twice));
    CHECK(strcmp(lunet_tensor_grad_fn_name(f32), "ToBackward") == 0);
    CHECK_OK(lunet_tensor_backward(l3, NULL, false));
    CHECK(lunet_tensor_dtype(lunet_tensor_grad(x)) == LUNET_DTYPE_F64 && element(lunet_tensor_grad(x), 0) == 2);
    lunet_tensor *items[] = {x, y, z, loss, d, ints, w, p, l2, q, g, m, f32, twice, two, l3};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_graph_is_freed(void) {
    /* After backward without retain_graph only the tensors' own storage remains live. */
    int64_t s[2] = {64, 64};
    lunet_tensor *w;
    CHECK_OK(lunet_tensor_randn(&w, LUNET_DTYPE_F32, 2, s));
    CHECK_OK(lunet_tensor_set_requires_grad(w, true));
    lunet_alloc_stats first = {0}, later;
    for (int i = 0; i < 50; i++) {
        lunet_tensor *x, *y, *r, *l;
        CHECK_OK(lunet_tensor_randn(&x, LUNET_DTYPE_F32, 2, s));
        CHECK_OK(lunet_tensor_matmul(&y, x, w));
        CHECK_OK(lunet_tensor_relu(&r, y));
        CHECK_OK(lunet_tensor_sum_all(&l, r));
        CHECK_OK(lunet_tensor_backward(l, NULL, false));
        lunet_tensor_release(x);
        lunet_tensor_release(y);
        lunet_tensor_release(r);
        lunet_tensor_release(l);
        /* The second step is the first with an existing grad to add into. */
        if (i == 1) lunet_alloc_get_stats(&first);
    }
    lunet_alloc_get_stats(&later);
    CHECK(later.live_bytes == first.live_bytes);
#ifndef LUNET_ALLOC_NO_CACHE
    CHECK(later.system_allocs == first.system_allocs); /* a steady loop allocates nothing new */
#endif
    lunet_tensor_release(w);
}

int main(void) {
    lunet_manual_seed(5);
    lunet_set_num_threads(1);
    RUN(test_gradients_of_every_op);
    RUN(test_engine_rules);
    RUN(test_graph_is_freed);
    return check_report("test_autograd");
}
