/*
 * matmul.c: matrix products with torch.matmul's shape rules, on BLAS for floats.
 *
 * Operands are seen as batches of matrices.  Each matrix goes to cblas_?gemm as it lies in
 * memory when its strides allow (row-major, or transposed via CblasTrans); only otherwise is
 * it copied.  When the right operand has no batch dims and the left one's rows are evenly
 * spaced, the whole batch is one GEMM with M = batch * rows.  Integer dtypes, and the
 * reference the tests hold BLAS to, use a plain triple loop.
 */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* ---- geometry ---------------------------------------------------------------------------------- */

typedef struct matrix_view {
    const char *data;
    int64_t rows, cols, row_stride, col_stride; /* strides in elements */
} matrix_view;

/* How BLAS can read a matrix in place: CblasNoTrans with ld = row stride, or CblasTrans
 * with ld = column stride. */
static bool blas_layout(const matrix_view *m, CBLAS_TRANSPOSE *trans, int64_t *ld) {
    if ((m->col_stride == 1 || m->cols == 1) && m->row_stride >= (m->cols > 1 ? m->cols : 1)) {
        *trans = CblasNoTrans;
        *ld = m->row_stride;
        return true;
    }
    if ((m->row_stride == 1 || m->rows == 1) && m->col_stride >= (m->rows > 1 ? m->rows : 1)) {
        *trans = CblasTrans;
        *ld = m->col_stride;
        return true;
    }
    return false;
}

/* ---- the plain loop (integers, and the reference for the BLAS path) ------------------------------ */

#define GEMM_LOOP(N, T, U)                                                                 \
    static void gemm_loop_##N(char *c, const matrix_view *a, const matrix_view *b, int64_t ldc) { \
        for (int64_t i = 0; i < a->rows; i++)                                              \
            for (int64_t j = 0; j < b->cols; j++) {                                        \
                U acc = 0;                                                                 \
                for (int64_t k = 0; k < a->cols; k++) {                                    \
                    T x = ((const T *)a->data)[i * a->row_stride + k * a->col_stride];     \
                    T y = ((const T *)b->data)[k * b->row_stride + j * b->col_stride];     \
                    acc = (U)(acc + (U)x * (U)y);                                          \
                }                                                                          \
                ((T *)c)[i * ldc + j] = (T)acc;                                            \
            }                                                                              \
    }
LUNET__FOR_EACH_DTYPE(GEMM_LOOP)
#undef GEMM_LOOP

static void gemm_loop(lunet_dtype dtype, char *c, const matrix_view *a, const matrix_view *b, int64_t ldc) {
    switch (dtype) {
#define CASE(N, T, U)                                                                      \
    case LUNET_DTYPE_##N: gemm_loop_##N(c, a, b, ldc); break;
        LUNET__FOR_EACH_DTYPE(CASE)
#undef CASE
    default: break;
    }
}

/* C (a.rows, b.cols) with leading dimension ldc = A B, on BLAS where the layout allows.
 * Returns false when a matrix needs copying first. */
static bool gemm_blas(lunet_dtype dtype, char *c, const matrix_view *a, const matrix_view *b, int64_t ldc) {
    CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    if (!blas_layout(a, &ta, &lda) || !blas_layout(b, &tb, &ldb)) return false;
    lunet__gemm(LUNET__SPLIT_ANY, dtype, ta == CblasTrans, tb == CblasTrans, a->rows, b->cols, a->cols, 1.0, a->data, lda, b->data, ldb,
                0.0, c, ldc);
    return true;
}

/* ---- batched driver ------------------------------------------------------------------------------- */

typedef struct batch_plan {
    int batch_ndim;
    int64_t batch_shape[LUNET_MAX_DIMS];
    int64_t a_strides[LUNET_MAX_DIMS], b_strides[LUNET_MAX_DIMS]; /* broadcast batch strides */
    int64_t m, k, n;
} batch_plan;

