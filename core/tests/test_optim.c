/*
 * test_optim.c: the optimizer steps and gradient clipping against scalar references.
 *
 * Each reference below is the algorithm as torch.optim 1.13 documents and runs it, written one
 * element at a time in double, independently of the kernels in optim.c.  A run sets fresh
 * gradients on the parameters, calls the step, advances the reference, and compares every
 * parameter and state element, for several steps and in f32 and f64.  The last parameter never
 * gets a gradient: it and its state must be left alone.
 */
#include "check.h"

/* ---- scalar references ------------------------------------------------------------------------- */

static void sgd_reference(double *p, double *buf, double g, const lunet_sgd_options *o, int64_t step) {
    if (o->maximize) g = -g;
    if (o->weight_decay != 0) g += o->weight_decay * *p;
    if (o->momentum != 0) {
        *buf = step > 1 ? o->momentum * *buf + (1 - o->dampening) * g : g;
        g = o->nesterov ? g + o->momentum * *buf : *buf;
    }
    *p -= o->lr * g;
}

/* The documented form with bias-corrected moments.  AMSGrad keeps the running maximum of the raw
 * second moment and corrects it by the current step's factor, as PyTorch's code does. */
static void adam_reference(double *p, double *m, double *v, double *vmax, double g,
                           const lunet_adam_options *o, int64_t step) {
    if (o->maximize) g = -g;
    if (o->decoupled_weight_decay)
        *p *= 1 - o->lr * o->weight_decay;
    else if (o->weight_decay != 0)
        g += o->weight_decay * *p;
    *m = o->beta1 * *m + (1 - o->beta1) * g;
    *v = o->beta2 * *v + (1 - o->beta2) * g * g;
    double second = *v;
    if (o->amsgrad) {
        *vmax = fmax(*vmax, *v);
        second = *vmax;
    }
    double m_hat = *m / (1 - pow(o->beta1, (double)step)), v_hat = second / (1 - pow(o->beta2, (double)step));
    *p -= o->lr * m_hat / (sqrt(v_hat) + o->eps);
}

static void rmsprop_reference(double *p, double *sq, double *buf, double *ga, double g,
                              const lunet_rmsprop_options *o) {
    if (o->maximize) g = -g;
    if (o->weight_decay != 0) g += o->weight_decay * *p;
    *sq = o->alpha * *sq + (1 - o->alpha) * g * g;
    double avg;
    if (o->centered) {
        *ga = o->alpha * *ga + (1 - o->alpha) * g;
        avg = sqrt(*sq - *ga * *ga);
    } else {
        avg = sqrt(*sq);
    }
    avg += o->eps; /* outside the square root: PyTorch's placement, not TensorFlow's */
    if (o->momentum > 0) {
        *buf = o->momentum * *buf + g / avg;
        *p -= o->lr * *buf;
    } else {
        *p -= o->lr * g / avg;
    }
}

/* ---- a fixture: three parameters, their state, and the reference copy ----------------------------- */

#define NPARAMS 3 /* the last one has no gradient */
#define NSTATES 3
#define MAXEL 6
#define STEPS 4

static const int param_ndim[NPARAMS] = {2, 1, 1};
static const int64_t param_shape[NPARAMS][2] = {{2, 3}, {4, 0}, {5, 0}};

typedef struct fixture {
    lunet_dtype dtype;
    lunet_tensor *params[NPARAMS];
    lunet_tensor *state[NSTATES][NPARAMS];
    double ref[NPARAMS][MAXEL];
    double ref_state[NSTATES][NPARAMS][MAXEL];
    int64_t numel[NPARAMS];
} fixture;

static lunet_tensor *filled(lunet_dtype dtype, int ndim, const int64_t *shape,
                            double (*value)(int64_t, int, int), int a, int b) {
    double v[MAXEL];
    for (int64_t k = 0; k < lunet__numel(ndim, shape); k++)
        v[k] = value(k, a, b);
    return tensor_of(dtype, ndim, shape, v);
}

static double initial_value(int64_t k, int i, int unused) {
    (void)unused;
    return sin(1.7 * i + 0.9 * (double)k + 0.3);
}
static double gradient_value(int64_t k, int i, int step) {
    return 0.7 * cos(0.8 * step + 1.1 * i + 0.5 * (double)k);
}

