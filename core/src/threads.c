/* threads.c: the thread count shared by BLAS and lunet's own parallel loops. */
#include "internal.h"

#include <cblas.h>

static atomic_int thread_count; /* 0 until set: then BLAS's own default applies */

void lunet_set_num_threads(int n) {
    if (n < 1) n = 1;
    atomic_store(&thread_count, n);
    openblas_set_num_threads(n);
}

int lunet_get_num_threads(void) {
    int n = atomic_load(&thread_count);
    return n > 0 ? n : openblas_get_num_threads();
}
