/*
 * model_run.c: running a model graph.  A batch flows through two activation buffers in
 * turn (ping-pong), each sized for the widest activation of the graph; the first layer
 * reads the caller's input and the last writes the caller's output directly.  Layers that
 * work element by element (activations, an unfolded BatchNorm) run in place.  Int8 images
 * stay channels-last between int8 layers (model_layout in model.h); a layer that reads the
 * other layout has its input transposed into the free buffer first.
 *
 * Threads: a Linear layer is one GEMM over the whole batch, which lunet__gemm shares among
 * the threads itself.  Every other layer works sample by sample, so the batch is split into
 * one contiguous block of samples per worker; a Conv2d worker unfolds into its own column
 * scratch and applies the fused activation to each image while it is still in cache.
 */
#include "model.h"

#include <string.h>

/* Elements of work per worker below which splitting a layer costs more than it saves. */
#define MIN_WORK_PER_WORKER (1 << 15)

/* ---- buffers -------------------------------------------------------------------------------------- */

/* Makes room for `batch` samples (at most LUNET_MODEL_MAX_BATCH); keeps larger buffers. */
static lunet_status reserve(lunet_model *m, int64_t batch) {
    int workers = lunet_get_num_threads();
    /* A layer added after the last run may need more room than was made for the others. */
    bool scratch_fits = m->buffer_bytes >= (size_t)(m->capacity * m->widest) * m->elem &&
                        m->cols_total >= m->cols_bytes * (size_t)m->workers &&
                        m->dynamic_total >= m->dynamic_bytes * (size_t)m->capacity;
    if (batch <= m->capacity && workers <= m->workers && scratch_fits) return LUNET_OK;
    int64_t capacity = batch > m->capacity ? batch : m->capacity;
    size_t buffer_bytes = (size_t)(capacity * m->widest) * m->elem;
    size_t cols_total = m->cols_bytes * (size_t)workers, dynamic_total = m->dynamic_bytes * (size_t)capacity;
    void *b0 = lunet__alloc(buffer_bytes), *b1 = lunet__alloc(buffer_bytes), *cols = lunet__alloc(cols_total);
    void *dynamic = lunet__alloc(dynamic_total);
    if (!b0 || !b1 || (cols_total && !cols) || (dynamic_total && !dynamic)) {
        lunet__free(b0, buffer_bytes);
        lunet__free(b1, buffer_bytes);
        lunet__free(cols, cols_total);
        lunet__free(dynamic, dynamic_total);
        return lunet__nomem("model");
    }
    lunet__free(m->buffer[0], m->buffer_bytes);
    lunet__free(m->buffer[1], m->buffer_bytes);
    lunet__free(m->cols, m->cols_total);
    lunet__free(m->dynamic, m->dynamic_total);
    m->buffer[0] = b0, m->buffer[1] = b1, m->cols = cols, m->dynamic = dynamic;
    m->buffer_bytes = buffer_bytes, m->cols_total = cols_total, m->dynamic_total = dynamic_total;
    m->capacity = capacity, m->workers = workers;
    return LUNET_OK;
}

/* ---- layers, on a block of samples ------------------------------------------------------------------ */

typedef struct run_step {
    const lunet_model *m;
    const model_layer *l;
    const char *in;
    char *out;
    bool converting;                /* transposing the layer's input (l->convert), not running it */
} run_step;

/* The epilogue of a static int8 layer: its output parameters and fused ReLU. */
static lunet__epilogue static_epilogue(const model_layer *l) {
    return lunet__static_epilogue(&l->q, l->out_q, l->fused == LUNET_LAYER_RELU);
}

/* A u8 input's samples to the layout the layer reads (model_layout). */
static void convert_block(const run_step *r, int64_t first, int64_t last) {
    const model_layer *l = r->l;
    for (int64_t n = first; n < last; n++) {
        const uint8_t *x = (const uint8_t *)r->in + n * l->in_numel;
        uint8_t *y = (uint8_t *)r->out + n * l->in_numel;
        if (l->convert == CONVERT_TO_CHANNELS_LAST)
            lunet__u8_to_channels_last(y, x, l->in_shape[0], l->in_shape[1] * l->in_shape[2]);
        else
            lunet__u8_to_channels_first(y, x, l->in_layout.chw[0], l->in_layout.chw[1] * l->in_layout.chw[2]);
    }
}

