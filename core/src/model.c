/*
 * model.c: building a model graph.  Each add_* call checks the layer against the shape the
 * graph produces so far, computes the shape it produces, copies its weights, and applies
 * the two rewrites of lunet.h: an activation fuses into the layer before it, and a
 * BatchNorm folds into a Linear or Conv2d before it.  Running is model_run.c.
 */
#include "model.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[LUNET_LAYER_KIND_COUNT] = {
    [LUNET_LAYER_LINEAR] = "linear",         [LUNET_LAYER_CONV2D] = "conv2d",
    [LUNET_LAYER_BATCH_NORM] = "batch_norm", [LUNET_LAYER_MAX_POOL2D] = "max_pool2d",
    [LUNET_LAYER_AVG_POOL2D] = "avg_pool2d", [LUNET_LAYER_ADAPTIVE_AVG_POOL2D] = "adaptive_avg_pool2d",
    [LUNET_LAYER_FLATTEN] = "flatten",       [LUNET_LAYER_RELU] = "relu",
    [LUNET_LAYER_LEAKY_RELU] = "leaky_relu", [LUNET_LAYER_GELU] = "gelu",
    [LUNET_LAYER_SIGMOID] = "sigmoid",       [LUNET_LAYER_TANH] = "tanh",
    [LUNET_LAYER_SOFTMAX] = "softmax",       [LUNET_LAYER_LOG_SOFTMAX] = "log_softmax",
    [LUNET_LAYER_QUANTIZE] = "quantize",     [LUNET_LAYER_DEQUANTIZE] = "dequantize",
    [LUNET_LAYER_QLINEAR] = "qlinear",       [LUNET_LAYER_QCONV2D] = "qconv2d",
    [LUNET_LAYER_LINEAR_DYNAMIC] = "linear_dynamic",
};

const char *lunet_layer_kind_name(lunet_layer_kind kind) {
    return (unsigned)kind < LUNET_LAYER_KIND_COUNT ? kind_names[kind] : "?";
}

lunet__activation model_activation_kernel(lunet_layer_kind kind, double parameter) {
    switch (kind) {
    case LUNET_LAYER_RELU: return LUNET__ACT_RELU;
    case LUNET_LAYER_LEAKY_RELU: return LUNET__ACT_LEAKY_RELU;
    case LUNET_LAYER_GELU: return parameter != 0 ? LUNET__ACT_GELU_TANH : LUNET__ACT_GELU;
    case LUNET_LAYER_SIGMOID: return LUNET__ACT_SIGMOID;
    case LUNET_LAYER_TANH: return LUNET__ACT_TANH;
    default: return LUNET__ACT_NONE;
    }
}

/* ---- life cycle ------------------------------------------------------------------------------ */

lunet_status lunet_model_create(lunet_model **out, lunet_dtype dtype, int ndim, const int64_t *sample_shape) {
    *out = NULL;
    if (dtype != LUNET_DTYPE_F32 && dtype != LUNET_DTYPE_F64)
        return lunet__fail(LUNET_ERR_DTYPE, "model: the graph's dtype must be f32 or f64, not %s", lunet_dtype_name(dtype));
    if (ndim < 0 || ndim > LUNET_MAX_DIMS - 1)
        return lunet__fail(LUNET_ERR_SHAPE, "model: a sample has 0 to %d dims, not %d", LUNET_MAX_DIMS - 1, ndim);
    LUNET_TRY(lunet__check_shape("model", ndim, sample_shape, dtype));
    int64_t numel = lunet__numel(ndim, sample_shape);
    lunet_model *m = calloc(1, sizeof *m);
    if (!m) return lunet__nomem("model");
    m->dtype = dtype;
    m->elem = lunet_dtype_size(dtype);
    m->in_ndim = ndim;
    memcpy(m->in_shape, sample_shape, (size_t)ndim * sizeof *sample_shape);
    m->in_numel = m->widest = numel;
    *out = m;
    return LUNET_OK;
}

static void layer_free(model_layer *l) {
    lunet__free(l->weight, l->weight_bytes);
    lunet__free(l->bias, l->bias_bytes);
    lunet__qlayer_free(&l->q);
}

void lunet_model_free(lunet_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_layers; i++) layer_free(&m->layers[i]);
    free(m->layers);
    lunet__free(m->buffer[0], m->buffer_bytes);
    lunet__free(m->buffer[1], m->buffer_bytes);
    lunet__free(m->cols, m->cols_total);
    lunet__free(m->dynamic, m->dynamic_total);
    free(m);
}