static lunet_status plan_batches(batch_plan *p, lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    char sa[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
    p->m = a->shape[a->ndim - 2];
    p->k = a->shape[a->ndim - 1];
    p->n = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != p->k)
        return lunet__fail(LUNET_ERR_SHAPE, "matmul: %s x %s: inner sizes differ", lunet__shape_str(sa, sizeof sa, a),
                           lunet__shape_str(sb, sizeof sb, b));
    if (p->m > INT_MAX || p->n > INT_MAX || p->k > INT_MAX)
        return lunet__fail(LUNET_ERR_SHAPE, "matmul: %s x %s: a matrix side exceeds %d", lunet__shape_str(sa, sizeof sa, a),
                           lunet__shape_str(sb, sizeof sb, b), INT_MAX);
    lunet_status s = lunet__broadcast_shape(&p->batch_ndim, p->batch_shape, "matmul", a->ndim - 2, a->shape,
                                            b->ndim - 2, b->shape);
    if (s != LUNET_OK)
        return lunet__fail(LUNET_ERR_SHAPE, "matmul: %s x %s: batch dims cannot be broadcast together",
                           lunet__shape_str(sa, sizeof sa, a), lunet__shape_str(sb, sizeof sb, b));
    /* Batch strides: each operand's leading dims, broadcast to the common batch shape. */
    lunet__broadcast_strides(p->a_strides, a->ndim - 2, a->shape, a->strides, p->batch_ndim, p->batch_shape);
    lunet__broadcast_strides(p->b_strides, b->ndim - 2, b->shape, b->strides, p->batch_ndim, p->batch_shape);
    int64_t shape[LUNET_MAX_DIMS];
    memcpy(shape, p->batch_shape, (size_t)p->batch_ndim * sizeof *shape);
    shape[p->batch_ndim] = p->m;
    shape[p->batch_ndim + 1] = p->n;
    return lunet__tensor_new(out, a->dtype, p->batch_ndim + 2, shape, "matmul");
}

/* Runs every batch of the plan, into the contiguous out.  use_blas = false forces the loop. */
static lunet_status run_batches(lunet_tensor *out, const lunet_tensor *a, const lunet_tensor *b, const batch_plan *p,
                                bool use_blas) {
    size_t z = lunet_dtype_size(a->dtype);
    if (out->numel == 0) return LUNET_OK;
    if (p->k == 0) {
        memset(lunet__data(out), 0, (size_t)out->numel * z);
        return LUNET_OK;
    }
    use_blas = use_blas && lunet_dtype_is_float(a->dtype);
    matrix_view ma = {lunet__data(a), p->m, p->k, a->strides[a->ndim - 2], a->strides[a->ndim - 1]};
    matrix_view mb = {lunet__data(b), p->k, p->n, b->strides[b->ndim - 2], b->strides[b->ndim - 1]};
    int64_t batches = lunet__numel(p->batch_ndim, p->batch_shape);

    /* One GEMM for the whole batch when b is shared and a's rows are evenly spaced. */
    bool b_shared = true, a_rows_even = ma.col_stride == 1 && ma.row_stride >= p->k;
    for (int d = 0; d < p->batch_ndim; d++) b_shared = b_shared && p->b_strides[d] == 0;
    int64_t expect = ma.row_stride * p->m;
    for (int d = p->batch_ndim - 1; d >= 0 && a_rows_even; d--) {
        if (p->batch_shape[d] == 1) continue;
        a_rows_even = p->a_strides[d] == expect;
        expect *= p->batch_shape[d];
    }
    if (use_blas && batches > 1 && b_shared && a_rows_even && batches * p->m <= INT_MAX) {
        matrix_view all = ma;
        all.rows = batches * p->m;
        if (gemm_blas(a->dtype, lunet__data(out), &all, &mb, p->n)) return LUNET_OK;
    }

    int64_t index[LUNET_MAX_DIMS] = {0};
    for (int64_t i = 0; i < batches; i++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < p->batch_ndim; d++) {
            oa += index[d] * p->a_strides[d];
            ob += index[d] * p->b_strides[d];
        }
        matrix_view xa = ma, xb = mb;
        xa.data += oa * (int64_t)z;
        xb.data += ob * (int64_t)z;
        char *c = lunet__data(out) + (size_t)(i * p->m * p->n) * z;
        if (!use_blas || !gemm_blas(a->dtype, c, &xa, &xb, p->n)) gemm_loop(a->dtype, c, &xa, &xb, p->n);
        for (int d = p->batch_ndim - 1; d >= 0; d--) {
            if (++index[d] < p->batch_shape[d]) break;
            index[d] = 0;
        }
    }
    return LUNET_OK;
}

/* Copies operands BLAS cannot read in place; returns a new reference either way. */
static lunet_status blas_ready(lunet_tensor **out, const lunet_tensor *t) {
    matrix_view m = {NULL, t->shape[t->ndim - 2], t->shape[t->ndim - 1], t->strides[t->ndim - 2],
                     t->strides[t->ndim - 1]};
    CBLAS_TRANSPOSE trans;
    int64_t ld;
    if (!lunet_dtype_is_float(t->dtype) || (blas_layout(&m, &trans, &ld) && ld <= INT_MAX)) {
        *out = lunet_tensor_retain(t);
        return LUNET_OK;
    }
    lunet_tensor *c;
    LUNET_TRY(lunet__tensor_new(&c, t->dtype, t->ndim, t->shape, "matmul"));
    lunet__copy_cast(c, t);
    *out = c;
    return LUNET_OK;
}

/* ---- autograd ----------------------------------------------------------------------------------- */