static void conv_block(const run_step *r, int64_t first, int64_t last, int worker) {
    const model_layer *l = r->l;
    size_t z = r->m->elem;
    void *cols = (char *)r->m->cols + (size_t)worker * r->m->cols_bytes;
    if (l->kind == LUNET_LAYER_QCONV2D) {
        lunet__epilogue e = static_epilogue(l);
        for (int64_t n = first; n < last; n++)
            lunet__qconv2d_image(&l->conv, &l->q, &e, (const uint8_t *)r->in + n * l->in_numel, l->in_q.zero_point,
                                 (uint8_t *)r->out + n * l->out_numel, cols);
        return;
    }
    for (int64_t n = first; n < last; n++) {
        char *y = r->out + (size_t)(n * l->out_numel) * z;
        lunet__conv2d_image(&l->conv, r->m->dtype, r->in + (size_t)(n * l->in_numel) * z, l->weight, l->bias, y, cols);
        lunet__activation_forward(l->activation, r->m->dtype, y, y, l->out_numel, l->slope);
    }
}

/* y = x scale[c] + shift[c] for the channels of each sample (an unfolded BatchNorm). */
#define SCALE_SHIFT(T)                                                                     \
    static void scale_shift_##T(T *y, const T *x, const T *scale, const T *shift, int64_t samples, int64_t c, \
                                int64_t inner) {                                           \
        for (int64_t s = 0; s < samples; s++)                                              \
            for (int64_t ch = 0; ch < c; ch++) {                                           \
                const T *xs = x + (s * c + ch) * inner;                                    \
                T *ys = y + (s * c + ch) * inner;                                          \
                for (int64_t i = 0; i < inner; i++) ys[i] = xs[i] * scale[ch] + shift[ch]; \
            }                                                                              \
    }
SCALE_SHIFT(float)
SCALE_SHIFT(double)

/* Every layer but Linear and Conv2d, on samples [first, last). */
static void sample_block(const run_step *r, int64_t first, int64_t last) {
    const model_layer *l = r->l;
    lunet_dtype dt = r->m->dtype;
    int64_t count = last - first;
    const char *in = r->in + (size_t)(first * l->in_numel) * l->in_elem;
    char *out = r->out + (size_t)(first * l->out_numel) * l->out_elem;
    switch (l->kind) {
    case LUNET_LAYER_QUANTIZE:
        lunet__quantize_f32((uint8_t *)out, (const float *)in, count * l->in_numel, l->out_q.scale, l->out_q.zero_point);
        return;
    case LUNET_LAYER_DEQUANTIZE:
        lunet__dequantize_f32((float *)out, (const uint8_t *)in, count * l->in_numel, l->in_q.scale, l->in_q.zero_point);
        return;
    case LUNET_LAYER_MAX_POOL2D:
        if (l->in_dtype == LUNET_DTYPE_U8) {
            lunet__max_pool2d_u8(&l->pool, count, l->in_shape[0], (uint8_t *)out, (const uint8_t *)in);
            return;
        }
        /* fall through */
    case LUNET_LAYER_AVG_POOL2D:
    case LUNET_LAYER_ADAPTIVE_AVG_POOL2D: {
        lunet__pool_geometry g = l->pool;
        g.planes *= count;
        if (l->kind == LUNET_LAYER_MAX_POOL2D) lunet__max_pool2d_forward(&g, dt, out, NULL, in);
        else lunet__avg_pool2d_forward(&g, dt, out, in, l->kind == LUNET_LAYER_ADAPTIVE_AVG_POOL2D);
        break;
    }
    case LUNET_LAYER_BATCH_NORM:
        if (dt == LUNET_DTYPE_F32)
            scale_shift_float((float *)out, (const float *)in, l->weight, l->bias, count, l->channels, l->per_channel);
        else
            scale_shift_double((double *)out, (const double *)in, l->weight, l->bias, count, l->channels, l->per_channel);
        break;
    case LUNET_LAYER_SOFTMAX:
    case LUNET_LAYER_LOG_SOFTMAX:
        lunet__softmax_forward(dt, out, in, count * l->outer, l->n, l->inner, l->log);
        break;
    default: /* a standalone activation, or a Linear layer's activation on its output in place */
        lunet__activation_forward(l->activation, dt, out,
                                  l->kind == LUNET_LAYER_LINEAR || l->kind == LUNET_LAYER_LINEAR_DYNAMIC ? out : in,
                                  count * l->out_numel, l->slope);
        return;
    }
    lunet__activation_forward(l->activation, dt, out, out, count * l->out_numel, l->slope);
}