/* ---- properties ------------------------------------------------------------------------------- */

lunet_dtype lunet_model_dtype(const lunet_model *m) { return m->dtype; }

const int64_t *lunet_model_input_shape(const lunet_model *m, int *ndim) {
    *ndim = m->in_ndim;
    return m->in_shape;
}

/* The shape the graph produces so far. */
static void current_shape(const lunet_model *m, int *ndim, const int64_t **shape, int64_t *numel) {
    if (m->n_layers == 0) {
        *ndim = m->in_ndim, *shape = m->in_shape, *numel = m->in_numel;
    } else {
        const model_layer *l = &m->layers[m->n_layers - 1];
        *ndim = l->out_ndim, *shape = l->out_shape, *numel = l->out_numel;
    }
}

const int64_t *lunet_model_output_shape(const lunet_model *m, int *ndim) {
    const int64_t *shape;
    int64_t numel;
    current_shape(m, ndim, &shape, &numel);
    return shape;
}

size_t lunet_model_layer_count(const lunet_model *m) { return m->n_layers; }

lunet_layer_kind lunet_model_layer_kind(const lunet_model *m, size_t i) {
    return i < m->n_layers ? m->layers[i].kind : LUNET_LAYER_KIND_COUNT;
}

lunet_layer_kind lunet_model_layer_activation(const lunet_model *m, size_t i) {
    return i < m->n_layers ? m->layers[i].fused : LUNET_LAYER_KIND_COUNT;
}

/* ---- building ------------------------------------------------------------------------------------ */

/* A layer that starts from the current shape and element type; the caller sets its output
 * shape (the output's element type starts as the input's). */
static model_layer new_layer(const lunet_model *m, lunet_layer_kind kind) {
    model_layer l = {.kind = kind, .fused = LUNET_LAYER_KIND_COUNT, .in_dtype = m->dtype};
    const int64_t *shape;
    current_shape(m, &l.in_ndim, &shape, &l.in_numel);
    memcpy(l.in_shape, shape, (size_t)l.in_ndim * sizeof *shape);
    if (m->n_layers) {
        const model_layer *prev = &m->layers[m->n_layers - 1];
        l.in_dtype = prev->out_dtype;
        l.in_q = prev->out_q;
        l.in_layout = prev->out_layout;
    }
    l.in_elem = lunet_dtype_size(l.in_dtype);
    l.out_dtype = l.in_dtype;
    l.out_q = l.in_q;
    return l;
}

/* Float layers need a float activation: a u8 one must be dequantized first. */
static lunet_status require_float(const lunet_model *m, const model_layer *l, const char *op) {
    if (l->in_dtype == LUNET_DTYPE_U8)
        return lunet__fail(LUNET_ERR_DTYPE, "model: %s layer %zu gets a quantized (u8) activation; add a dequantize "
                           "layer before it", op, m->n_layers + 1);
    return LUNET_OK;
}

static lunet_status require_u8(const lunet_model *m, const model_layer *l, const char *op) {
    if (l->in_dtype != LUNET_DTYPE_U8)
        return lunet__fail(LUNET_ERR_DTYPE, "model: %s layer %zu needs a quantized (u8) activation, gets %s; add a "
                           "quantize layer before it", op, m->n_layers + 1, lunet_dtype_name(l->in_dtype));
    return LUNET_OK;
}

/* Whether a (C, H, W) image's bytes lie differently channels-last: not with one channel or
 * one pixel. */
static bool layouts_differ(int64_t c, int64_t h, int64_t w) { return c > 1 && h * w > 1; }

/* The layout of a (C, H, W) u8 image made channels-last. */
static model_layout channels_last(int64_t c, int64_t h, int64_t w) {
    return (model_layout){.channels_last = layouts_differ(c, h, w), .chw = {c, h, w}};
}

/* Has l's input transposed before it runs when its layout is not the one l reads: channels-
 * last (C, H, W) images, or the plain layout. */
static void read_layout(model_layer *l, bool want_channels_last) {
    if (want_channels_last && !l->in_layout.channels_last &&
        layouts_differ(l->in_shape[0], l->in_shape[1], l->in_shape[2]))
        l->convert = CONVERT_TO_CHANNELS_LAST;
    else if (!want_channels_last && l->in_layout.channels_last)
        l->convert = CONVERT_TO_CHANNELS_FIRST;
}

