/*
 * alloc.c: the tensor memory cache.
 *
 * A training step frees and allocates the same sizes every iteration; going to malloc for
 * each costs time and, for large blocks, page faults (glibc returns big blocks to the system
 * with munmap).  Blocks are rounded up to size classes (four per power of two, so at most 25%
 * is wasted) and freed blocks wait in a per-class free list until the same class is asked
 * for again.  The cache holds at most cache_limit bytes; beyond that blocks go back to the
 * system.  One mutex guards it: allocations are per tensor, not per element, so contention
 * is negligible.
 */
#define _POSIX_C_SOURCE 200809L /* posix_memalign */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ALIGNMENT 64
#define MIN_BLOCK 64
#define CLASS_COUNT (1 + (48 - 6) * 4)
#define DEFAULT_CACHE_LIMIT ((size_t)1 << 30)

typedef struct free_block {
    struct free_block *next;
} free_block;

static struct {
    pthread_mutex_t lock;
    free_block *lists[CLASS_COUNT];
    lunet_alloc_stats stats;
    int enabled; /* -1 until the environment has been read */
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .stats = {.cache_limit = DEFAULT_CACHE_LIMIT},
           .enabled = -1};

/* Class index and rounded size for a request of nbytes. */
static int size_class(size_t nbytes, size_t *class_bytes) {
    if (nbytes <= MIN_BLOCK) {
        *class_bytes = MIN_BLOCK;
        return 0;
    }
    int k = 63 - __builtin_clzll((unsigned long long)(nbytes - 1)); /* 2^k < nbytes <= 2^(k+1) */
    size_t base = (size_t)1 << k, step = base >> 2;
    size_t j = (nbytes - base + step - 1) / step; /* 1..4 */
    *class_bytes = base + j * step;
    return 1 + (k - 6) * 4 + (int)(j - 1);
}

static bool cache_enabled(void) {
#ifdef LUNET_ALLOC_NO_CACHE
    return false; /* sanitizer builds: every free must reach ASan */
#else
    if (cache.enabled < 0) {
        const char *env = getenv("LUNET_ALLOC_CACHE");
        cache.enabled = !(env && strcmp(env, "0") == 0);
    }
    return cache.enabled;
#endif
}

void *lunet__alloc(size_t nbytes) {
    size_t class_bytes;
    int c = size_class(nbytes, &class_bytes);
    if (c >= CLASS_COUNT) return NULL;
    bool use_cache = cache_enabled();
    pthread_mutex_lock(&cache.lock);
    free_block *b = use_cache ? cache.lists[c] : NULL;
    if (b) {
        cache.lists[c] = b->next;
        cache.stats.cached_bytes -= class_bytes;
        cache.stats.cache_hits++;
    } else {
        cache.stats.system_allocs++;
    }
    cache.stats.live_bytes += class_bytes;
    pthread_mutex_unlock(&cache.lock);
    if (b) return b;

    void *p = NULL;
    if (posix_memalign(&p, ALIGNMENT, class_bytes) != 0) {
        pthread_mutex_lock(&cache.lock);
        cache.stats.system_allocs--;
        cache.stats.live_bytes -= class_bytes;
        pthread_mutex_unlock(&cache.lock);
        return NULL;
    }
    return p;
}

void lunet__free(void *p, size_t nbytes) {
    if (!p) return;
    size_t class_bytes;
    int c = size_class(nbytes, &class_bytes);
    bool keep = false;
    pthread_mutex_lock(&cache.lock);
    cache.stats.live_bytes -= class_bytes;
    if (cache_enabled() && cache.stats.cached_bytes + class_bytes <= cache.stats.cache_limit) {
        free_block *b = p;
        b->next = cache.lists[c];
        cache.lists[c] = b;
        cache.stats.cached_bytes += class_bytes;
        keep = true;
    } else {
        cache.stats.system_frees++;
    }
    pthread_mutex_unlock(&cache.lock);
    if (!keep) free(p);
}

void lunet_alloc_get_stats(lunet_alloc_stats *out) {
    bool enabled = cache_enabled();
    pthread_mutex_lock(&cache.lock);
    *out = cache.stats;
    pthread_mutex_unlock(&cache.lock);
    out->cache_enabled = enabled;
}

void lunet_alloc_trim(void) {
    free_block *lists[CLASS_COUNT];
    pthread_mutex_lock(&cache.lock);
    memcpy(lists, cache.lists, sizeof lists);
    memset(cache.lists, 0, sizeof cache.lists);
    for (int c = 0; c < CLASS_COUNT; c++)
        for (free_block *b = lists[c]; b; b = b->next) cache.stats.system_frees++;
    cache.stats.cached_bytes = 0;
    pthread_mutex_unlock(&cache.lock);
    for (int c = 0; c < CLASS_COUNT; c++) {
        free_block *b = lists[c];
        while (b) {
            free_block *next = b->next;
            free(b);
            b = next;
        }
    }
}

void lunet_alloc_set_cache_limit(size_t bytes) {
    pthread_mutex_lock(&cache.lock);
    cache.stats.cache_limit = bytes;
    bool over = cache.stats.cached_bytes > bytes;
    pthread_mutex_unlock(&cache.lock);
    if (over) lunet_alloc_trim();
}

/* Hands the cache back at exit so leak checkers see only what is really still in use. */
__attribute__((destructor)) static void release_cache_at_exit(void) { lunet_alloc_trim(); }
