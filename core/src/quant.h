/*
 * quant.h: the int8 kernels behind quantized Linear and Conv2d, shared by the tensor ops
 * (quant.c) and the model graph (model_run.c).  Private to core/src.
 *
 * Every product here is one shape: C (M x N) = A (M x K) B (K x N) in exact int32, then a
 * per-channel epilogue.  A is read row by row, four bytes of K at a time; B is "packed": its
 * columns in panels of eight, each panel K-quad by K-quad (32 bytes: column c's four k at
 * byte 4c), zero past K and past N.  That is the layout of vpmaddubsw, which multiplies 32
 * unsigned bytes by 32 signed bytes and adds neighbouring pairs into 16-bit lanes.  Every
 * layer reads its u8 input as A and packs its s8 weight as B, so channels are columns.  A
 * Conv2d layer works on channels-last (H, W, C) images: A's row for an output pixel is its
 * receptive field in (ky, kx, c) order, which is a few contiguous runs of the image (one per
 * kernel row), and the product's rows are the output pixels, again channels-last.  The
 * tensor ops take and give channels-first (C, H, W) images and transpose around the kernel;
 * the model graph keeps its int8 activations channels-last between layers (model.h).
 *
 * The 16-bit pair sums saturate unless |w[2i]| + |w[2i+1]| <= 128 for every pair of weights
 * the sums meet (255 * 128 = 32640).  Weights quantized to 7 bits always pass; for others
 * the product runs a plain C kernel on the same packed data.  Both give the exact sum, so a
 * product's bits never depend on the machine or the kernel.
 */
#ifndef LUNET_QUANT_H
#define LUNET_QUANT_H

#include "internal.h"

/* Rounds v (|v| < 2^22) to the nearest integer, ties to even, in the default rounding mode:
 * adding and removing 1.5 * 2^23 leaves no fraction bits.  Plain float arithmetic, so the
 * compiler vectorizes it and every build and kernel gives the same bits. */
static inline float lunet__round_half_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

/* u8 = clamp(round_half_even(x / scale) + zero_point, 0, 255), ONNX QuantizeLinear's rule
 * (the clamp is applied before rounding, as ONNX Runtime does; the bounds are integers, so
 * the result is the same). */
void lunet__quantize_f32(uint8_t *q, const float *x, int64_t n, float scale, int32_t zero_point);
/* x = (q - zero_point) * scale, ONNX DequantizeLinear's rule. */
void lunet__dequantize_f32(float *x, const uint8_t *q, int64_t n, float scale, int32_t zero_point);

/* What happens to each int32 sum acc of a product.  acc is the raw sum of q_x q_w; int32
 * additions wrap, in every kernel alike.  The channel is the sum's column.
 *   static layers, u8 output:
 *     clamp(round_half_even(float(acc + offset[ch]) * multiplier[ch]) + zero_point, low, 255)
 *     where offset holds the int32 bias minus the input's zero point times the channel's
 *     weight sum;
 *   dynamic layers, f32 output (row_scale set): each input row r has its own
 *     scale and zero point, so
 *     float(acc - row_zero_point[r] * wsum[ch]) * (row_scale[r] * multiplier[ch]) + fbias[ch],
 *     then max(0, .) with relu. */
typedef struct lunet__epilogue {
    const float *multiplier;
    /* static */
    const int32_t *offset;
    int32_t zero_point, low;  /* low is zero_point for a fused ReLU, else 0 */
    /* dynamic */
    const float *row_scale;   /* NULL for static layers */
    const int32_t *row_zero_point, *wsum;
    const float *fbias;       /* may be NULL */
    bool relu;
} lunet__epilogue;

/* Bytes per output: f32 for dynamic layers, u8 for static ones. */
static inline size_t lunet__epilogue_elem(const lunet__epilogue *e) { return e->row_scale ? sizeof(float) : 1; }

/* Applies e to n sums acc (row `row`, columns col..col+n-1), writing n outputs at out. */
void lunet__epilogue_run(const lunet__epilogue *e, const int32_t *acc, int64_t n, int64_t row, int64_t col, void *out);