/* Appends l (taking its weights); on failure frees them. */
static lunet_status append(lunet_model *m, model_layer *l) {
    l->out_numel = lunet__numel(l->out_ndim, l->out_shape);
    l->out_elem = lunet_dtype_size(l->out_dtype);
    if (m->n_layers == m->cap_layers) {
        size_t cap = m->cap_layers ? 2 * m->cap_layers : 8;
        model_layer *grown = realloc(m->layers, cap * sizeof *grown);
        if (!grown) {
            layer_free(l);
            return lunet__nomem("model");
        }
        m->layers = grown;
        m->cap_layers = cap;
    }
    m->layers[m->n_layers++] = *l;
    if (l->out_numel > m->widest) m->widest = l->out_numel;
    return LUNET_OK;
}

/* A contiguous copy of t's elements in the graph's dtype, into *data (lunet__alloc'd). */
static lunet_status copy_tensor(void **data, size_t *bytes, const lunet_model *m, const lunet_tensor *t,
                                const char *op, const char *name) {
    *data = NULL;
    *bytes = 0;
    if (t->dtype != m->dtype)
        return lunet__fail(LUNET_ERR_DTYPE, "model: %s %s is %s but the graph is %s", op, name, lunet_dtype_name(t->dtype),
                           lunet_dtype_name(m->dtype));
    lunet_tensor *c;
    LUNET_TRY(lunet__contiguous_nograd(&c, t));
    *bytes = (size_t)t->numel * m->elem;
    *data = lunet__alloc(*bytes);
    if (!*data) {
        lunet_tensor_release(c);
        *bytes = 0;
        return lunet__nomem("model");
    }
    memcpy(*data, lunet__data(c), *bytes);
    lunet_tensor_release(c);
    return LUNET_OK;
}

/* A 1-d tensor of n entries, or a message naming it. */
static lunet_status check_vector(const lunet_tensor *t, int64_t n, const char *op, const char *name) {
    char st[LUNET__SHAPE_BUF];
    if (t && (t->ndim != 1 || t->shape[0] != n))
        return lunet__fail(LUNET_ERR_SHAPE, "model: %s %s must have %lld entries, got %s", op, name, (long long)n,
                           lunet__shape_str(st, sizeof st, t));
    return LUNET_OK;
}

/* Copies weight and bias (a zero bias when NULL, so that running always has one). */
static lunet_status copy_weights(model_layer *l, const lunet_model *m, const lunet_tensor *weight,
                                 const lunet_tensor *bias, int64_t outputs, const char *op) {
    LUNET_TRY(copy_tensor(&l->weight, &l->weight_bytes, m, weight, op, "weight"));
    lunet_status s = LUNET_OK;
    if (bias) {
        s = copy_tensor(&l->bias, &l->bias_bytes, m, bias, op, "bias");
    } else {
        l->bias_bytes = (size_t)outputs * m->elem;
        if (!(l->bias = lunet__alloc(l->bias_bytes))) s = lunet__nomem("model");
        else memset(l->bias, 0, l->bias_bytes);
    }
    if (s != LUNET_OK) layer_free(l);
    return s;
}

/* The shapes of a Linear-like layer l of `in` inputs and `out` outputs per row: the samples
 * must end in `in` features, which become `out`. */
static lunet_status linear_shapes(model_layer *l, const lunet_model *m, int64_t in, int64_t out, const char *op) {
    char sx[LUNET__SHAPE_BUF];
    if (l->in_ndim < 1 || l->in_shape[l->in_ndim - 1] != in)
        return lunet__fail(LUNET_ERR_SHAPE, "model: %s layer %zu takes %lld features but gets samples of shape %s", op,
                           m->n_layers + 1, (long long)in, lunet_shape_format(sx, sizeof sx, l->in_ndim, l->in_shape));
    l->out_ndim = l->in_ndim;
    memcpy(l->out_shape, l->in_shape, sizeof l->out_shape);
    l->out_shape[l->out_ndim - 1] = out;
    l->in_features = in;
    l->out_features = out;
    l->rows = lunet__numel(l->in_ndim - 1, l->in_shape);
    return LUNET_OK;
}

