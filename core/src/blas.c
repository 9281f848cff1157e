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

/* Below this many multiply-adds a GEMM runs on one thread: splitting it costs more in
 * synchronisation than it saves (a 64x128x784 training GEMM got slower on two threads). */
#define PARALLEL_GEMM_MIN_WORK ((int64_t)1 << 24)

static int threads_for(int64_t m, int64_t n, int64_t k);

void lunet__gemm(lunet_dtype dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    if (dtype == LUNET_DTYPE_F32) {
        omp_set_num_threads(threads_for(m, n, k)); /* a per-thread setting: cheap, and it stays local */
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

static atomic_int thread_count; /* 0 until set: then the libraries' own defaults apply */

void lunet_set_num_threads(int n) {
    if (n < 1) n = 1;
    atomic_store(&thread_count, n);
    openblas_set_num_threads(n);
    omp_set_num_threads(n); /* oneDNN's threads */
}

int lunet_get_num_threads(void) {
    int n = atomic_load(&thread_count);
    return n > 0 ? n : omp_get_num_procs();
}

static int threads_for(int64_t m, int64_t n, int64_t k) {
    if (m * n * k < PARALLEL_GEMM_MIN_WORK) return 1;
    return lunet_get_num_threads();
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
