/*
 * model.h: the model graph's structures, shared by model.c (building: shapes, fusing,
 * folding) and model_run.c (running: buffers, threads, kernels).  Private to core/src.
 */
#ifndef LUNET_MODEL_H
#define LUNET_MODEL_H

#include "internal.h"
#include "quant.h"

/* How a u8 activation's bytes lie.  The int8 convolution and pooling kernels work on
 * channels-last images, so their outputs stay channels-last, (H, W, C), between int8 layers,
 * and a flatten to one dim keeps that order; chw is the (C, H, W) image the bytes stand for.
 * A layer that wants its input the other way has it transposed first (model_convert).
 * Images with one channel or one pixel are the same either way and count as plain. */
typedef struct model_layout {
    bool channels_last;
    int64_t chw[3];
} model_layout;

typedef enum model_convert { CONVERT_NONE, CONVERT_TO_CHANNELS_LAST, CONVERT_TO_CHANNELS_FIRST } model_convert;

/* One layer as it runs.  Shapes are per sample (no batch dim). */
typedef struct model_layer {
    lunet_layer_kind kind;
    lunet_layer_kind fused;         /* the activation run on the output, or LUNET_LAYER_KIND_COUNT */
    lunet__activation activation;   /* the kernel of `fused` (or of the layer itself); NONE on u8 */
    double slope;                   /* leaky ReLU's */
    int in_ndim, out_ndim;
    int64_t in_shape[LUNET_MAX_DIMS], out_shape[LUNET_MAX_DIMS];
    int64_t in_numel, out_numel;
    /* The activations' element types: the graph's dtype, or u8 between a quantize and a
     * dequantize layer, with their quantization parameters. */
    lunet_dtype in_dtype, out_dtype;
    size_t in_elem, out_elem;
    lunet_qparams in_q, out_q;
    model_layout in_layout, out_layout;
    model_convert convert;          /* done to the input before the layer runs */
    lunet__qlayer q;                /* qlinear, qconv2d, linear_dynamic: the prepared int8 weight */
    /* linear: weight (out, in) and bias; conv2d: weight (O, C/g, KH, KW) and bias;
     * batch_norm: per-channel scale and shift.  Owned, contiguous, the graph's dtype. */
    void *weight, *bias;
    size_t weight_bytes, bias_bytes;
    int64_t rows, in_features, out_features; /* linear: rows per sample, and the weight's sizes */
    int64_t channels, per_channel;  /* batch_norm: channels, and elements per channel of a sample */
    lunet__conv_geometry conv;      /* n = 1: one image */
    lunet__pool_geometry pool;      /* planes = the channels of one sample */
    int64_t outer, n, inner;        /* softmax over one sample */
    bool log;                       /* log_softmax */
} model_layer;

struct lunet_model {
    lunet_dtype dtype;
    size_t elem;                    /* bytes per element */
    int in_ndim;
    int64_t in_shape[LUNET_MAX_DIMS];
    int64_t in_numel;
    model_layer *layers;
    size_t n_layers, cap_layers;
    int64_t widest;                 /* the most elements any activation has per sample */
    size_t cols_bytes;              /* the most column scratch one conv image needs */
    size_t dynamic_bytes;           /* per sample: a dynamic layer's quantized input and row scales */
    /* buffers for `capacity` samples: two activations and a column scratch per worker */
    int64_t capacity;
    int workers;
    void *buffer[2];
    size_t buffer_bytes;
    void *cols;
    size_t cols_total;
    void *dynamic;                  /* capacity * dynamic_bytes */
    size_t dynamic_total;
};

/* The activation kernel of an activation kind. */
lunet__activation model_activation_kernel(lunet_layer_kind kind, double parameter);

#endif /* LUNET_MODEL_H */