lunet_status lunet_model_add_linear(lunet_model *m, const lunet_tensor *weight, const lunet_tensor *bias) {
    model_layer l = new_layer(m, LUNET_LAYER_LINEAR);
    char sw[LUNET__SHAPE_BUF];
    LUNET_TRY(require_float(m, &l, "linear"));
    if (weight->ndim != 2)
        return lunet__fail(LUNET_ERR_SHAPE, "model: linear weight must be (out_features, in_features), got %s",
                           lunet__shape_str(sw, sizeof sw, weight));
    int64_t o = weight->shape[0];
    LUNET_TRY(linear_shapes(&l, m, weight->shape[1], o, "linear"));
    LUNET_TRY(check_vector(bias, o, "linear", "bias"));
    LUNET_TRY(copy_weights(&l, m, weight, bias, o, "linear"));
    return append(m, &l);
}

lunet_status lunet_model_add_conv2d(lunet_model *m, const lunet_tensor *weight, const lunet_tensor *bias,
                                    const lunet_conv2d_params *params) {
    model_layer l = new_layer(m, LUNET_LAYER_CONV2D);
    char sw[LUNET__SHAPE_BUF], sx[LUNET__SHAPE_BUF];
    LUNET_TRY(require_float(m, &l, "conv2d"));
    if (weight->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "model: conv2d weight must be (O, C/groups, KH, KW), got %s",
                           lunet__shape_str(sw, sizeof sw, weight));
    if (l.in_ndim != 3)
        return lunet__fail(LUNET_ERR_SHAPE, "model: conv2d layer %zu needs (C, H, W) samples, gets %s", m->n_layers + 1,
                           lunet_shape_format(sx, sizeof sx, l.in_ndim, l.in_shape));
    int64_t x_shape[4] = {1, l.in_shape[0], l.in_shape[1], l.in_shape[2]};
    LUNET_TRY(lunet__conv_geometry_of(&l.conv, x_shape, weight->shape, params));
    LUNET_TRY(check_vector(bias, l.conv.o, "conv2d", "bias"));
    l.out_ndim = 3;
    l.out_shape[0] = l.conv.o, l.out_shape[1] = l.conv.oh, l.out_shape[2] = l.conv.ow;
    LUNET_TRY(copy_weights(&l, m, weight, bias, l.conv.o, "conv2d"));
    size_t cols = lunet__conv_cols_bytes(&l.conv, m->dtype);
    LUNET_TRY(append(m, &l));
    if (cols > m->cols_bytes) m->cols_bytes = cols;
    return LUNET_OK;
}

/* The per-channel scale g / sqrt(v + eps) and shift beta - m scale of batch normalisation, in
 * double, from tensors already checked to have c entries of the graph's dtype. */
static lunet_status batch_norm_affine(double *scale, double *shift, int64_t c, const lunet_tensor *mean,
                                      const lunet_tensor *var, const lunet_tensor *weight, const lunet_tensor *bias,
                                      double eps) {
    for (int64_t i = 0; i < c; i++) {
        double mu, v, g = 1, b = 0;
        LUNET_TRY(lunet_tensor_get_f64(&mu, mean, &i));
        LUNET_TRY(lunet_tensor_get_f64(&v, var, &i));
        if (weight) LUNET_TRY(lunet_tensor_get_f64(&g, weight, &i));
        if (bias) LUNET_TRY(lunet_tensor_get_f64(&b, bias, &i));
        scale[i] = g / sqrt(v + eps);
        shift[i] = b - mu * scale[i];
    }
    return LUNET_OK;
}

/* Folds (scale, shift) into the Linear or Conv2d layer l, whose outputs are the c channels:
 * row o of the weight times scale[o]; bias b[o] scale[o] + shift[o]. */
static void fold_into(model_layer *l, lunet_dtype dtype, const double *scale, const double *shift, int64_t c) {
    int64_t per_row = (int64_t)(l->weight_bytes / lunet_dtype_size(dtype)) / c;
    for (int64_t o = 0; o < c; o++) {
        char *row = (char *)l->weight + (size_t)(o * per_row) * lunet_dtype_size(dtype);
        char *b = (char *)l->bias + (size_t)o * lunet_dtype_size(dtype);
        for (int64_t k = 0; k < per_row; k++) {
            char *w = row + (size_t)k * lunet_dtype_size(dtype);
            lunet__store_f64(w, dtype, lunet__load_f64(w, dtype) * scale[o]);
        }
        lunet__store_f64(b, dtype, lunet__load_f64(b, dtype) * scale[o] + shift[o]);
    }
}