/* The step on samples [first, last), as worker `worker`. */
static void run_block(const run_step *r, int64_t first, int64_t last, int worker) {
    if (r->converting) convert_block(r, first, last);
    else if (r->l->kind == LUNET_LAYER_CONV2D || r->l->kind == LUNET_LAYER_QCONV2D) conv_block(r, first, last, worker);
    else sample_block(r, first, last);
}

/* Runs the step on `batch` samples, in one block per worker. */
static void over_samples(const run_step *r, int64_t batch, int64_t work_per_sample) {
    int workers = lunet__workers_for(batch * work_per_sample, MIN_WORK_PER_WORKER);
    if (workers > batch) workers = (int)batch;
    if (workers > r->m->workers) workers = r->m->workers;
    if (workers <= 1) {
        run_block(r, 0, batch, 0);
        return;
    }
#pragma omp parallel for num_threads(workers) schedule(static, 1)
    for (int k = 0; k < workers; k++) {
        int64_t first, last;
        lunet__block(&first, &last, batch, k, workers, 1);
        run_block(r, first, last, k);
    }
}

static void run_linear(const run_step *r, int64_t batch) {
    const model_layer *l = r->l;
    int64_t m = batch * l->rows, o = l->out_features, in = l->in_features;
    size_t row = (size_t)o * r->m->elem;
    for (int64_t i = 0; i < m; i++) memcpy(r->out + (size_t)i * row, l->bias, row); /* the GEMM adds onto it */
    if (in > 0 && m > 0)
        lunet__gemm(LUNET__SPLIT_COLS, r->m->dtype, false, true, m, o, in, 1, r->in, in, l->weight, in, 1, r->out, o);
    if (l->activation != LUNET__ACT_NONE) over_samples(r, batch, l->out_numel);
}

/* An int8 Linear layer on `rows` rows: static (u8 -> u8) or dynamic (f32 -> f32, each row
 * quantized into the graph's dynamic scratch first), in one block of rows per worker. */
static void qlinear_block(const run_step *r, int64_t first, int64_t last) {
    const model_layer *l = r->l;
    int64_t k = l->in_features, o = l->out_features;
    if (l->kind == LUNET_LAYER_QLINEAR) {
        lunet__epilogue e = static_epilogue(l);
        lunet__qlinear_rows(&l->q, &e, (const uint8_t *)r->in + first * k, last - first, (uint8_t *)r->out + first * o);
        return;
    }
    int64_t rows = last - first, all = r->m->capacity * l->rows;
    uint8_t *q = (uint8_t *)r->m->dynamic;
    float *scales = (float *)(q + ((size_t)(all * k) + 15) / 16 * 16);
    int32_t *zero_points = (int32_t *)(scales + all);
    lunet__quantize_rows_dynamic(q + first * k, scales + first, zero_points + first, (const float *)r->in + first * k,
                                 rows, k);
    /* the rows' scales are indexed from row 0 of the block; a fused ReLU runs in the epilogue */
    lunet__epilogue e = lunet__dynamic_epilogue(&l->q, scales + first, zero_points + first, l->fused == LUNET_LAYER_RELU);
    lunet__qlinear_rows(&l->q, &e, q + first * k, rows, (float *)r->out + first * o);
}

static void run_qlinear(const run_step *r, int64_t batch) {
    const model_layer *l = r->l;
    int64_t rows = batch * l->rows;
    int workers = lunet__workers_for(rows * l->in_features * l->out_features, 1 << 20);
    if (workers > r->m->workers) workers = r->m->workers;
    if (workers <= 1) {
        qlinear_block(r, 0, rows);
    } else {
#pragma omp parallel for num_threads(workers) schedule(static, 1)
        for (int w = 0; w < workers; w++) {
            int64_t first, last;
            lunet__block(&first, &last, rows, w, workers, 4);
            if (last > first) qlinear_block(r, first, last);
        }
    }
    if (l->activation != LUNET__ACT_NONE && l->fused != LUNET_LAYER_RELU) over_samples(r, batch, l->out_numel);
}

/* ---- running ------------------------------------------------------------------------------------------ */

static bool runs_in_place(const model_layer *l) {
    return l->kind == LUNET_LAYER_BATCH_NORM || model_activation_kernel(l->kind, 0) != LUNET__ACT_NONE;
}