/* dA = dC B^T and dB = A^T dC, summed over batch dims that were broadcast. */
static lunet_status matmul_backward(lunet__node *node, const lunet_tensor *g, lunet_tensor **grad_in) {
    const lunet_tensor *a = node->saved[0], *b = node->saved[1];
    lunet_status s = LUNET_OK;
    for (int i = 0; i < 2 && s == LUNET_OK; i++) {
        if (!node->inputs[i]) continue;
        lunet_tensor *other_t = NULL, *prod = NULL;
        s = lunet_tensor_transpose(&other_t, i == 0 ? b : a, -1, -2);
        if (s == LUNET_OK) s = i == 0 ? lunet_tensor_matmul(&prod, g, other_t) : lunet_tensor_matmul(&prod, other_t, g);
        if (s == LUNET_OK)
            s = lunet__sum_to_shape(&grad_in[i], prod, node->inputs[i]->ndim, node->inputs[i]->shape);
        lunet_tensor_release(other_t);
        lunet_tensor_release(prod);
    }
    return s;
}

/* Both operands have at least 2 dims and share a dtype. */
static lunet_status matmul_nd(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    *out = NULL;
    batch_plan plan;
    lunet_tensor *o, *ra = NULL, *rb = NULL;
    LUNET_TRY(plan_batches(&plan, &o, a, b));
    lunet_status s = blas_ready(&ra, a);
    if (s == LUNET_OK) s = blas_ready(&rb, b);
    if (s == LUNET_OK) s = run_batches(o, ra, rb, &plan, true);
    lunet_tensor_release(ra);
    lunet_tensor_release(rb);
    lunet__node *node = NULL;
    const lunet_tensor *inputs[2] = {a, b};
    if (s == LUNET_OK) s = lunet__record(&node, o, "MatmulBackward", matmul_backward, 2, inputs);
    if (s == LUNET_OK && node) s = lunet__save_all(node, 2, inputs);
    return lunet__hand_over(out, o, s);
}

lunet_status lunet_tensor_matmul(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    *out = NULL;
    if (a->ndim == 0 || b->ndim == 0) {
        char sa[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
        return lunet__fail(LUNET_ERR_SHAPE, "matmul: %s x %s: both operands need at least 1 dim",
                           lunet__shape_str(sa, sizeof sa, a), lunet__shape_str(sb, sizeof sb, b));
    }
    lunet_dtype dtype = lunet__promote(a, b);
    lunet_tensor *ca = NULL, *cb = NULL, *ua = NULL, *ub = NULL, *prod = NULL, *sq = NULL;
    lunet_status s = lunet_tensor_to(&ca, a, dtype);
    if (s == LUNET_OK) s = lunet_tensor_to(&cb, b, dtype);
    /* A 1-d operand becomes a matrix for the product; the added dim is removed after. */
    if (s == LUNET_OK) s = a->ndim == 1 ? lunet_tensor_unsqueeze(&ua, ca, 0) : (ua = lunet_tensor_retain(ca), LUNET_OK);
    if (s == LUNET_OK) s = b->ndim == 1 ? lunet_tensor_unsqueeze(&ub, cb, -1) : (ub = lunet_tensor_retain(cb), LUNET_OK);
    if (s == LUNET_OK) {
        s = matmul_nd(&prod, ua, ub);
        if (s == LUNET_ERR_SHAPE && (a->ndim == 1 || b->ndim == 1)) { /* name the shapes the caller gave */
            char sa[LUNET__SHAPE_BUF], sb[LUNET__SHAPE_BUF];
            s = lunet__fail(LUNET_ERR_SHAPE, "matmul: %s x %s: inner sizes differ", lunet__shape_str(sa, sizeof sa, a),
                            lunet__shape_str(sb, sizeof sb, b));
        }
    }
    if (s == LUNET_OK && a->ndim == 1) {
        s = lunet_tensor_squeeze(&sq, prod, -2);
        lunet_tensor_release(prod);
        prod = sq;
        sq = NULL;
    }
    if (s == LUNET_OK && b->ndim == 1) {
        s = lunet_tensor_squeeze(&sq, prod, -1);
        lunet_tensor_release(prod);
        prod = sq;
    }
    lunet_tensor *tmp[] = {ca, cb, ua, ub};
    for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++) lunet_tensor_release(tmp[i]);
    return lunet__hand_over(out, prod, s);
}

/* The same product computed by the plain loop only, for tests of the BLAS path. */
lunet_status lunet__matmul_reference(lunet_tensor **out, const lunet_tensor *a, const lunet_tensor *b) {
    *out = NULL;
    if (a->ndim < 2 || b->ndim < 2 || a->dtype != b->dtype)
        return lunet__fail(LUNET_ERR_ARG, "matmul_reference: needs two matrices (or batches) of one dtype");
    batch_plan plan;
    lunet_tensor *o;
    LUNET_TRY(plan_batches(&plan, &o, a, b));
    lunet_status s = run_batches(o, a, b, &plan, false);
    return lunet__hand_over(out, o, s);
}