lunet_status lunet_model_add_batch_norm(lunet_model *m, const lunet_tensor *mean, const lunet_tensor *var,
                                        const lunet_tensor *weight, const lunet_tensor *bias, double eps) {
    model_layer l = new_layer(m, LUNET_LAYER_BATCH_NORM);
    char sx[LUNET__SHAPE_BUF];
    LUNET_TRY(require_float(m, &l, "batch_norm"));
    if (l.in_ndim < 1)
        return lunet__fail(LUNET_ERR_SHAPE, "model: batch_norm layer %zu needs (C, ...) samples, gets %s", m->n_layers + 1,
                           lunet_shape_format(sx, sizeof sx, l.in_ndim, l.in_shape));
    int64_t c = l.in_shape[0];
    const lunet_tensor *vectors[4] = {mean, var, weight, bias};
    static const char *const names[4] = {"running_mean", "running_var", "weight", "bias"};
    for (int i = 0; i < 4; i++) {
        if (!vectors[i] && i < 2) return lunet__fail(LUNET_ERR_ARG, "model: batch_norm needs %s", names[i]);
        LUNET_TRY(check_vector(vectors[i], c, "batch_norm", names[i]));
        if (vectors[i] && vectors[i]->dtype != m->dtype)
            return lunet__fail(LUNET_ERR_DTYPE, "model: batch_norm %s is %s but the graph is %s", names[i],
                               lunet_dtype_name(vectors[i]->dtype), lunet_dtype_name(m->dtype));
    }
    if (!(eps >= 0)) return lunet__fail(LUNET_ERR_ARG, "model: batch_norm eps must be >= 0");
    double *affine = malloc(2 * (size_t)(c ? c : 1) * sizeof *affine);
    if (!affine) return lunet__nomem("model");
    lunet_status s = batch_norm_affine(affine, affine + c, c, mean, var, weight, bias, eps);
    model_layer *prev = m->n_layers ? &m->layers[m->n_layers - 1] : NULL;
    /* Fold when the previous layer's outputs are exactly the channels: a conv2d, or a linear
     * layer on 1-d samples, with no activation after it yet. */
    bool foldable = prev && prev->fused == LUNET_LAYER_KIND_COUNT &&
                    (prev->kind == LUNET_LAYER_CONV2D || (prev->kind == LUNET_LAYER_LINEAR && prev->out_ndim == 1));
    if (s == LUNET_OK && foldable) {
        fold_into(prev, m->dtype, affine, affine + c, c);
    } else if (s == LUNET_OK) {
        l.out_ndim = l.in_ndim;
        memcpy(l.out_shape, l.in_shape, sizeof l.out_shape);
        l.channels = c;
        l.per_channel = c ? l.in_numel / c : 0;
        l.weight_bytes = l.bias_bytes = (size_t)c * m->elem;
        l.weight = lunet__alloc(l.weight_bytes);
        l.bias = lunet__alloc(l.bias_bytes);
        if (!l.weight || !l.bias) {
            layer_free(&l);
            s = lunet__nomem("model");
        }
        for (int64_t i = 0; s == LUNET_OK && i < c; i++) {
            lunet__store_f64((char *)l.weight + (size_t)i * m->elem, m->dtype, affine[i]);
            lunet__store_f64((char *)l.bias + (size_t)i * m->elem, m->dtype, affine[c + i]);
        }
        if (s == LUNET_OK) s = append(m, &l);
    }
    free(affine);
    return s;
}

