/*
 * blas.c: where lunet's GEMMs run.
 *
 * Single precision goes to oneDNN's dnnl_sgemm (Debian's libdnnl, the library PyTorch's CPU
 * build uses too): its kernels are generated at run time for the CPU at hand, AVX-512 where
 * the CPU has it, so lunet gets the same GEMM speed as PyTorch on the same machine; OpenBLAS
 * is held to whatever its core table or OPENBLAS_CORETYPE picks, which on this project's
 * machines is its AVX2 (Haswell) kernels at half that speed, and its sgemm with one row (batch
 * size 1) costs 30 us where oneDNN's costs 5.  Double precision (gradient checks) stays on
 * OpenBLAS, which oneDNN's GEMM does not cover.
 */
#include "internal.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

/* Each worker's share of a GEMM is at least this many multiply-adds (about 40 us on one core
 * here).  Handing a smaller product to the other core costs more than it saves, as its operands
 * must move between the cores' caches: split in two, the CNN's batch-1 conv2 GEMM (2.2M
 * multiply-adds) took the whole forward from 90 to 180 us. */
#define GEMM_MIN_WORK_PER_WORKER ((int64_t)1 << 21)

/* The product on one thread. */
static void gemm_serial(lunet_dtype dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                        const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    if (dtype == LUNET_DTYPE_F32) {
        omp_set_num_threads(1); /* oneDNN's threads for this thread's calls: lunet splits the work itself */
        dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, (float)alpha, a, lda, b, ldb,
                                     (float)beta, c, ldc);
        if (s == dnnl_success) return;
        /* oneDNN refuses only arguments lunet has already checked; OpenBLAS takes over if it
         * ever does. */
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                    (int)n, (int)k, (float)alpha, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
        return;
    }
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* Where row i of op(X) begins, X row-major with leading dimension ld and op transposing when
 * trans: at row i of X, or at column i.  Column j of op(X) begins where row j of op(X)^T does. */
static const char *op_row(const void *x, bool trans, int64_t ld, int64_t i, size_t z) {
    return (const char *)x + (size_t)(trans ? i : i * ld) * z;
}

/* Rows of C are computed in blocks of ROW_BLOCK that start at multiples of ROW_BLOCK.  oneDNN
 * picks its blocking from the product's shape and the CPU's caches, so on some CPUs (AMD Zen 3
 * here) the same row of C comes out with different rounding in an M = 301 product than in an
 * M = 256 one.  Fixed row blocks make each row's bits independent of the batch around it: a
 * model graph, which runs batches in slices of LUNET_MODEL_MAX_BATCH, gives the same bits as
 * the layers on the whole batch, on every CPU. */
#define ROW_BLOCK LUNET_MODEL_MAX_BATCH

/* C rows [first, last) with columns [col, col + n) on one thread, in fixed row blocks. */
static void gemm_rows(lunet_dtype dtype, bool trans_a, bool trans_b, int64_t first, int64_t last, int64_t col, int64_t n,
                      int64_t k, double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
                      void *c, int64_t ldc) {
    size_t z = lunet_dtype_size(dtype);
    for (int64_t r = first; r < last;) {
        int64_t end = (r / ROW_BLOCK + 1) * ROW_BLOCK;
        if (end > last) end = last;
        gemm_serial(dtype, trans_a, trans_b, end - r, n, k, alpha, op_row(a, trans_a, lda, r, z), lda,
                    op_row(b, !trans_b, ldb, col, z), ldb, beta, (char *)c + (size_t)(r * ldc + col) * z, ldc);
        r = end;
    }
}

void lunet__gemm(lunet__split split, lunet_dtype dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                 int64_t ldc) {
    /* f64 runs the gradient checks only: OpenBLAS threads it as it likes. */
    int workers = dtype == LUNET_DTYPE_F32 ? lunet__workers_for(m * n * k, GEMM_MIN_WORK_PER_WORKER) : 1;
    if (workers == 1) {
        gemm_rows(dtype, trans_a, trans_b, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    bool by_rows = split == LUNET__SPLIT_ROWS || (split == LUNET__SPLIT_ANY && m >= n);
    size_t z = lunet_dtype_size(dtype);
#pragma omp parallel for num_threads(workers) schedule(static, 1)
    for (int w = 0; w < workers; w++) {
        int64_t first, last;
        if (by_rows) { /* rows [first, last) of C: the same rows of op(A) */
            lunet__block(&first, &last, m, w, workers, 1);
            gemm_rows(dtype, trans_a, trans_b, first, last, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        } else { /* columns [first, last) of C, in whole cache lines: the same columns of op(B) */
            lunet__block(&first, &last, n, w, workers, 64 / (int64_t)z);
            if (last > first)
                gemm_rows(dtype, trans_a, trans_b, 0, m, first, last - first, k, alpha, a, lda, b, ldb, beta, c, ldc);
        }
    }
}

int lunet__workers_for(int64_t work, int64_t min_per_worker) {
    if (omp_in_parallel()) return 1;
    int64_t most = work / (min_per_worker > 0 ? min_per_worker : 1);
    int n = lunet_get_num_threads();
    return most < 1 ? 1 : most < n ? (int)most : n;
}

static atomic_int thread_count; /* 0 until set: then the libraries' own defaults apply */

void lunet_set_num_threads(int n) {
    if (n < 1) n = 1;
    atomic_store(&thread_count, n);
    openblas_set_num_threads(n);
}

static _Thread_local int this_thread_count; /* 0: the global setting applies */

void lunet_set_thread_num_threads(int n) { this_thread_count = n > 0 ? n : 0; }

int lunet_get_num_threads(void) {
    if (this_thread_count > 0) return this_thread_count;
    int n = atomic_load(&thread_count);
    return n > 0 ? n : omp_get_num_procs();
}

const char *lunet_blas_name(void) {
    static const struct {
        dnnl_cpu_isa_t isa;
        const char *name;
    } names[] = {
        {dnnl_cpu_isa_avx512_core_amx, "oneDNN avx512_core_amx"}, {dnnl_cpu_isa_avx512_core_bf16, "oneDNN avx512_core_bf16"},
        {dnnl_cpu_isa_avx512_core_vnni, "oneDNN avx512_core_vnni"}, {dnnl_cpu_isa_avx512_core, "oneDNN avx512_core"},
        {dnnl_cpu_isa_avx2_vnni, "oneDNN avx2_vnni"}, {dnnl_cpu_isa_avx2, "oneDNN avx2"}, {dnnl_cpu_isa_avx, "oneDNN avx"},
        {dnnl_cpu_isa_sse41, "oneDNN sse41"},
    };
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (isa == names[i].isa) return names[i].name;
    return "oneDNN";
}