static void fixture_init(fixture *f, lunet_dtype dtype) {
    memset(f, 0, sizeof *f);
    f->dtype = dtype;
    for (int i = 0; i < NPARAMS; i++) {
        f->params[i] = filled(dtype, param_ndim[i], param_shape[i], initial_value, i, 0);
        lunet_tensor_set_requires_grad(f->params[i], true);
        f->numel[i] = lunet_tensor_numel(f->params[i]);
        /* the reference starts from the rounded values the tensor holds */
        for (int64_t k = 0; k < f->numel[i]; k++)
            f->ref[i][k] = element(f->params[i], k);
        for (int s = 0; s < NSTATES; s++)
            lunet_tensor_zeros(&f->state[s][i], dtype, param_ndim[i], param_shape[i]);
    }
}

/* New gradients for every parameter but the last, as a backward pass would leave them. */
static void fixture_set_grads(fixture *f, int step) {
    for (int i = 0; i < NPARAMS - 1; i++) {
        lunet_tensor *g = filled(f->dtype, param_ndim[i], param_shape[i], gradient_value, i, step);
        CHECK_OK(lunet_tensor_set_grad(f->params[i], g));
        lunet_tensor_release(g);
    }
}

static double fixture_grad(const fixture *f, int i, int64_t k) {
    return element(lunet_tensor_grad(f->params[i]), k);
}

/* Largest relative difference between the tensors and the reference (params and used states). */
static double fixture_worst(const fixture *f, const bool *used) {
    double worst = 0;
    for (int i = 0; i < NPARAMS; i++)
        for (int64_t k = 0; k < f->numel[i]; k++) {
            double d = fabs(element(f->params[i], k) - f->ref[i][k]) / (1 + fabs(f->ref[i][k]));
            worst = d > worst || d != d ? d : worst;
            for (int s = 0; s < NSTATES; s++) {
                if (!used[s]) continue;
                double want = f->ref_state[s][i][k];
                d = fabs(element(f->state[s][i], k) - want) / (1 + fabs(want));
                worst = d > worst || d != d ? d : worst;
            }
        }
    return worst;
}

static void fixture_free(fixture *f) {
    for (int i = 0; i < NPARAMS; i++) {
        lunet_tensor_release(f->params[i]);
        for (int s = 0; s < NSTATES; s++)
            lunet_tensor_release(f->state[s][i]);
    }
}

/* f32 runs round in float through every operation; f64 runs agree with the double reference to
 * rounding.  Both bounds are far below what a wrong formula or a misplaced eps produces. */
static double tolerance(lunet_dtype dtype) { return dtype == LUNET_DTYPE_F32 ? 1e-5 : 1e-12; }

/* ---- one run per optimizer and variant ------------------------------------------------------------ */

typedef enum optimizer_kind { KIND_SGD, KIND_ADAM, KIND_RMSPROP } optimizer_kind;

typedef struct variant {
    const char *name;
    optimizer_kind kind;
    lunet_sgd_options sgd;
    lunet_adam_options adam;
    lunet_rmsprop_options rmsprop;
} variant;