lunet_status lunet_model_add_pool2d(lunet_model *m, lunet_layer_kind kind, const lunet_pool2d_params *params) {
    if (kind != LUNET_LAYER_MAX_POOL2D && kind != LUNET_LAYER_AVG_POOL2D)
        return lunet__fail(LUNET_ERR_ARG, "model: add_pool2d takes max_pool2d or avg_pool2d, not %s", lunet_layer_kind_name(kind));
    model_layer l = new_layer(m, kind);
    const char *op = lunet_layer_kind_name(kind);
    char sx[LUNET__SHAPE_BUF];
    if (kind == LUNET_LAYER_AVG_POOL2D) LUNET_TRY(require_float(m, &l, op));
    if (l.in_ndim != 3)
        return lunet__fail(LUNET_ERR_SHAPE, "model: %s layer %zu needs (C, H, W) samples, gets %s", op, m->n_layers + 1,
                           lunet_shape_format(sx, sizeof sx, l.in_ndim, l.in_shape));
    lunet_pool2d_params p = *params;
    if (kind == LUNET_LAYER_AVG_POOL2D) p.dilation[0] = p.dilation[1] = 1; /* average pooling has no dilation */
    LUNET_TRY(lunet__pool_geometry_of(&l.pool, l.in_shape[1], l.in_shape[2], &p, op));
    l.pool.planes = l.in_shape[0];
    l.out_ndim = 3;
    l.out_shape[0] = l.in_shape[0], l.out_shape[1] = l.pool.oh, l.out_shape[2] = l.pool.ow;
    if (l.in_dtype == LUNET_DTYPE_U8) {
        read_layout(&l, true);
        l.out_layout = channels_last(l.out_shape[0], l.out_shape[1], l.out_shape[2]);
    }
    return append(m, &l);
}

lunet_status lunet_model_add_adaptive_avg_pool2d(lunet_model *m, int64_t out_h, int64_t out_w) {
    model_layer l = new_layer(m, LUNET_LAYER_ADAPTIVE_AVG_POOL2D);
    char sx[LUNET__SHAPE_BUF];
    LUNET_TRY(require_float(m, &l, "adaptive_avg_pool2d"));
    if (l.in_ndim != 3)
        return lunet__fail(LUNET_ERR_SHAPE, "model: adaptive_avg_pool2d layer %zu needs (C, H, W) samples, gets %s",
                           m->n_layers + 1, lunet_shape_format(sx, sizeof sx, l.in_ndim, l.in_shape));
    LUNET_TRY(lunet__adaptive_pool_geometry_of(&l.pool, l.in_shape[1], l.in_shape[2], out_h, out_w));
    l.pool.planes = l.in_shape[0];
    l.out_ndim = 3;
    l.out_shape[0] = l.in_shape[0], l.out_shape[1] = out_h, l.out_shape[2] = out_w;
    return append(m, &l);
}

/* dim of an (N, ...) activation with `ndim` sample dims, as a sample dim (0-based). */
static lunet_status sample_dim(int *out, int dim, int ndim, const char *op) {
    int d = dim < 0 ? dim + ndim + 1 : dim;
    if (d < 1 || d > ndim)
        return lunet__fail(LUNET_ERR_INDEX, "model: %s dim %d is out of range for (N, ...) with %d sample dims", op, dim, ndim);
    *out = d - 1;
    return LUNET_OK;
}

lunet_status lunet_model_add_flatten(lunet_model *m, int start_dim, int end_dim) {
    model_layer l = new_layer(m, LUNET_LAYER_FLATTEN);
    if (l.in_ndim == 0) { /* (N) stays (N) */
        l.out_ndim = 0;
        return append(m, &l);
    }
    int a = 0, b = 0;
    LUNET_TRY(sample_dim(&a, start_dim, l.in_ndim, "flatten start_dim"));
    LUNET_TRY(sample_dim(&b, end_dim, l.in_ndim, "flatten end_dim"));
    if (a > b) return lunet__fail(LUNET_ERR_ARG, "model: flatten start_dim %d is after end_dim %d", start_dim, end_dim);
    int k = 0;
    for (int i = 0; i < a; i++) l.out_shape[k++] = l.in_shape[i];
    l.out_shape[k++] = lunet__numel(b - a + 1, l.in_shape + a);
    for (int i = b + 1; i < l.in_ndim; i++) l.out_shape[k++] = l.in_shape[i];
    l.out_ndim = k;
    /* a channels-last image flattened whole keeps its order; any other flatten needs the plain one */
    if (k == 1) l.out_layout = l.in_layout;
    else read_layout(&l, false);
    return append(m, &l);
}