/* One slice of at most m->capacity samples. */
static void run_slice(lunet_model *m, const char *input, int64_t batch, char *output) {
    size_t last = m->n_layers; /* the last layer that moves data (flatten only renames) */
    while (last > 0 && m->layers[last - 1].kind == LUNET_LAYER_FLATTEN) last--;
    const char *cur = input;
    for (size_t i = 0; i < last; i++) {
        const model_layer *l = &m->layers[i];
        if (l->convert != CONVERT_NONE) { /* cur is a u8 activation in one of the two buffers */
            char *other = cur == m->buffer[0] ? m->buffer[1] : m->buffer[0];
            run_step t = {m, l, cur, other, true};
            over_samples(&t, batch, l->in_numel);
            cur = other;
        }
        if (l->kind == LUNET_LAYER_FLATTEN) continue;
        char *out;
        if (i + 1 == last) out = output;
        else if (runs_in_place(l) && cur != input) out = (char *)cur;
        else out = cur == m->buffer[0] ? m->buffer[1] : m->buffer[0];
        run_step r = {m, l, cur, out, false};
        if (l->kind == LUNET_LAYER_LINEAR) run_linear(&r, batch);
        else if (l->kind == LUNET_LAYER_QLINEAR || l->kind == LUNET_LAYER_LINEAR_DYNAMIC) run_qlinear(&r, batch);
        else if (l->kind == LUNET_LAYER_CONV2D || l->kind == LUNET_LAYER_QCONV2D)
            over_samples(&r, batch, l->conv.col_rows * l->out_numel);
        else over_samples(&r, batch, l->in_numel > l->out_numel ? l->in_numel : l->out_numel);
        cur = out;
    }
    if (cur != output) memcpy(output, cur, (size_t)(batch * m->in_numel) * m->elem); /* no layer moved the data */
}

lunet_status lunet_model_run(lunet_model *m, const void *input, int64_t batch, void *output) {
    if (batch < 0) return lunet__fail(LUNET_ERR_ARG, "model: batch size %lld is negative", (long long)batch);
    if (m->n_layers && m->layers[m->n_layers - 1].out_dtype != m->dtype)
        return lunet__fail(LUNET_ERR_DTYPE, "model: the graph ends on a quantized (u8) activation; add a dequantize layer");
    if (batch == 0) return LUNET_OK;
    int ndim;
    const int64_t *shape = lunet_model_output_shape(m, &ndim);
    int64_t out_numel = lunet__numel(ndim, shape);
    int64_t slice = batch < LUNET_MODEL_MAX_BATCH ? batch : LUNET_MODEL_MAX_BATCH;
    LUNET_TRY(reserve(m, slice));
    for (int64_t done = 0; done < batch; done += slice) {
        int64_t n = batch - done < slice ? batch - done : slice;
        run_slice(m, (const char *)input + (size_t)(done * m->in_numel) * m->elem, n,
                  (char *)output + (size_t)(done * out_numel) * m->elem);
    }
    return LUNET_OK;
}

lunet_status lunet_model_forward(lunet_tensor **out, lunet_model *m, const lunet_tensor *x) {
    *out = NULL;
    char sx[LUNET__SHAPE_BUF], se[LUNET__SHAPE_BUF];
    if (x->dtype != m->dtype)
        return lunet__fail(LUNET_ERR_DTYPE, "model: input is %s but the graph is %s", lunet_dtype_name(x->dtype),
                           lunet_dtype_name(m->dtype));
    if (x->ndim != m->in_ndim + 1 || memcmp(x->shape + 1, m->in_shape, (size_t)m->in_ndim * sizeof *m->in_shape) != 0)
        return lunet__fail(LUNET_ERR_SHAPE, "model: input %s is not a batch of samples of shape %s",
                           lunet__shape_str(sx, sizeof sx, x), lunet_shape_format(se, sizeof se, m->in_ndim, m->in_shape));
    int ndim;
    const int64_t *sample = lunet_model_output_shape(m, &ndim);
    int64_t shape[LUNET_MAX_DIMS];
    shape[0] = x->shape[0];
    memcpy(shape + 1, sample, (size_t)ndim * sizeof *sample);
    lunet_tensor *xc = NULL, *y = NULL;
    lunet_status s = lunet__contiguous_nograd(&xc, x);
    if (s == LUNET_OK) s = lunet__tensor_new(&y, m->dtype, ndim + 1, shape, "model");
    if (s == LUNET_OK) s = lunet_model_run(m, lunet__data(xc), x->shape[0], lunet__data(y));
    lunet_tensor_release(xc);
    return lunet__hand_over(out, y, s);
}