/* ---- packed operands -------------------------------------------------------------------------- */

static inline int64_t lunet__qk_quads(int64_t k) { return (k + 3) / 4; }
static inline int64_t lunet__qpanels(int64_t n) { return (n + 7) / 8; }
/* Bytes of a packed B with k rows and n columns. */
static inline size_t lunet__qpacked_bytes(int64_t k, int64_t n) {
    return (size_t)(lunet__qpanels(n) * lunet__qk_quads(k)) * 32;
}
/* Packs B = W^T from W (n x k, row-major bytes): a Linear layer's weight. */
void lunet__qpack_transposed(uint8_t *packed, const void *w, int64_t n, int64_t k);
/* True when the s8 weight rows (n x k, row stride ld) keep every pair sum of vpmaddubsw
 * inside 16 bits with any u8 input. */
bool lunet__qweights_pair_safe(const int8_t *w, int64_t n, int64_t k, int64_t ld);

/* ---- the product ------------------------------------------------------------------------------ */

typedef enum lunet__qkernel {
    LUNET__QKERNEL_C,        /* plain C on the packed data */
    LUNET__QKERNEL_AVX2,     /* vpmaddubsw; exact only for pair-safe weights (tests force it) */
} lunet__qkernel;

typedef struct lunet__qgemm {
    int64_t m, n, k;
    const uint8_t *a;         /* u8: m rows of k bytes, row stride lda */
    int64_t lda;
    const uint8_t *b;         /* s8, packed: lunet__qpacked_bytes(k, n) */
    const lunet__epilogue *epilogue;
    void *c;                  /* m rows of n outputs (u8 or f32), row stride ldc elements */
    int64_t ldc;
    lunet__qkernel kernel;    /* LUNET__QKERNEL_C or _AVX2: resolved by lunet__qkernel_for */
} lunet__qgemm;

/* The kernel a product with these weights runs: AVX2 when the CPU has it and the weights are
 * pair-safe (the check above), else C.  Tests set a layer's kernel themselves. */
lunet__qkernel lunet__qkernel_for(bool weights_pair_safe);
/* Runs rows [first, last) of the product. */
void lunet__qgemm_rows(const lunet__qgemm *g, int64_t first, int64_t last);

/* ---- layers ------------------------------------------------------------------------------------- */

/* A quantized Linear or Conv2d weight, prepared once: the packed weight, the per-channel
 * epilogue data and the kernel that suits it. */
typedef struct lunet__qlayer {
    int64_t channels, k;      /* outputs, and inputs per output */
    uint8_t *weight;          /* packed B: k rows, channels columns */
    size_t weight_bytes;
    int32_t *offset, *wsum;   /* channels */
    float *multiplier, *fbias; /* channels (fbias: dynamic layers) */
    lunet__qkernel kernel;
} lunet__qlayer;

/* Prepares w (channels x k s8, contiguous, its k inputs in the order the product reads
 * them) for a layer.  bias_q (i32, may be NULL) is the static bias; x_zero_point the input's zero point
 * (static layers), and multiplier[ch] = x_scale * w_scale[ch] / y_scale computed in float
 * left to right, as ONNX Runtime does.  For a dynamic layer pass y_scale = 0: the multiplier
 * is then w_scale[ch] alone (the input scale arrives with each batch), offset is 0 and
 * fbias holds the float bias (may be NULL). */
lunet_status lunet__qlayer_init(lunet__qlayer *q, const int8_t *w, int64_t channels, int64_t k,
                                const int32_t *bias_q, const float *fbias, const float *w_scale, float x_scale,
                                int32_t x_zero_point, float y_scale);
void lunet__qlayer_free(lunet__qlayer *q);
/* The same from tensors, checked first (messages start with op): weight i8 (O, ...) with
 * weight_ndim dims, scale f32 (O) finite and positive, bias (O) or NULL, i32 for a static
 * layer (y_scale > 0) and f32 for a dynamic one.  chw, when not NULL, says that each weight
 * row's inputs are a (C, H, W) block in that order, to be read channels-last: a Conv2d
 * weight (O, C, KH, KW), or a Linear one after the flattening of a channels-last image. */