/* Runs STEPS steps of the variant in dtype; returns the largest difference seen. */
static double run_variant(const variant *v, lunet_dtype dtype) {
    fixture f;
    fixture_init(&f, dtype);
    bool used[NSTATES] = {false, false, false};
    switch (v->kind) {
    case KIND_SGD:
        used[0] = v->sgd.momentum != 0;
        break;
    case KIND_ADAM:
        used[0] = used[1] = true, used[2] = v->adam.amsgrad;
        break;
    case KIND_RMSPROP:
        used[0] = true, used[1] = v->rmsprop.momentum > 0, used[2] = v->rmsprop.centered;
        break;
    }
    /* Unused state lists are passed as NULL, which the API allows. */
    lunet_tensor *const *lists[NSTATES];
    for (int s = 0; s < NSTATES; s++)
        lists[s] = used[s] ? f.state[s] : NULL;
    double worst = 0;
    for (int step = 1; step <= STEPS; step++) {
        fixture_set_grads(&f, step);
        switch (v->kind) {
        case KIND_SGD:
            CHECK_OK(lunet_sgd_step(f.params, lists[0], NPARAMS, step, &v->sgd));
            break;
        case KIND_ADAM:
            CHECK_OK(lunet_adam_step(f.params, lists[0], lists[1], lists[2], NPARAMS, step, &v->adam));
            break;
        case KIND_RMSPROP:
            CHECK_OK(lunet_rmsprop_step(f.params, lists[0], lists[1], lists[2], NPARAMS, &v->rmsprop));
            break;
        }
        for (int i = 0; i < NPARAMS - 1; i++)
            for (int64_t k = 0; k < f.numel[i]; k++) {
                double g = fixture_grad(&f, i, k), *p = &f.ref[i][k];
                double *s0 = &f.ref_state[0][i][k], *s1 = &f.ref_state[1][i][k], *s2 = &f.ref_state[2][i][k];
                switch (v->kind) {
                case KIND_SGD:
                    sgd_reference(p, s0, g, &v->sgd, step);
                    break;
                case KIND_ADAM:
                    adam_reference(p, s0, s1, s2, g, &v->adam, step);
                    break;
                case KIND_RMSPROP:
                    rmsprop_reference(p, s0, s1, s2, g, &v->rmsprop);
                    break;
                }
            }
        double d = fixture_worst(&f, used);
        if (d > worst || d != d) worst = d;
    }
    /* The parameter without a gradient kept its values and its state stayed zero. */
    for (int64_t k = 0; k < f.numel[NPARAMS - 1]; k++) {
        CHECK(element(f.params[NPARAMS - 1], k) == f.ref[NPARAMS - 1][k]);
        for (int s = 0; s < NSTATES; s++)
            CHECK(element(f.state[s][NPARAMS - 1], k) == 0);
    }
    fixture_free(&f);
    return worst;
}

static void check_variants(const variant *variants, size_t count) {
    const lunet_dtype dtypes[2] = {LUNET_DTYPE_F32, LUNET_DTYPE_F64};
    for (size_t c = 0; c < count; c++)
        for (int d = 0; d < 2; d++) {
            double worst = run_variant(&variants[c], dtypes[d]);
            check_count++;
            if (!(worst <= tolerance(dtypes[d]))) {
                check_failures++;
                fprintf(stderr, "%s:%d: %s in %s: differs from the reference by %.3g (tolerance %g)\n",
                        __FILE__, __LINE__, variants[c].name, lunet_dtype_name(dtypes[d]), worst,
                        tolerance(dtypes[d]));
            }
        }
}

static void test_sgd(void) {
    static const variant variants[] = {
        {.name = "sgd plain", .kind = KIND_SGD, .sgd = {.lr = 0.1}},
        {.name = "sgd weight decay", .kind = KIND_SGD, .sgd = {.lr = 0.05, .weight_decay = 0.3}},
        {.name = "sgd momentum", .kind = KIND_SGD, .sgd = {.lr = 0.1, .momentum = 0.9}},
        {.name = "sgd dampening", .kind = KIND_SGD, .sgd = {.lr = 0.1, .momentum = 0.8, .dampening = 0.3}},
        {.name = "sgd nesterov",
         .kind = KIND_SGD,
         .sgd = {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true}},
        {.name = "sgd maximize",
         .kind = KIND_SGD,
         .sgd = {.lr = 0.1, .momentum = 0.5, .weight_decay = 0.2, .maximize = true}},
    };
    check_variants(variants, sizeof variants / sizeof *variants);
}

static void test_adam(void) {
    static const variant variants[] = {
        {.name = "adam defaults",
         .kind = KIND_ADAM,
         .adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}},
        {.name = "adam large eps",
         .kind = KIND_ADAM,
         .adam = {.lr = 0.1, .beta1 = 0.8, .beta2 = 0.9, .eps = 0.1}},
        {.name = "adam weight decay",
         .kind = KIND_ADAM,
         .adam = {.lr = 0.05, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.2}},
        {.name = "adam amsgrad",
         .kind = KIND_ADAM,
         .adam = {.lr = 0.05, .beta1 = 0.5, .beta2 = 0.6, .eps = 1e-3, .amsgrad = true}},
        {.name = "adam maximize",
         .kind = KIND_ADAM,
         .adam =
             {.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1, .maximize = true}},
        {.name = "adamw",
         .kind = KIND_ADAM,
         .adam = {.lr = 0.05,
                  .beta1 = 0.9,
                  .beta2 = 0.999,
                  .eps = 1e-8,
                  .weight_decay = 0.5,
                  .decoupled_weight_decay = true}},
        {.name = "adamw amsgrad maximize",
         .kind = KIND_ADAM,
         .adam = {.lr = 0.05,
                  .beta1 = 0.7,
                  .beta2 = 0.8,
                  .eps = 1e-2,
                  .weight_decay = 0.3,
                  .amsgrad = true,
                  .decoupled_weight_decay = true,
                  .maximize = true}},
    };
    check_variants(variants, sizeof variants / sizeof *variants);
}