lunet_status lunet_model_add_activation(lunet_model *m, lunet_layer_kind kind, double parameter) {
    lunet__activation act = model_activation_kernel(kind, parameter);
    if (act == LUNET__ACT_NONE)
        return lunet__fail(LUNET_ERR_ARG, "model: %s is not an activation", lunet_layer_kind_name(kind));
    model_layer *prev = m->n_layers ? &m->layers[m->n_layers - 1] : NULL;
    if (prev && prev->out_dtype == LUNET_DTYPE_U8) {
        /* On u8 only a ReLU right after a qlinear or qconv2d exists: the clamp at the zero point. */
        if (kind != LUNET_LAYER_RELU || prev->fused != LUNET_LAYER_KIND_COUNT ||
            (prev->kind != LUNET_LAYER_QLINEAR && prev->kind != LUNET_LAYER_QCONV2D))
            return lunet__fail(LUNET_ERR_DTYPE, "model: %s layer %zu gets a quantized (u8) activation; only a relu right "
                               "after a qlinear or qconv2d layer runs on one", lunet_layer_kind_name(kind), m->n_layers + 1);
        prev->fused = kind;
        return LUNET_OK;
    }
    /* Fuse into the layer before when it computes a fresh output and has no activation yet. */
    if (prev && prev->fused == LUNET_LAYER_KIND_COUNT &&
        (prev->kind == LUNET_LAYER_LINEAR || prev->kind == LUNET_LAYER_CONV2D || prev->kind == LUNET_LAYER_BATCH_NORM ||
         prev->kind == LUNET_LAYER_LINEAR_DYNAMIC ||
         prev->kind == LUNET_LAYER_MAX_POOL2D || prev->kind == LUNET_LAYER_AVG_POOL2D ||
         prev->kind == LUNET_LAYER_ADAPTIVE_AVG_POOL2D)) {
        prev->fused = kind;
        prev->activation = act;
        prev->slope = parameter;
        return LUNET_OK;
    }
    model_layer l = new_layer(m, kind);
    l.activation = act;
    l.slope = parameter;
    l.out_ndim = l.in_ndim;
    memcpy(l.out_shape, l.in_shape, sizeof l.out_shape);
    return append(m, &l);
}

lunet_status lunet_model_add_softmax(lunet_model *m, lunet_layer_kind kind, int dim) {
    if (kind != LUNET_LAYER_SOFTMAX && kind != LUNET_LAYER_LOG_SOFTMAX)
        return lunet__fail(LUNET_ERR_ARG, "model: add_softmax takes softmax or log_softmax, not %s", lunet_layer_kind_name(kind));
    model_layer l = new_layer(m, kind);
    int d = 0;
    LUNET_TRY(require_float(m, &l, lunet_layer_kind_name(kind)));
    LUNET_TRY(sample_dim(&d, dim, l.in_ndim, lunet_layer_kind_name(kind)));
    l.outer = lunet__numel(d, l.in_shape);
    l.n = l.in_shape[d];
    l.inner = lunet__numel(l.in_ndim - d - 1, l.in_shape + d + 1);
    l.log = kind == LUNET_LAYER_LOG_SOFTMAX;
    l.out_ndim = l.in_ndim;
    memcpy(l.out_shape, l.in_shape, sizeof l.out_shape);
    return append(m, &l);
}

/* ---- int8 layers -------------------------------------------------------------------------------- */

lunet_status lunet_model_add_quantize(lunet_model *m, lunet_qparams q) {
    model_layer l = new_layer(m, LUNET_LAYER_QUANTIZE);
    LUNET_TRY(require_float(m, &l, "quantize"));
    if (m->dtype != LUNET_DTYPE_F32)
        return lunet__fail(LUNET_ERR_DTYPE, "model: quantize needs an f32 graph, not %s", lunet_dtype_name(m->dtype));
    LUNET_TRY(lunet_qparams_check(q, "model: quantize"));
    l.out_dtype = LUNET_DTYPE_U8;
    l.out_q = q;
    l.out_ndim = l.in_ndim;
    memcpy(l.out_shape, l.in_shape, sizeof l.out_shape);
    return append(m, &l);
}

lunet_status lunet_model_add_dequantize(lunet_model *m) {
    model_layer l = new_layer(m, LUNET_LAYER_DEQUANTIZE);
    LUNET_TRY(require_u8(m, &l, "dequantize"));
    read_layout(&l, false);
    l.out_dtype = m->dtype;
    l.out_ndim = l.in_ndim;
    memcpy(l.out_shape, l.in_shape, sizeof l.out_shape);
    return append(m, &l);
}

