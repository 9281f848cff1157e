/*
 * random.c: generators (xoshiro256** seeded through splitmix64), random tensors and
 * permutations.  xoshiro256** is small, fast, passes BigCrush, and gives the same stream on
 * every platform, so a seed reproduces a run anywhere.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

static lunet_generator default_generator = {{0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull,
                                             0x94d049bb133111ebull, 0x2545f4914f6cdd1dull}};

lunet_generator *lunet_default_generator(void) { return &default_generator; }

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lunet_generator_next(lunet_generator *g) {
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void lunet_generator_seed(lunet_generator *g, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        g->s[i] = z ^ (z >> 31);
    }
}

double lunet_generator_uniform(lunet_generator *g) { return (double)(lunet_generator_next(g) >> 11) * 0x1.0p-53; }

/* Box-Muller on two uniforms; u1 is kept away from 0 so log() stays finite. */
static void normal_pair(lunet_generator *g, double *a, double *b) {
    double u1 = ((double)(lunet_generator_next(g) >> 11) + 0.5) * 0x1.0p-53;
    double u2 = lunet_generator_uniform(g);
    double r = sqrt(-2.0 * log(u1)), theta = 6.283185307179586 * u2;
    *a = r * cos(theta);
    *b = r * sin(theta);
}

double lunet_generator_normal(lunet_generator *g) {
    double a, b;
    normal_pair(g, &a, &b);
    return a;
}

uint64_t lunet_generator_below(lunet_generator *g, uint64_t n) {
    /* Rejection keeps every value equally likely: draws in the short top bucket are retried. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = lunet_generator_next(g);
    while (x >= limit);
    return x % n;
}

void lunet_manual_seed(uint64_t seed) { lunet_generator_seed(&default_generator, seed); }
void lunet_rng_get_state(uint64_t out[4]) { memcpy(out, default_generator.s, sizeof default_generator.s); }
void lunet_rng_set_state(const uint64_t in[4]) {
    memcpy(default_generator.s, in, sizeof default_generator.s);
    if (!(in[0] | in[1] | in[2] | in[3])) lunet_manual_seed(0); /* all-zero is a fixed point */
}
double lunet_rng_uniform(void) { return lunet_generator_uniform(&default_generator); }
double lunet_rng_normal(void) { return lunet_generator_normal(&default_generator); }

static lunet_status random_tensor(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                  const int64_t *shape, bool normal, const char *op) {
    *out = NULL;
    if (!lunet_dtype_is_float(dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: dtype %s is not a float dtype", op,
                           lunet_dtype_name(dtype));
    lunet_tensor *t;
    LUNET_TRY(lunet__tensor_new(&t, dtype, ndim, shape, op));
    lunet_generator *g = &default_generator;
    int64_t n = t->numel;
    if (dtype == LUNET_DTYPE_F32) {
        float *d = lunet_tensor_data(t);
        if (!normal) {
            for (int64_t i = 0; i < n; i++) d[i] = (float)(lunet_generator_next(g) >> 40) * 0x1.0p-24f;
        } else {
            for (int64_t i = 0; i < n; i += 2) {
                double a, b;
                normal_pair(g, &a, &b);
                d[i] = (float)a;
                if (i + 1 < n) d[i + 1] = (float)b;
            }
        }
    } else {
        double *d = lunet_tensor_data(t);
        if (!normal) {
            for (int64_t i = 0; i < n; i++) d[i] = lunet_generator_uniform(g);
        } else {
            for (int64_t i = 0; i < n; i += 2) {
                double a, b;
                normal_pair(g, &a, &b);
                d[i] = a;
                if (i + 1 < n) d[i + 1] = b;
            }
        }
    }
    *out = t;
    return LUNET_OK;
}

lunet_status lunet_tensor_rand(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape) {
    return random_tensor(out, dtype, ndim, shape, false, "rand");
}

lunet_status lunet_tensor_randn(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape) {
    return random_tensor(out, dtype, ndim, shape, true, "randn");
}

lunet_status lunet_tensor_randperm(lunet_tensor **out, int64_t n, lunet_generator *g) {
    *out = NULL;
    if (n < 0) return lunet__fail(LUNET_ERR_ARG, "randperm: n must be >= 0, got %lld", (long long)n);
    LUNET_TRY(lunet__tensor_new(out, LUNET_DTYPE_I64, 1, &n, "randperm"));
    int64_t *p = lunet_tensor_data(*out);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    if (!g) g = &default_generator;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)lunet_generator_below(g, (uint64_t)i + 1);
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    return LUNET_OK;
}