static void test_rmsprop(void) {
    static const variant variants[] = {
        {.name = "rmsprop defaults",
         .kind = KIND_RMSPROP,
         .rmsprop = {.lr = 1e-2, .alpha = 0.99, .eps = 1e-8}},
        {.name = "rmsprop large eps", .kind = KIND_RMSPROP, .rmsprop = {.lr = 0.1, .alpha = 0.9, .eps = 0.1}},
        {.name = "rmsprop momentum",
         .kind = KIND_RMSPROP,
         .rmsprop = {.lr = 0.01, .alpha = 0.9, .eps = 1e-8, .momentum = 0.9, .weight_decay = 0.1}},
        {.name = "rmsprop centered",
         .kind = KIND_RMSPROP,
         .rmsprop = {.lr = 0.01, .alpha = 0.8, .eps = 1e-3, .centered = true}},
        {.name = "rmsprop centered momentum maximize",
         .kind = KIND_RMSPROP,
         .rmsprop = {.lr = 0.01,
                     .alpha = 0.9,
                     .eps = 1e-4,
                     .momentum = 0.5,
                     .weight_decay = 0.2,
                     .centered = true,
                     .maximize = true}},
    };
    check_variants(variants, sizeof variants / sizeof *variants);
}

/* ---- clipping -------------------------------------------------------------------------------------- */

static void test_clip_grad_norm(void) {
    const lunet_dtype dtypes[2] = {LUNET_DTYPE_F32, LUNET_DTYPE_F64};
    const double norm_types[4] = {2, 1, INFINITY, 3};
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < 4; t++)
            for (int big = 0; big < 2; big++) {
                fixture f;
                fixture_init(&f, dtypes[d]);
                fixture_set_grads(&f, 1);
                double p = norm_types[t], sum = 0, max = 0, before[NPARAMS][MAXEL];
                for (int i = 0; i < NPARAMS - 1; i++)
                    for (int64_t k = 0; k < f.numel[i]; k++) {
                        double g = before[i][k] = fixture_grad(&f, i, k);
                        sum += pow(fabs(g), isinf(p) ? 1 : p);
                        max = fmax(max, fabs(g));
                    }
                double want = isinf(p) ? max : pow(sum, 1 / p);
                /* below the norm the gradients shrink; above it they stay as they are */
                double max_norm = big ? want * 2 : want / 3, total = -1;
                CHECK_OK(lunet_clip_grad_norm(&total, f.params, NPARAMS, max_norm, p));
                CHECK_NEAR(total, want, 1e-12);
                double coef = big ? 1 : max_norm / (want + 1e-6);
                for (int i = 0; i < NPARAMS - 1; i++)
                    for (int64_t k = 0; k < f.numel[i]; k++)
                        CHECK_NEAR(fixture_grad(&f, i, k), before[i][k] * coef, tolerance(dtypes[d]));
                CHECK(lunet_tensor_grad(f.params[NPARAMS - 1]) == NULL);
                fixture_free(&f);
            }
    double total = -1;
    CHECK_OK(lunet_clip_grad_norm(&total, NULL, 0, 1, 2));
    CHECK(total == 0);
}

/* ---- gradients and autograd ---------------------------------------------------------------------------- */