lunet_status lunet__qlayer_prepare(lunet__qlayer *q, const lunet_tensor *weight, const lunet_tensor *scale,
                                   const lunet_tensor *bias, int weight_ndim, const int64_t chw[3], lunet_qparams x,
                                   float y_scale, const char *op);

/* The epilogue of static layer q: u8 output with parameters y, ReLU fused or not. */
static inline lunet__epilogue lunet__static_epilogue(const lunet__qlayer *q, lunet_qparams y, bool relu) {
    return (lunet__epilogue){.multiplier = q->multiplier, .offset = q->offset, .zero_point = y.zero_point,
                             .low = relu ? y.zero_point : 0};
}

/* The epilogue of dynamic layer q for input rows quantized with row_scale and row_zero_point. */
static inline lunet__epilogue lunet__dynamic_epilogue(const lunet__qlayer *q, const float *row_scale,
                                                      const int32_t *row_zero_point, bool relu) {
    return (lunet__epilogue){.multiplier = q->multiplier, .row_scale = row_scale, .row_zero_point = row_zero_point,
                             .wsum = q->wsum, .fbias = q->fbias, .relu = relu};
}

/* y (rows x channels) from u8 x (rows x k); e describes the output (from q, plus the rows'
 * scales for a dynamic layer).  Runs on one thread. */
void lunet__qlinear_rows(const lunet__qlayer *q, const lunet__epilogue *e, const uint8_t *x, int64_t rows, void *y);

/* ---- channels-last images ------------------------------------------------------------------------ */

/* dst (HW, C) = src (C, HW), and back: one u8 image between the two layouts. */
void lunet__u8_to_channels_last(uint8_t *dst, const uint8_t *src, int64_t c, int64_t hw);
void lunet__u8_to_channels_first(uint8_t *dst, const uint8_t *src, int64_t c, int64_t hw);

/* The scratch (unfolded rows) one image of g needs. */
size_t lunet__qconv_cols_bytes(const lunet__conv_geometry *g);
/* y_img (OH, OW, O) = conv(x_img (H, W, C)), both channels-last, padding with x_zero_point;
 * q was prepared with chw = (C, KH, KW); groups must be 1. */
void lunet__qconv2d_image(const lunet__conv_geometry *g, const lunet__qlayer *q, const lunet__epilogue *e,
                          const uint8_t *x_img, int32_t x_zero_point, void *y_img, uint8_t *cols);

/* A dynamic layer's input rows: each row of x (rows x k, f32) is quantized to u8 with the
 * scale and zero point of ONNX DynamicQuantizeLinear over that row. */
void lunet__quantize_rows_dynamic(uint8_t *q, float *row_scale, int32_t *row_zero_point, const float *x,
                                  int64_t rows, int64_t k);

/* Max pooling of `images` channels-last u8 images (H, W, channels) -> (OH, OW, channels),
 * g's planes aside (max commutes with the monotone quantization). */
void lunet__max_pool2d_u8(const lunet__pool_geometry *g, int64_t images, int64_t channels, uint8_t *y,
                          const uint8_t *x);

/* ---- references: the definitions the fast paths are held to (tests only) ---------------------- */

/* y = epilogue(sum_k x[r][k] w[ch][k]) for x (rows x k, u8) and w (channels x k, s8), with
 * the epilogue's channel being the column. */
void lunet__qlinear_reference(const lunet__epilogue *e, const uint8_t *x, const int8_t *w, int64_t rows,
                              int64_t channels, int64_t k, void *y);
/* The convolution of one channels-first image (C, H, W) -> (O, OH, OW) by its definition
 * (out-of-image taps read x_zero_point), w being (O, C, KH, KW). */
void lunet__qconv2d_reference(const lunet__conv_geometry *g, const lunet__epilogue *e, const uint8_t *x_img,
                              int32_t x_zero_point, const int8_t *w, void *y_img);

#endif /* LUNET_QUANT_H */