lunet_status lunet_model_add_qlinear(lunet_model *m, const lunet_qlayer_params *p) {
    model_layer l = new_layer(m, LUNET_LAYER_QLINEAR);
    LUNET_TRY(require_u8(m, &l, "qlinear"));
    LUNET_TRY(lunet_qparams_check(p->output, "model: qlinear"));
    /* After a channels-last image flattened whole, the weight's inputs are read in its order. */
    bool reorder = l.in_layout.channels_last && l.in_ndim == 1 && p->weight->ndim == 2 &&
                   p->weight->shape[1] == l.in_shape[0];
    if (!reorder) read_layout(&l, false);
    LUNET_TRY(lunet__qlayer_prepare(&l.q, p->weight, p->scale, p->bias, 2, reorder ? l.in_layout.chw : NULL, l.in_q,
                                    p->output.scale, "model: qlinear"));
    l.out_q = p->output;
    if (p->relu) l.fused = LUNET_LAYER_RELU;
    lunet_status s = linear_shapes(&l, m, l.q.k, l.q.channels, "qlinear");
    if (s != LUNET_OK) {
        layer_free(&l);
        return s;
    }
    return append(m, &l);
}

lunet_status lunet_model_add_qconv2d(lunet_model *m, const lunet_qlayer_params *p, const lunet_conv2d_params *params) {
    model_layer l = new_layer(m, LUNET_LAYER_QCONV2D);
    char sx[LUNET__SHAPE_BUF];
    LUNET_TRY(require_u8(m, &l, "qconv2d"));
    if (l.in_ndim != 3 || p->weight->ndim != 4)
        return lunet__fail(LUNET_ERR_SHAPE, "model: qconv2d layer %zu needs (C, H, W) samples and an (O, C, KH, KW) "
                           "weight, gets samples of shape %s", m->n_layers + 1,
                           lunet_shape_format(sx, sizeof sx, l.in_ndim, l.in_shape));
    if (params->groups != 1)
        return lunet__fail(LUNET_ERR_ARG, "model: qconv2d layer %zu has %lld groups; int8 convolutions have one",
                           m->n_layers + 1, (long long)params->groups);
    int64_t x_shape[4] = {1, l.in_shape[0], l.in_shape[1], l.in_shape[2]};
    LUNET_TRY(lunet__conv_geometry_of(&l.conv, x_shape, p->weight->shape, params));
    LUNET_TRY(lunet_qparams_check(p->output, "model: qconv2d"));
    LUNET_TRY(lunet__qlayer_prepare(&l.q, p->weight, p->scale, p->bias, 4, p->weight->shape + 1, l.in_q,
                                    p->output.scale, "model: qconv2d"));
    l.out_q = p->output;
    if (p->relu) l.fused = LUNET_LAYER_RELU;
    l.out_ndim = 3;
    l.out_shape[0] = l.conv.o, l.out_shape[1] = l.conv.oh, l.out_shape[2] = l.conv.ow;
    read_layout(&l, true);
    l.out_layout = channels_last(l.conv.o, l.conv.oh, l.conv.ow);
    size_t cols = lunet__qconv_cols_bytes(&l.conv);
    LUNET_TRY(append(m, &l));
    if (cols > m->cols_bytes) m->cols_bytes = cols;
    return LUNET_OK;
}

lunet_status lunet_model_add_linear_dynamic(lunet_model *m, const lunet_tensor *weight, const lunet_tensor *scale,
                                            const lunet_tensor *bias) {
    model_layer l = new_layer(m, LUNET_LAYER_LINEAR_DYNAMIC);
    LUNET_TRY(require_float(m, &l, "linear_dynamic"));
    if (m->dtype != LUNET_DTYPE_F32)
        return lunet__fail(LUNET_ERR_DTYPE, "model: linear_dynamic needs an f32 graph, not %s", lunet_dtype_name(m->dtype));
    LUNET_TRY(lunet__qlayer_prepare(&l.q, weight, scale, bias, 2, NULL, (lunet_qparams){1.0f, 0}, 0,
                                    "model: linear_dynamic"));
    lunet_status s = linear_shapes(&l, m, l.q.k, l.q.channels, "linear_dynamic");
    if (s != LUNET_OK) {
        layer_free(&l);
        return s;
    }
    /* per sample: the quantized rows, and each row's scale and zero point */
    size_t dynamic = (size_t)(l.rows * l.in_features) + (size_t)l.rows * (sizeof(float) + sizeof(int32_t)) + 64;
    LUNET_TRY(append(m, &l));
    if (dynamic > m->dynamic_bytes) m->dynamic_bytes = dynamic;
    return LUNET_OK;
}