/* A gradient set by hand as a transposed view still updates by logical element. */
static void test_strided_gradient(void) {
    int64_t shape[2] = {2, 3}, tshape[2] = {3, 2};
    double zero[6] = {0}, gv[6] = {1, 2, 3, 4, 5, 6};
    lunet_tensor *p = tensor_of(LUNET_DTYPE_F64, 2, shape, zero),
                 *g = tensor_of(LUNET_DTYPE_F64, 2, tshape, gv), *gt;
    CHECK_OK(lunet_tensor_transpose(&gt, g, 0, 1));
    CHECK_OK(lunet_tensor_set_grad(p, gt));
    lunet_sgd_options o = {.lr = 1};
    CHECK_OK(lunet_sgd_step(&p, NULL, 1, 1, &o));
    for (int64_t k = 0; k < 6; k++)
        CHECK(element(p, k) == -element(gt, k));
    CHECK(lunet_tensor_is_contiguous(lunet_tensor_grad(p)));
    double total;
    CHECK_OK(lunet_clip_grad_norm(&total, &p, 1, 1e9, 1));
    CHECK(total == 21);
    lunet_tensor_release(p);
    lunet_tensor_release(g);
    lunet_tensor_release(gt);
}

/* A step marks the parameter modified, so a graph that saved it refuses a stale backward. */
static void test_update_is_seen_by_autograd(void) {
    int64_t shape[1] = {2};
    double v[2] = {1, 2};
    lunet_tensor *p = tensor_of(LUNET_DTYPE_F32, 1, shape, v), *y = NULL, *loss = NULL,
                 *g = tensor_of(LUNET_DTYPE_F32, 1, shape, v);
    lunet_tensor_set_requires_grad(p, true);
    CHECK_OK(lunet_tensor_mul(&y, p, p));
    CHECK_OK(lunet_tensor_sum_all(&loss, y));
    CHECK_OK(lunet_tensor_set_grad(p, g));
    lunet_adam_options o = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    lunet_tensor *m = NULL, *s = NULL;
    lunet_tensor_zeros(&m, LUNET_DTYPE_F32, 1, shape);
    lunet_tensor_zeros(&s, LUNET_DTYPE_F32, 1, shape);
    CHECK_OK(lunet_adam_step(&p, &m, &s, NULL, 1, 1, &o));
    CHECK_FAILS(lunet_tensor_backward(loss, NULL, false), LUNET_ERR_AUTOGRAD, "modified in place");
    lunet_tensor *tensors[] = {p, y, loss, g, m, s};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        lunet_tensor_release(tensors[i]);
}

/* ---- errors -------------------------------------------------------------------------------------------- */

static void test_errors(void) {
    int64_t s4[1] = {4}, s3[1] = {3}, s22[2] = {2, 2};
    double v[6] = {1, 2, 3, 4, 5, 6};
    lunet_tensor *a = tensor_of(LUNET_DTYPE_F32, 1, s4, v), *b = tensor_of(LUNET_DTYPE_F32, 1, s4, v);
    lunet_tensor *ga = tensor_of(LUNET_DTYPE_F32, 1, s4, v), *gb = tensor_of(LUNET_DTYPE_F32, 1, s4, v);
    lunet_tensor_set_grad(a, ga);
    lunet_tensor_set_grad(b, gb);
    lunet_tensor *ok4 = NULL, *ok4b = NULL, *short3 = NULL, *wide = NULL, *square = NULL, *square_t = NULL;
    lunet_tensor_zeros(&ok4, LUNET_DTYPE_F32, 1, s4);
    lunet_tensor_zeros(&ok4b, LUNET_DTYPE_F32, 1, s4);
    lunet_tensor_zeros(&short3, LUNET_DTYPE_F32, 1, s3);
    lunet_tensor_zeros(&wide, LUNET_DTYPE_F64, 1, s4);
    lunet_tensor_zeros(&square, LUNET_DTYPE_F32, 2, s22);
    lunet_tensor_transpose(&square_t, square, 0, 1);
    lunet_tensor *params[2] = {a, b};

    /* A bad state tensor for the second parameter fails before the first one moves. */
    lunet_adam_options adam = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    lunet_tensor *m_bad[2] = {ok4, short3}, *v_ok[2] = {ok4b, ok4b};
    CHECK_FAILS(lunet_adam_step(params, m_bad, v_ok, NULL, 2, 1, &adam), LUNET_ERR_SHAPE,
                "adam: exp_avg[1] has shape [3] but params[1] has shape [4]");
    CHECK(element(a, 0) == 1 && element(ok4, 0) == 0);
    lunet_tensor *v_wide[2] = {ok4b, wide}, *m_ok[2] = {ok4, ok4};
    CHECK_FAILS(lunet_adam_step(params, m_ok, v_wide, NULL, 2, 1, &adam), LUNET_ERR_DTYPE,
                "adam: exp_avg_sq[1] has dtype f64 but params[1] has dtype f32");
    lunet_tensor *m_null[2] = {ok4, NULL};
    CHECK_FAILS(lunet_adam_step(params, m_null, v_ok, NULL, 2, 1, &adam), LUNET_ERR_ARG,
                "adam: exp_avg[1] is NULL");
    adam.amsgrad = true;
    CHECK_FAILS(lunet_adam_step(params, m_ok, v_ok, NULL, 2, 1, &adam), LUNET_ERR_ARG,
                "adam: max_exp_avg_sq (needed with amsgrad) is NULL");
    adam.amsgrad = false;
    adam.beta2 = 1;
    CHECK_FAILS(lunet_adam_step(params, m_ok, v_ok, NULL, 2, 1, &adam), LUNET_ERR_ARG,
                "adam: beta2 must be in [0, 1), got 1");
    adam.beta2 = 0.999;
    adam.decoupled_weight_decay = true;
    adam.lr = NAN;
    CHECK_FAILS(lunet_adam_step(params, m_ok, v_ok, NULL, 2, 1, &adam), LUNET_ERR_ARG,
                "adamw: lr must be >= 0, got nan");
    adam.lr = 0.1;
    CHECK_FAILS(lunet_adam_step(params, m_ok, v_ok, NULL, 2, 0, &adam), LUNET_ERR_ARG,
                "adamw: step counts from 1, got 0");
    CHECK_FAILS(lunet_adam_step(params, m_ok, v_ok, NULL, 2, 1, NULL), LUNET_ERR_ARG,
                "adam: options is NULL");

    lunet_sgd_options sgd = {.lr = -1};
    CHECK_FAILS(lunet_sgd_step(params, NULL, 2, 1, &sgd), LUNET_ERR_ARG, "sgd: lr must be >= 0, got -1");
    sgd = (lunet_sgd_options){.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true};
    CHECK_FAILS(lunet_sgd_step(params, NULL, 2, 1, &sgd), LUNET_ERR_ARG,
                "sgd: nesterov momentum needs momentum > 0 and dampening 0");
    sgd.nesterov = false;
    CHECK_FAILS(lunet_sgd_step(params, NULL, 2, 1, &sgd), LUNET_ERR_ARG,
                "sgd: momentum_buffers (needed when momentum != 0) is NULL but 2 parameters were given");
    lunet_tensor *buf_t[2] = {ok4, square_t};
    lunet_tensor *sq_params[2] = {a, NULL};
    CHECK_FAILS(lunet_sgd_step(sq_params, buf_t, 2, 1, &sgd), LUNET_ERR_ARG, "sgd: params[1] is NULL");

    /* A parameter that is itself a strided view, with a gradient, cannot be stepped. */
    lunet_tensor *g22 = NULL;
    lunet_tensor_zeros(&g22, LUNET_DTYPE_F32, 2, s22);
    CHECK_OK(lunet_tensor_set_grad(square_t, g22));
    lunet_tensor *buf_sq[1] = {square};
    CHECK_FAILS(lunet_sgd_step(&square_t, buf_sq, 1, 1, &sgd), LUNET_ERR_ARG,
                "sgd: params[0] is not contiguous");
    CHECK_OK(lunet_tensor_set_grad(square, g22));
    CHECK_FAILS(lunet_sgd_step(&square, &square_t, 1, 1, &sgd), LUNET_ERR_ARG,
                "sgd: momentum_buffers[0] is not contiguous");

    lunet_rmsprop_options rms = {.lr = 0.01, .alpha = 0.99, .eps = 1e-8, .centered = true};
    lunet_tensor *sq_ok[2] = {ok4, ok4b};
    CHECK_FAILS(lunet_rmsprop_step(params, sq_ok, NULL, NULL, 2, &rms), LUNET_ERR_ARG,
                "rmsprop: grad_avg (needed when centered) is NULL");
    rms.centered = false;
    rms.momentum = -0.5;
    CHECK_FAILS(lunet_rmsprop_step(params, sq_ok, NULL, NULL, 2, &rms), LUNET_ERR_ARG,
                "rmsprop: momentum must be >= 0, got -0.5");

    double total = 0;
    CHECK_FAILS(lunet_clip_grad_norm(&total, params, 2, -1, 2), LUNET_ERR_ARG,
                "clip_grad_norm: max_norm must be >= 0");
    CHECK_FAILS(lunet_clip_grad_norm(&total, params, 2, 1, 0), LUNET_ERR_ARG,
                "clip_grad_norm: norm_type must be > 0");
    CHECK_FAILS(lunet_clip_grad_norm(&total, NULL, 2, 1, 2), LUNET_ERR_ARG, "clip_grad_norm: params is NULL");

    /* Nothing above moved a parameter. */
    CHECK(element(a, 0) == 1 && element(b, 3) == 4);
    lunet_tensor *all[] = {a, b, ga, gb, ok4, ok4b, short3, wide, square, square_t, g22};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        lunet_tensor_release(all[i]);
}

/* ---- two threads: each parameter is split into blocks, one per thread ------------------------------ */

/* A large parameter (an odd size, so the blocks are uneven) stepped four times with one thread and
 * with two, from the same values: the update is element by element, so the bits must agree. */
enum { BIG = 100003, BIG_STEPS = 4 };

static lunet_tensor *big_tensor(double scale, int step) {
    int64_t n = BIG;
    lunet_tensor *t;
    CHECK_OK(lunet_tensor_zeros(&t, LUNET_DTYPE_F32, 1, &n));
    float *d = lunet_tensor_data(t);
    for (int64_t k = 0; k < n; k++) d[k] = (float)(scale * sin(0.37 * (double)k + 1.3 * step));
    return t;
}

/* kind 0: Adam (the vectorised path), 1: AMSGrad with L2 decay, 2: SGD with Nesterov, 3: centered RMSprop */
static lunet_tensor *big_steps(int kind, int threads) {
    lunet_set_num_threads(threads);
    lunet_tensor *p = big_tensor(1, 0), *s[3];
    for (int i = 0; i < 3; i++) s[i] = big_tensor(0, 0);
    lunet_tensor_set_requires_grad(p, true);
    for (int step = 1; step <= BIG_STEPS; step++) {
        lunet_tensor *g = big_tensor(0.5, step);
        CHECK_OK(lunet_tensor_set_grad(p, g));
        lunet_tensor_release(g);
        if (kind <= 1) {
            lunet_adam_options o = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                    .weight_decay = kind ? 0.1 : 0, .amsgrad = kind == 1};
            CHECK_OK(lunet_adam_step(&p, &s[0], &s[1], &s[2], 1, step, &o));
        } else if (kind == 2) {
            lunet_sgd_options o = {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true};
            CHECK_OK(lunet_sgd_step(&p, &s[0], 1, step, &o));
        } else {
            lunet_rmsprop_options o = {.lr = 1e-2, .alpha = 0.99, .eps = 1e-8, .momentum = 0.5, .centered = true};
            CHECK_OK(lunet_rmsprop_step(&p, &s[0], &s[1], &s[2], 1, &o));
        }
    }
    for (int i = 0; i < 3; i++) lunet_tensor_release(s[i]);
    lunet_set_num_threads(1);
    return p;
}

static void test_steps_on_two_threads(void) {
    lunet_tensor *start = big_tensor(1, 0);
    for (int kind = 0; kind < 4; kind++) {
        lunet_tensor *one = big_steps(kind, 1), *two = big_steps(kind, 2);
        CHECK(memcmp(lunet_tensor_data(one), lunet_tensor_data(two), BIG * sizeof(float)) == 0);
        CHECK(max_abs_diff(one, start) > 1e-4); /* and the steps did move the parameter */
        lunet_tensor_release(one);
        lunet_tensor_release(two);
    }
    lunet_tensor_release(start);
}

int main(void) {
    RUN(test_sgd);
    RUN(test_adam);
    RUN(test_rmsprop);
    RUN(test_clip_grad_norm);
    RUN(test_strided_gradient);
    RUN(test_update_is_seen_by_autograd);
    RUN(test_errors);
    RUN(test_steps_on_two_threads);
    return check_report("test_optim");
}
